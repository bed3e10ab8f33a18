"""A slow, obvious reference of the master limiter (whole signal, Python loops).

The four steps of ``edgemix.dsp.limiter`` written the way one would explain them, with no
rings, wedges or running sums:

1. ``pk[n]``: the detector's and the meter's estimates of interval ``j = n - D`` (both
   channels, max); ``q[n] = min(1, c / pk[n])`` (``c``: the ceiling less the margin);
2. ``a[n] = min(q[n - M + 1 .. n])`` (samples before the start count as 1);
3. ``e[n] = a[n]`` if ``a[n] <= e[n-1]`` else ``a[n] + r (e[n-1] - a[n])`` (snapped to 1
   within 1e-9 once ``a`` is 1);
4. ``g[n] = mean(e[n - W + 1 .. n])`` (1 before the start);
then the in-circuit crossfade and ``y[n] = g_eff[n] x[n - latency]``.
"""
from __future__ import annotations

import math

import numpy as np

from tests.reference.truepeak_ref import estimates_ref


def limiter_ref(x, fs_hz, ceiling_dbtp, release_ms, phases, meter_phases, meter_raw_tap,
                lookahead_frames, hold_frames, margin_db, on=1.0, fade_ms=10.0, mix0=None,
                guard_limit=1e6):
    """Limit ``x`` ``(frames, 2)``; returns ``(y, g_eff)``.

    ``phases`` ``(L, taps)`` is the detector; ``meter_phases``/``meter_raw_tap`` the
    BS.1770 meter's interpolator, whose estimate for sample ``m`` is compared with the
    detector's for sample ``m + D - meter_raw_tap`` (the same interval).
    """
    x = np.array(x, dtype=np.float64)
    bad = ~(np.abs(x) <= guard_limit)
    x[bad] = 0.0
    n_frames = x.shape[0]
    taps = np.asarray(phases).shape[1]
    d = taps // 2
    w = lookahead_frames
    m = w + 2 * hold_frames
    latency = d + w + hold_frames - 1
    c_lin = 10.0 ** ((ceiling_dbtp - margin_db) / 20.0)
    r = math.exp(-1000.0 / (release_ms * fs_hz))

    shift = d - meter_raw_tap
    pk = np.zeros(n_frames)
    for ch in range(2):
        pk = np.maximum(pk, estimates_ref(x[:, ch], phases, d))
        meter = estimates_ref(x[:, ch], meter_phases, meter_raw_tap)
        pk[shift:] = np.maximum(pk[shift:], meter[: n_frames - shift])
    q = np.where(pk <= c_lin, 1.0, c_lin / np.maximum(pk, 1e-300))

    a = np.empty(n_frames)
    for n in range(n_frames):
        a[n] = min(1.0, q[max(0, n - m + 1): n + 1].min())

    e = np.empty(n_frames)
    prev = 1.0
    for n in range(n_frames):
        if a[n] <= prev:
            cur = a[n]
        else:
            cur = a[n] + r * (prev - a[n])
            if a[n] == 1.0 and 1.0 - cur < 1e-9:
                cur = 1.0
        e[n] = prev = cur

    g = np.empty(n_frames)
    for n in range(n_frames):
        window = e[max(0, n - w + 1): n + 1]
        g[n] = min(1.0, (window.sum() + (w - window.size)) / w)

    target = 1.0 if on >= 0.5 else 0.0
    mix = target if mix0 is None else mix0
    step = 1000.0 / (fade_ms * fs_hz)
    g_eff = np.empty(n_frames)
    for n in range(n_frames):
        if mix < target:
            mix = min(target, mix + step)
        elif mix > target:
            mix = max(target, mix - step)
        g_eff[n] = 1.0 - mix * (1.0 - g[n])

    delayed = np.zeros_like(x)
    if n_frames > latency:
        delayed[latency:] = x[: n_frames - latency]
    y = (g_eff[:, None] * delayed).astype(np.float32)
    return y, g_eff
