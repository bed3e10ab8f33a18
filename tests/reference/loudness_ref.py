"""Slow, obvious whole-signal loudness: ITU-R BS.1770-4 and EBU Tech 3341/3342, straight
from the formulas, for checking the streaming kernels in ``edgemix.dsp.loudness``.

Nothing here streams or quantises: the whole K-weighted signal is kept, every 400 ms block
and 3 s window is summed directly, gates are applied to the exact list of block loudness
values and the LRA percentiles come from the sorted list.

The K-weighting is derived here independently of the module under test: the BS.1770-4
48 kHz filters (Tables 1 and 2) are mapped back to the s-plane by the inverse bilinear
transform (``s = 2 fs (z - 1) / (z + 1)``, which is exact at 48 kHz) and forward again at
the wanted rate with ``scipy.signal.bilinear_zpk`` (no pre-warping).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.signal

#: BS.1770-4 Table 1 (pre-filter, 48 kHz): b0, b1, b2 and 1, a1, a2.
BS1770_PREFILTER_48K = ((1.53512485958697, -2.69169618940638, 1.19839281085285),
                        (1.0, -1.69065929318241, 0.73248077421585))
#: BS.1770-4 Table 2 (RLB high-pass, 48 kHz).
BS1770_RLB_48K = ((1.0, -2.0, 1.0), (1.0, -1.99004745483398, 0.99007225036621))

HOP_S = 0.1


def _retarget(b, a, fs: float):
    """Bilinear-transform a 48 kHz biquad to ``fs`` through its analogue prototype."""
    c48 = 2.0 * 48000.0
    z = np.roots(b)
    p = np.roots(a)
    s_z = c48 * (z - 1.0) / (z + 1.0)
    s_p = c48 * (p - 1.0) / (p + 1.0)
    # H_d(z) = k_a prod(c - s_z) / prod(c - s_p) * ...: invert for the analogue gain k_a.
    k_a = b[0] / a[0] * np.prod(c48 - s_p) / np.prod(c48 - s_z)
    zd, pd, kd = scipy.signal.bilinear_zpk(s_z, s_p, np.real(k_a), fs)
    bd, ad = scipy.signal.zpk2tf(zd, pd, kd)
    return np.real(bd), np.real(ad)


def k_weighting_sos(fs: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting stages at ``fs`` as ``[(b, a), (b, a)]``."""
    return [_retarget(*BS1770_PREFILTER_48K, fs), _retarget(*BS1770_RLB_48K, fs)]


def sos_from_coefficients(coef) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(10,)`` normalised ``(b0, b1, b2, a1, a2) x 2`` -> ``[(b, a), (b, a)]``."""
    c = np.asarray(coef, dtype=np.float64)
    return [(c[0:3], np.array([1.0, c[3], c[4]])), (c[5:8], np.array([1.0, c[8], c[9]]))]


def k_weight(x: np.ndarray, fs: float, sos=None) -> np.ndarray:
    """K-weight ``x`` (frames, channels) in float64, from rest."""
    y = np.asarray(x, dtype=np.float64)
    for b, a in (sos if sos is not None else k_weighting_sos(fs)):
        y = scipy.signal.lfilter(b, a, y, axis=0)
    return y


def _lufs(power: float) -> float:
    return -0.691 + 10.0 * math.log10(power) if power > 0 else -math.inf


def hop_frames(fs: float) -> int:
    return int(round(fs * HOP_S))


def window_loudness(x, fs, window_hops: int, weights=None, sos=None) -> np.ndarray:
    """Loudness of the window ending at each 100 ms boundary ``k * hop`` (k = 1, 2, ...).

    Windows that start before the signal are padded with silence (the meter has seen none
    yet).  ``window_hops`` = 4 gives the momentary, 30 the short-term loudness.
    """
    y = np.ascontiguousarray(k_weight(x, fs, sos).T)  # (channels, frames): fast row sums
    g = np.ones(y.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    hop = hop_frames(fs)
    length = window_hops * hop
    out = []
    for k in range(1, y.shape[1] // hop + 1):
        end = k * hop
        seg = y[:, max(0, end - length):end]
        # BS.1770-4 eq. 1 and 2: mean square per channel over the window, weighted sum.
        z = np.einsum("ij,ij->i", seg, seg) / length
        out.append(_lufs(float(np.sum(g * z))))
    return np.array(out)


def block_loudness(x, fs, window_hops: int, weights=None, sos=None) -> np.ndarray:
    """Loudness of every full window of ``window_hops`` hops on the 100 ms grid."""
    return window_loudness(x, fs, window_hops, weights, sos)[window_hops - 1:]


def integrated_loudness(x, fs, weights=None, sos=None) -> float:
    """Gated loudness, BS.1770-4 eq. 3-7, from the exact list of 400 ms blocks."""
    lj = block_loudness(x, fs, 4, weights, sos)
    pj = 10.0 ** ((lj + 0.691) / 10.0)
    above_abs = lj > -70.0  # eq. 5
    if not above_abs.any():
        return -math.inf
    gamma_r = _lufs(float(np.mean(pj[above_abs]))) - 10.0  # eq. 6
    keep = above_abs & (lj > gamma_r)  # eq. 7
    return _lufs(float(np.mean(pj[keep]))) if keep.any() else -math.inf


def _nearest_rank(sorted_values: np.ndarray, p: float) -> float:
    return float(sorted_values[int(math.floor((len(sorted_values) - 1) * p + 0.5))])


def loudness_range(x, fs, weights=None, sos=None) -> tuple[float, float, float]:
    """EBU Tech 3342: ``(LRA, low, high)`` from the 3 s short-term values every 100 ms."""
    st = block_loudness(x, fs, 30, weights, sos)
    st = st[st >= -70.0]
    if st.size == 0:
        return 0.0, -math.inf, -math.inf
    gate = 10.0 * np.log10(np.mean(10.0 ** (st / 10.0))) - 20.0
    st = np.sort(st[st >= gate])
    low = _nearest_rank(st, 0.10)
    high = _nearest_rank(st, 0.95)
    return high - low, low, high
