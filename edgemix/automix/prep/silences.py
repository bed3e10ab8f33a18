"""Silences: the stretches where a channel carries only noise or bleed.

A channel's level is measured as the RMS over ``WINDOW_MS`` windows every ``HOP_MS``
(a "frame").  Two thresholds with hysteresis, set from the channel's own level
distribution:

* the **close threshold**: ``RANGE_DB`` under the channel's active level (the
  ``ACTIVE_PERCENTILE`` of its frame levels: what the source delivers when it plays); on a
  noisy channel, whose noise floor (the ``NOISE_PERCENTILE``) comes within ``RANGE_DB``,
  ``NOISE_MARGIN_DB`` over that floor instead, but never closer than ``MIN_RANGE_DB`` to
  the active level (a channel that plays all the time has its quiet passages there, not
  noise); frames at or below ``ABSOLUTE_DBFS`` (BS.1770's -70 absolute gate) always
  qualify;
* the **open threshold**, ``HYSTERESIS_DB`` above it.

Playing is a run of frames above the close threshold (a Schmitt trigger: it must reach the
open threshold to count as the source playing, and it lasts until the level falls back
under the close threshold).  Every frame above the close threshold is kept, whatever the
hysteresis says: nothing a microphone delivered above the close threshold is ever cut.
Playing runs are widened by ``PRE_PAD_MS`` before (the breath before a phrase, the
pick before a note) and ``POST_PAD_MS`` after (tails, decays, a room), runs that never
reach the open threshold (a bump of bleed) only by the fade; what remains is silent when
it lasts at least ``MIN_SILENCE_MS`` (shorter gaps are the music's own rests).

Offline, :func:`gate` writes the stem with its silences at zero, each entered and left by
a raised-cosine fade of ``FADE_MS`` that lies inside the silent region, so the audio
outside it is untouched (the pads are what keep breaths and tails).  Live, the same
decision is the channel gate (``gate_*`` in the schema) driven by the policy; see
:func:`gate_settings`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WINDOW_MS = 5.0
HOP_MS = 1.0
ACTIVE_PERCENTILE = 95.0
NOISE_PERCENTILE = 10.0
RANGE_DB = 30.0
MIN_RANGE_DB = 20.0
NOISE_MARGIN_DB = 6.0
ABSOLUTE_DBFS = -70.0
HYSTERESIS_DB = 6.0
PRE_PAD_MS = 200.0
POST_PAD_MS = 300.0
MIN_SILENCE_MS = 500.0
FADE_MS = 10.0
#: Level of a digitally silent frame (dBFS): a floor, so no log of zero.
FLOOR_DBFS = -150.0


@dataclass(frozen=True)
class Silences:
    """Silent regions of one channel and the evidence.

    ``regions_s``: ``(n, 2)`` start/end in seconds; ``close_dbfs``/``open_dbfs``: the
    thresholds used; ``active_dbfs``/``noise_dbfs``: the levels they came from;
    ``loudest_cut_dbfs``: the loudest frame inside any region (below ``close_dbfs`` by
    construction; -inf with no region).
    """

    regions_s: np.ndarray
    close_dbfs: float
    open_dbfs: float
    active_dbfs: float
    noise_dbfs: float
    loudest_cut_dbfs: float
    sample_rate_hz: float

    def __len__(self) -> int:
        return len(self.regions_s)

    @property
    def seconds(self) -> float:
        return float(np.sum(self.regions_s[:, 1] - self.regions_s[:, 0])) if len(self) else 0.0

    def samples(self) -> np.ndarray:
        """``(n, 2)`` int64 start/stop (exclusive) in samples."""
        return np.round(self.regions_s * self.sample_rate_hz).astype(np.int64)


def frame_levels_dbfs(x: np.ndarray, sample_rate_hz: float,
                      window_ms: float = WINDOW_MS, hop_ms: float = HOP_MS):
    """``(levels_dbfs, hop, window)``: RMS level of the ``window`` samples centred on each
    multiple of ``hop`` (frame ``k`` covers ``[k hop - window / 2, k hop + window / 2)``)."""
    hop = max(int(round(hop_ms * 1e-3 * sample_rate_hz)), 1)
    win = max(int(round(window_ms * 1e-3 * sample_rate_hz)), 1)
    c = np.concatenate([[0.0], np.cumsum(np.asarray(x, dtype=np.float64) ** 2)])
    centres = np.arange(0, len(x) + 1, hop)
    lo = np.clip(centres - win // 2, 0, len(x))
    hi = np.clip(centres - win // 2 + win, 0, len(x))
    power = (c[hi] - c[lo]) / win
    return 10.0 * np.log10(np.maximum(power, 10.0 ** (FLOOR_DBFS / 10.0))), hop, win


def find_silences(x, sample_rate_hz: float, *, range_db: float = RANGE_DB,
                  hysteresis_db: float = HYSTERESIS_DB, pre_pad_ms: float = PRE_PAD_MS,
                  post_pad_ms: float = POST_PAD_MS, min_silence_ms: float = MIN_SILENCE_MS,
                  fade_ms: float = FADE_MS) -> Silences:
    """The silent regions of one channel ``x`` (1-D).  See the module docstring."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"one channel at a time: got an array of shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the signal holds NaN or Inf samples: replace them first")
    sr = float(sample_rate_hz)
    levels, hop, win = frame_levels_dbfs(x, sr)
    active = float(np.percentile(levels, ACTIVE_PERCENTILE))
    noise = float(np.percentile(levels, NOISE_PERCENTILE))
    close = max(active - range_db, min(noise + NOISE_MARGIN_DB, active - MIN_RANGE_DB),
                ABSOLUTE_DBFS)
    opened = close + hysteresis_db
    n = len(x)
    # keep[i]: sample i is kept (not silent); built from runs of frames above `close`
    keep = np.zeros(n + 1, dtype=np.int64)          # difference array of kept spans
    above = levels > close
    pre = int(round(pre_pad_ms * 1e-3 * sr))
    post = int(round(post_pad_ms * 1e-3 * sr))
    guard = int(round(fade_ms * 1e-3 * sr))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], above.astype(np.int8), [0]])))
    for k0, k1 in zip(edges[::2], edges[1::2]):
        # the samples the frames k0 .. k1-1 cover
        s0 = max(k0 * hop - win // 2, 0)
        s1 = min((k1 - 1) * hop - win // 2 + win, n)
        seeded = bool(np.any(levels[k0:k1] >= opened))
        a = max(s0 - (pre if seeded else guard), 0)
        b = min(s1 + (post if seeded else guard), n)
        keep[a] += 1
        keep[b] -= 1
    kept = np.cumsum(keep[:n]) > 0
    edges = np.flatnonzero(np.diff(np.concatenate([[1], kept.astype(np.int8), [1]])))
    min_len = int(round(min_silence_ms * 1e-3 * sr))
    regions = [(s, t) for s, t in zip(edges[::2], edges[1::2]) if t - s >= min_len]
    loudest = -math.inf
    for s, t in regions:
        k0 = -(-(s + win // 2) // hop)            # frames wholly inside [s, t)
        k1 = (t + win // 2 - win) // hop + 1
        if k1 > k0:
            loudest = max(loudest, float(levels[k0:k1].max()))
    arr = np.asarray(regions, dtype=np.float64).reshape(-1, 2) / sr
    return Silences(arr, float(close), float(opened), active, noise, loudest, sr)


def gate(x, silences: Silences, fade_ms: float = FADE_MS) -> np.ndarray:
    """A copy of ``x`` (1-D or ``(frames, channels)``) with each silent region at zero,
    entered and left by a raised-cosine fade of ``fade_ms`` inside the region."""
    x = np.asarray(x)
    g = np.ones(x.shape[0])
    f = max(int(round(fade_ms * 1e-3 * silences.sample_rate_hz)), 1)
    ramp = 0.5 * (1.0 + np.cos(np.pi * (np.arange(1, f + 1) / (f + 1))))   # 1 -> 0
    for s, t in silences.samples():
        s, t = max(int(s), 0), min(int(t), len(g))
        if t - s < 2 * f:
            continue
        g[s:t] = 0.0
        g[s:s + f] = ramp
        g[t - f:t] = ramp[::-1]
    return (x * (g if x.ndim == 1 else g[:, None])).astype(x.dtype, copy=False)
