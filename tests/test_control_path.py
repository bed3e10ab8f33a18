"""The live control path: features off the audio thread through a ring, one automation
implementation, hops at audio time offline (deterministic), the same trajectory live."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import soundfile as sf

from edgemix import params as P
from edgemix.automix.master import MasterLoudness
from edgemix.automix.policy import Automation, blend
from edgemix.automix.prep.gating import GatingPolicy
from edgemix.automix.rules import RulePolicy
from edgemix.console import Console
from edgemix.features import FeatureExtractor
from edgemix.rt.backend import Backend
from edgemix.app import build_runner
from edgemix.rt.offline import OfflineBackend
from edgemix.rt.runner import Runner
from edgemix.rt.control import FIRST_PROPOSAL_JUMPS, TRIM_SNAP_DOWN_DB
from edgemix.rt.synthetic import SyntheticSource
from edgemix.session import load_session

FS = 48000

CHANNELS = ('[[channels]]\nrole = "kick"\n'
            '[[channels]]\nrole = "bass"\nfader_db = -5\npan = 0.3\n'
            '[[channels]]\nrole = "lead_vocal"\nautomation = 0.0\n'
            '[[channels]]\nrole = "guitar"\nautomation = 0.5\n'
            '[[channels]]\nrole = "speech"\n')


def synthetic_session(tmp_path, block=64, seconds=2.0, paced=False, name="s"):
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(f'[session]\nblock_size = {block}\n'
                   f'[backend]\nkind = "synthetic"\npaced = {str(paced).lower()}\n'
                   f'duration_s = {seconds}\nseed = 3\noutput = "{name}.wav"\n'
                   '[model]\npolicy = "rules"\nhop_ms = 100\n' + CHANNELS)
    return load_session(cfg)


def record_stages(runner):
    """Wrap ``console.stage``: every staged array with the console's sample clock then."""
    console = runner.console
    stage = console.stage
    log = []

    def recording(cp, mp=None):
        log.append((console.sample_clock, np.array(cp, dtype=np.float64)))
        stage(cp, mp)
    console.stage = recording
    return log


def session_input(session):
    b = session.backend
    src = SyntheticSource(max(c.input for c in session.channels), session.sample_rate_hz,
                          b.duration_s, seed=b.seed)
    x = np.zeros((src.total_frames, src.n_channels), np.float32)
    assert src.read(x) == x.shape[0]
    return x


