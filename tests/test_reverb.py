"""The FX-bus FDN reverb: kernel == slow reference, measured RT60, damping, pre-delay,
stereo decorrelation, stability, block-size invariance, no allocation, cost."""
from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np
import pytest
import scipy.linalg
import scipy.signal

from edgemix import params as P
from edgemix.dsp import reverb as R
from edgemix.dsp.reverb import Reverb
from tests.reference.reverb_ref import (absorption, predicted_band_rt60, predicted_rt60,
                                        reverb_reference)


# ---- measurement helpers (ISO 3382-1 style) ---------------------------------------------

def _octave_sos(fs, fc):
    return scipy.signal.butter(3, [fc / math.sqrt(2), fc * math.sqrt(2)], "bandpass", fs=fs,
                               output="sos")


def octave(x, fs, fc):
    """Octave band around ``fc``: 6th-order Butterworth band-pass (IEC 61260 class-like)."""
    return scipy.signal.sosfilt(_octave_sos(fs, fc), x)


def octave_power(fs, fc):
    """The octave filter's power response, as a function of frequency in Hz."""
    sos = _octave_sos(fs, fc)
    return lambda f: np.abs(scipy.signal.sosfreqz(sos, worN=f, fs=fs)[1]) ** 2


def rt60(ir, fs, lo_db=-5.0, hi_db=-35.0):
    """RT60 from Schroeder backward integration, line fit between ``lo_db`` and ``hi_db``
    (T30 by default, T20 with hi_db=-25), extrapolated to 60 dB (ISO 3382-1 section 5.3)."""
    e = np.cumsum(np.asarray(ir, np.float64)[::-1] ** 2)[::-1]
    edc = 10.0 * np.log10(e / e[0])
    i0 = int(np.argmax(edc <= lo_db))
    i1 = int(np.argmax(edc <= hi_db))
    assert i1 > i0 + 10, "impulse response too short for the fit"
    slope = np.polyfit(np.arange(i0, i1) / fs, edc[i0:i1], 1)[0]
    return -60.0 / slope


def impulse_response(fs, seconds, **settings):
    r = Reverb(fs)
    for k, v in settings.items():
        r.set(k, v)
    x = np.zeros(int(fs * seconds), np.float32)
    x[0] = 1.0
    return r.process(x)


def master_with(**settings):
    m = P.master_defaults()
    for k, v in settings.items():
        m[getattr(P.MS, k)] = v
    return m


def run_schedule(fs, send_cf, schedule, block):
    """Run the public reverb over ``send_cf`` (n_in, frames), changing parameters at the
    schedule's start samples, in blocks of ``block`` frames (0 = whole pieces)."""
    r = Reverb(fs)
    n = send_cf.shape[1]
    out = np.zeros((2, n), np.float32)
    bounds = [s for s, _ in schedule] + [n]
    for (start, m), end in zip(schedule, bounds[1:]):
        for name in R._REVERB_NAMES:
            r.set(name, m[getattr(P.MS, name)])
        step = block or (end - start)
        for a in range(start, end, step):
            b = min(end, a + step)
            piece = np.zeros((2, b - a), np.float32)
            r.add_return(np.ascontiguousarray(send_cf[:, a:b]), piece)
            out[:, a:b] = piece
    return out


# ---- design data --------------------------------------------------------------------------

@pytest.mark.parametrize("fs", [8000, 44100, 48000, 96000, 192000])
def test_line_lengths_mutually_prime_and_scaled(fs):
    d = R.line_delays(fs)
    assert len(set(d.tolist())) == R.N_LINES
    for i in range(R.N_LINES):
        for j in range(i + 1, R.N_LINES):
            assert math.gcd(int(d[i]), int(d[j])) == 1
    want = np.array([R.LINE_MS[k] for k in R._LINE_ORDER]) * fs / 1000.0
    assert np.all(np.abs(d - want) <= np.maximum(0.02 * want, 8))   # prime gaps


def test_matrix_and_taps():
    np.testing.assert_array_equal(R.hadamard(16), scipy.linalg.hadamard(16))
    m = R.mix_vectors()
    assert abs(m[R.M_TAP_L] @ m[R.M_TAP_R]) < 1e-12          # orthogonal output taps
    for row in (R.M_IN_MONO, R.M_IN_L, R.M_IN_R):
        assert np.linalg.norm(m[row]) == pytest.approx(1.0)


@pytest.mark.parametrize("fs,decay_s,damping_hz", [(8000, 0.2, 1000.0), (48000, 1.8, 6000.0),
                                                   (48000, 10.0, 20000.0), (44100, 0.2, 20000.0),
                                                   (192000, 10.0, 1000.0)])
