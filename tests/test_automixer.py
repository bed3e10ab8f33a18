"""The gain-sharing (Dugan) automixer: kernel == slow reference, one and two talkers, NOM = 1,
last-mic hold, open-mic limit, weights, non-members, block-size invariance, no allocation."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from edgemix import params as P
from edgemix.dsp import gain_sharing as A
from edgemix.dsp.gain_sharing import GainSharingAutomixer
from tests.alloc_helpers import heap_bytes
from tests.reference.automixer_ref import automix_reference

FS = 16000
NOISE_DB = -60.0


def syllables(n, seed, fs=FS):
    """A speech-like on/off envelope: 120-300 ms bursts separated by 60-200 ms gaps."""
    rng = np.random.default_rng(seed)
    env = np.zeros(n)
    i = 0
    while i < n:
        on = int(rng.uniform(0.12, 0.30) * fs)
        env[i:i + on] = 1.0
        i += on + int(rng.uniform(0.06, 0.20) * fs)
    return env


def talker(n, seed, level_db, env):
    return np.random.default_rng(seed).standard_normal(n) * 10 ** (level_db / 20) * env


def room(n, n_ch, seed=0):
    """Independent -60 dBFS noise on every mic."""
    return np.random.default_rng(seed).standard_normal((n, n_ch)) * 10 ** (NOISE_DB / 20)


def run(am, x, block=256):
    """Process ``x`` (frames, channels) in blocks; the output and each block's gains_db with
    the time (s) at the block's end."""
    out, gains, times = [], [], []
    for i in range(0, x.shape[0], block):
        out.append(am.process(x[i:i + block].astype(np.float32)))
        gains.append(am.gains_db)
        times.append(min(i + block, x.shape[0]) / am.sample_rate_hz)
    return np.concatenate(out), np.array(gains), np.array(times)


def nom_db(g_db):
    """Sum of the members' squared gains (power NOM), in dB: 0 dB = one open mic."""
    return 10 * np.log10(np.sum(10 ** (np.asarray(g_db) / 10), axis=-1))


