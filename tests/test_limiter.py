"""Master true-peak limiter: the ceiling holds on adversarial input (measured by
independent oversamplers and the BS.1770 meter), transparency, release, the slow
reference, streaming, bypass and the real-time rules."""
from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from scipy.signal import resample_poly

from edgemix.dsp import limiter as LM
from edgemix.dsp.limiter import Limiter, LimiterState, _limiter_run
from edgemix.dsp.truepeak import interpolator_for_rate, true_peak_dbtp, windowed_sinc_phases
from edgemix.params import MASTER_SPECS
from tests.alloc_helpers import heap_bytes
from tests.reference.limiter_ref import limiter_ref
from tests.reference.truepeak_ref import true_peak_fft_db, true_peak_resampled_db

FS = 48000


def run(lim: Limiter, x) -> np.ndarray:
    """The whole response: ``x`` then ``latency`` frames of silence to flush the delay."""
    x = np.asarray(x, np.float32)
    tail = np.zeros((lim.latency_frames + 64, 2), np.float32)
    return np.concatenate([lim.process(x), lim.process(tail)])


def stereo(left, right=None):
    right = 0.7 * left if right is None else right
    return np.ascontiguousarray(np.stack([left, right], axis=1), dtype=np.float32)


def adversarial(fs, rng):
    """The hostile set: full-band and over-full-scale, as a limiter meets them."""
    n = np.arange(int(0.12 * fs))
    half = max(1, int(fs / 1000) // 2)
    square = np.where((n // half) % 2 == 0, 1.0, -1.0)  # naive 1 kHz square: aliased
    impulses = np.zeros(n.size)
    impulses[::397] = 8.0
    impulses[5::397] = -8.0
    dc = np.zeros(n.size)
    dc[n.size // 3:] = 3.0
    burst = np.zeros((n.size, 2))
    burst[n.size // 2:] = 8.0 * rng.standard_normal((n.size - n.size // 2, 2))
    return {
        "square_0dBFS": stereo(square),
        "square_+12dB": stereo(4.0 * square, -4.0 * square),
        "isp_sine_fs4_45deg_+6dB": stereo(2.0 * np.sin(np.pi / 2 * n + np.pi / 4)),
        "impulse_train": stereo(impulses),
        "dc_step": stereo(dc),
        "white_noise_+20dB": np.ascontiguousarray(10.0 * rng.standard_normal((n.size, 2)),
                                                  dtype=np.float32),
        "burst_after_silence": np.ascontiguousarray(burst, dtype=np.float32),
    }


def band_limited(x, fc=0.45):
    spec = np.fft.rfft(x, axis=0)
    spec[np.fft.rfftfreq(x.shape[0]) > fc] = 0
    return np.fft.irfft(spec, n=x.shape[0], axis=0)


# ---- the guarantee ---------------------------------------------------------------------
@pytest.mark.parametrize("fs", [44100, 48000, 96000])
@pytest.mark.parametrize("ceiling", [-1.0, -0.1, -6.0])
def test_output_true_peak_never_exceeds_the_ceiling(fs, ceiling):
    rng = np.random.default_rng(int(fs - 10 * ceiling))
    for name, x in adversarial(fs, rng).items():
        lim = Limiter(fs, ceiling_dbtp=ceiling)
        y = run(lim, x)
        assert np.all(np.isfinite(y))
        tp8 = true_peak_resampled_db(y, 8)
        assert tp8 <= ceiling, (name, tp8)
        assert true_peak_dbtp(y, fs).max() <= ceiling, name
        assert lim.max_gain_reduction_db > 0.0


@pytest.mark.parametrize("release_ms", [1.0, 100.0])
def test_ceiling_holds_against_exact_band_limited_interpolation(release_ms):
    """A stricter oracle where it is well defined: for content up to 0.45 fs, FFT (ideal
    sinc) interpolation of the output stays below the ceiling too -- random mixtures of
    tones, noise and clicks from -6 to +24 dB, abrupt onsets included."""
    rng = np.random.default_rng(7)
    n = 6000
    for trial in range(6):
        ceiling = (-1.0, -0.1, -6.0)[trial % 3]
        x = np.zeros((n, 2))
        for _ in range(3):
            a = int(rng.integers(0, n - 1000))
            b = int(rng.integers(a + 50, n))
            lvl = 10 ** (rng.uniform(-6, 24) / 20)
            kind = trial % 3
            if kind == 0:
                seg = np.sin(2 * np.pi * rng.uniform(0.01, 0.45) * np.arange(b - a)[:, None]
                             + rng.uniform(0, 6, 2))
            elif kind == 1:
                seg = rng.standard_normal((b - a, 2))
            else:
                seg = np.zeros((b - a, 2))
                seg[::int(rng.integers(2, 300))] = 1.0
            x[a:b] += lvl * seg
        lim = Limiter(FS, ceiling_dbtp=ceiling, release_ms=release_ms)
        y = run(lim, band_limited(x))
        assert true_peak_fft_db(y, 16) <= ceiling


# ---- transparency, latency, release ----------------------------------------------------
def test_transparent_below_the_ceiling():
    rng = np.random.default_rng(8)
    x = band_limited(rng.standard_normal((4000, 2)), 0.4)
    ceiling = -1.0
    x *= 10 ** ((ceiling - LM.SAFETY_MARGIN_DB - 0.5) / 20) / np.abs(x).max() / 1.5
    x = x.astype(np.float32)
    assert true_peak_resampled_db(x, 16) < ceiling - LM.SAFETY_MARGIN_DB - 0.1
    lim = Limiter(FS, ceiling_dbtp=ceiling)
    y = run(lim, x)
    lat = lim.latency_frames
    np.testing.assert_allclose(y[lat:lat + x.shape[0]], x, rtol=0, atol=1e-6)
    assert np.all(y[:lat] == 0.0)
    assert lim.max_gain_reduction_db == 0.0
    assert lim.gain_reduction_db == 0.0


@pytest.mark.parametrize("fs", [32000, 44100, 48000, 96000, 192000])
def test_latency_is_detector_plus_lookahead_plus_hold(fs):
    lim = Limiter(fs)
    w = LM.lookahead_frames(fs, LM.DEFAULT_LOOKAHEAD_MS)
    assert lim.latency_frames == LM.DETECTOR_DELAY + w + LM.HOLD_FRAMES - 1
    x = np.zeros((lim.latency_frames + 10, 2), np.float32)
    x[3] = (0.25, -0.125)
    y = lim.process(x)
    assert np.argmax(np.abs(y[:, 0])) == 3 + lim.latency_frames
    assert tuple(y[3 + lim.latency_frames]) == (0.25, -0.125)


def test_gain_is_down_before_the_peak_arrives():
    """A lone +12 dB click: the output gain ramps down smoothly over the lookahead and is
    at its lowest, already, on the click itself."""
    lim = Limiter(FS, ceiling_dbtp=-1.0)
    lat = lim.latency_frames
    w = LM.lookahead_frames(FS, LM.DEFAULT_LOOKAHEAD_MS)
    x = np.full((4 * lat, 2), 1e-3, np.float32)
    k = 2 * lat
    x[k, 0] = 4.0
    y = lim.process(x)
    gain = (y[:, 1] / x[0, 1]).astype(np.float64)  # right: a constant, so y/x is the gain
    gain[:lat] = 1.0  # the delay line's initial silence
    o = k + lat  # the click at the output
    g_min = gain.min()
    assert gain[o] == pytest.approx(g_min, abs=1e-6)
    assert y[o, 0] <= 10 ** ((-1.0 - LM.SAFETY_MARGIN_DB) / 20) * 1.0001
    start = o - LM.HOLD_FRAMES - w - 8  # a few frames more for the sinc's side lobes
    assert np.all(gain[:start] == 1.0)
    ramp = gain[start:o + 1]
    assert np.all(np.diff(ramp) <= 1e-7)  # monotonic down: no step up before the click
    assert np.abs(np.diff(ramp)).max() <= (1.0 - g_min) / w * 1.001  # a ramp, not a jump


@pytest.mark.parametrize("release_ms", [20.0, 100.0, 400.0])
def test_release_follows_its_time_constant(release_ms):
    """After a loud tone, a quiet constant on the left shows the gain: ``1 - g`` must
    decay as ``exp(-t / tau)``; the fitted tau is within 5 %."""
    lim = Limiter(FS, ceiling_dbtp=-6.0, release_ms=release_ms)
    n_loud = 4800
    n_quiet = int(6 * release_ms * 1e-3 * FS)
    n = np.arange(n_loud)
    loud = 2.0 * np.sin(2 * np.pi * 1000 * n / FS)
    x = np.zeros((n_loud + n_quiet, 2))
    x[:n_loud, 1] = loud
    x[:, 0] = 0.01
    y = run(lim, x)
    g = y[lim.latency_frames:lim.latency_frames + x.shape[0], 0] / np.float32(0.01)
    gr = 1.0 - g[n_loud + 200:]  # past the last peak, the hold and the attack ramp
    sel = (gr < 0.5 * gr[0]) & (gr > 0.01 * gr[0])
    t = np.arange(gr.size)[sel] / FS
    slope = np.polyfit(t, np.log(gr[sel]), 1)[0]
    tau_ms = -1000.0 / slope
    assert tau_ms == pytest.approx(release_ms, rel=0.05)


# ---- kernel == slow reference; streaming ------------------------------------------------
@pytest.mark.parametrize("fs,ceiling,release_ms,lookahead_ms", [
    (48000, -1.0, 100.0, 1.5),
    (44100, -6.0, 5.0, 0.5),
    (96000, -0.1, 50.0, 3.0),
])
def test_kernel_matches_the_slow_reference(fs, ceiling, release_ms, lookahead_ms):
    rng = np.random.default_rng(9)
    n = 3000
    x = rng.standard_normal((n, 2)) * np.where(np.arange(n) % 1000 < 500, 3.0, 0.2)[:, None]
    x[1234, 0] = np.nan
    x = x.astype(np.float32)
    lim = Limiter(fs, ceiling_dbtp=ceiling, release_ms=release_ms, lookahead_ms=lookahead_ms)
    y = lim.process(x)
    w = LM.lookahead_frames(fs, lookahead_ms)
    meter_coef, meter_raw = interpolator_for_rate(fs)
    want, _ = limiter_ref(x, fs, ceiling, release_ms,
                          windowed_sinc_phases(LM.DETECTOR_OVERSAMPLING, LM.DETECTOR_TAPS,
                                               LM.DETECTOR_KAISER_BETA),
                          meter_coef.T, meter_raw, w, LM.HOLD_FRAMES, LM.SAFETY_MARGIN_DB)
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-6)
    assert lim.guard_count == 1


def test_block_size_invariance():
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((2500, 2)) * 4.0).astype(np.float32)
    outs = []
    for bs in (1, 17, 64, 256, x.shape[0]):
        lim = Limiter(FS, ceiling_dbtp=-1.0, release_ms=20.0)
        outs.append(np.concatenate([lim.process(x[s:s + bs]) for s in range(0, x.shape[0], bs)]))
    for y in outs[1:]:
        np.testing.assert_allclose(y, outs[0], rtol=0, atol=1e-6)


def test_reset_gives_a_fresh_limiter_and_keeps_parameters():
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((2000, 2)) * 3.0).astype(np.float32)
    fresh = Limiter(FS, ceiling_dbtp=-3.0, release_ms=30.0).process(x)
    lim = Limiter(FS, ceiling_dbtp=-3.0, release_ms=30.0)
    lim.process(x[::-1].copy())
    lim.reset()
    assert lim.gain_reduction_db == 0.0 and lim.ceiling_dbtp == -3.0
    np.testing.assert_array_equal(lim.process(x), fresh)


@numba.njit(cache=False)  # a cached caller would keep a stale copy of the kernel
def _master_chain(bus, n, on, ceiling, release, fs, s, delay, hist, coef, mcoef, box, wedge):
    """How the console calls the limiter: from inside its own kernel."""
    for i in range(n):  # e.g. a master fader before it
        bus[0, i] *= 2.0
        bus[1, i] *= 2.0
    _limiter_run(bus, n, on, ceiling, release, fs, s, delay, hist, coef, mcoef, box, wedge)


def test_kernel_called_from_another_kernel():
    x = (np.random.default_rng(12).standard_normal((1000, 2))).astype(np.float32)
    want = Limiter(FS, ceiling_dbtp=-2.0).process(2.0 * x)
    st = LimiterState.allocate(FS)
    bus = np.ascontiguousarray(x.T)
    _master_chain(bus, bus.shape[1], 1.0, -2.0, MASTER_SPECS["limiter_release_ms"].default,
                  float(FS), st.s, st.delay, st.hist, st.coef, st.mcoef, st.box, st.wedge)
    np.testing.assert_array_equal(bus.T, want)


# ---- bypass -----------------------------------------------------------------------------
def test_bypass_keeps_latency_and_passes_audio_untouched():
    x = (np.random.default_rng(13).standard_normal((3000, 2)) * 4.0).astype(np.float32)
    lim = Limiter(FS, on=False)
    y = run(lim, x)
    lat = lim.latency_frames
    np.testing.assert_array_equal(y[lat:lat + x.shape[0]], x)
    assert lim.gain_reduction_db == 0.0


def test_switching_crossfades_without_a_click_and_never_shifts_time():
    fs = FS
    n = np.arange(int(0.3 * fs))
    x = stereo(3.0 * np.sin(2 * np.pi * 440 * n / fs))
    lim = Limiter(fs, ceiling_dbtp=-1.0)
    lat = lim.latency_frames
    cut1, cut2 = len(n) // 3, 2 * len(n) // 3
    y = np.concatenate([lim.process(x[:cut1]), _off(lim, x[cut1:cut2]), _on(lim, x[cut2:]),
                        lim.process(np.zeros((lat + 64, 2), np.float32))])
    xd = x[:len(n) - lat, 0]
    g = y[lat:len(n), 0] / np.where(xd == 0, np.nan, xd)
    g = g[np.isfinite(g)]
    fade = LM.BYPASS_FADE_MS * 1e-3 * fs
    # the effective gain moves at most 1/fade per frame (plus the limiter's own motion)
    steps = np.abs(np.diff(g))
    assert steps.max() < 1.5 / fade
    # well after switching out: exactly the delayed input (same latency)
    k = cut1 + int(2 * fade)
    np.testing.assert_array_equal(y[k:cut2], x[k - lat:cut2 - lat])
    # well after switching back in: limited again (measured in context: a slice would
    # start with a step of its own)
    over8 = np.abs(resample_poly(y.astype(np.float64), 8, 1, axis=0))
    assert 20 * np.log10(over8[8 * (cut2 + int(2 * fade)):].max()) <= -1.0


def _off(lim, x):
    lim.on = False
    return lim.process(x)


def _on(lim, x):
    lim.on = True
    return lim.process(x)


# ---- bad input, real-time rules ---------------------------------------------------------
def test_nan_and_inf_never_get_through():
    x = (np.random.default_rng(14).standard_normal((2000, 2)) * 5.0).astype(np.float32)
    x[100:110, 0] = np.nan
    x[500, 1] = np.inf
    x[600, 0] = -np.inf
    x[700, 1] = 1e30
    lim = Limiter(FS)
    y = run(lim, x)
    assert np.all(np.isfinite(y))
    assert lim.guard_count == 13
    assert true_peak_resampled_db(y, 8) <= lim.ceiling_dbtp


def test_parameters_come_from_the_schema_and_bad_values_name_the_fix():
    lim = Limiter(FS)
    assert lim.ceiling_dbtp == MASTER_SPECS["limiter_ceiling_dbtp"].default
    assert lim.release_ms == MASTER_SPECS["limiter_release_ms"].default
    assert lim.on == bool(MASTER_SPECS["limiter_on"].default)
    spec = MASTER_SPECS["limiter_ceiling_dbtp"]
    with pytest.raises(ValueError, match=f"use {spec.min:g} .. {spec.max:g}"):
        Limiter(FS, ceiling_dbtp=spec.max + 1.0)
    with pytest.raises(ValueError, match="limiter_release_ms"):
        lim.release_ms = 0.0
    with pytest.raises(ValueError, match="lookahead_ms"):
        Limiter(FS, lookahead_ms=100.0)
    with pytest.raises(ValueError, match="8000 .. 768000"):
        Limiter(100)
    with pytest.raises(ValueError, match=r"expected \(frames, 2\) stereo"):
        lim.process(np.zeros((64, 1), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        lim.process(np.zeros((64, 2), np.float32), out=np.zeros((32, 2), np.float32))


def test_process_allocates_nothing_after_warmup():
    lim = Limiter(FS)
    block = (np.random.default_rng(15).standard_normal((1024, 2)) * 3.0).astype(np.float32)
    out = np.empty_like(block)
    transient, retained = heap_bytes(lambda: lim.process(block, out=out), 200)
    # a 1024-frame stereo block is 8 KiB: any audio-sized allocation would show
    assert transient < 2048, transient
    assert retained < 1024, retained
    assert math.isfinite(lim.gain_reduction_db) and lim.gain_reduction_db >= 0.0
