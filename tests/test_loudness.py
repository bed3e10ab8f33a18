"""BS.1770-4 / EBU Tech 3341 / Tech 3342 loudness: the streaming kernels against a slow
whole-signal reference (tests/reference/loudness_ref.py), pyloudnorm, and the EBU cases
(tests/reference/ebu_signals.py)."""
from __future__ import annotations

import math

import numba
import numpy as np
import pyloudnorm
import pytest
from scipy.signal import freqz

from edgemix.dsp import loudness as L
from edgemix.dsp.loudness import LoudnessMeter, k_weighting_coefficients, _loudness_process
from reference import ebu_signals as ebu
from reference import loudness_ref as ref
from tests.alloc_helpers import heap_bytes

RATES = (44100, 48000, 96000)


# --- helpers --------------------------------------------------------------------------------

def readings(meter: LoudnessMeter) -> np.ndarray:
    return np.array([meter.momentary_lufs, meter.short_term_lufs, meter.integrated_lufs,
                     meter.loudness_range_lu, meter.max_momentary_lufs,
                     meter.max_short_term_lufs])


def run(x, fs, block=4096, weights=None) -> LoudnessMeter:
    m = LoudnessMeter(fs, x.shape[1], channel_weights=weights)
    for i in range(0, x.shape[0], block):
        m.process(x[i:i + block])
    return m


