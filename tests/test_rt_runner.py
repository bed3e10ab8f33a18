"""The runner's parts without an audio server: ring, timer, recorder, control loop, offline
backend, NaN guard, device-loss retry.  All with the real Console."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soundfile as sf

from edgemix import params as P
from edgemix.console import Console
from edgemix.rt.backend import Backend, DeviceError
from edgemix.automix.policy import LIMITS, Automation
from edgemix.rt.control import ControlLoop
from edgemix.rt.recorder import Recorder
from edgemix.rt.ring import FrameRing
from edgemix.rt.runner import Runner
from edgemix.rt.timing import BlockTimer
from edgemix.session import load_session
from tests.alloc_helpers import heap_bytes

FS = 48000


# ---- ring -------------------------------------------------------------------------------

def test_frame_ring_against_a_list_model():
    """Random pushes and partial reads against the obvious model: a list of accepted rows;
    a block that does not fit is dropped whole and counted."""
    rng = np.random.default_rng(3)
    ring = FrameRing(100, 3)
    ring.warmup(2)
    model_q, accepted, got, dropped_frames, dropped_blocks = [], [], [], 0, 0
    for _ in range(400):
        n = int(rng.integers(0, 40))
        a = rng.standard_normal((n, 2)).astype(np.float32)
        b = rng.standard_normal((n, 1)).astype(np.float32)
        ok = ring.push(a, b)
        fits = 100 - len(model_q) >= n
        assert ok == fits
        if fits:
            model_q.extend(np.concatenate([a, b], axis=1))
            accepted.extend(np.concatenate([a, b], axis=1))
        else:
            dropped_frames += n
            dropped_blocks += 1
        if rng.random() < 0.4:  # the consumer takes everything there is
            for v in ring.read_regions():
                got.extend(v.copy())
                ring.advance(v.shape[0])
            del model_q[:]
    for v in ring.read_regions():
        got.extend(v.copy())
        ring.advance(v.shape[0])
    assert ring.dropped_frames == dropped_frames and ring.dropped_blocks == dropped_blocks
    assert dropped_blocks > 0  # the scenario did exercise the full ring
    assert ring.written == len(got) == len(accepted)
    np.testing.assert_array_equal(np.array(got), np.array(accepted))


def test_frame_ring_order_across_wrap():
    ring = FrameRing(8, 1)
    ring.warmup(1)
    out = []
    for k in range(10):
        blk = np.arange(3 * k, 3 * k + 3, dtype=np.float32)[:, None]
        assert ring.push(blk, np.zeros((3, 0), np.float32))
        for v in ring.read_regions():
            out.extend(v[:, 0])
            ring.advance(v.shape[0])
    assert out == list(range(30))


# ---- timer ------------------------------------------------------------------------------

def test_block_timer_summary_matches_numpy():
    t = BlockTimer(capacity=64)
    busy = np.array([100, 200, 300, 1500, 50] * 20)  # 100 blocks: the ring keeps the last 64
    for i, b in enumerate(busy):
        t.record(1000 * i, 1000 * i + int(b), 1000 * i + 1000)
    shares = busy[-64:] / 1000.0
    s = t.summary()
    assert s["blocks"] == 100 and s["late"] == int((busy > 1000).sum())
    assert s["p50"] == pytest.approx(np.percentile(shares, 50))
    assert s["p99"] == pytest.approx(np.percentile(shares, 99))
    assert s["max"] == pytest.approx(1.5)


# ---- control ----------------------------------------------------------------------------

class FixedPolicy:
    def __init__(self, proposal):
        self.proposal = proposal
        self.calls = 0

    def propose(self, snapshot):
        self.calls += 1
        return self.proposal, ["explanation"] * len(self.proposal)


class BrokenPolicy:
    def propose(self, snapshot):
        raise RuntimeError("model fell over")


def test_control_loop_stages_through_automation_and_keeps_last_good_on_error():
    """One step stages the proposal through Automation (so the 1 dB-per-hop slew of an EQ
    gain applies; a fader takes its first proposal whole, issue 10); every failure keeps
    the last good parameters and is counted."""
    c = Console(FS, 64, 4, 2)
    base = c.channel_params
    prop = base.copy()
    prop[:, P.CH.fader_db] = -12.0
    prop[:, P.CH.eq2_gain_db] = -12.0
    loop = ControlLoop(c, FixedPolicy(prop[:, P.MODEL_OUTPUT_COLUMNS]),
                       Automation(4, manual=base), hop_s=0.05)
    assert loop.step()
    np.testing.assert_array_equal(c.channel_params[:, P.CH.eq2_gain_db],
                                  base[:, P.CH.eq2_gain_db] - LIMITS["eq2_gain_db"].max_step)
    np.testing.assert_array_equal(c.channel_params[:, P.CH.fader_db], -12.0)
    good = c.channel_params
    loop.policy = BrokenPolicy()
    assert not loop.step()
    loop.policy = FixedPolicy(np.zeros((4, 3)))  # wrong shape
    assert not loop.step()
    loop.policy = FixedPolicy(np.full((4, P.N_CH), np.inf))  # non-finite (NaN = no opinion)
    assert not loop.step()
    assert loop.errors == 3 and loop.last_error.startswith("ValueError")
    assert np.array_equal(c.channel_params, good)  # the last good parameters stay
    assert loop.hops == 4 and loop.updates == 1


# ---- offline backend through the runner ------------------------------------------------

def write_stems(folder, x, fs=FS):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(x.shape[1]):
        sf.write(folder / f"{i:02d}.wav", x[:, i], fs, subtype="FLOAT")


def stems_session(tmp_path, n, extra=""):
    from edgemix.rt.synthetic import render_synthetic
    x, _ = render_synthetic(n, FS, 1.5, seed=5)
    write_stems(tmp_path / "stems", x)
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[backend]\nkind = "offline"\ninputs = "stems"\noutput = "out/mix.wav"\n'
                   f'{extra}\n'
                   + "".join(f"[[channels]]\ninput = {i + 1}\nfader_db = {-2.0 * i}\n"
                             f"pan = {0.2 * (i % 3) - 0.2}\ncomp_ratio = 3\n" for i in range(n)))
    return cfg, x


def render(cfg, x, block):
    c = load_session(cfg).build_console()
    c.warmup()
    out = np.zeros((x.shape[0], 2), np.float32)
    for s in range(0, x.shape[0], block):
        c.process(np.ascontiguousarray(x[s:s + block]), out=out[s:s + block])
    return out


def test_offline_runner_equals_console_and_records(tmp_path):
    from edgemix.app import build_runner
    cfg, x = stems_session(tmp_path, 6)
    runner, _ = build_runner(load_session(cfg), record_dir=tmp_path / "rec", rt_priority=False)
    st = runner.run()
    assert st["stop_reason"] == "source finished"
    assert st["frames"] == x.shape[0] and st["recorder"]["dropped_frames"] == 0
    mix, fs = sf.read(tmp_path / "out" / "mix.wav", dtype="float32")
    assert fs == FS
    ref = render(cfg, x, 17)  # a different block size: block-size invariance included
    np.testing.assert_allclose(mix, ref, rtol=0, atol=1e-6)
    rec_in, _ = sf.read(tmp_path / "rec" / "inputs.wav", dtype="float32")
    rec_mix, _ = sf.read(tmp_path / "rec" / "mix.wav", dtype="float32")
    np.testing.assert_array_equal(rec_in, x)
    np.testing.assert_array_equal(rec_mix, mix)


def test_nan_bursts_do_not_poison_the_mix(tmp_path):
    from edgemix.app import build_runner
    cfg, x = stems_session(tmp_path, 4)
    bad = x.copy()
    bad[20000:20100, 1] = np.nan
    bad[30000:30010, 2] = np.inf
    bad[40000, 3] = -np.inf
    write_stems(tmp_path / "stems", bad)
    runner, _ = build_runner(load_session(cfg), rt_priority=False)
    st = runner.run()
    mix, _ = sf.read(tmp_path / "out" / "mix.wav", dtype="float32")
    assert np.isfinite(mix).all()
    assert st["guard_count"] == 111
    clean = bad.copy()
    clean[~np.isfinite(clean)] = 0.0  # what the guard substitutes (counted above)
    np.testing.assert_allclose(mix, render(cfg, clean, 64), rtol=0, atol=1e-6)
    assert np.abs(mix[45000:]).max() > 1e-3  # still mixing after the bursts


def test_recorder_counts_what_it_drops(tmp_path):
    rec = Recorder(tmp_path / "r", 2, FS, capacity_s=0.01, flush_ms=10_000)  # 480 frames
    rec.open()
    blk = np.ones((64, 2), np.float32)
    mix = np.zeros((64, 2), np.float32)
    accepted = sum(rec.push(blk, mix) for _ in range(20))
    st = rec.close()
    assert accepted == 480 // 64
    assert st["dropped_blocks"] == 20 - accepted and st["dropped_frames"] == 64 * (20 - accepted)
    data, _ = sf.read(tmp_path / "r" / "inputs.wav")
    assert data.shape == (64 * accepted, 2)


# ---- device loss ------------------------------------------------------------------------

class FlakyBackend(Backend):
    """Plays silence on a thread; is 'lost' once, then fails one re-open, then works."""

    name = "flaky"

    def __init__(self):
        super().__init__(2, FS, 64)
        self.opens = 0
        self._t = None
        self._stop = threading.Event()

    def open(self, runner):
        super().open(runner)
        self.opens += 1
        if self.opens == 2:
            raise DeviceError("flaky device not there")

    def start(self):
        self._stop.clear()
        self._t = threading.Thread(target=self._work, daemon=True)
        self._t.start()

    def _work(self):
        x = np.zeros((64, 2), np.float32)
        y = np.zeros((64, 2), np.float32)
        n = 0
        while not self._stop.is_set():
            self.runner.process(x, y)
            n += 1
            if self.opens == 1 and n == 20:
                self.lost = "unplugged"
                return
            time.sleep(0.001)

    def stop(self):
        self._stop.set()
        if self._t is not None:
            self._t.join()

    def close(self):
        pass


def test_lost_device_is_retried_not_fatal(caplog):
    b = FlakyBackend()
    r = Runner(Console(FS, 64, 2, 1), b, rt_priority=False, retry_s=0.05)
    with caplog.at_level("WARNING", logger="edgemix.rt"):
        st = r.run(duration_s=1.0)
    assert b.opens == 3 and st["retries"] == 1
    assert st["stop_reason"] == "duration reached" and st["blocks"] > 20
    assert any("unplugged" in m for m in caplog.messages)
    assert any("flaky device not there" in m for m in caplog.messages)


def test_first_open_failure_is_an_error():
    class Absent(FlakyBackend):
        def open(self, runner):
            raise DeviceError("no such device")
    with pytest.raises(DeviceError, match="no such device"):
        Runner(Console(FS, 64, 2, 1), Absent(), rt_priority=False).run(duration_s=1.0)


def test_rule_policy_drives_the_console_and_manual_wins(tmp_path):
    """The real control path: FeatureExtractor on the audio side, RulePolicy on the control
    thread at 10 Hz, blended by automation level; a manual setting never moves."""
    pytest.importorskip("edgemix.automix.rules")
    from edgemix.app import build_runner
    cfg = tmp_path / "s.toml"
    cfg.write_text('[backend]\nkind = "synthetic"\npaced = true\nduration_s = 1.5\noutput = ""\n'
                   '[model]\npolicy = "rules"\nhop_ms = 100\n'
                   '[[channels]]\nrole = "kick"\n'
                   '[[channels]]\nrole = "bass"\nfader_db = -5\npan = 0.3\n'
                   '[[channels]]\nrole = "lead_vocal"\nautomation = 0.0\n')
    session = load_session(cfg)
    runner, _ = build_runner(session, rt_priority=False)
    st = runner.run()
    ctl = st["control"]
    assert ctl["errors"] == 0 and ctl["updates"] >= 5, ctl
    cp = runner.console.channel_params
    base = session.channel_params()
    assert cp[1, P.CH.fader_db] == -5.0 and cp[1, P.CH.pan] == 0.3   # manual wins
    assert np.array_equal(cp[2], base[2])                            # automation 0
    assert not np.array_equal(cp[0], base[0])                        # automation 1 moved


def test_audio_path_does_not_allocate(tmp_path):
    """Runner.process = Console.process + control-ring push + recorder push + timing.
    Against the console alone, the runner's part leaves nothing behind over 1000 blocks and
    allocates nothing transient beyond small Python scalars (an array the size of one block
    would show).  Nobody drains either ring here: the drop path is measured too."""
    from edgemix.automix.rules import RulePolicy
    from edgemix.features import FeatureExtractor
    c = Console(FS, 64, 8, 2)
    # the writer thread must not wake during the measurement: tracemalloc counts every
    # thread, and its soundfile writes would land in the audio path's numbers
    rec = Recorder(tmp_path / "r", 8, FS, capacity_s=0.5, flush_ms=1e9)
    r = Runner(c, Backend(8, FS, 64), rt_priority=False, recorder=rec,
               policy=RulePolicy(["other"] * 8), features=FeatureExtractor(FS, 8))
    r.warmup()
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32) * 0.1
    y = np.zeros((64, 2), np.float32)
    console_peak, _ = heap_bytes(lambda: c.process(x, out=y), 1000, warmup=50)
    runner_peak, grown = heap_bytes(lambda: r.process(x, y), 1000, warmup=50)
    assert grown < 4096, grown
    # a (64, 2) float32 array alone is 512 bytes of data plus its header
    assert runner_peak - console_peak < 512, (runner_peak, console_peak)
    assert rec.ring.dropped_blocks > 0  # the ring filled (nobody drained it) and counted
    assert r.stats()["control"]["ring_dropped_blocks"] > 0