def test_absorption_closed_form_equals_root_finding(fs, decay_s, damping_hz):
    d = R.line_delays(fs)
    coef = np.zeros((2, R.N_LINES))
    R._absorption_coefficients(d, decay_s, damping_hz, float(fs), coef, 0)
    b, p = absorption(d, decay_s, damping_hz, fs)
    np.testing.assert_allclose(coef[1], p, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(coef[0], b, rtol=1e-9, atol=1e-15)
    # |H| <= DC gain g < 1: a stable loop at every frequency
    w = np.linspace(0, np.pi, 257)
    for i in range(R.N_LINES):
        mag = np.abs(coef[0, i] / (1 - coef[1, i] * np.exp(-1j * w)))
        g = 10.0 ** (-3.0 * d[i] / (fs * decay_s))
        assert mag[0] == pytest.approx(g, rel=1e-9)
        assert np.all(mag <= g * (1 + 1e-12)) and g < 1.0


# ---- kernel == reference ----------------------------------------------------------------

def _bursts(n_in, frames, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_in, frames)) * 0.3
    env = (np.arange(frames) % 1500 < 400).astype(float)
    return (x * env).astype(np.float32)


@pytest.mark.parametrize("fs,n_in", [(16000, 1), (22050, 2)])
def test_kernel_equals_reference(fs, n_in):
    frames = 5000
    x = _bursts(n_in, frames, 3)
    schedule = [(0, master_with(reverb_decay_s=0.7, reverb_predelay_ms=30.0)),
                (1111, master_with(reverb_decay_s=3.0, reverb_damping_hz=2000.0,
                                   reverb_lowcut_hz=400.0, reverb_predelay_ms=150.0,
                                   reverb_return_db=-6.0)),
                (3000, master_with(reverb_decay_s=0.3, reverb_damping_hz=15000.0,
                                   reverb_return_db=P.OFF_DB))]
    got = run_schedule(fs, x, schedule, 0)
    want = reverb_reference(x, fs, schedule)
    assert np.max(np.abs(want)) > 0.05
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)


def test_block_size_invariance():
    fs = 48000
    x = _bursts(1, 20000, 5)
    schedule = [(0, master_with()),
                (7001, master_with(reverb_decay_s=6.0, reverb_damping_hz=1500.0,
                                   reverb_predelay_ms=120.0, reverb_lowcut_hz=600.0,
                                   reverb_return_db=4.0))]
    whole = run_schedule(fs, x, schedule, 0)
    assert np.max(np.abs(whole)) > 0.01
    for block in (1, 17, 64, 256):
        np.testing.assert_allclose(run_schedule(fs, x, schedule, block), whole, atol=1e-6,
                                   rtol=0, err_msg=f"block size {block}")


# ---- acoustics ----------------------------------------------------------------------------

@pytest.mark.parametrize("fs,decay_s", [(48000, 0.5), (48000, 1.8), (48000, 5.0),
                                        (44100, 1.8), (96000, 0.5)])
def test_measured_rt60(fs, decay_s):
    ir = impulse_response(fs, 1.3 * decay_s + 0.3, reverb_decay_s=decay_s)
    for ch in (0, 1):
        # T_mid: mean of the 500 Hz and 1 kHz octave bands (ISO 3382-1)
        t30 = np.mean([rt60(octave(ir[:, ch], fs, fc), fs) for fc in (500.0, 1000.0)])
        t20 = np.mean([rt60(octave(ir[:, ch], fs, fc), fs, hi_db=-25.0) for fc in (500.0, 1000.0)])
        assert t30 == pytest.approx(decay_s, rel=0.10)
        assert t20 == pytest.approx(decay_s, rel=0.10)