def hop_trace(x, fs, weights=None):
    """Momentary and short-term after every 100 ms boundary (blocks of one hop)."""
    m = LoudnessMeter(fs, x.shape[1], channel_weights=weights)
    hop = L.hop_frames_for(fs)
    mom, st = [], []
    for i in range(0, (x.shape[0] // hop) * hop, hop):
        m.process(x[i:i + hop])
        mom.append(m.momentary_lufs)
        st.append(m.short_term_lufs)
    return np.array(mom), np.array(st), m


def module_sos(fs):
    return ref.sos_from_coefficients(k_weighting_coefficients(fs))


def varied_signals(fs, seconds=8.0, seed=1):
    """Sines at several frequencies and levels, white/pink noise, a gated programme with
    silences, tone bursts; stereo float32 (frames, 2)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    t = np.arange(n) / fs
    sig = {}
    for f_hz, db_l, db_r in ((100.0, -12.0, -18.0), (1000.0, -23.0, -23.0),
                             (5000.0, -30.0, -36.0), (12000.0, -9.0, -40.0)):
        s = np.sin(2 * np.pi * f_hz * t)
        sig[f"sine{int(f_hz)}"] = np.stack([10 ** (db_l / 20) * s, 10 ** (db_r / 20) * s], 1)
    sig["white"] = 0.05 * rng.standard_normal((n, 2))
    sig["pink"] = 0.1 * ebu.pink_noise(n, 2, rng)
    # programme with silences, a quiet passage and loud passages (exercises both gates)
    env = np.zeros(n)
    edges = np.linspace(0, n, 9).astype(int)
    for k, db in enumerate((-20, -90, -14, -45, -300, -26, -8, -60)):
        env[edges[k]:edges[k + 1]] = 10 ** (db / 20) if db > -200 else 0.0
    sig["programme"] = env[:, None] * ebu.pink_noise(n, 2, rng)
    # 1 kHz tone bursts, 0.3 s on / 0.7 s off, stepping up 3 dB per burst
    burst = np.zeros(n)
    for k, start in enumerate(range(0, n, fs)):
        burst[start:start + int(0.3 * fs)] = 10 ** ((-40 + 3 * k) / 20)
    sig["bursts"] = (burst * np.sin(2 * np.pi * 1000.0 * t))[:, None] * np.ones((1, 2))
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sig.items()}


def assert_lufs_close(a, b, atol, floor=-120.0):
    """Equal within ``atol`` where audible; both below ``floor`` (or -inf) elsewhere."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    loud = (a > floor) | (b > floor)
    assert np.all((a[~loud] <= floor) & (b[~loud] <= floor))
    np.testing.assert_allclose(a[loud], b[loud], rtol=0, atol=atol)


# --- K-weighting ----------------------------------------------------------------------------

def test_k_weighting_48k_matches_bs1770_tables():
    c = k_weighting_coefficients(48000)
    (b1, a1), (b2, a2) = ref.BS1770_PREFILTER_48K, ref.BS1770_RLB_48K
    np.testing.assert_allclose(c[:5], [*b1, *a1[1:]], rtol=0, atol=1e-13)
    np.testing.assert_allclose(c[5:], [*b2, *a2[1:]], rtol=0, atol=1e-13)


@pytest.mark.parametrize("fs", (44100, 88200, 96000, 192000))
def test_k_weighting_other_rates_match_the_analogue_prototype(fs):
    """Same magnitude response (within 0.05 dB, 20 Hz .. 20 kHz) as the 48 kHz tables
    carried to ``fs`` through their analogue prototype (an independent derivation)."""
    f = np.geomspace(20.0, min(20000.0, 0.45 * fs), 300)

    def mag_db(sos):
        h = np.ones_like(f, dtype=complex)
        for b, a in sos:
            h *= freqz(b, a, worN=f, fs=fs)[1]
        return 20 * np.log10(np.abs(h))

    got, want = mag_db(module_sos(fs)), mag_db(ref.k_weighting_sos(fs))
    assert np.max(np.abs(got - want)) < 0.05
    # and the shape is K-weighting: about -13 dB at 20 Hz, +4 dB shelf at 10 kHz
    assert got[0] == pytest.approx(-13.3, abs=0.2)
    assert np.interp(10000.0, f, got) == pytest.approx(4.0, abs=0.1)


# --- momentary / short-term -----------------------------------------------------------------

@pytest.mark.parametrize("fs", RATES)
def test_momentary_and_short_term_match_direct_window_sums(fs):
    for name, x in varied_signals(fs, seconds=4.0).items():
        mom, st, _ = hop_trace(x, fs)
        # the streaming machinery against the same filters, exact window sums
        sos = module_sos(fs)
        assert_lufs_close(mom, ref.window_loudness(x, fs, 4, sos=sos), 1e-6)
        assert_lufs_close(st, ref.window_loudness(x, fs, 30, sos=sos), 1e-6)
        # the whole chain against the independently derived K-weighting (brief: 0.1 LU)
        assert_lufs_close(mom, ref.window_loudness(x, fs, 4), 0.1, floor=-70.0)
        assert_lufs_close(st, ref.window_loudness(x, fs, 30), 0.1, floor=-70.0)


# --- integrated loudness and LRA ------------------------------------------------------------

@pytest.mark.parametrize("fs", RATES)
def test_integrated_matches_reference_and_pyloudnorm(fs):
    plm = pyloudnorm.Meter(fs)
    for name, x in varied_signals(fs).items():
        m = run(x, fs)
        exact = ref.integrated_loudness(x, fs, sos=module_sos(fs))
        # histogram quantisation: documented well under 0.1 LU, required < 0.01 here
        assert abs(m.integrated_lufs - exact) < 0.01, name
        assert abs(m.integrated_lufs - ref.integrated_loudness(x, fs)) < 0.1, name
        assert abs(m.integrated_lufs - plm.integrated_loudness(x.astype(np.float64))) < 0.1, name


@pytest.mark.parametrize("fs", (44100, 48000))
def test_loudness_range_matches_reference(fs):
    for name, x in varied_signals(fs).items():
        m = run(x, fs)
        lra, low, high = ref.loudness_range(x, fs, sos=module_sos(fs))
        # each percentile is a bin mean, within 0.01 LU of the order statistic
        assert abs(m.loudness_range_low_lufs - low) <= 0.01, name
        assert abs(m.loudness_range_high_lufs - high) <= 0.01, name
        assert abs(m.loudness_range_lu - lra) <= 0.02, name


def test_integrated_quantisation_on_a_dense_programme():
    """Many blocks straddling the relative gate: the histogram stays within 0.01 LU."""
    fs = 48000
    rng = np.random.default_rng(7)
    n = 60 * fs
    # loudness wandering over +-15 LU in 0.5 s steps so blocks fill the gate's neighbourhood
    steps = rng.uniform(-38.0, -8.0, size=n // (fs // 2) + 1)
    env = 10 ** (np.repeat(steps, fs // 2)[:n] / 20)
    x = np.ascontiguousarray(env[:, None] * ebu.pink_noise(n, 2, rng), dtype=np.float32)
    m = run(x, fs)
    assert abs(m.integrated_lufs - ref.integrated_loudness(x, fs, sos=module_sos(fs))) < 0.01
    lra, _, _ = ref.loudness_range(x, fs, sos=module_sos(fs))
    assert abs(m.loudness_range_lu - lra) <= 0.02


def _tone_pair_at_gate(fs, window_hops, gate_lu, gate_lufs, quiet_minus_gate_lu, seconds):
    """A loud 1 kHz tone, then a quiet one, levelled so that the exact relative gate of the
    whole signal is ``gate_lufs`` and the quiet tone's steady blocks sit
    ``quiet_minus_gate_lu`` from it.  Fixed-point iteration on the reference's block
    loudness: the loud level moves the gate, the quiet level moves its own blocks."""
    sos = module_sos(fs)
    a_db, b_db = gate_lufs - gate_lu + 3.0, gate_lufs + quiet_minus_gate_lu
    for _ in range(8):
        x = ebu.sine_segments([(a_db, seconds), (b_db, seconds)], fs)
        lj = ref.block_loudness(x, fs, window_hops, sos=sos)
        kept = lj[lj > -70.0]
        gate = 10 * np.log10(np.mean(10 ** (kept / 10))) + gate_lu
        steady = np.median(lj[-len(lj) // 4:])  # blocks wholly inside the quiet tone
        a_db += gate_lufs - gate
        b_db += gate_lufs + quiet_minus_gate_lu - steady
    assert abs(gate - gate_lufs) < 1e-6 and abs(steady - gate - quiet_minus_gate_lu) < 1e-6
    return x


# The threshold's 0.01 LU bin is [-33.00, -32.99).  Gate near the top of the bin with the
# quiet tone 0.006 LU below it, or near the bottom with the tone 0.006 LU above: the quiet
# tone shares the threshold's bin either way.  (The first block after the level step carries
# the filters' step response, ~+0.004 LU; the placements keep it on its true side too.)
GATE_PLACEMENTS = ((-32.991, -0.006), (-32.999, 0.006))


@pytest.mark.parametrize("gate_lufs, offset_lu", GATE_PLACEMENTS)
def test_relative_gate_is_sharp_within_one_bin(gate_lufs, offset_lu):
    """Blocks 0.006 LU below BS.1770's relative gate are dropped, 0.006 LU above kept,
    although they fall in the threshold's own histogram bin."""
    fs = 48000
    x = _tone_pair_at_gate(fs, 4, L.RELATIVE_GATE_LU, gate_lufs, offset_lu, 4.0)
    exact = ref.integrated_loudness(x, fs, sos=module_sos(fs))
    got = run(x, fs).integrated_lufs
    assert got == pytest.approx(exact, abs=0.01)
    # sanity: the quiet tone (10 LU down) is in or out, which moves I by ~2.5 LU
    loud_only = ref.integrated_loudness(x[: x.shape[0] // 2], fs, sos=module_sos(fs))
    assert (loud_only - got > 1.0) == (offset_lu > 0)


@pytest.mark.parametrize("gate_lufs, offset_lu", GATE_PLACEMENTS)
def test_lra_relative_gate_is_sharp_within_one_bin(gate_lufs, offset_lu):
    """The same for Tech 3342's -20 LU gate on the short-term values."""
    fs = 16000
    x = _tone_pair_at_gate(fs, 30, L.LRA_RELATIVE_GATE_LU, gate_lufs, offset_lu, 12.0)
    lra, _, _ = ref.loudness_range(x, fs, sos=module_sos(fs))
    assert (lra > 15.0) == (offset_lu > 0)  # sanity: the quiet tone is in or out
    assert run(x, fs).loudness_range_lu == pytest.approx(lra, abs=0.02)


# --- EBU Tech 3341 --------------------------------------------------------------------------

@pytest.mark.parametrize("case", (1, 2))
@pytest.mark.parametrize("fs", RATES)
def test_tech3341_cases_1_2_steady_tone(case, fs):
    spec = ebu.TECH3341[case]
    m = run(ebu.tech3341(case, fs), fs)
    assert m.momentary_lufs == pytest.approx(spec["momentary"], abs=0.1)
    assert m.short_term_lufs == pytest.approx(spec["short_term"], abs=0.1)
    assert m.integrated_lufs == pytest.approx(spec["integrated"], abs=0.1)
    assert m.max_momentary_lufs == pytest.approx(spec["momentary"], abs=0.1)


@pytest.mark.parametrize("case", (3, 4, 5))
def test_tech3341_cases_3_4_5_gating(case):
    fs = 48000
    x = ebu.tech3341(case, fs)
    m = run(x, fs, block=64 * 17)
    assert m.integrated_lufs == pytest.approx(ebu.TECH3341[case]["integrated"], abs=0.1)


def test_tech3341_case_6_five_channels():
    fs = 48000
    m = run(ebu.tech3341(6, fs), fs, weights=ebu.BS1770_WEIGHTS_5_0)
    assert m.integrated_lufs == pytest.approx(-23.0, abs=0.1)


@pytest.mark.parametrize("fs", RATES)
def test_tech3341_case_9_short_term_constant(fs):
    spec = ebu.TECH3341[9]
    _, st, _ = hop_trace(ebu.tech3341(9, fs), fs)
    first = int(round(spec["constant_after_s"] / L.HOP_S)) - 1
    assert np.all(np.abs(st[first:] - spec["short_term"]) <= 0.1)


@pytest.mark.parametrize("fs", RATES)
def test_tech3341_case_12_momentary_constant(fs):
    spec = ebu.TECH3341[12]
    mom, _, _ = hop_trace(ebu.tech3341(12, fs), fs)
    first = int(round(spec["constant_after_s"] / L.HOP_S)) - 1
    assert np.all(np.abs(mom[first:] - spec["momentary"]) <= 0.1)


@pytest.mark.parametrize("window_s, burst_s, attr", ((3.0, 3.2, "max_short_term_lufs"),
                                                     (0.4, 0.55, "max_momentary_lufs")))
def test_max_reading_of_bursts_at_any_offset(window_s, burst_s, attr):
    """In the spirit of Tech 3341 cases 10 and 13 (whose exact burst offsets live in the
    test-set files): a -23 dBFS burst a little longer than window + hop, at any offset
    against the 100 ms grid, gives a maximum reading of -23.0 +- 0.1."""
    fs = 48000
    rng = np.random.default_rng(3)
    for offset in rng.integers(0, fs // 10, size=4):
        x = ebu.sine_segments([(-120.0, 0.5 + offset / fs), (-23.0, burst_s), (-120.0, 0.5)], fs)
        assert getattr(run(x, fs), attr) == pytest.approx(-23.0, abs=0.1)


# --- EBU Tech 3342 --------------------------------------------------------------------------

@pytest.mark.parametrize("case", (1, 2, 3, 4))
def test_tech3342_loudness_range(case):
    fs = 48000
    x = ebu.tech3342(case, fs)
    m = run(x, fs)
    assert m.loudness_range_lu == pytest.approx(ebu.TECH3342[case]["lra"], abs=1.0)
    # and, tighter, the exact whole-signal Tech 3342 computation
    assert m.loudness_range_lu == pytest.approx(ref.loudness_range(x, fs, sos=module_sos(fs))[0],
                                                abs=0.02)


# --- streaming properties -------------------------------------------------------------------

def _invariance_signal(fs):
    rng = np.random.default_rng(11)
    n = int(3.6 * fs)
    env = np.repeat(10 ** (rng.uniform(-50, -5, size=36) / 20), n // 36)
    env[int(1.1 * fs):int(1.5 * fs)] = 0.0  # true silence inside
    return np.ascontiguousarray(env[:, None] * rng.standard_normal((n, 2)), dtype=np.float32)


def test_block_size_invariance():
    """Readings after frame n are the same whatever block sizes got the meter there
    (1, 17, 64, 256, whole); the 3.6 s signal reaches the gates and the LRA."""
    fs = 16000
    x = _invariance_signal(fs)
    n = x.shape[0]
    ls = L.LoudnessState.allocate(fs, 2)
    per_frame = np.empty((n, 8))
    for i in range(n):
        _loudness_process(x[i:i + 1].T, ls.coef, ls.weights, ls.hop_frames, ls.state,
                         ls.chan_state, ls.hist)
        per_frame[i] = ls.state[L.IDX_MOMENTARY_LUFS:L.IDX_LRA_HIGH_LUFS + 1]
    assert np.isfinite(per_frame[-1]).all() and per_frame[-1, 5] > 0.0  # LRA was reached
    for block in (17, 64, 256, n):
        m = LoudnessMeter(fs, 2)
        st = m.kernel_state.state
        for i in range(0, n, block):
            m.process(x[i:i + block])
            end = min(i + block, n)
            np.testing.assert_allclose(st[L.IDX_MOMENTARY_LUFS:L.IDX_LRA_HIGH_LUFS + 1],
                                       per_frame[end - 1], rtol=0, atol=1e-6)


def test_reset_clears_everything():
    fs = 48000
    sig = varied_signals(fs, seconds=4.0)
    m = run(sig["programme"], fs)
    assert np.isfinite(m.integrated_lufs)
    m.reset()
    assert m.frames_processed == 0
    assert math.isinf(m.momentary_lufs) and math.isinf(m.integrated_lufs)
    m2 = run(sig["pink"], fs)
    for i in range(0, sig["pink"].shape[0], 4096):
        m.process(sig["pink"][i:i + 4096])
    np.testing.assert_array_equal(readings(m), readings(m2))
    for a, b in zip(m.kernel_state, m2.kernel_state):
        np.testing.assert_array_equal(a, b)


def test_silence_reads_minus_inf_never_nan():
    fs = 48000
    m = run(np.zeros((5 * fs, 2), dtype=np.float32), fs)
    r = readings(m)
    assert not np.isnan(r).any()
    assert m.momentary_lufs == m.short_term_lufs == m.integrated_lufs == -math.inf
    assert m.loudness_range_lu == 0.0
    # a block of NaN/Inf must not poison the meter
    bad = np.full((fs, 2), np.nan, dtype=np.float32)
    bad[::3] = np.inf
    m.process(bad)
    m.process(ebu.sine_segments([(-23.0, 3.0)], fs))
    assert m.momentary_lufs == pytest.approx(-23.0, abs=0.1)
    assert not np.isnan(readings(m)).any()


def test_public_process_does_not_allocate():
    fs = 48000
    m = LoudnessMeter(fs, 2)
    block = np.ascontiguousarray(0.1 * np.random.default_rng(0).standard_normal((4096, 2)),
                                 dtype=np.float32)
    # warm-up: compile and cross many hops
    transient, retained = heap_bytes(lambda: m.process(block), 300, warmup=20)
    # a copy of one block would be 32 KiB (float32) or 64 KiB (float64)
    assert retained < 1024, retained
    assert transient < 4096, transient


def test_kernel_runs_inside_another_njit_function():
    """The console calls the kernel from its fused block function."""

    @numba.njit(cache=True, nogil=True)
    def fused(x_cf, ls):
        for start in range(0, x_cf.shape[1], 64):
            _loudness_process(x_cf[:, start:start + 64], ls.coef, ls.weights, ls.hop_frames,
                             ls.state, ls.chan_state, ls.hist)

    fs = 48000
    x = ebu.sine_segments([(-23.0, 4.0), (-33.0, 2.0)], fs)
    ls = L.LoudnessState.allocate(fs, 2)
    fused(np.ascontiguousarray(x.T), ls)
    m = run(x, fs)
    np.testing.assert_array_equal(ls.state, m.kernel_state.state)
    exact = ref.integrated_loudness(x, fs, sos=module_sos(fs))
    assert ls.state[L.IDX_INTEGRATED_LUFS] == pytest.approx(exact, abs=0.01)


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="sample_rate_hz"):
        LoudnessMeter(1000, 2)
    with pytest.raises(ValueError, match="n_channels"):
        LoudnessMeter(48000, 0)
    with pytest.raises(ValueError, match="channel_weights"):
        LoudnessMeter(48000, 2, channel_weights=(1.0, 1.0, 1.41))
    m = LoudnessMeter(48000, 2)
    with pytest.raises(ValueError, match=r"\(frames, 2\)"):
        m.process(np.zeros((64, 3), dtype=np.float32))
    # other dtypes and layouts are converted, with the same result
    x = ebu.sine_segments([(-20.0, 1.0)], 48000)
    m.process(np.asfortranarray(x.astype(np.float64)))
    m2 = run(x, 48000)
    assert m.momentary_lufs == pytest.approx(m2.momentary_lufs, abs=1e-6)
