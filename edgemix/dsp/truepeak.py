"""True-peak level after ITU-R BS.1770-4 Annex 2, streaming, per channel.

The annex estimates the peak of the reconstructed (analogue) waveform by oversampling:
at 48 kHz (and 44.1 kHz) four times, through the annex's order-48, 4-phase interpolating
FIR, then taking the absolute value of every oversampled value; at 88.2/96 kHz two times
suffices and at 176.4 kHz and above the samples themselves are dense enough (the annex's
"at least 192 kHz" oversampled rate).  The reading in dBTP is ``20 log10(max |y|)``.
The annex's -12.04 dB attenuation before and +12.04 dB after only give fixed-point
headroom; in floating point they cancel and are left out.

The interpolator is polyphase: tap ``k`` of phase ``p`` is the prototype tap ``h[L k + p]``
of the zero-stuffed upsampler, and phase ``p`` at input sample ``n`` is
``y_p[n] = sum_k h[L k + p] x[n - k]``, so no stuffed zero is ever multiplied.  Tables
are printed ``(phases, taps)``; the kernels take them transposed, ``(taps, phases)``.

* At 4x the coefficients are the annex's table, reproduced exactly.  Its prototype is
  symmetric with 48 taps (group delay 23.5 oversampled samples), so its four phases
  estimate the waveform at the odd eighths between ``x[n-6]`` and ``x[n-5]``; none falls
  on a sample.
* At other factors we design the equivalent filter: a Kaiser-windowed sinc (Kaiser,
  "Nonrecursive digital filter design using the I0-sinh window function", ISCAS 1974;
  Oppenheim & Schafer, *Discrete-Time Signal Processing*, 3rd ed., sec. 7.5.3), laid out as the
  fractional-delay bank of Laakso et al., "Splitting the unit delay", IEEE SP Magazine
  13(1), 1996: phase ``p`` estimates ``x(n - D + p / L)`` with ``D = taps / 2``, so phase 0
  is the sample ``x[n - D]`` itself and each phase is normalised to unit gain at DC.

Each estimate also takes ``|x|`` at the sample that opens its interval (``raw_tap``):
the true peak can never be below the sample peak, and the annex's phases, sitting at
odd eighths, would otherwise read a fs/4 tone whose peaks fall on samples 0.17 dB low.

The per-sample helpers are for other kernels: :func:`_truepeak_push` (write a sample,
return its estimate), or :func:`_truepeak_write` and :func:`_truepeak_estimate` apart -- the
master limiter reads one history with two interpolators that way.  :func:`_truepeak_run`
meters whole blocks.  State per channel is one row
of a float64 array: write position, the largest estimate so far, and the FIR history kept
twice over (``hist[pos + k] == x[n - k]`` for ``k < taps`` without a modulo in the loop).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgemix.dsp._jit import kernel
from edgemix.dsp.arena import _f64_2, _i64_1
from edgemix.dsp.meters import lin_to_db

#: ITU-R BS.1770-4 Annex 2, the order-48, 4-phase interpolating FIR, one row per phase
#: (the annex prints one column per phase).  Phase 3 is phase 0 reversed and phase 2 is
#: phase 1 reversed: the prototype is symmetric.
ANNEX2_PHASE0 = (0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000,
                 -0.0594482421875, 0.1373291015625, 0.9721679687500, -0.1022949218750,
                 0.0476074218750, -0.0266113281250, 0.0148925781250, -0.0083007812500)
ANNEX2_PHASE1 = (-0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250,
                 -0.1665039062500, 0.4650878906250, 0.7797851562500, -0.2003173828125,
                 0.1015625000000, -0.0582275390625, 0.0330810546875, -0.0189208984375)
ANNEX2_COEFFICIENTS = np.array([ANNEX2_PHASE0, ANNEX2_PHASE1, ANNEX2_PHASE1[::-1],
                                ANNEX2_PHASE0[::-1]], dtype=np.float64)
#: The annex phases interpolate between ``x[n - 6]`` and ``x[n - 5]`` (see module doc).
ANNEX2_RAW_TAP = 6

#: Taps per phase and Kaiser beta of the designed interpolators (2x here; the limiter
#: designs its own, longer one with :func:`windowed_sinc_phases`).  16 taps with beta 5
#: keep every phase within 0.5 % of the ideal fractional delay up to 0.40 fs, i.e. up to
#: 38 kHz at 96 kHz, far above any programme content the 2x rate is meant for.
DESIGN_TAPS = 16
DESIGN_KAISER_BETA = 5.0

# Columns of a channel's state row.
TP_POS = 0     # write position in the doubled history (0 .. taps-1)
TP_MAX = 1     # largest |estimate| since reset (linear)
TP_HIST = 2    # first of 2 * taps history values

#: Reading of silence.
SILENCE_DBTP = -math.inf


def oversampling_for_rate(sample_rate_hz: float) -> int:
    """The annex's oversampling factor: 4x below 88.2 kHz, 2x below 176.4 kHz, else 1x."""
    fs = float(sample_rate_hz)
    if fs < 88200.0:
        return 4
    if fs < 176400.0:
        return 2
    return 1