def test_damping_shortens_high_frequency_decay():
    fs, decay = 48000, 2.0
    dark = impulse_response(fs, 2.8, reverb_decay_s=decay, reverb_damping_hz=2000.0)[:, 0]
    bright = impulse_response(fs, 2.8, reverb_decay_s=decay, reverb_damping_hz=20000.0)[:, 0]
    t_dark = {fc: rt60(octave(dark, fs, fc), fs) for fc in (250.0, 500.0, 2000.0, 4000.0, 8000.0)}
    t_bright = {fc: rt60(octave(bright, fs, fc), fs) for fc in (500.0, 8000.0)}
    # below the damping frequency the decay is the set one; above it, clearly shorter
    assert t_dark[250.0] == pytest.approx(decay, rel=0.10)
    assert t_dark[8000.0] < 0.5 * t_dark[500.0]
    assert t_dark[2000.0] > t_dark[4000.0] > t_dark[8000.0]
    assert t_bright[8000.0] > 1.5 * t_dark[8000.0]
    # and it follows the designed loop filters (RT60 halves at the damping frequency),
    # averaged over each octave the way Schroeder integration averages them
    for fc in (500.0, 2000.0, 4000.0, 8000.0):
        want = predicted_band_rt60(fs, decay, 2000.0, fc, octave_power(fs, fc))
        assert t_dark[fc] == pytest.approx(want, rel=0.05), fc
    assert predicted_rt60(fs, decay, 2000.0, 2000.0) == pytest.approx(decay / 2, rel=1e-6)


@pytest.mark.parametrize("predelay_ms", [0.0, 5.0, 20.0, 50.0, 200.0])
def test_predelay_onset(predelay_ms):
    fs = 48000
    ir = impulse_response(fs, 0.3, reverb_predelay_ms=predelay_ms)
    first = int(np.argmax(np.any(ir != 0.0, axis=1)))
    assert first >= predelay_ms * fs / 1000.0
    r = Reverb(fs)
    r.set("reverb_predelay_ms", predelay_ms)
    assert first == r.onset_samples
    assert first <= max(predelay_ms * fs / 1000.0, R.line_delays(fs).min())


