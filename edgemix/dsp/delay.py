"""The strips' input delay: a fractional delay per channel, for time alignment.

Two mics of one source (kick in and out, snare top and bottom, a guitar's close and room
mics) are aligned by delaying the earlier one (``delay_ms``, from
``edgemix.automix.prep.align``); this stage runs first in every strip, right after the
input guard, so the alignment holds through the whole chain.

**Interpolation.**  A delay of ``D = n0 + frac`` samples is a windowed-sinc FIR
(Laakso, Valimaki, Karjalainen & Laine, "Splitting the unit delay", IEEE SPM 1996, sec.
3.3: the ideal fractional-delay filter ``sinc(n - D)`` truncated by a window), with a
Kaiser window (beta 8) over ``2 M`` taps, ``M = min(HALF_TAPS, n0 + 1)``, normalised to
unit gain at DC.  With the full 32 taps (a delay of 15 samples or more, 0.31 ms at 48 kHz)
the error is below -76 dB up to 0.4 of the sample rate (19.2 kHz at 48 kHz), so an aligned
pair nulls far below -60 dB.  Shorter delays keep the filter causal with fewer taps, and
less accuracy at high frequencies; :func:`edgemix.automix.prep.align.corrections` lifts
every aligned group above ``HALF_TAPS - 1`` samples for that reason.  A whole number of
samples is a plain copy, and 0 leaves the channel untouched (bit for bit).

**Changes are crossfaded.**  A moving read pointer would sweep the pitch (a Doppler
glide).  Instead, at a control tick (the strips' ``TICK`` grid of the absolute sample
clock, so any block size gives the same output), a new target starts a linear crossfade
from the old delay's output to the new one's over ``delay_ms``'s ``smoothing_ms``; a target
arriving meanwhile waits for the next tick after the fade.  After a reset the delay starts
at its target, without a fade.

State lives in :class:`DelayState` (one stage of the console's arena); the kernel only loops.
The line holds float32: the stage sees the guarded input, which is float32 audio, so a
whole-sample delay is exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgemix.dsp._jit import kernel
from edgemix.dsp.arena import _f32_2, _f64_1, _f64_2, _f64_3, _i64_1
from edgemix.dsp.strip import TICK
from edgemix.params import CH, CHANNEL_SPECS, MAX_DELAY_MS

#: Half the FIR length: 32 taps at full accuracy.
HALF_TAPS = 16
#: Kaiser window shape (beta): -76 dB error to 0.4 fs with 32 taps.
KAISER_BETA = 8.0

# Per-channel state rows: current and old delay (samples; NaN = snap at the next tick),
# their whole-sample parts and half-widths (0 = whole samples, a copy), the samples left
# of a crossfade.
S_CUR, S_OLD, S_N0_CUR, S_N0_OLD, S_M_CUR, S_M_OLD, S_LEFT = range(7)
N_STATE = 7


def line_length(fs_hz: float) -> int:
    """Ring length (a power of two) for the longest delay and the filter's reach."""
    need = int(math.ceil(MAX_DELAY_MS * 1e-3 * fs_hz)) + HALF_TAPS + 2
    return 1 << int(math.ceil(math.log2(need)))


@dataclass
class DelayState:
    """Every array the delay stage reads or writes, allocated once per console."""

    line: np.ndarray   # (C, 2 L) float32: the input ring, mirrored so a window never wraps
    taps: np.ndarray   # (2, C, 2 HALF_TAPS): the current delay's FIR, the old one's
    st: np.ndarray     # (N_STATE, C)
    mask: int          # L - 1
    fade_len: int      # crossfade length in samples
    fs_hz: float

    @classmethod
    def allocate(cls, n_channels: int, fs_hz: float) -> "DelayState":
        n = line_length(fs_hz)
        fade = max(1, int(round(CHANNEL_SPECS["delay_ms"].smoothing_ms * 1e-3 * fs_hz)))
        s = cls(line=np.zeros((n_channels, 2 * n), np.float32),
                taps=np.zeros((2, n_channels, 2 * HALF_TAPS)),
                st=np.zeros((N_STATE, n_channels)), mask=n - 1, fade_len=fade,
                fs_hz=float(fs_hz))
        s.reset()
        return s

    def reset(self) -> None:
        """Empty the line; the next tick takes every channel's target without a fade."""
        self.line[:] = 0.0
        self.taps[:] = 0.0
        self.st[:] = 0.0
        self.st[S_CUR] = np.nan


@kernel(inline="always")
def _delay_views(table, s):
    """A :class:`DelayState` in an arena, in its field order."""
    return (_f32_2(table, s, 0), _f64_3(table, s, 1), _f64_2(table, s, 2),
            _i64_1(table, s, 3)[0], _i64_1(table, s, 4)[0], _f64_1(table, s, 5)[0])