def windowed_sinc_phases(factor: int, taps: int, beta: float) -> np.ndarray:
    """A ``(factor, taps)`` fractional-delay bank: phase ``p`` estimates ``x(n - D + p/L)``.

    Tap ``k`` of phase ``p`` is ``sinc(u) w(u)`` at ``u = k - D + p / L`` with ``D = taps/2``
    and ``w`` the Kaiser window over ``|u| <= taps/2`` (the ideal band-limited interpolator,
    Shannon's ``x(t) = sum_m x[m] sinc(t - m)``, truncated smoothly); every phase is scaled
    to sum to 1 so a constant reads exactly.  ``taps`` must be even.
    """
    if factor < 1 or taps < 2 or taps % 2:
        raise ValueError(f"factor {factor}, taps {taps}: use factor >= 1 and an even taps >= 2")
    half = taps / 2.0
    k = np.arange(taps, dtype=np.float64)
    out = np.empty((factor, taps))
    for p in range(factor):
        u = k - taps // 2 + p / factor
        w = np.i0(beta * np.sqrt(np.clip(1.0 - (u / half) ** 2, 0.0, None))) / np.i0(beta)
        h = np.sinc(u) * w
        out[p] = h / h.sum()
    return out


def kernel_layout(phases: np.ndarray) -> np.ndarray:
    """``(phases, taps)`` as printed -> the kernels' C-contiguous ``(taps, phases)`` layout."""
    return np.ascontiguousarray(np.asarray(phases, dtype=np.float64).T)


