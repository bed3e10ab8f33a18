"""Peak (hold/decay), RMS and stereo correlation meters: kernels against slow per-sample
references, ballistics against their formulas, streaming properties."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgemix.dsp import meters as M
from edgemix.dsp.meters import CorrelationMeter, PeakMeter, RmsMeter
from tests.alloc_helpers import heap_bytes

FS = 48000


# --- slow references (plain loops, float64) -------------------------------------------------

def ref_peak(x, decay, hold):
    """Displayed level and running max per channel after every frame."""
    n, ch = x.shape
    level = np.zeros((n, ch))
    top = np.zeros((n, ch))
    for c in range(ch):
        lv, h, mx = 0.0, 0, 0.0
        for k in range(n):
            a = abs(float(x[k, c]))
            if a >= lv:
                lv, h = a, hold
            elif h > 0:
                h -= 1
            else:
                lv *= decay
            mx = max(mx, a)
            level[k, c], top[k, c] = lv, mx
    return level, top


def ref_mean_square(x, a):
    n, ch = x.shape
    out = np.zeros((n, ch))
    for c in range(ch):
        ms = 0.0
        for k in range(n):
            ms = a * ms + (1.0 - a) * float(x[k, c]) ** 2
            out[k, c] = ms
    return out


def ref_correlation(x, a):
    ll = ref_mean_square(x[:, :1], a)[:, 0]
    rr = ref_mean_square(x[:, 1:2], a)[:, 0]
    lr = np.zeros(x.shape[0])
    acc = 0.0
    for k in range(x.shape[0]):
        acc = a * acc + (1.0 - a) * float(x[k, 0]) * float(x[k, 1])
        lr[k] = acc
    r = np.zeros_like(lr)
    ok = (ll >= M.CORRELATION_FLOOR) & (rr >= M.CORRELATION_FLOOR)
    r[ok] = lr[ok] / np.sqrt(ll[ok] * rr[ok])
    return r


def make_signal(n=3000, seed=0):
    """Noise with a loud burst, a quiet stretch and true silence; stereo float32."""
    rng = np.random.default_rng(seed)
    x = 0.1 * rng.standard_normal((n, 2))
    x[n // 5:n // 5 + 50] *= 8.0
    x[n // 2:n // 2 + 600] *= 1e-3
    x[-700:] = 0.0
    return np.ascontiguousarray(x, dtype=np.float32)


def feed(meter, x, block):
    for i in range(0, x.shape[0], block):
        meter.process(x[i:i + block])


# --- kernels against references -------------------------------------------------------------

def test_peak_matches_reference():
    x = make_signal()
    m = PeakMeter(FS, 2, decay_db_per_s=60.0, hold_ms=5.0)
    level, top = ref_peak(x, M.peak_decay_per_sample(60.0, FS), M.hold_frames_for(5.0, FS))
    for k in range(x.shape[0]):  # frame by frame: every intermediate reading
        m.process(x[k:k + 1])
        np.testing.assert_allclose(m.state[:, M.PEAK_LEVEL], level[k], rtol=1e-12, atol=1e-30)
    np.testing.assert_array_equal(m.state[:, M.PEAK_MAX], top[-1])


def test_rms_matches_reference():
    x = make_signal()
    m = RmsMeter(FS, 2, time_constant_ms=5.0)
    ms = ref_mean_square(x, M.one_pole_coefficient(5.0, FS))
    for i in range(0, x.shape[0], 100):
        m.process(x[i:i + 100])
        np.testing.assert_allclose(m.state, ms[i + 99], rtol=1e-10, atol=1e-30)


def test_correlation_matches_reference():
    rng = np.random.default_rng(4)
    n = 3000
    common = rng.standard_normal(n)
    x = np.stack([common + 0.5 * rng.standard_normal(n), -0.3 * common + rng.standard_normal(n)], 1)
    x[-300:] = 0.0
    x = np.ascontiguousarray(0.1 * x, dtype=np.float32)
    m = CorrelationMeter(FS, 2, time_constant_ms=10.0)
    r = ref_correlation(x, M.one_pole_coefficient(10.0, FS))
    for i in range(0, n, 50):
        m.process(x[i:i + 50])
        assert m.correlation == pytest.approx(r[i + 49], abs=1e-9)


# --- ballistics against formulas ------------------------------------------------------------

def test_peak_hold_then_linear_in_db_fall():
    decay_db_per_s, hold_ms = 20.0 / 1.7, 100.0
    m = PeakMeter(FS, 1, decay_db_per_s=decay_db_per_s, hold_ms=hold_ms)
    hold = int(round(hold_ms * 1e-3 * FS))
    x = np.zeros((2 * FS, 1), dtype=np.float32)
    x[0] = -0.5
    seen = 0
    blocks = [1, 100, hold - 101, 1, 1, 480, 4800, 24000]
    for block in blocks + [2 * FS - sum(blocks)]:
        m.process(x[seen:seen + block])
        seen += block
        decays = max(0, seen - 1 - hold)  # frames after the hold ran out
        want_db = 20 * math.log10(0.5) - decay_db_per_s * decays / FS
        assert m.peak_dbfs[0] == pytest.approx(want_db, abs=1e-9)
        assert m.max_peak_dbfs[0] == pytest.approx(20 * math.log10(0.5), abs=1e-6)
    assert seen == 2 * FS
    # after 2 s the display has fallen 20 dB in the first 1.7 s of decay, as IEC 60268-18 asks
    assert m.peak_dbfs[0] < 20 * math.log10(0.5) - 20.0
    # a new, smaller peak above the fallen display is caught at once
    m.process(np.full((1, 1), 0.1, dtype=np.float32))
    assert m.peak_dbfs[0] == pytest.approx(20 * math.log10(0.1), abs=1e-6)


def test_rms_time_constant_and_steady_sine():
    tau_ms = 50.0
    m = RmsMeter(FS, 2, time_constant_ms=tau_ms)
    n_tau = int(tau_ms * 1e-3 * FS)  # 2400 frames: an exact number of time constants
    m.process(np.ones((n_tau, 2), dtype=np.float32))
    # a step in mean square reaches 1 - 1/e after one time constant
    np.testing.assert_allclose(m.state, 1.0 - math.exp(-1.0), rtol=1e-9)
    m.process(np.ones((2 * n_tau, 2), dtype=np.float32))
    np.testing.assert_allclose(m.state, 1.0 - math.exp(-3.0), rtol=1e-9)
    # steady 1 kHz sine at amplitude A reads A / sqrt(2) (20 tau in: settled)
    m = RmsMeter(FS, 2, time_constant_ms=300.0)
    t = np.arange(6 * FS) / FS
    amp = np.array([0.5, 0.05])
    x = np.ascontiguousarray(np.sin(2 * np.pi * 1000 * t)[:, None] * amp, dtype=np.float32)
    feed(m, x, 4096)
    np.testing.assert_allclose(m.rms, amp / math.sqrt(2), rtol=1e-3)
    np.testing.assert_allclose(m.rms_dbfs, 20 * np.log10(amp / math.sqrt(2)), atol=0.01)


def test_correlation_readings():
    rng = np.random.default_rng(9)
    n = 2 * FS
    a = rng.standard_normal(n)
    b = rng.standard_normal(n)

    def reading(left, right, tau_ms=300.0):
        m = CorrelationMeter(FS, 2, time_constant_ms=tau_ms)
        feed(m, np.ascontiguousarray(np.stack([left, right], 1), dtype=np.float32), 1024)
        return m.correlation

    assert reading(0.3 * a, 0.3 * a) == pytest.approx(1.0, abs=1e-9)
    assert reading(0.3 * a, -0.3 * a) == pytest.approx(-1.0, abs=1e-9)
    assert reading(0.3 * a, 0.3 * b) == pytest.approx(0.0, abs=0.1)  # independent
    # R = L + independent noise of equal power: r = 1 / sqrt(2)
    assert reading(0.2 * a, 0.2 * (a + b), tau_ms=2000.0) == pytest.approx(1 / math.sqrt(2),
                                                                          abs=0.05)
    t = np.arange(n) / FS
    assert reading(np.sin(2 * np.pi * 500 * t), np.cos(2 * np.pi * 500 * t)) == pytest.approx(
        0.0, abs=1e-3)  # quadrature
    assert reading(np.zeros(n), np.zeros(n)) == 0.0  # silence rests at the centre
    assert reading(0.3 * a, np.zeros(n)) == 0.0  # one side silent: undefined, reads 0


# --- streaming properties -------------------------------------------------------------------

def _readings(meter):
    return meter.state.reshape(-1).copy()


@pytest.mark.parametrize("make", (
    lambda: PeakMeter(FS, 2, decay_db_per_s=30.0, hold_ms=2.0),
    lambda: RmsMeter(FS, 2, time_constant_ms=3.0),
    lambda: CorrelationMeter(FS, 2, time_constant_ms=3.0),
), ids=("peak", "rms", "correlation"))
def test_block_size_invariance(make):
    x = make_signal(n=2500, seed=5)
    n = x.shape[0]
    m1 = make()
    per_frame = []
    for k in range(n):
        m1.process(x[k:k + 1])
        per_frame.append(_readings(m1))
    for block in (17, 64, 256, n):
        m = make()
        for i in range(0, n, block):
            m.process(x[i:i + block])
            np.testing.assert_allclose(_readings(m), per_frame[min(i + block, n) - 1],
                                       rtol=0, atol=1e-6)


def test_reset_and_silence_never_nan():
    x = make_signal()
    for m in (PeakMeter(FS, 2), RmsMeter(FS, 2), CorrelationMeter(FS, 2)):
        feed(m, x, 256)
        assert np.any(m.state != 0.0)
        m.reset()
        assert np.all(m.state == 0.0)
        bad = np.full((64, 2), np.nan, dtype=np.float32)
        bad[::2] = -np.inf
        m.process(bad)
        m.process(np.zeros((FS, 2), dtype=np.float32))
        assert not np.isnan(m.state).any()
    peak, rms, corr = PeakMeter(FS, 2), RmsMeter(FS, 2), CorrelationMeter(FS, 2)
    for m in (peak, rms, corr):
        m.process(np.zeros((256, 2), dtype=np.float32))
    assert np.all(peak.peak_dbfs == -np.inf) and np.all(peak.max_peak_dbfs == -np.inf)
    assert np.all(rms.rms_dbfs == -np.inf)
    assert corr.correlation == 0.0


def test_long_silence_flushes_state_to_zero():
    """No denormals linger: after a loud block and 10 s of silence the state is exactly 0."""
    m = RmsMeter(FS, 2, time_constant_ms=10.0)
    m.process(np.full((64, 2), 0.9, dtype=np.float32))
    m.process(np.zeros((10 * FS, 2), dtype=np.float32))
    assert np.all(m.state == 0.0)


@pytest.mark.parametrize("meter", (PeakMeter(FS, 2), RmsMeter(FS, 2), CorrelationMeter(FS, 2)),
                         ids=("peak", "rms", "correlation"))
def test_public_process_does_not_allocate(meter):
    block = np.ascontiguousarray(0.1 * np.random.default_rng(0).standard_normal((4096, 2)),
                                 dtype=np.float32)
    transient, retained = heap_bytes(lambda: meter.process(block), 300)
    assert retained < 1024, retained
    assert transient < 4096, transient  # one copied block would be 32 KiB


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="decay_db_per_s"):
        PeakMeter(FS, 2, decay_db_per_s=0.0)
    with pytest.raises(ValueError, match="hold_ms"):
        PeakMeter(FS, 2, hold_ms=-1.0)
    with pytest.raises(ValueError, match="time_constant_ms"):
        RmsMeter(FS, 2, time_constant_ms=float("nan"))
    with pytest.raises(ValueError, match="n_channels"):
        CorrelationMeter(FS, 1)
    with pytest.raises(ValueError, match="sample_rate_hz"):
        RmsMeter(0, 2)
    with pytest.raises(ValueError, match=r"\(frames, 2\)"):
        RmsMeter(FS, 2).process(np.zeros((64, 3), dtype=np.float32))
