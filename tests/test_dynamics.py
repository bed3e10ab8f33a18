"""Compressor and gate: static curves, ballistics and hysteresis against the formulas."""
import math

import numpy as np
import pytest

from edgemix.dsp.dynamics import Compressor, Gate
from tests.reference.strip_ref import comp_static_db, compressor

FS = 48000.0


def _settled_gr(level_db, **settings):
    """Gain reduction after 0.5 s of a DC input at ``level_db`` (peak detector sees |x|)."""
    c = Compressor(FS, attack_ms=1.0, release_ms=10.0, **settings)
    x = np.full(int(0.5 * FS), 10 ** (level_db / 20))
    _, gr = c.process(x)
    return gr[-1]


@pytest.mark.parametrize("ratio", [2.0, 4.0, 10.0])
@pytest.mark.parametrize("knee", [0.0, 6.0, 12.0])
def test_static_curve_within_0_1_db(ratio, knee):
    thr = -24.0
    for level in np.arange(-50.0, 0.1, 2.5):
        expected = level - comp_static_db(level, thr, ratio, knee)
        assert abs(_settled_gr(level, threshold_db=thr, ratio=ratio, knee_db=knee) - expected) < 0.1


def test_rms_detector_reads_a_sine_3db_below_its_peak():
    thr, ratio = -30.0, 4.0
    amp_db = -10.0
    t = np.arange(int(1.0 * FS)) / FS
    x = 10 ** (amp_db / 20) * np.sin(2 * np.pi * 1000 * t)
    c = Compressor(FS, threshold_db=thr, ratio=ratio, knee_db=0.0, attack_ms=5.0,
                   release_ms=50.0, detector_rms=1, rms_ms=100.0)
    _, gr = c.process(x)
    rms_db = amp_db - 10 * math.log10(2)
    assert abs(gr[-4800:].mean() - (rms_db - comp_static_db(rms_db, thr, ratio, 0.0))) < 0.1


def _time_to_fraction(gr, start, frac, rising):
    seg = gr[start:]
    final = seg[-1]
    first = gr[start - 1]
    target = first + frac * (final - first)
    idx = np.argmax(seg >= target) if rising else np.argmax(seg <= target)
    return idx / FS * 1000.0


@pytest.mark.parametrize("attack_ms,release_ms", [(5.0, 100.0), (20.0, 400.0), (1.0, 50.0)])
def test_attack_and_release_time_constants_within_5_percent(attack_ms, release_ms):
    # A step from below threshold to 20 dB above, then back: the gain reduction moves
    # exponentially; it covers 1 - 1/e of the step after one time constant.
    c = Compressor(FS, threshold_db=-30.0, ratio=20.0, knee_db=0.0, attack_ms=attack_ms,
                   release_ms=release_ms)
    n = int(2.5 * FS)
    x = np.concatenate([np.full(n, 10 ** (-50 / 20)), np.full(n, 10 ** (-10 / 20)),
                        np.full(n, 10 ** (-50 / 20))])
    _, gr = c.process(x)
    t_att = _time_to_fraction(gr[:2 * n], n, 1 - math.exp(-1), rising=True)
    t_rel = _time_to_fraction(gr, 2 * n, 1 - math.exp(-1), rising=False)
    assert abs(t_att - attack_ms) / attack_ms < 0.05
    assert abs(t_rel - release_ms) / release_ms < 0.05


def test_compressor_kernel_equals_slow_reference():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(6000) * np.repeat(rng.uniform(0.01, 1.0, 30), 200)
    for rms in (False, True):
        c = Compressor(FS, threshold_db=-18.0, ratio=3.0, knee_db=6.0, attack_ms=3.0,
                       release_ms=80.0, makeup_db=4.0, detector_rms=int(rms), rms_ms=5.0)
        y = np.concatenate([c.process(x[i:i + 333])[0] for i in range(0, len(x), 333)])
        ref, _ = compressor(x, FS, -18.0, 3.0, 6.0, 3.0, 80.0, 4.0, rms, 5.0)
        np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-12)