def interpolator_for_rate(sample_rate_hz: float) -> tuple[np.ndarray, int]:
    """``(coef, raw_tap)`` of the BS.1770-4 Annex 2 interpolator at this rate.

    ``coef`` is in the kernels' ``(taps, phases)`` layout.
    """
    factor = oversampling_for_rate(sample_rate_hz)
    if factor == 4:
        return kernel_layout(ANNEX2_COEFFICIENTS), ANNEX2_RAW_TAP
    if factor == 1:
        return np.ones((1, 1)), 0
    return (kernel_layout(windowed_sinc_phases(factor, DESIGN_TAPS, DESIGN_KAISER_BETA)),
            DESIGN_TAPS // 2)


def history(n_channels: int, taps: int) -> np.ndarray:
    """A zeroed ``(n_channels, TP_HIST + 2 taps)`` float64 history for :func:`_truepeak_push`
    (the layout; the true-peak meter's state type is :class:`TruePeakState`)."""
    return np.zeros((n_channels, TP_HIST + 2 * taps))


@dataclass
class TruePeakState:
    """A true-peak meter's state: per-channel history and maxima (:func:`history`), the
    rate's interpolator (:func:`interpolator_for_rate`) and its delay in frames."""

    state: np.ndarray
    coef: np.ndarray
    raw: int

    @classmethod
    def allocate(cls, n_channels: int, sample_rate_hz: float) -> "TruePeakState":
        coef, raw = interpolator_for_rate(sample_rate_hz)
        return cls(state=history(n_channels, coef.shape[0]), coef=coef, raw=raw)

    def reset(self) -> None:
        """Forget the history and the maxima."""
        self.state[:] = 0.0


@kernel(inline="always")
def _truepeak_views(table, s):
    """A :class:`TruePeakState` in an arena, as :func:`_truepeak_run` takes it."""
    return _f64_2(table, s, 0), _f64_2(table, s, 1), _i64_1(table, s, 2)[0]


@kernel
def _truepeak_write(st, c, x, taps):
    """Push sample ``x`` into channel ``c``'s history (a ring of ``taps`` samples, kept
    twice over so ``st[c, TP_HIST + pos + k] == x[n - k]`` for every ``k < taps``)."""
    pos = int(st[c, TP_POS]) - 1
    if pos < 0:
        pos += taps
    st[c, TP_POS] = pos
    st[c, TP_HIST + pos] = x
    st[c, TP_HIST + pos + taps] = x


@kernel
def _truepeak_estimate(st, c, coef, raw_tap, offset):
    """True-peak estimate from channel ``c``'s history, ``offset`` frames back.

    ``coef`` is ``(taps, phases)`` (see :func:`kernel_layout`).  Returns
    ``max(|x[m - raw_tap]|, max_p |sum_k coef[k, p] x[m - k]|)`` with ``m = n - offset``:
    the peak of the reconstructed waveform over the one sample interval that sample ``m``
    completes (``raw_tap`` samples before it; 6 for the annex filter).  The history ring
    must be at least ``offset + taps`` long.

    With 8 or 4 phases the phases run side by side (independent accumulators, one pass
    over the history): without ``reassoc`` a dot product is a serial chain of
    multiply-adds, and running the phases abreast is what keeps the FPU busy (4x faster).
    """
    taps = coef.shape[0]
    n_ph = coef.shape[1]
    base = TP_HIST + int(st[c, TP_POS]) + offset
    peak = abs(st[c, base + raw_tap])
    if n_ph == 8:
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
        for k in range(taps):
            v = st[c, base + k]
            a0 += coef[k, 0] * v
            a1 += coef[k, 1] * v
            a2 += coef[k, 2] * v
            a3 += coef[k, 3] * v
            a4 += coef[k, 4] * v
            a5 += coef[k, 5] * v
            a6 += coef[k, 6] * v
            a7 += coef[k, 7] * v
        return max(peak, abs(a0), abs(a1), abs(a2), abs(a3), abs(a4), abs(a5), abs(a6),
                   abs(a7))
    if n_ph == 4:
        a0 = a1 = a2 = a3 = 0.0
        for k in range(taps):
            v = st[c, base + k]
            a0 += coef[k, 0] * v
            a1 += coef[k, 1] * v
            a2 += coef[k, 2] * v
            a3 += coef[k, 3] * v
        return max(peak, abs(a0), abs(a1), abs(a2), abs(a3))
    for p in range(n_ph):
        acc = 0.0
        for k in range(taps):
            acc += coef[k, p] * st[c, base + k]
        a = abs(acc)
        if a > peak:
            peak = a
    return peak


@kernel
def _truepeak_push(st, c, x, coef, raw_tap):
    """Push sample ``x`` into channel ``c``'s history; return its true-peak estimate.

    The per-sample helper for other kernels: the history ring is ``coef.shape[0]`` long
    and the estimate covers the interval ``raw_tap`` frames back (see
    :func:`_truepeak_estimate`).  Does not touch ``TP_MAX``.
    """
    _truepeak_write(st, c, x, coef.shape[0])
    return _truepeak_estimate(st, c, coef, raw_tap, 0)


@kernel
def _truepeak_run(x, n_frames, st, coef, raw_tap):
    """Meter ``x[:, :n_frames]`` (``(channels, frames)``): update each ``st[c, TP_MAX]``.

    Non-finite samples are read as 0 so one bad sample cannot stick the meter at NaN.
    Returns the largest estimate of this block over all channels (linear).
    """
    block_max = 0.0
    for c in range(x.shape[0]):
        m = st[c, TP_MAX]
        for n in range(n_frames):
            v = np.float64(x[c, n])
            if not (abs(v) < math.inf):
                v = 0.0
            e = _truepeak_push(st, c, v, coef, raw_tap)
            if e > m:
                m = e
        st[c, TP_MAX] = m
        if m > block_max:
            block_max = m
    return block_max


class TruePeakMeter:
    """Streaming BS.1770-4 Annex 2 true-peak meter for ``n_channels`` at one sample rate.

    ``process(block)`` takes ``(frames, channels)`` audio (any float dtype, like soundfile);
    ``true_peak_dbtp`` is the largest true peak since construction or ``reset()``, per
    channel; ``max_true_peak_dbtp`` over all channels.  Readings lag the input by the
    interpolator's delay (``delay_frames``, 6 frames at 48 kHz).  ``process`` allocates
    nothing for float32 C-contiguous blocks.  Not thread-safe: one thread calls
    ``process``/``reset``; reading the properties from another thread sees the last block.
    """

    #: Frames converted to the engine's layout per kernel call.
    CHUNK = 4096

    def __init__(self, sample_rate_hz: float, n_channels: int):
        fs = float(sample_rate_hz)
        if not (math.isfinite(fs) and 8000.0 <= fs <= 768000.0):
            raise ValueError(f"sample rate {sample_rate_hz!r} Hz: use 8000 .. 768000")
        if int(n_channels) != n_channels or not 1 <= int(n_channels) <= 256:
            raise ValueError(f"{n_channels!r} channels: use a whole number 1 .. 256")
        self.sample_rate_hz = fs
        self.n_channels = int(n_channels)
        self.oversampling = oversampling_for_rate(fs)
        self._st = TruePeakState.allocate(self.n_channels, fs)
        self._coef, self._raw_tap, self._state = self._st.coef, self._st.raw, self._st.state
        self._work = np.zeros((self.n_channels, self.CHUNK), np.float32)

    @property
    def delay_frames(self) -> int:
        """Frames by which a reading lags the input (the interpolator's delay)."""
        return self._raw_tap

    def process(self, block) -> None:
        """Meter a ``(frames, channels)`` block.  Audio thread (or any one thread)."""
        x = block
        if not (isinstance(x, np.ndarray) and x.dtype == np.float32):
            x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1 and self.n_channels == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"block of shape {x.shape}: expected (frames, {self.n_channels})")
        frames = x.shape[0]
        work = self._work
        for start in range(0, frames, self.CHUNK):
            n = min(self.CHUNK, frames - start)
            np.copyto(work[:, :n], x[start:start + n].T)
            _truepeak_run(work, n, self._state, self._coef, self._raw_tap)

    def reset(self) -> None:
        """Forget the history and the maxima."""
        self._st.reset()

    @property
    def true_peak_dbtp(self) -> np.ndarray:
        """Largest true peak per channel so far, dBTP (-inf for silence)."""
        return lin_to_db(self._state[:, TP_MAX].copy())

    @property
    def max_true_peak_dbtp(self) -> float:
        """Largest true peak over all channels so far, dBTP."""
        return float(lin_to_db(self._state[:, TP_MAX].max()))


def true_peak_dbtp(x, sample_rate_hz: float) -> np.ndarray:
    """True peak per channel of a whole ``(frames, channels)`` (or mono) signal, dBTP.

    The signal is followed by ``delay_frames`` zeros so the peaks in its last frames are
    read too (offline use; a stream simply keeps going).
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"signal of shape {x.shape}: expected (frames,) or (frames, channels)")
    meter = TruePeakMeter(sample_rate_hz, x.shape[1])
    meter.process(x)
    meter.process(np.zeros((meter.delay_frames + 1, x.shape[1]), np.float32))
    return meter.true_peak_dbtp
