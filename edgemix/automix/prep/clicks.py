"""Clicks and pops: found to the sample in an AR model's residual, repaired by least-squares
AR interpolation.

Detection (Vaseghi & Rayner 1990, "Detection and suppression of impulsive noise in speech
communication systems", IEE Proc. I 137(1); Godsill & Rayner 1998, *Digital Audio
Restoration*, ch. 5): music is well predicted by an autoregressive (AR) model of order
``p`` fitted over ~20 ms; an impulse is not.  Per frame the AR coefficients ``a`` (``a[0] =
1``) come from the autocorrelation method (Levinson-Durbin on a Hann-windowed frame); the
prediction error ``e[n] = sum_k a[k] x[n-k]`` whitens the music and turns an impulse of
height ``d`` at ``n0`` into ``d a[k]`` at ``n0 + k``.  The matched filter ``m[n] = sum_k
a[k] e[n+k]`` collects it back into one peak ``d |a|^2`` at ``n0`` (the least-squares
estimate of ``d`` is ``m[n0] / |a|^2``), with noise ``|a| sigma_e`` around it.

Threshold: ``|m[n]| > T |a| sigma`` where ``sigma`` is a robust local scale of the residual
(the upper quartile of ``|m| / |a|`` over short blocks: a click moves a few samples of a
block, not its quartile), taken as the *largest* over the blocks around ``n`` on both
sides.  A drum onset is what
breaks the model for a few milliseconds, not for one sample: its residual stays high for
the blocks after it, so the scale around it rises with it and the onset does not fire,
while a click in the decay of the same hit, with quiet blocks either side, does.

Extent (pops longer than a sample): from the peak the estimated impulse is subtracted from
``m`` (its response is ``d r_a[j]``, the autocorrelation of ``a``), and the next largest
peak within ``MAX_CLICK_MS`` is taken while it still passes the threshold (a greedy
matching pursuit); the damaged span is the hull of those samples.

Repair (Janssen, Veldhuis & Vries 1986, "Adaptive interpolation of discrete-time signals
that can be modeled as autoregressive processes", IEEE Trans. ASSP 34(2); Godsill & Rayner
1998, sec. 5.2): the damaged samples ``x_u`` are the ones that minimise the AR prediction
error energy of the segment around them, ``x_u = -(A_u^T A_u)^-1 A_u^T A_k x_k`` with ``A``
the segment's prediction-error (convolution) matrix split into unknown and known columns;
the AR model is fitted on the context with the gap filled and refitted once on the repaired
signal (Janssen's iteration).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgemix.dsp._jit import kernel

#: AR model order: 20 - 40 at 44.1/48 kHz is the range Godsill & Rayner use for music.
AR_ORDER = 32
#: Analysis frame (~21 ms at 48 kHz, a power of two) and its hop (half a frame).
FRAME_S = 0.02
#: Detection threshold in robust standard deviations of the matched-filter output.  A
#: Gaussian residual would allow far less (|z| > 6 once in 1e9 samples), but music's
#: residual is heavier-tailed: note onsets on a ringing string, a drum's decay.  Chosen on
#: sampled instruments (tests/test_prep_clicks.py): under one false alarm per minute of a
#: band's mix with drums, recall 1.0 on tonal stems at -10 dB re RMS.
THRESHOLD_SIGMA = 8.0
#: The robust scale is taken over blocks of this share of a frame (128 samples at 48 kHz:
#: a 1 ms pop and its response touch fewer than a quarter of one), the largest within
#: ``SCALE_REACH`` blocks either side.
SCALE_BLOCKS_PER_FRAME = 8
SCALE_REACH = 1
#: The block statistic is the upper quartile of ``|z|`` (a click touches a few samples of
#: a block, an onset's burst a quarter of it or more), scaled to a standard deviation:
#: a Gaussian's upper quartile of ``|z|`` is 1.1503 sigma.
SCALE_QUANTILE = 75.0
_QUANTILE_SIGMA = 1.1503
#: Longest damage one click may span (a pop); longer is not a click.
MAX_CLICK_MS = 1.0
#: Frames quieter than this (dBFS RMS) are not searched: no music to predict.
SILENCE_DBFS = -90.0
#: Relative regularisation of the autocorrelation (white-noise correction, 0.1 %: keeps
#: Levinson stable on tonal frames without smearing a 60 dB prediction gain).
WHITE_NOISE_CORRECTION = 1e-3


@dataclass(frozen=True)
class Clicks:
    """Clicks found in one channel.

    ``start``/``stop``: the damaged span of each click in samples (``stop`` exclusive);
    ``peak``: the sample of its largest impulse; ``height``: that impulse's estimated
    amplitude (full scale = 1); ``score``: how far over the noise it stood, in robust
    standard deviations (the evidence); ``sample_rate_hz``: to convert to seconds.
    """

    start: np.ndarray
    stop: np.ndarray
    peak: np.ndarray
    height: np.ndarray
    score: np.ndarray
    sample_rate_hz: float

    def __len__(self) -> int:
        return len(self.peak)

    @property
    def times_s(self) -> np.ndarray:
        return self.peak / float(self.sample_rate_hz)


def frame_length(sample_rate_hz: float) -> int:
    """The analysis frame: the power of two nearest ``FRAME_S`` (1024 at 44.1/48 kHz)."""
    return int(2 ** round(math.log2(FRAME_S * sample_rate_hz)))


def _check_mono(x, sample_rate_hz) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"one channel at a time: got an array of shape {x.shape}")
    if not (math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
        raise ValueError(f"sample rate {sample_rate_hz!r}: give a positive number of Hz")
    x = np.ascontiguousarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("the signal holds NaN or Inf samples: replace them first")
    return x


def ar_frames(x: np.ndarray, frame: int, order: int = AR_ORDER) -> np.ndarray:
    """AR coefficients ``(n_frames, order + 1)`` (``a[:, 0] = 1``) of the frames centred at
    ``k * frame / 2``, by the autocorrelation method on Hann-windowed frames."""
    hop = frame // 2
    n_frames = len(x) // hop + 2      # every sample has a frame centred within hop / 2
    padded = np.concatenate([np.zeros(frame // 2), x, np.zeros(2 * frame)])
    r = np.zeros((n_frames, order + 1))
    _autocorrelation(padded, np.hanning(frame + 2)[1:-1], hop, r)
    a = np.zeros((n_frames, order + 1))
    _levinson(r, WHITE_NOISE_CORRECTION, a)
    return a


@kernel
def _autocorrelation(padded, window, hop, r):
    """Lags ``0 .. r.shape[1] - 1`` of each windowed frame ``padded[k hop : k hop + len(window)]``."""
    n_frames, p1 = r.shape
    frame = window.shape[0]
    w = np.zeros(frame + p1)           # zero tail: every lag runs over the whole frame
    for f in range(n_frames):
        s = f * hop
        for i in range(frame):
            w[i] = padded[s + i] * window[i]
        for k in range(p1):
            r[f, k] = 0.0
        for i in range(frame):         # lags innermost: independent sums, vectorised
            wi = w[i]
            for k in range(p1):
                r[f, k] += wi * w[i + k]


@kernel
def _levinson(r, wnc, a):
    """Levinson-Durbin per row of ``r`` (autocorrelation lags 0..p) into ``a`` (p + 1)."""
    n_frames, p1 = r.shape
    p = p1 - 1
    tmp = np.empty(p1)
    for f in range(n_frames):
        err = r[f, 0] * (1.0 + wnc)
        a[f, 0] = 1.0
        for k in range(1, p1):
            a[f, k] = 0.0
        if err <= 1e-30:          # a silent frame: the identity filter
            continue
        for i in range(1, p + 1):
            acc = r[f, i]
            for j in range(1, i):
                acc += a[f, j] * r[f, i - j]
            k_i = -acc / err
            for j in range(1, i):
                tmp[j] = a[f, j] + k_i * a[f, i - j]
            for j in range(1, i):
                a[f, j] = tmp[j]
            a[f, i] = k_i
            err *= 1.0 - k_i * k_i
            if err <= 1e-30:
                break


@kernel
def _residual_matched(x, a, hop, e, m, norms):
    """Prediction error ``e``, matched-filter output ``m`` and coefficient norm ``norms``
    of ``x`` under per-frame AR coefficients ``a`` (frame ``k`` centred at ``k hop``),
    interpolated linearly between the two frames around each sample: a filter switched
    at a hop boundary would itself put a step in the residual."""
    n = x.shape[0]
    p1 = a.shape[1]
    for i in range(n):
        f0 = i // hop
        w = (i - f0 * hop) / hop
        a0 = a[f0]
        a1 = a[f0 + 1]
        acc0 = 0.0
        acc1 = 0.0
        for k in range(min(p1, i + 1)):
            acc0 += a0[k] * x[i - k]
            acc1 += a1[k] * x[i - k]
        e[i] = (1.0 - w) * acc0 + w * acc1
    for i in range(n):
        f0 = i // hop
        w = (i - f0 * hop) / hop
        a0 = a[f0]
        a1 = a[f0 + 1]
        acc = 0.0
        nn = 0.0
        for k in range(p1):
            ck = (1.0 - w) * a0[k] + w * a1[k]
            nn += ck * ck
        for k in range(min(p1, n - i)):
            acc += ((1.0 - w) * a0[k] + w * a1[k]) * e[i + k]
        m[i] = acc
        norms[i] = np.sqrt(nn)


def matched_filter(x: np.ndarray, sample_rate_hz: float, order: int = AR_ORDER):
    """``(e, m, a, norms)``: the prediction error and the matched-filter output per sample,
    the per-frame AR coefficients and each sample's ``|a|`` (``m / norms**2`` is the LS
    click height)."""
    frame = frame_length(sample_rate_hz)
    hop = frame // 2
    a = ar_frames(x, frame, order)
    e = np.empty_like(x)
    m = np.empty_like(x)
    norms = np.empty_like(x)
    _residual_matched(x, a, hop, e, m, norms)
    return e, m, a, norms


def coefficients_at(a: np.ndarray, n: int, hop: int) -> np.ndarray:
    """The interpolated AR coefficients :func:`matched_filter` used at sample ``n``."""
    f0 = n // hop
    w = (n - f0 * hop) / hop
    return (1.0 - w) * a[f0] + w * a[f0 + 1]


def robust_scale(z: np.ndarray, block: int, reach: int = SCALE_REACH,
                 q: float = SCALE_QUANTILE, sigma_per_q: float = _QUANTILE_SIGMA) -> np.ndarray:
    """Per sample: the ``q`` percentile (order statistic) of ``|z|`` over blocks of ``block`` samples, the
    largest over the ``reach`` blocks either side, over ``sigma_per_q`` (so a Gaussian
    reads its standard deviation)."""
    n = len(z)
    nb = -(-n // block)
    padded = np.zeros(nb * block)
    padded[:n] = np.abs(z)
    kq = min(int(q / 100.0 * block), block - 1)
    stat = np.partition(padded.reshape(nb, block), kq, axis=1)[:, kq]
    if n % block:           # the last, partial block: its own samples only
        tail = np.abs(z[(nb - 1) * block:])
        stat[-1] = np.partition(tail, min(int(q / 100.0 * len(tail)), len(tail) - 1))[
            min(int(q / 100.0 * len(tail)), len(tail) - 1)]
    wide = np.pad(stat, reach, mode="edge")
    top = np.max(np.stack([wide[k:k + nb] for k in range(2 * reach + 1)]), axis=0)
    return np.repeat(top, block)[:n] / sigma_per_q


def detect_clicks(x, sample_rate_hz: float, *, threshold_sigma: float = THRESHOLD_SIGMA,
                  order: int = AR_ORDER) -> Clicks:
    """Find the clicks and pops in one channel ``x`` (1-D, any float dtype).

    Returns :class:`Clicks` (empty when there are none).  ``ValueError`` for a signal that
    is not 1-D or holds NaN/Inf.
    """
    x = _check_mono(x, sample_rate_hz)
    empty = np.zeros(0, dtype=np.int64)
    if len(x) < 4 * (order + 1):
        return Clicks(empty, empty, empty, np.zeros(0), np.zeros(0), float(sample_rate_hz))
    frame = frame_length(sample_rate_hz)
    m, a, norms = matched_filter(x, sample_rate_hz, order)[1:]
    # d_hat / (sigma_e / |a|): the click height over its standard error, per sample
    z = m / norms
    block = max(frame // SCALE_BLOCKS_PER_FRAME, 1)
    width = max(int(round(MAX_CLICK_MS * 1e-3 * sample_rate_hz)), 1)
    scale = robust_scale(z, block)
    floor = 10.0 ** (SILENCE_DBFS / 20.0)
    score = np.abs(z) / np.maximum(scale, floor)
    # the first samples have no history to be predicted from, the last no future for the
    # matched filter: neither is evidence of anything
    score[:order] = 0.0
    score[-order:] = 0.0
    cand = np.flatnonzero(score > threshold_sigma)
    if not len(cand):
        return Clicks(empty, empty, empty, np.zeros(0), np.zeros(0), float(sample_rate_hz))
    # groups of candidates closer than the click's own response (p samples)
    breaks = np.flatnonzero(np.diff(cand) > order) + 1
    hop = frame // 2
    starts, stops, peaks, heights, scores = [], [], [], [], []
    for g in np.split(cand, breaks):
        n0 = int(g[np.argmax(score[g])])
        span = _pursue(m, scale * norms, coefficients_at(a, n0, hop), n0, width,
                       threshold_sigma)
        starts.append(min(span))
        stops.append(max(span) + 1)
        peaks.append(n0)
        heights.append(m[n0] / norms[n0] ** 2)
        scores.append(score[n0])
    as_i = lambda v: np.asarray(v, dtype=np.int64)
    return Clicks(as_i(starts), as_i(stops), as_i(peaks), np.asarray(heights),
                  np.asarray(scores), float(sample_rate_hz))


def _pursue(m, noise, a, n0, width, threshold_sigma) -> list[int]:
    """The samples of one click by greedy matching pursuit from its peak ``n0``: remove the
    estimated impulse's matched-filter response ``d r_a[j]`` and take the next peak within
    ``width`` samples while it passes the threshold."""
    p = len(a) - 1
    ra = np.correlate(a, a, mode="full")           # r_a[j], j = -p .. p
    lo, hi = max(n0 - width - p, 0), min(n0 + width + p + 1, len(m))
    local = m[lo:hi].copy()
    sig = noise[lo:hi]
    e2 = float(ra[p])
    taken = [n0]
    pos = n0
    for _ in range(width):
        d = local[pos - lo] / e2
        j0, j1 = max(pos - p, lo), min(pos + p + 1, hi)
        local[j0 - lo:j1 - lo] -= d * ra[j0 - pos + p:j1 - pos + p]
        w0, w1 = max(n0 - width, lo), min(n0 + width + 1, hi)
        s = np.abs(local[w0 - lo:w1 - lo]) / np.maximum(sig[w0 - lo:w1 - lo], 1e-30)
        k = int(np.argmax(s))
        if s[k] <= threshold_sigma:
            break
        pos = w0 + k
        taken.append(pos)
    return taken


# --------------------------------------------------------------------------------------
# Repair


def repair_clicks(x, clicks: Clicks, *, order: int = AR_ORDER, iterations: int = 2
                  ) -> np.ndarray:
    """A repaired copy of ``x``: each click's damaged span replaced by its least-squares AR
    interpolation (Janssen, Veldhuis & Vries 1986).  ``x`` is not modified."""
    x = _check_mono(x, clicks.sample_rate_hz)
    y = x.copy()
    ctx = frame_length(clicks.sample_rate_hz)
    for s, t in zip(clicks.start, clicks.stop):
        interpolate_gap(y, int(s), int(t), order=order, context=ctx, iterations=iterations)
    return y.astype(np.asarray(x).dtype, copy=False)


def interpolate_gap(y: np.ndarray, start: int, stop: int, *, order: int = AR_ORDER,
                    context: int = 1024, iterations: int = 2) -> None:
    """Replace ``y[start:stop]`` in place by LSAR interpolation from ``context`` samples on
    each side (an AR model of ``order`` fitted there; refitted ``iterations - 1`` times on
    the repaired signal)."""
    n = len(y)
    start, stop = max(start, 0), min(stop, n)
    if stop <= start:
        return
    c0, c1 = max(start - context, 0), min(stop + context, n)
    p = min(order, max((c1 - c0) // 4, 1))
    # first guess: a straight line across the gap (Janssen's algorithm starts from any)
    left = y[start - 1] if start > 0 else (y[stop] if stop < n else 0.0)
    right = y[stop] if stop < n else left
    y[start:stop] = np.linspace(left, right, stop - start + 2)[1:-1]
    seg0, seg1 = max(start - 2 * p, 0), min(stop + 2 * p, n)
    unknown = np.arange(start, stop) - seg0
    L = seg1 - seg0
    known = np.setdiff1d(np.arange(L), unknown)
    for _ in range(max(iterations, 1)):
        ctx = y[c0:c1] * np.hanning(c1 - c0 + 2)[1:-1]
        r = np.correlate(ctx, ctx, mode="full")[len(ctx) - 1:len(ctx) + p]
        a = np.zeros((1, p + 1))
        _levinson(np.ascontiguousarray(r[None, :]), WHITE_NOISE_CORRECTION, a)
        a = a[0]
        rows = L - p
        if rows <= 0:
            return
        A = np.zeros((rows, L))
        for k in range(p + 1):
            A[np.arange(rows), np.arange(rows) + p - k] = a[k]
        seg = y[seg0:seg1]
        Au, Ak = A[:, unknown], A[:, known]
        xu = np.linalg.lstsq(Au, -Ak @ seg[known], rcond=None)[0]
        y[start:stop] = xu
