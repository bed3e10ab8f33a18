"""Slow, obvious versions of the mix-preparation kernels (edgemix.automix.prep).

``ar_coefficients_ref``: the autocorrelation method frame by frame with ``np.correlate``
and a Toeplitz solve (scipy) in place of Levinson-Durbin; ``matched_filter_ref``: the
prediction error and the matched filter as the sums they are, sample by sample.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import solve_toeplitz

from edgemix.automix.prep.clicks import WHITE_NOISE_CORRECTION


def ar_coefficients_ref(x, frame, order):
    hop = frame // 2
    n_frames = len(x) // hop + 2
    padded = np.concatenate([np.zeros(frame // 2), x, np.zeros(2 * frame)])
    win = np.hanning(frame + 2)[1:-1]
    out = np.zeros((n_frames, order + 1))
    for f in range(n_frames):
        w = padded[f * hop:f * hop + frame] * win
        r = np.correlate(w, w, mode="full")[frame - 1:frame + order]
        out[f, 0] = 1.0
        if r[0] <= 1e-30:
            continue
        col = r[:order].copy()
        col[0] *= 1.0 + WHITE_NOISE_CORRECTION
        out[f, 1:] = solve_toeplitz(col, -r[1:order + 1])
    return out


def matched_filter_ref(x, a, hop):
    """Residual and matched filter with the coefficients interpolated linearly between
    the frames centred at ``k hop`` and ``(k + 1) hop`` around each sample."""
    n, p = len(x), a.shape[1] - 1

    def coef(i):
        f0 = i // hop
        w = (i - f0 * hop) / hop
        return (1 - w) * a[f0] + w * a[f0 + 1]

    e = np.zeros(n)
    for i in range(n):
        ak = coef(i)
        e[i] = sum(ak[k] * x[i - k] for k in range(p + 1) if i - k >= 0)
    m = np.zeros(n)
    norms = np.zeros(n)
    for i in range(n):
        ak = coef(i)
        m[i] = sum(ak[k] * e[i + k] for k in range(p + 1) if i + k < n)
        norms[i] = np.sqrt(np.sum(ak ** 2))
    return e, m, norms