def one_talker_session(n_ch=4):
    """0.5 s room noise, 3 s of one talker on channel 0 (-20 dBFS), 2.5 s room noise."""
    n = 6 * FS
    x = room(n, n_ch)
    seg = slice(FS // 2, FS // 2 + 3 * FS)
    x[seg, 0] += talker(3 * FS, 1, -20.0, syllables(3 * FS, 2))
    return x


@pytest.mark.parametrize("hold", [1.0, 0.0])
def test_one_talker_opens_alone_with_nom_one(hold):
    am = GainSharingAutomixer(FS, 4, members=range(4))
    am.set("automix_last_hold_on", hold)
    _, g, t = run(am, one_talker_session())
    talk = (t > 1.0) & (t < 3.5)
    assert np.all(np.abs(g[talk, 0]) < 0.5)                 # the talker's mic at 0 dB
    assert np.all(g[talk, 1:] <= -15.0)                      # the others fall away
    assert np.all(np.abs(nom_db(g[talk])) < 0.5)             # one open mic in total


def test_last_mic_hold_keeps_talker_open_in_silence():
    am = GainSharingAutomixer(FS, 4, members=range(4))
    _, g, t = run(am, one_talker_session())
    quiet = t > 3.8                                          # talker stopped at 3.5 s
    assert np.all(np.abs(g[quiet, 0]) < 0.5)
    assert np.all(g[quiet, 1:] <= -15.0)
    assert am.holding


def test_without_hold_shares_drift_to_equal_in_silence():
    am = GainSharingAutomixer(FS, 4, members=range(4))
    am.set("automix_last_hold_on", 0.0)
    _, g, t = run(am, one_talker_session())
    late = t > 4.5
    equal_db = -10 * np.log10(4)                             # -6.02 dB each (Dugan: 4 mics)
    assert np.all(np.abs(g[late] - equal_db) < 1.0)
    assert np.all(np.abs(nom_db(g[late])) < 0.5)
    assert not am.holding


def two_talkers(level0_db, level1_db, n_ch=4):
    """Two talkers speaking together (same syllable timing) for 3 s after 0.5 s of room."""
    n = 4 * FS
    x = room(n, n_ch)
    env = syllables(3 * FS, 5)
    x[FS // 2:FS // 2 + 3 * FS, 0] += talker(3 * FS, 6, level0_db, env)
    x[FS // 2:FS // 2 + 3 * FS, 1] += talker(3 * FS, 7, level1_db, env)
    return x


def test_two_equal_talkers_share_minus_3_db():
    am = GainSharingAutomixer(FS, 4, members=range(4))
    _, g, t = run(am, two_talkers(-20.0, -20.0))
    talk = (t > 1.0) & (t < 3.5)
    half_db = -10 * np.log10(2)
    for c in (0, 1):
        assert np.mean(g[talk, c]) == pytest.approx(half_db, abs=0.2)
        assert np.percentile(np.abs(g[talk, c] - half_db), 95) < 0.5
    assert np.all(g[talk, 2:] <= -15.0)
    assert np.all(np.abs(nom_db(g[talk])) < 0.5)


def test_unequal_talkers_follow_the_power_share_formula():
    am = GainSharingAutomixer(FS, 4, members=range(4))
    _, g, t = run(am, two_talkers(-20.0, -26.0))
    talk = (t > 1.0) & (t < 3.5)
    p0, p1 = 10 ** (-20 / 10), 10 ** (-26 / 10)
    # g_i^2 = P_i / sum P: a 6 dB quieter talker gets 6 dB less gain
    assert np.median(g[talk, 0]) == pytest.approx(10 * np.log10(p0 / (p0 + p1)), abs=0.3)
    assert np.median(g[talk, 1]) == pytest.approx(10 * np.log10(p1 / (p0 + p1)), abs=0.3)


def test_max_open_one_opens_only_the_louder_and_smoothly():
    am = GainSharingAutomixer(FS, 4, members=range(4))
    am.set("automix_max_open", 1)
    x = two_talkers(-20.0, -26.0)
    y, g, t = run(am, x)
    talk = (t > 1.0) & (t < 3.5)
    assert np.all(np.abs(g[talk, 0]) < 0.5)
    assert np.all(g[talk, 1] <= -40.0)
    assert np.all(g[talk, 1:] >= A.FLOOR_DB - 1e-6)         # the floor, never a hard mute
    # the applied gain never steps: per-sample change bounded by the one-pole glide
    gain = np.abs(y[:, 0].astype(np.float64) / np.where(x[:, 0] == 0, 1, x[:, 0]))
    a = 1 - math.exp(-1000 / (A.GAIN_GLIDE_MS * FS))
    assert np.max(np.abs(np.diff(gain))) <= a * 1.001


def test_weights_shift_shares_by_their_db():
    am = GainSharingAutomixer(FS, 4, members=range(4))
    am.set_channel(0, "automix_weight_db", 6.0)
    _, g, t = run(am, two_talkers(-20.0, -20.0))
    talk = (t > 1.0) & (t < 3.5)
    assert np.median(g[talk, 0] - g[talk, 1]) == pytest.approx(6.0, abs=0.5)
    w = 10 ** (6 / 10)
    assert np.median(g[talk, 0]) == pytest.approx(10 * np.log10(w / (w + 1)), abs=0.3)
    assert np.all(np.abs(nom_db(g[talk])) < 0.5)


def test_non_members_pass_at_unity():
    am = GainSharingAutomixer(FS, 4, members=[0, 1, 2])
    x = one_talker_session()
    x[:, 3] += talker(x.shape[0], 9, -10.0, syllables(x.shape[0], 10))
    y, g, t = run(am, x)
    np.testing.assert_array_equal(y[:, 3], x[:, 3].astype(np.float32))
    assert np.all(g[:, 3] == 0.0)
    # ... and the loud non-member takes no share from the members
    talk = (t > 1.0) & (t < 3.5)
    assert np.all(np.abs(g[talk, 0]) < 0.5) and np.all(np.abs(nom_db(g[talk, :3])) < 0.5)


def test_silence_and_nan_never_divide_by_zero():
    am = GainSharingAutomixer(FS, 4, members=range(4))
    y, g, _ = run(am, np.zeros((FS // 2, 4)))
    assert np.all(y == 0.0)
    np.testing.assert_allclose(g[-1], -10 * np.log10(4), atol=1e-3)   # equal shares
    x = room(FS // 2, 4)
    x[100, 1] = np.nan
    x[200, 2] = np.inf
    _, g, _ = run(am, x)
    assert np.all(np.isfinite(g))


# ---- kernel == reference, block-size invariance ------------------------------------------

def _schedule_case():
    fs, n_ch, n = 8000, 3, int(2.2 * 8000)
    rng = np.random.default_rng(21)
    x = rng.standard_normal((n_ch, n)) * 1e-3
    x[0, 2000:9000] += rng.standard_normal(7000) * 0.1 * syllables(7000, 1, fs)
    x[1, 6000:14000] += rng.standard_normal(8000) * 0.05 * syllables(8000, 2, fs)
    x[2, 12000:16000] += rng.standard_normal(4000) * 0.2
    c0 = P.channel_defaults(n_ch)
    c0[:, P.CH.automix_on] = 1.0
    c1 = c0.copy()
    c1[1, P.CH.automix_weight_db] = 9.0
    c2 = c1.copy()
    c2[2, P.CH.automix_on] = 0.0
    m0 = P.master_defaults()
    m1 = m0.copy()
    m1[P.MS.automix_max_open] = 1.0
    m1[P.MS.automix_detector_ms] = 10.0
    m2 = m1.copy()
    m2[P.MS.automix_last_hold_on] = 0.0
    m2[P.MS.automix_max_open] = 2.0
    chan = [(0, c0), (5003, c1), (11111, c2)]
    master = [(0, m0), (7001, m1), (13007, m2)]
    return fs, x.astype(np.float32), chan, master


def _run_kernel(fs, x_cf, chan, master, block):
    """The kernel over ``x_cf`` with parameter changes at the schedule's samples."""
    n_ch, n = x_cf.shape
    st = A.AutomixState.allocate(n_ch, fs)
    buf = x_cf.copy()
    gains_db = np.zeros(n_ch)
    cuts = sorted({s for s, _ in chan} | {s for s, _ in master} | {n})
    start = 0
    for end in cuts[1:]:
        cp = [a for s, a in chan if s <= start][-1]
        mp = [a for s, a in master if s <= start][-1]
        step = block or (end - start)
        for a in range(start, end, step):
            b = min(end, a + step)
            piece = np.ascontiguousarray(buf[:, a:b])
            A._automix_block(piece, b - a, cp, mp, st.ch, st.ctl, gains_db)
            buf[:, a:b] = piece
        start = end
    return buf


def test_kernel_equals_reference():
    fs, x, chan, master = _schedule_case()
    got = _run_kernel(fs, x, chan, master, 0)
    want, _ = automix_reference(x, fs, chan, master)
    assert np.max(np.abs(want)) > 0.1
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-5)


def test_block_size_invariance():
    fs, x, chan, master = _schedule_case()
    whole = _run_kernel(fs, x, chan, master, 0)
    for block in (1, 17, 64, 256):
        np.testing.assert_allclose(_run_kernel(fs, x, chan, master, block), whole, atol=1e-6,
                                   rtol=0, err_msg=f"block size {block}")


def test_bad_input_is_a_clear_value_error():
    am = GainSharingAutomixer(FS, 2)
    with pytest.raises(ValueError, match="out of range"):
        am.set("automix_max_open", 0)
    with pytest.raises(ValueError, match="set_channel"):
        am.set("automix_weight_db", 3.0)
    with pytest.raises(ValueError, match="channel 5"):
        am.set_channel(5, "automix_on", 1)
    with pytest.raises(ValueError, match="true/false"):
        am.set_channel(0, "automix_on", 0.5)
    with pytest.raises(ValueError, match="expected"):
        am.process(np.zeros((64, 3), np.float32))
    with pytest.raises(ValueError, match="float32"):
        am.process_inplace(np.zeros((2, 64)))


# ---- real-time ----------------------------------------------------------------------------

def test_no_allocation_after_warmup():
    am = GainSharingAutomixer(48000, 8, members=range(8))
    buf = (np.random.default_rng(0).standard_normal((8, 64)) * 0.1).astype(np.float32)
    transient, retained = heap_bytes(lambda: am.process_inplace(buf), 500)
    assert retained < 256, retained
    assert transient < 2048, transient


def test_cost_per_64_frame_block(record_property):
    fs, n_ch = 48000, 16
    am = GainSharingAutomixer(fs, n_ch, members=range(n_ch))
    am.set("automix_max_open", 4)
    buf = (np.random.default_rng(1).standard_normal((n_ch, 64)) * 0.1).astype(np.float32)
    st = am.state
    args = (am._chan, am._master, st.ch, st.ctl, np.zeros(n_ch))
    A._automix_block(buf, 64, *args)
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(200):
            A._automix_block(buf, 64, *args)
        best = min(best, (time.perf_counter() - t0) / 200)
    record_property("automix_16ch_us_per_64_block", best * 1e6)
    assert best < 0.25 * 64 / fs
