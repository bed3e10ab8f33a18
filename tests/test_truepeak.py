"""True-peak meter (ITU-R BS.1770-4 Annex 2): the annex's filter, the standard's test
signals (EBU Tech 3341), an independent oversampler, streaming and real-time rules."""
from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from edgemix.dsp import truepeak as T
from edgemix.dsp.truepeak import (ANNEX2_COEFFICIENTS, TruePeakMeter, interpolator_for_rate,
                                  oversampling_for_rate, true_peak_dbtp,
                                  _truepeak_push, windowed_sinc_phases)
from tests.alloc_helpers import heap_bytes
from tests.reference.truepeak_ref import (estimates_ref, prototype_from_phases,
                                          true_peak_resampled_db)

FS = 48000

# EBU Tech 3341 v3 (2016), Table 1, true-peak cases 15-19 (48 kHz, mono): a sine at the
# given fraction of fs, peak amplitude and starting phase; expected max true-peak level
# with tolerance +0.2 / -0.4 dB.  The definitions were confirmed against transcriptions of
# the table in public EBU-mode meter test suites (e.g. "15: fs/4, 0.50, 0 deg" ...
# "19: fs/4, 1.41, 45 deg"; expected -6.0, -6.0, -6.0, -6.0, +3.0 dBTP).
TECH3341_SINES = {
    15: (1 / 4, 0.50, 0.0, -6.0),
    16: (1 / 4, 0.50, 45.0, -6.0),
    17: (1 / 6, 0.50, 60.0, -6.0),
    18: (1 / 8, 0.50, 67.5, -6.0),
    19: (1 / 4, 1.41, 45.0, 3.0),
}
TP_TOL_HI, TP_TOL_LO = 0.2, 0.4


def _taper(x, fs, ms=10.0):
    """Raised-cosine fade in and out: an abrupt start rings (Gibbs) above the tone's own
    peak; the standard's cases measure the tone, not its switch-on."""
    n = int(ms * 1e-3 * fs)
    w = np.ones(x.shape[0])
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    w[:n] = ramp
    w[-n:] = ramp[::-1]
    return x * w.reshape((-1,) + (1,) * (x.ndim - 1))


def tech3341_sine(case, fs=FS, seconds=0.5):
    frac, amp, phase_deg, _ = TECH3341_SINES[case]
    n = np.arange(int(seconds * fs))
    return _taper(amp * np.sin(2 * np.pi * frac * n + np.deg2rad(phase_deg)), fs)


def isp_pulse(offset_quarters, fs=FS, seconds=0.2, bandwidth=0.8):
    """A 0 dBTP band-limited pulse (Kaiser-windowed sinc, content below 0.4 fs) whose peak
    sits ``offset_quarters / 4`` of a sample after a sample instant.  Its continuous-time
    maximum is exactly 1 at the centre, so the true peak is 0.0 dBTP by construction.

    This re-creates the *kind* of signal of Tech 3341 cases 20-23 (0 dBTP inter-sample
    peaks at the four positions of a 4x grid); the EBU files themselves were not
    available, so these are not bit-identical to them.
    """
    n = np.arange(int(seconds * fs))
    t0 = n.size // 2 + offset_quarters / 4.0
    u = n - t0
    half = 200.0
    w = np.i0(8.0 * np.sqrt(np.clip(1 - (u / half) ** 2, 0, None))) / np.i0(8.0)
    return np.sinc(bandwidth * u) * w


def music_like(fs, seconds, rng):
    """Harmonic tones with random phases under percussive envelopes plus band-limited
    (20 kHz) pink-ish noise: a crest factor and spectrum like programme material."""
    n = int(seconds * fs)
    t = np.arange(n) / fs
    x = np.zeros(n)
    for f0 in (110.0, 164.8, 220.0, 329.6):
        env = np.exp(-((t * 4.0) % 1.0) * 6.0)
        for k in range(1, 30):
            if k * f0 < 18000:
                x += env * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / fs)
    spec[1:] /= np.sqrt(f[1:])
    spec[f > 20000] = 0
    noise = np.fft.irfft(spec, n)
    x += 0.3 * noise / noise.std()
    return 0.5 * x / np.abs(x).max()


# ---- the filter ------------------------------------------------------------------------
def test_oversampling_factor_follows_the_annex():
    assert [oversampling_for_rate(f) for f in (32000, 44100, 48000, 88200, 96000, 176400,
                                               192000)] == [4, 4, 4, 2, 2, 1, 1]