def synchronous_reference(session, x):
    """The obvious loop: at every hop boundary k * hop of the sample clock, features of
    exactly the frames before it -> rules -> Automation; then the console, staged before
    the first block starting at or after each boundary.  Returns (params per hop, the
    staging clocks, the mix)."""
    n, bs = session.n_channels, session.block_size
    fe = FeatureExtractor(FS, n, hop_ms=session.model.hop_ms)
    # what make_policy builds: the rules with the live gate of resting channels
    policy = GatingPolicy(RulePolicy([c.role for c in session.channels]))
    auto = Automation(n, manual=session.channel_params(), level=session.automation()[:, None],
                      locked=session.locked())
    hop = fe.hop_frames
    last_block_start = (x.shape[0] - 1) // bs * bs
    params, clocks, masters = [], [], []
    master = session.master_params()
    proposed = np.zeros((n, P.N_CH), dtype=bool)
    target = MasterLoudness(session.loudness_target_lufs, person=tuple(session.master))
    for k in range(1, last_block_start // hop + 1):
        fe.process(x[(k - 1) * hop:k * hop])
        snap = fe.snapshot()
        prop = policy.propose(snap)
        # trims and faders take their first proposal whole (issue 10)
        for name in FIRST_PROPOSAL_JUMPS:
            j = getattr(P.CH, name)
            first = np.isfinite(prop.values[:, j]) & ~proposed[:, j] & ~auto.locked[:, j]
            v = np.where(first[:, None] & (np.arange(P.N_CH) == j), prop.values, np.nan)
            auto.targets[first, j] = blend(auto.manual, v, auto.level, auto.locked)[first, j]
            auto._smooth[first, j] = np.nan
        proposed |= np.isfinite(prop.values)
        # a trim far above what is now proposed starts from the proposal (issue 10)
        j = P.CH.trim_db
        down = np.isfinite(prop.values[:, j]) & \
            (prop.values[:, j] < auto.targets[:, j] - TRIM_SNAP_DOWN_DB) & ~auto.locked[:, j]
        auto.targets[down, j] = prop.values[down, j]
        auto._smooth[down, j] = np.nan
        # the master fader toward the session's loudness target, from the targets so far
        got = target.propose(snap, auto.targets, master[P.MS.master_fader_db])
        if got is not None:
            master = master.copy()
            master[P.MS.master_fader_db] = got[0]
        params.append(auto.step(prop))
        masters.append(master)
        clocks.append(math.ceil(k * hop / bs) * bs)
    console = session.build_console()
    mix = np.zeros((x.shape[0], 2), np.float32)
    k = 0
    for t in range(0, x.shape[0], bs):
        while k < len(clocks) and clocks[k] <= t:
            console.stage(params[k], masters[k])
            k += 1
        console.process(np.ascontiguousarray(x[t:t + bs]), out=mix[t:t + bs])
    return params, clocks, mix


def run_offline(session):
    runner, session = build_runner(session, rt_priority=False)
    stages = record_stages(runner)
    st = runner.run()
    mix, fs = sf.read(session.backend.output, dtype="float32")
    assert fs == FS and st["stop_reason"] == "source finished"
    return runner, stages, mix, st


@pytest.mark.parametrize("block", [64, 128])
def test_offline_trajectory_equals_the_synchronous_reference(tmp_path, block):
    """128-frame blocks put the 4800-frame hop boundaries mid-block: the step still sees
    exactly hop k's features and is staged before the block that follows the boundary."""
    session = synthetic_session(tmp_path, block=block)
    runner, stages, mix, st = run_offline(session)
    x = session_input(session)
    ref_params, ref_clocks, ref_mix = synchronous_reference(session, x)
    assert st["control"]["errors"] == 0 and st["control"]["ring_dropped_frames"] == 0
    assert [c for c, _ in stages] == ref_clocks
    assert len(stages) == len(ref_params) >= 15
    for (_, got), want in zip(stages, ref_params):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(mix, ref_mix, rtol=0, atol=1e-6)
    assert np.abs(mix).max() > 1e-2


def test_two_offline_runs_are_identical(tmp_path):
    a = run_offline(synthetic_session(tmp_path, name="a"))
    b = run_offline(synthetic_session(tmp_path, name="b"))
    assert len(a[1]) == len(b[1]) > 0
    for (ca, pa), (cb, pb) in zip(a[1], b[1]):
        assert ca == cb
        np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(a[2], b[2])


def test_level_zero_and_locks_hold_through_the_runner(tmp_path):
    session = synthetic_session(tmp_path)
    runner, stages, _, _ = run_offline(session)
    base = session.channel_params()
    staged = np.array([p for _, p in stages])
    # automation 0 (lead vocal): exactly the manual settings at every hop
    assert np.all(staged[:, 2, :] == base[2])
    # the bass's own fader and pan are locked: never moved; its other parameters did
    assert np.all(staged[:, 1, P.CH.fader_db] == -5.0)
    assert np.all(staged[:, 1, P.CH.pan] == 0.3)
    assert np.any(staged[:, 1, P.CH.trim_db] != base[1, P.CH.trim_db])
    assert np.any(staged[:, 0] != base[0])                        # full auto moved
    # the explanations left for the report skip what automation may not move
    why = runner.control.last_explanations
    assert why[2] == {} and "fader_db" not in why[1] and "pan" not in why[1]
    assert "trim_db" in why[0]


class RecordingFeatures(FeatureExtractor):
    """A FeatureExtractor that notes which thread feeds it, and counts feeds made by a
    thread while that same thread is inside ``runner.process`` (an audio block)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.threads: list[str] = []
        self.block_thread = None        # ident of the thread inside an audio block, if any
        self.called_in_block = 0

    def process(self, block):
        self.threads.append(threading.current_thread().name)
        if self.block_thread == threading.get_ident():
            self.called_in_block += 1
        super().process(block)


def _mark_blocks(runner, features):
    process = runner.process

    def marked(x, out):
        features.block_thread = threading.get_ident()
        try:
            process(x, out)
        finally:
            features.block_thread = None
    runner.process = marked


def test_features_never_run_in_the_audio_block_and_live_follows_offline(tmp_path):
    """Live arrangement (the paced synthetic backend with the wall-clock control thread):
    the feature extractor is fed only on the control thread, and the staged trajectory is
    the offline one (the hops are on the sample clock, not the wall clock)."""
    session = synthetic_session(tmp_path, seconds=1.5, paced=True, name="live")
    fe = RecordingFeatures(FS, session.n_channels)
    runner, session = build_runner(session, rt_priority=False, features=fe)
    runner.backend.drives_control = False
    _mark_blocks(runner, fe)
    stages = record_stages(runner)
    fe.threads.clear()
    warm = len(fe.threads)
    st = runner.run()
    fed = fe.threads[warm:]
    # warm-up (owner thread) aside, every feed came from the control thread
    assert fed and set(fed[1:]) == {"edgemix-control"}, set(fed)
    assert fe.called_in_block == 0
    assert st["control"]["ring_dropped_frames"] == 0 and st["control"]["errors"] == 0
    offline = run_offline(synthetic_session(tmp_path, seconds=1.5, name="off"))[1]
    live = [p for _, p in stages]
    assert len(offline) - 2 <= len(live) <= len(offline) + 1
    for got, (_, want) in zip(live, offline):
        np.testing.assert_array_equal(got, want)


def test_offline_feeds_features_between_blocks_not_inside_them(tmp_path):
    session = synthetic_session(tmp_path, seconds=0.6)
    fe = RecordingFeatures(FS, session.n_channels)
    runner, session = build_runner(session, rt_priority=False, features=fe)
    _mark_blocks(runner, fe)
    st = runner.run()
    assert st["control"]["hops"] == 5
    assert fe.called_in_block == 0
    assert "edgemix-offline" in fe.threads and "edgemix-control" not in fe.threads


def test_ring_overflow_drops_whole_blocks_and_counts_them():
    """Nobody drains: the ring takes what fits (4 hops and a block), drops the rest whole,
    the runner reports it; draining then feeds exactly the accepted frames, in order."""
    n = 3
    c = Console(FS, 64, n, 2)
    fe = FeatureExtractor(FS, n)
    r = Runner(c, Backend(n, FS, 64), policy=RulePolicy(("kick", "bass", "pad")), features=fe,
               rt_priority=False)
    r.warmup()
    cap = r.control.ring.capacity
    assert cap == 4 * fe.hop_frames + 64
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal((400 * 64, n))).astype(np.float32)
    y = np.zeros((64, 2), np.float32)
    for b in range(400):
        r.process(x[64 * b:64 * (b + 1)], y)
    accepted = cap // 64
    st = r.stats()["control"]
    assert st["ring_dropped_blocks"] == 400 - accepted
    assert st["ring_dropped_frames"] == 64 * (400 - accepted)
    r.step_control()
    assert fe.sample_clock == 64 * accepted
    assert r.control.hops == 64 * accepted // fe.hop_frames
    ref = FeatureExtractor(FS, n)
    ref.process(x[:64 * accepted])
    np.testing.assert_array_equal(fe.snapshot(), ref.snapshot())


class SteadySource:
    """Stationary tones plus a little noise, served block by block (an offline source)."""

    def __init__(self, seconds, levels_db=(-30.0, -20.0, -26.0), freqs_hz=(220.0, 80.0, 700.0)):
        self.n_channels = len(levels_db)
        self.sample_rate_hz = float(FS)
        self.total_frames = int(seconds * FS)
        self.amp = 10.0 ** (np.asarray(levels_db) / 20.0)
        self.freqs = np.asarray(freqs_hz)
        self.rng = np.random.default_rng(0)
        self.pos = 0

    def read(self, out):
        n = min(out.shape[0], self.total_frames - self.pos)
        t = (self.pos + np.arange(n))[:, None] / FS
        x = self.amp * np.sin(2 * np.pi * self.freqs * t)
        x += 0.05 * self.amp * self.rng.standard_normal((n, self.n_channels))
        out[:n] = x
        self.pos += n
        return n


def test_steady_input_settles_and_then_holds_still():
    """Hysteresis through the whole runner: measured features jitter, the parameters stop."""
    roles = ("lead_vocal", "bass", "guitar")
    src = SteadySource(7.0)
    c = Console(FS, 256, 3, 2)
    r = Runner(c, OfflineBackend(src, FS, 256), policy=RulePolicy(roles),
               features=FeatureExtractor(FS, 3), rt_priority=False)
    stages = record_stages(r)
    st = r.run()
    assert st["control"]["errors"] == 0
    h = np.array([p for _, p in stages])
    moves = np.any(np.abs(np.diff(h, axis=0)) > 0, axis=(1, 2))
    assert moves[:20].any()                    # it did converge from the defaults
    assert not moves[-25:].any(), np.nonzero(moves)[0]