@kernel
def _bessel_i0(x):
    """Modified Bessel function of the first kind, order 0 (its power series)."""
    term = 1.0
    total = 1.0
    q = 0.25 * x * x
    for k in range(1, 60):
        term *= q / (k * k)
        total += term
        if term < 1e-17 * total:
            break
    return total


@kernel
def _design(d, taps, c, which):
    """FIR of a delay of ``d`` samples into ``taps[which, c]``, read over the line from
    the oldest sample of the window: returns ``(n0, M)`` (``M`` = 0: a whole-sample copy).
    Tap ``i`` weighs the sample ``t - n0 - M + i``, at distance ``r = M - i`` past
    ``t - n0``: ``sinc(r - frac)`` times the Kaiser window at ``(r - frac) / M``."""
    n0 = math.floor(d)
    frac = d - n0
    row = taps[which, c]
    for i in range(row.shape[0]):
        row[i] = 0.0
    if frac == 0.0:
        return n0, 0
    m = min(HALF_TAPS, n0 + 1)
    i0b = _bessel_i0(KAISER_BETA)
    total = 0.0
    for i in range(2 * m):
        x = (m - i) - frac
        u = x / m
        win = _bessel_i0(KAISER_BETA * math.sqrt(max(0.0, 1.0 - u * u))) / i0b
        px = math.pi * x
        h = win * (math.sin(px) / px if x != 0.0 else 1.0)
        row[i] = h
        total += h
    for i in range(2 * m):
        row[i] /= total
    return n0, m


@kernel(inline="always")
def _tap(line_c, taps_row, t, n0, m, mask):
    """One output sample of a delay: a copy (m == 0) or the FIR over the mirrored ring."""
    if m == 0:
        return np.float64(line_c[(t - n0) & mask])
    s = (t - n0 - m) & mask
    acc = 0.0
    for i in range(2 * m):
        acc += taps_row[i] * line_c[s + i]
    return acc


@kernel
def _delay_block(work, n_frames, clock, p, line, taps, st, mask, fade_len, fs_hz):
    """Delay every channel of ``work`` ``(>= n_frames, C)`` in place by its
    ``delay_ms`` target, crossfading changes; ``clock`` is the absolute index of frame 0."""
    n_ch = work.shape[1]
    half = mask + 1
    to_samples = 1e-3 * fs_hz
    i = 0
    while i < n_frames:
        t0 = clock + i
        phase = t0 % TICK  # the strips' control ticks decide every change here too
        if phase == 0:
            for c in range(n_ch):
                target = p[c, CH.delay_ms] * to_samples
                cur = st[S_CUR, c]
                if cur != cur:  # after a reset: take the target at once
                    n0, m = _design(target, taps, c, 0)
                    st[S_CUR, c], st[S_N0_CUR, c], st[S_M_CUR, c] = target, n0, m
                    st[S_LEFT, c] = 0.0
                elif st[S_LEFT, c] == 0.0 and target != cur:
                    for j in range(taps.shape[2]):
                        taps[1, c, j] = taps[0, c, j]
                    st[S_OLD, c], st[S_N0_OLD, c], st[S_M_OLD, c] = \
                        cur, st[S_N0_CUR, c], st[S_M_CUR, c]
                    n0, m = _design(target, taps, c, 0)
                    st[S_CUR, c], st[S_N0_CUR, c], st[S_M_CUR, c] = target, n0, m
                    st[S_LEFT, c] = fade_len
        end = min(n_frames, i + TICK - phase)
        for c in range(n_ch):
            line_c = line[c]
            left = st[S_LEFT, c]
            cur = st[S_CUR, c]
            n0, m = int(st[S_N0_CUR, c]), int(st[S_M_CUR, c])
            if left == 0.0 and cur == 0.0:   # no delay: only keep the line filled
                for n in range(i, end):
                    v = np.float32(work[n, c])
                    k = (clock + n) & mask
                    line_c[k] = v
                    line_c[k + half] = v
                continue
            n0o, mo = int(st[S_N0_OLD, c]), int(st[S_M_OLD, c])
            for n in range(i, end):
                t = clock + n
                v = np.float32(work[n, c])
                k = t & mask
                line_c[k] = v
                line_c[k + half] = v
                y = _tap(line_c, taps[0, c], t, n0, m, mask)
                if left > 0.0:
                    g = left / fade_len          # the old delay's share, falling to 0
                    y += g * (_tap(line_c, taps[1, c], t, n0o, mo, mask) - y)
                    left -= 1.0
                work[n, c] = y
            st[S_LEFT, c] = left
        i = end