def test_annex_table_is_a_symmetric_48_tap_lowpass():
    c = ANNEX2_COEFFICIENTS
    assert c.shape == (4, 12)
    np.testing.assert_array_equal(c[3], c[0][::-1])
    np.testing.assert_array_equal(c[2], c[1][::-1])
    h = prototype_from_phases(c)
    np.testing.assert_array_equal(h, h[::-1])  # linear phase, delay 23.5 / 4 input frames
    # each phase is a fractional-delay interpolator: gain 1 +- 0.25 dB to 0.40 fs ...
    w = 2 * np.pi * np.linspace(0.0, 0.40, 200)
    for p in range(4):
        mag = np.abs(np.exp(-1j * np.outer(w, np.arange(12))) @ c[p])
        assert np.all(np.abs(20 * np.log10(mag)) < 0.25)
    # ... and the prototype's images (above fs/2 at the 4x rate) are well down
    wi = 2 * np.pi * np.linspace(0.6 / 4, 2.0 / 4, 200)  # 0.6 fs .. 2 fs in 4x units
    img = np.abs(np.exp(-1j * np.outer(wi, np.arange(48))) @ h) / 4.0
    assert 20 * np.log10(img.max()) < -20.0


def test_windowed_sinc_bank_is_a_fractional_delay():
    L, taps = 8, 32
    c = windowed_sinc_phases(L, taps, 5.0)
    d = taps // 2
    np.testing.assert_allclose(c[0], np.eye(taps)[d], atol=1e-15)  # phase 0 = x[n - D]
    w = 2 * np.pi * np.linspace(0.001, 0.40, 300)
    for p in range(L):
        h = np.exp(-1j * np.outer(w, np.arange(taps))) @ c[p]
        ideal = np.exp(-1j * w * (d - p / L))  # x(n - D + p / L)
        assert np.abs(h - ideal).max() < 0.005
    with pytest.raises(ValueError, match="even taps"):
        windowed_sinc_phases(4, 7, 5.0)


# ---- the kernel against the slow reference ---------------------------------------------
@numba.njit(cache=False)  # a cached caller would keep a stale copy of the kernel
def _estimates(x, coef, raw_tap):
    """Per-sample estimates through the helper, as another kernel would call it."""
    st = np.zeros((1, T.TP_HIST + 2 * coef.shape[0]))
    out = np.empty(x.size)
    for n in range(x.size):
        out[n] = _truepeak_push(st, 0, x[n], coef, raw_tap)
    return out


@pytest.mark.parametrize("fs", [44100, 96000, 192000])
def test_per_sample_estimates_match_reference(fs):
    coef, raw_tap = interpolator_for_rate(fs)
    x = np.random.default_rng(1).standard_normal(3000)
    got = _estimates(x, coef, raw_tap)
    want = estimates_ref(x, coef.T, raw_tap)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_meter_matches_reference_per_channel():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((5000, 3)) * [0.1, 0.5, 1.0]).astype(np.float32)
    coef, raw_tap = interpolator_for_rate(FS)
    m = TruePeakMeter(FS, 3)
    m.process(x)
    want = [20 * np.log10(estimates_ref(x[:, c].astype(np.float64), coef.T, raw_tap).max())
            for c in range(3)]
    np.testing.assert_allclose(m.true_peak_dbtp, want, rtol=0, atol=1e-9)
    assert m.max_true_peak_dbtp == pytest.approx(max(want), abs=1e-9)