def _gate_ref(x, fs, thr, hyst, rng_db, ratio, att, hold, rel, env_ms=10.0):
    """Gate/expander with hysteresis and hold, the obvious way."""
    a_env = math.exp(-1 / (env_ms * 1e-3 * fs))
    a_o = math.exp(-1 / (att * 1e-3 * fs))
    a_c = math.exp(-1 / (rel * 1e-3 * fs))
    hold_n = math.floor(hold * 1e-3 * fs + 0.5)
    env, is_open, left, g = 0.0, False, 0, 0.0
    out = np.zeros(len(x))
    for n, v in enumerate(x):
        env = max(abs(v), a_env * env)
        lvl = 20 * math.log10(env) if env > 1e-10 else -200.0
        if lvl >= thr:
            is_open, left = True, hold_n
        elif is_open:
            if lvl < thr - hyst:
                if left > 0:
                    left -= 1
                else:
                    is_open = False
            else:
                left = hold_n
        target = 0.0 if is_open else (0.0 if lvl >= thr else max(-rng_db, (lvl - thr) * (ratio - 1)))
        g = (a_o if target > g else a_c) * g + (1 - (a_o if target > g else a_c)) * target
        out[n] = g
    return out


def test_gate_hysteresis_and_hold():
    thr, hyst, hold_ms, rel_ms, rng_db = -40.0, 4.0, 100.0, 20.0, 60.0
    seg = int(0.3 * FS)
    levels = [-20.0, -42.0, -60.0]  # open; inside the hysteresis band; below it
    x = np.concatenate([np.full(seg, 10 ** (l / 20)) for l in levels])
    g = Gate(FS, threshold_db=thr, hysteresis_db=hyst, range_db=rng_db, ratio=100.0,
             attack_ms=0.5, hold_ms=hold_ms, release_ms=rel_ms)
    _, gain = g.process(x)
    assert np.all(gain[seg // 2:2 * seg] > -0.01), "closed inside the hysteresis band"
    # after the drop below threshold - hysteresis it holds open for hold_ms ...
    drop = 2 * seg
    assert np.all(gain[drop:drop + int(hold_ms * 1e-3 * FS)] > -0.01)
    # ... then closes to the range with its release time
    assert gain[-1] < -rng_db + 0.5
    np.testing.assert_allclose(gain, _gate_ref(x, FS, thr, hyst, rng_db, 100.0, 0.5, hold_ms,
                                               rel_ms), atol=1e-9)


def test_expander_ratio_below_threshold():
    thr, ratio = -30.0, 2.0
    g = Gate(FS, threshold_db=thr, hysteresis_db=0.0, range_db=90.0, ratio=ratio,
             attack_ms=1.0, hold_ms=0.0, release_ms=5.0)
    for level in (-35.0, -45.0, -60.0):
        g.reset()
        _, gain = g.process(np.full(int(0.3 * FS), 10 ** (level / 20)))
        assert abs(gain[-1] - (level - thr) * (ratio - 1)) < 0.05


def test_bad_settings_name_the_fix():
    with pytest.raises(ValueError, match="out of range"):
        Compressor(FS, ratio=0.5)
    with pytest.raises(ValueError, match="unknown setting"):
        Gate(FS, treshold_db=-40)


def test_inline_log2_and_exp2_match_libm():
    """The strip's call-free dB conversions (see dynamics.fast_log2) against numpy."""
    import numba
    from edgemix.dsp.dynamics import _fast_db_to_gain, _fast_exp2, _fast_log2, _power_to_db

    @numba.njit
    def run(x, y, a, b, g, d):
        for i in range(x.shape[0]):
            a[i] = _fast_log2(x[i])
            b[i] = _fast_exp2(y[i])
            g[i] = _fast_db_to_gain(y[i])
            d[i] = _power_to_db(x[i])

    x = np.geomspace(1e-300, 1e300, 100001)
    y = np.linspace(-999.0, 1000.0, 100001)
    a, b, g, d = (np.empty_like(x) for _ in range(4))
    run(x, y, a, b, g, d)
    assert np.abs(a - np.log2(x)).max() < 1e-10
    assert np.abs(b / np.exp2(y) - 1).max() < 1e-9
    assert np.abs(g / 10 ** (y / 20) - 1).max() < 1e-9
    assert np.abs(d - 10 * np.log10(x)).max() < 1e-9
    assert _fast_exp2(-2000.0) == 0.0