def test_stereo_tail_is_decorrelated_and_balanced():
    fs = 48000
    noise = np.random.default_rng(7).standard_normal(3 * fs).astype(np.float32)
    y = Reverb(fs).process(noise)[fs // 2:]
    rho = np.corrcoef(y[:, 0], y[:, 1])[0, 1]
    assert abs(rho) < 0.3
    assert abs(10 * np.log10(np.mean(y[:, 0] ** 2) / np.mean(y[:, 1] ** 2))) < 1.0
    tail = impulse_response(fs, 1.5)[int(0.08 * fs):]
    assert abs(np.corrcoef(tail[:, 0], tail[:, 1])[0, 1]) < 0.3
    # the return of white noise at default settings is about as loud as the send
    ratio_db = 10 * np.log10(np.mean(y ** 2) / np.mean(noise ** 2))
    assert abs(ratio_db) < 3.0


def test_return_level_and_stereo_send():
    fs = 48000
    noise = np.random.default_rng(8).standard_normal(fs).astype(np.float32)
    a = Reverb(fs)
    b = Reverb(fs)
    b.set("reverb_return_db", -12.0)
    ya, yb = a.process(noise), b.process(noise)
    np.testing.assert_allclose(yb, ya * 10 ** (-12 / 20), rtol=1e-4, atol=1e-6)
    off = Reverb(fs)
    off.set("reverb_return_db", P.OFF_DB)
    assert np.all(off.process(noise) == 0.0)
    st = Reverb(fs).process(np.stack([noise, -noise], axis=1))
    assert np.all(np.isfinite(st)) and np.mean(st[fs // 2:] ** 2) > 0.01


# ---- robustness ---------------------------------------------------------------------------

_EXTREMES = [
    dict(reverb_decay_s=10.0, reverb_damping_hz=20000.0, reverb_lowcut_hz=20.0,
         reverb_predelay_ms=0.0, reverb_return_db=10.0),
    dict(reverb_decay_s=0.2, reverb_damping_hz=1000.0, reverb_lowcut_hz=1000.0,
         reverb_predelay_ms=200.0, reverb_return_db=10.0),
    dict(reverb_decay_s=10.0, reverb_damping_hz=1000.0, reverb_lowcut_hz=1000.0,
         reverb_predelay_ms=200.0, reverb_return_db=10.0),
]


@pytest.mark.parametrize("fs,settings", [(48000, _EXTREMES[0]), (48000, _EXTREMES[1]),
                                         (44100, _EXTREMES[0]), (8000, _EXTREMES[2])])
def test_stable_at_extremes_over_20_s(fs, settings):
    r = Reverb(fs)
    for k, v in settings.items():
        r.set(k, v)
    rng = np.random.default_rng(11)
    loud = rng.standard_normal(10 * fs).astype(np.float32)
    y1 = r.process(loud)
    y2 = r.process(np.zeros(10 * fs, np.float32))
    assert np.all(np.isfinite(y1)) and np.all(np.isfinite(y2))
    p = np.mean(y1.reshape(10, fs, 2) ** 2, axis=(1, 2))
    assert p[9] < 1.5 * p[4]                                 # steady, not growing
    q = np.mean(y2.reshape(10, fs, 2) ** 2, axis=(1, 2))
    assert np.all(np.diff(q[q > 0]) < 0)                      # the tail only decays
    assert q[-1] < 1e-5 * p[9]                                # ... by > 50 dB in 10 s


def test_random_automation_never_nan():
    fs = 16000
    r = Reverb(fs)
    rng = np.random.default_rng(12)
    x = (rng.standard_normal(8 * fs) * 3.0).astype(np.float32)
    x[1000] = np.nan
    x[2000] = np.inf
    x[3000] = -np.inf
    outs = []
    for i in range(0, x.shape[0], 800):
        for name in R._REVERB_NAMES:
            spec = P.MASTER_SPECS[name]
            r.set(name, spec.min if rng.random() < 0.5 else spec.max)
        outs.append(r.process(x[i:i + 800]))
    y = np.concatenate(outs)
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) > 0.0


def _step_click(instant):
    """Broadband energy a decay/damping jump puts into the return of a 150 Hz sine send:
    peak of the return above 3 kHz in the 20 ms after the jump, relative to the return's
    peak.  A steady 150 Hz sine through a linear network has no energy up there; a jump in
    the loop gains (a click) has."""
    fs = 48000
    r = Reverb(fs)
    r.set("reverb_decay_s", 0.3)
    r.set("reverb_damping_hz", 20000.0)
    if instant:
        r.state.ctl[R.C_A_GLIDE] = 1.0          # what the kernel would do without the glide
    t = np.arange(fs) / fs
    x = (0.5 * np.sin(2 * np.pi * 150.0 * t)).astype(np.float32)
    y1 = r.process(x)
    r.set("reverb_decay_s", 10.0)
    r.set("reverb_damping_hz", 1000.0)
    y2 = r.process(x[:4800])
    y = np.concatenate([y1, y2])[:, 0]
    hp = scipy.signal.sosfilt(scipy.signal.butter(6, 3000.0, "highpass", fs=fs, output="sos"), y)
    jump = y1.shape[0]
    return np.max(np.abs(hp[jump:jump + 960])) / np.max(np.abs(y[jump - 4800:jump]))


def test_decay_and_damping_changes_do_not_click():
    smooth = _step_click(instant=False)
    assert smooth < 1e-3                                   # below -60 dB re the return
    assert _step_click(instant=True) > 10 * smooth         # the measure sees a real click


def test_reset_clears_tail_keeps_parameters():
    fs = 48000
    r = Reverb(fs)
    r.set("reverb_decay_s", 3.0)
    x = _bursts(1, 9600, 1)[0]
    a = r.process(x)
    r.reset()
    assert r.get("reverb_decay_s") == 3.0
    np.testing.assert_array_equal(r.process(x), a)


def test_bad_input_is_a_clear_value_error():
    r = Reverb(48000)
    with pytest.raises(ValueError, match="out of range"):
        r.set("reverb_decay_s", 50.0)
    with pytest.raises(ValueError, match="not a reverb parameter"):
        r.set("master_fader_db", 0.0)
    with pytest.raises(ValueError, match="unknown parameter"):
        r.set("reverb_decay", 1.0)
    with pytest.raises(ValueError, match="expected"):
        r.process(np.zeros((64, 3), np.float32))
    with pytest.raises(ValueError, match="sample rate"):
        Reverb(1000)
    with pytest.raises(ValueError, match="float32"):
        r.add_return(np.zeros((1, 64)), np.zeros((2, 64), np.float32))


# ---- real-time ----------------------------------------------------------------------------

def test_no_allocation_after_warmup():
    r = Reverb(48000)
    send = _bursts(1, 64, 2)
    out = np.zeros((2, 64), np.float32)
    r.add_return(send, out)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(500):
            r.add_return(send, out)
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cur - base < 256        # nothing kept
    assert peak - base < 2048      # nothing but the call's transient argument tuple


def test_cost_per_64_frame_block(record_property):
    fs = 48000
    r = Reverb(fs)
    send = _bursts(1, 64, 4)
    out = np.zeros((2, 64), np.float32)
    args = r.state.arrays()
    m = P.master_defaults()
    R._reverb_block(send, out, 64, m, *args)
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(200):
            R._reverb_block(send, out, 64, m, *args)
        best = min(best, (time.perf_counter() - t0) / 200)
    record_property("reverb_us_per_64_block", best * 1e6)
    assert best < 0.25 * 64 / fs    # generous: a quarter of the block period on a busy host