# ---- the standard's signals ------------------------------------------------------------
def test_fs4_sine_at_45_degrees_reads_3dB_above_its_sample_peak():
    amp = 0.5
    n = np.arange(FS // 2)
    x = _taper(amp * np.sin(np.pi / 2 * n + np.pi / 4), FS)
    sample_peak_db = 20 * np.log10(np.abs(x).max())
    tp = true_peak_dbtp(x, FS)[0]
    assert sample_peak_db == pytest.approx(20 * np.log10(amp) - 10 * np.log10(2), abs=1e-6)
    assert -TP_TOL_LO <= tp - 20 * np.log10(amp) <= TP_TOL_HI
    assert tp - sample_peak_db == pytest.approx(3.01, abs=0.2)


@pytest.mark.parametrize("case", sorted(TECH3341_SINES))
def test_ebu_tech3341_sine_cases(case):
    x = tech3341_sine(case)
    expected = TECH3341_SINES[case][3]
    tp = true_peak_dbtp(x, FS)[0]
    assert expected - TP_TOL_LO <= tp <= expected + TP_TOL_HI, (case, tp)


@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_inter_sample_peaks_at_every_quarter_offset(offset):
    x = isp_pulse(offset)
    assert true_peak_resampled_db(x, 16) == pytest.approx(0.0, abs=0.01)  # the oracle agrees
    tp = true_peak_dbtp(x, FS)[0]
    assert -TP_TOL_LO <= tp <= TP_TOL_HI, (offset, tp)
    if offset == 2:  # half-way between samples: the sample peak is 2.4 dB low
        assert 20 * np.log10(np.abs(x).max()) < -2.0


@pytest.mark.parametrize("fs", [44100, 48000, 96000, 192000])
def test_agrees_with_an_independent_oversampler(fs):
    rng = np.random.default_rng(fs)
    n = int(0.4 * fs)
    noise = rng.standard_normal(n)
    spec = np.fft.rfft(noise)
    spec[np.fft.rfftfreq(n, 1 / fs) > 20000] = 0  # programme bandwidth (annex's premise)
    noise = 0.25 * np.fft.irfft(spec, n)
    for x in (noise, music_like(fs, 0.4, rng)):
        ref = true_peak_resampled_db(x, 16)
        tp = true_peak_dbtp(x, fs)[0]
        assert -TP_TOL_LO <= tp - ref <= TP_TOL_HI, (fs, tp, ref)


# ---- streaming and real-time rules -----------------------------------------------------
def test_block_size_invariance():
    x = np.random.default_rng(3).standard_normal((2000, 2)).astype(np.float32)
    readings = []
    for bs in (1, 17, 64, 256, x.shape[0]):
        m = TruePeakMeter(FS, 2)
        for s in range(0, x.shape[0], bs):
            m.process(x[s:s + bs])
        readings.append((m.true_peak_dbtp, m._state.copy()))
    for tp, st in readings[1:]:
        np.testing.assert_array_equal(tp, readings[0][0])
        np.testing.assert_array_equal(st, readings[0][1])


def test_reset_forgets_history_and_maximum():
    rng = np.random.default_rng(4)
    loud = rng.standard_normal((500, 1)).astype(np.float32)
    quiet = (0.01 * rng.standard_normal((500, 1))).astype(np.float32)
    fresh = TruePeakMeter(FS, 1)
    fresh.process(quiet)
    m = TruePeakMeter(FS, 1)
    m.process(loud)
    m.reset()
    assert m.max_true_peak_dbtp == -math.inf
    m.process(quiet)
    np.testing.assert_array_equal(m.true_peak_dbtp, fresh.true_peak_dbtp)


def test_silence_reads_minus_infinity_and_nan_is_ignored():
    m = TruePeakMeter(FS, 2)
    m.process(np.zeros((100, 2), np.float32))
    assert np.all(m.true_peak_dbtp == -math.inf)
    x = np.full((100, 2), 0.25, np.float32)
    x[10, 0] = np.nan
    x[20, 1] = np.inf
    m.process(x)
    assert np.all(np.isfinite(m.true_peak_dbtp))
    assert m.max_true_peak_dbtp < 0.0


def test_bad_input_names_the_fix():
    with pytest.raises(ValueError, match="8000 .. 768000"):
        TruePeakMeter(1000, 2)
    with pytest.raises(ValueError, match="1 .. 256"):
        TruePeakMeter(FS, 0)
    with pytest.raises(ValueError, match=r"expected \(frames, 2\)"):
        TruePeakMeter(FS, 2).process(np.zeros((10, 3), np.float32))


def test_process_allocates_nothing_after_warmup():
    m = TruePeakMeter(FS, 2)
    block = np.random.default_rng(5).standard_normal((1024, 2)).astype(np.float32)
    transient, retained = heap_bytes(lambda: m.process(block), 200)
    # a 1024-frame stereo block is 8 KiB: any audio-sized allocation would show
    assert transient < 2048, transient
    assert retained < 1024, retained


def test_state_helper_shape():
    coef, _ = interpolator_for_rate(FS)
    assert T.history(3, coef.shape[0]).shape == (3, T.TP_HIST + 2 * coef.shape[0])
