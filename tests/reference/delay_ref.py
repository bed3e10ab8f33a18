"""Slow, obvious reference for the strips' input delay: plain Python, one sample at a time.

Written from the formula (Laakso et al. 1996, the windowed ideal fractional delay): a
delay of ``D = n0 + frac`` samples is ``y[t] = sum_r h_r x[t - n0 - r]`` over
``r = -(M - 1) .. M``, ``M = min(16, n0 + 1)``, ``h_r = sinc(r - frac) * kaiser((r - frac) / M)``
(beta 8) normalised to unit sum; a whole number of samples is a copy.  A change of delay
at sample ``t_change`` crossfades linearly from the old delay's output to the new one's
over ``fade`` samples.
"""
from __future__ import annotations

import math

import numpy as np

HALF = 16
BETA = 8.0


def taps(d):
    """``{r: h_r}`` for a delay of ``d`` samples (``{}`` with ``n0`` for a whole number)."""
    n0 = math.floor(d)
    frac = d - n0
    if frac == 0:
        return n0, {0: 1.0}
    m = min(HALF, n0 + 1)
    h = {}
    for r in range(-(m - 1), m + 1):
        x = r - frac
        win = np.i0(BETA * math.sqrt(max(0.0, 1 - (x / m) ** 2))) / np.i0(BETA)
        h[r] = float(np.sinc(x) * win)
    s = sum(h.values())
    return n0, {r: v / s for r, v in h.items()}


def delayed(x, d):
    """``x`` (1-D) delayed by ``d`` samples; samples before the start are 0."""
    n0, h = taps(d)
    y = np.zeros(len(x))
    for t in range(len(x)):
        acc = 0.0
        for r, v in h.items():
            i = t - n0 - r
            if 0 <= i < len(x):
                acc += v * float(np.float32(x[i]))
        y[t] = acc
    return y


def delay_change(x, d_old, d_new, t_change, fade):
    """``x`` delayed by ``d_old`` until ``t_change``, then crossfaded to ``d_new`` over
    ``fade`` samples (the old delay's share falls linearly from 1 at ``t_change`` to 0)."""
    a, b = delayed(x, d_old), delayed(x, d_new)
    y = a.copy()
    for t in range(t_change, len(x)):
        k = t - t_change
        g_old = (fade - k) / fade if k < fade else 0.0
        y[t] = b[t] + g_old * (a[t] - b[t])
    return y
