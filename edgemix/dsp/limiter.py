"""The master bus limiter: stereo-linked, lookahead, true-peak.

Design (the "minimum filter + moving average" lookahead limiter, as in Signalsmith Audio's
"Designing a straightforward limiter" (2022), x42 dpl and JUCE's ``dsp::Limiter`` family):

1. **Detector, on the oversampled signal.**  Every input sample goes into a history read
   by two interpolators (:func:`edgemix.dsp.truepeak._truepeak_estimate`): an 8-phase,
   32-tap Kaiser-windowed sinc (8x oversampling at every sample rate, accurate to 0.45 fs)
   and the rate's BS.1770-4 meter interpolator (the annex's 4x table at 44.1/48 kHz),
   moved back to the same interval.  The larger estimate is the peak of the reconstructed
   waveform over the sample interval ``j = n - D`` (``D`` = 16 frames, the detector's
   delay): taking the meter's own estimate too means the meter, whose 48-tap filter
   ripples up to +0.2 dB, cannot read above the ceiling either.  Left and right are
   linked: ``pk_j = max(pk_L, pk_R)``.  The gain interval ``j`` needs is
   ``q_j = min(1, c / pk_j)`` with ``c`` the ceiling less ``SAFETY_MARGIN_DB``.
2. **Hold.**  ``a`` is the minimum of ``q`` over the last ``M = W + 2H`` intervals (a
   monotonic "ascending minima" wedge, O(1) per sample), ``W`` the lookahead window and
   ``H = 16`` frames of extra hold on both sides of every peak.
3. **Release.**  ``e`` drops to ``a`` at once and rises toward it exponentially,
   ``e <- a + r (e - a)`` with ``r = exp(-1 / (tau fs))`` (the one-pole of
   :func:`edgemix.dsp.dynamics._time_constant_alpha`): a linear-gain release, so
   ``1 - gain`` decays as ``exp(-t / tau)``.  ``e <= a`` always.
4. **Attack.**  The gain is the mean of ``e`` over the last ``W`` frames (a box filter):
   a linear ramp over the lookahead instead of a jump, and never an overshoot, because a
   mean cannot exceed its largest term.

Why it cannot overshoot the ceiling: the ``W`` values averaged at time ``n`` are each the
minimum over a window of ``M`` intervals, and all those windows share the ``2H + 1``
intervals centred on ``s = n - D - W - H + 1``.  So the gain applied to input sample ``s``
is at most the gain every interval within ``H`` frames of it needs -- ``latency_frames =
D + W + H - 1`` -- and around an isolated peak the gain is flat across the
interpolator's whole support (``2H + 1 = 33`` frames), so the output's reconstructed peak
is the input's times that gain.  ``SAFETY_MARGIN_DB`` covers what remains: the 8x grid
can read a tone at ``f`` low by a factor ``cos(pi f / (8 fs))`` at worst (0.14 dB at
0.45 fs), the interpolator's error (< 0.5 % up to 0.45 fs), the sinc tails beyond ``H``
and the spectral spread of the gain ramp itself.

What is guaranteed, as measured by the tests: the output's true peak read by the
BS.1770-4 meter (:mod:`edgemix.dsp.truepeak`) and by an independent 8x polyphase
oversampler (scipy's ``resample_poly``) never exceeds the ceiling, for full-band hostile
input (aliased square waves 12 dB over, +20 dB white noise, impulse trains, DC steps,
bursts after silence) at 44.1, 48 and 96 kHz; and an exact (FFT, ideal-sinc)
reconstruction stays below it too for content up to 0.45 fs (worst case seen 0.09 dB
inside the margin).  Content between 0.45 fs and Nyquist is only partly seen -- as by
the annex's own filter, which is down 0.4 to 6 dB there, and by any practical DAC's
reconstruction filter -- so signals with much energy there reconstruct *ideally* above
the ceiling: full-band white noise up to ~1.1 dB, a 0.49 fs tone 0.5 dB, a pulse train
with a component exactly at Nyquist (where ideal reconstruction is ill-defined) 2 dB.

Bypass (``on`` = 0) keeps the delay, so switching never shifts time, and crossfades over
``BYPASS_FADE_MS``: the output gain is ``1 - m (1 - g)`` with ``m`` ramping linearly
between 0 and 1.  The detector keeps running while bypassed, so switching in limits at once.
Below the ceiling the gain is exactly 1 and the output is the input, delayed, bit for bit.

Non-finite input samples and magnitudes beyond ``GUARD_LIMIT`` are replaced by 0 (and
counted) before they reach the detector or the delay line: no NaN gets through.
Everything runs per sample against an absolute sample clock, so any block size gives the
same output.  State lives in the arrays of :class:`LimiterState`; the kernel only loops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgemix.dsp._jit import kernel
from edgemix.dsp.arena import _f64_1, _f64_2
from edgemix.dsp.dynamics import _time_constant_alpha
from edgemix.dsp.truepeak import (history, interpolator_for_rate, kernel_layout,
                                  _truepeak_estimate, _truepeak_write, windowed_sinc_phases)
from edgemix.params import MASTER_SPECS

ON_SPEC = MASTER_SPECS["limiter_on"]
CEILING_SPEC = MASTER_SPECS["limiter_ceiling_dbtp"]
RELEASE_SPEC = MASTER_SPECS["limiter_release_ms"]

#: Default lookahead (the attack ramp) in ms; the latency adds the detector's delay and
#: the hold (``latency_frames``).
DEFAULT_LOOKAHEAD_MS = 1.5
#: Lookaheads a caller may choose, ms.
LOOKAHEAD_RANGE_MS = (0.5, 20.0)

#: The detector's interpolator: 8x, 32 taps per phase, Kaiser beta 5.  Every phase is
#: within 0.3 % of the ideal fractional delay up to 0.40 fs and 0.5 % up to 0.45 fs.
DETECTOR_OVERSAMPLING = 8
DETECTOR_TAPS = 32
DETECTOR_KAISER_BETA = 5.0
#: Frames from an input sample to the interval its estimate covers.
DETECTOR_DELAY = DETECTOR_TAPS // 2
#: Hold on each side of a peak: the interpolator's half-length.
HOLD_FRAMES = DETECTOR_TAPS // 2

#: The detector aims this far below the ceiling (see the module doc); measured worst case
#: over the adversarial test signals is in the test suite.
SAFETY_MARGIN_DB = 0.2

#: Crossfade time of switching the limiter in or out.
BYPASS_FADE_MS = 10.0

#: Inputs beyond +-1e6 (+120 dBFS) are as broken as NaN (the console's input guard uses
#: the same limit).
GUARD_LIMIT = 1.0e6

#: A release this close to unity gain has arrived and snaps to exactly 1.
_RELEASE_SNAP = 1e-9
_QUIET_CAP = 1 << 30

# Entries of the scalar state ``s``.
S_CLOCK = 0        # absolute frame counter since reset
S_ENV = 1          # release envelope e
S_MIX = 2          # in-circuit crossfade m (-1 = snap to the switch at the next call)
S_BOX_SUM = 3      # sum of the box ring
S_BOX_POS = 4      # next slot of the box ring
S_BOX_BELOW = 5    # entries of the box ring below 1 (0 -> the sum is exactly W)
S_W_HEAD = 6       # first slot of the wedge
S_W_COUNT = 7      # entries in the wedge
S_DELAY_POS = 8    # slot of the delay line read (then written) next
S_QUIET = 9        # consecutive frames with both |x| <= S_QUIET_THR
S_QUIET_THR = 10   # the threshold S_QUIET was counted against
S_GAIN = 11        # gain applied to the last output frame
S_MIN_GAIN = 12    # smallest gain applied since reset
S_GUARDED = 13     # input samples replaced since reset
S_SUM_ABS = 14     # config: max over both interpolators' phases of sum |coef| (kept)
S_METER_RAW = 15   # config: raw_tap of the rate's BS.1770 interpolator (kept by reset)
N_S = 16


@kernel
def _limiter_run(buf, n_frames, on, ceiling_dbtp, release_ms, fs_hz, s, delay, hist, coef,
                 mcoef, box, wedge):
    """Limit ``buf[:, :n_frames]`` (``(2, frames)`` float32) in place.

    ``on`` (0/1), ``ceiling_dbtp`` and ``release_ms`` are the schema's ``limiter_*``
    parameters, read once per call.  ``s`` (``N_S``,) scalars, ``delay`` (2, latency)
    ring, ``hist`` (2, ...) interpolator histories, ``coef`` (taps, 8) detector,
    ``mcoef`` the rate's BS.1770 meter interpolator, ``box`` (W,) and ``wedge`` (2, M)
    rings -- all from :class:`LimiterState`.
    """
    taps = coef.shape[0]
    d_det = taps // 2
    m_raw = int(s[S_METER_RAW])
    m_off = d_det - m_raw  # aligns the meter's interval with the detector's
    w_len = box.shape[0]
    m_len = wedge.shape[1]
    lat = delay.shape[1]
    c_eff = 10.0 ** ((ceiling_dbtp - SAFETY_MARGIN_DB) / 20.0)
    r = _time_constant_alpha(release_ms, fs_hz)
    fade_step = 1000.0 / (BYPASS_FADE_MS * fs_hz)
    target = 1.0 if on >= 0.5 else 0.0
    # Quiet passages skip the interpolator: if the last ``taps`` samples are all below
    # thr, no estimate can exceed sum|coef| * thr = c_eff, so q = 1 without computing it.
    thr = c_eff / s[S_SUM_ABS]
    if thr < s[S_QUIET_THR]:
        s[S_QUIET] = 0.0
    s[S_QUIET_THR] = thr

    clock = s[S_CLOCK]
    e = s[S_ENV]
    mix = s[S_MIX]
    if mix < 0.0:
        mix = target
    box_sum = s[S_BOX_SUM]
    box_pos = int(s[S_BOX_POS])
    below = int(s[S_BOX_BELOW])
    w_head = int(s[S_W_HEAD])
    w_count = int(s[S_W_COUNT])
    d_pos = int(s[S_DELAY_POS])
    quiet = int(s[S_QUIET])
    g_min = s[S_MIN_GAIN]
    guarded = s[S_GUARDED]
    geff = s[S_GAIN]

    for i in range(n_frames):
        xl = np.float64(buf[0, i])
        xr = np.float64(buf[1, i])
        if not (abs(xl) <= GUARD_LIMIT):  # false for NaN too
            xl = 0.0
            guarded += 1.0
        if not (abs(xr) <= GUARD_LIMIT):
            xr = 0.0
            guarded += 1.0

        # 1. detector: the peak of interval j = clock - d_det, both channels
        if abs(xl) > thr or abs(xr) > thr:
            quiet = 0
        elif quiet < _QUIET_CAP:
            quiet += 1
        _truepeak_write(hist, 0, xl, taps)
        _truepeak_write(hist, 1, xr, taps)
        if quiet >= taps:
            q = 1.0
        else:
            pk = max(_truepeak_estimate(hist, 0, coef, d_det, 0),
                     _truepeak_estimate(hist, 1, coef, d_det, 0),
                     _truepeak_estimate(hist, 0, mcoef, m_raw, m_off),
                     _truepeak_estimate(hist, 1, mcoef, m_raw, m_off))
            q = 1.0 if pk <= c_eff else c_eff / pk

        # 2. hold: minimum of q over the last m_len intervals (ascending-minima wedge)
        j = clock - d_det
        if w_count > 0 and wedge[1, w_head] <= j - m_len:
            w_head += 1
            if w_head == m_len:
                w_head = 0
            w_count -= 1
        while w_count > 0:
            back = w_head + w_count - 1
            if back >= m_len:
                back -= m_len
            if wedge[0, back] >= q:
                w_count -= 1
            else:
                break
        slot = w_head + w_count
        if slot >= m_len:
            slot -= m_len
        wedge[0, slot] = q
        wedge[1, slot] = j
        w_count += 1
        a = wedge[0, w_head]

        # 3. release: instant down, exponential up (linear gain)
        if a <= e:
            e = a
        else:
            e = a + r * (e - a)
            if a == 1.0 and 1.0 - e < _RELEASE_SNAP:
                e = 1.0

        # 4. attack: mean of e over the last w_len frames
        old = box[box_pos]
        box[box_pos] = e
        if old < 1.0:
            below -= 1
        if e < 1.0:
            below += 1
        box_pos += 1
        if box_pos == w_len:
            box_pos = 0
        if below == 0:
            box_sum = np.float64(w_len)  # exact: no drift once every entry is 1 again
            g = 1.0
        else:
            box_sum += e - old
            g = min(1.0, box_sum / w_len)

        # in-circuit crossfade, then the delayed audio
        if mix < target:
            mix = min(target, mix + fade_step)
        elif mix > target:
            mix = max(target, mix - fade_step)
        geff = 1.0 - mix * (1.0 - g)
        if geff < g_min:
            g_min = geff
        yl = delay[0, d_pos]
        yr = delay[1, d_pos]
        delay[0, d_pos] = xl
        delay[1, d_pos] = xr
        d_pos += 1
        if d_pos == lat:
            d_pos = 0
        buf[0, i] = np.float32(geff * yl)
        buf[1, i] = np.float32(geff * yr)
        clock += 1.0

    s[S_CLOCK] = clock
    s[S_ENV] = e
    s[S_MIX] = mix
    s[S_BOX_SUM] = box_sum
    s[S_BOX_POS] = box_pos
    s[S_BOX_BELOW] = below
    s[S_W_HEAD] = w_head
    s[S_W_COUNT] = w_count
    s[S_DELAY_POS] = d_pos
    s[S_QUIET] = quiet
    s[S_GAIN] = geff
    s[S_MIN_GAIN] = g_min
    s[S_GUARDED] = guarded


def detector_coefficients() -> np.ndarray:
    """The detector's interpolator in the kernels' ``(taps, phases)`` layout."""
    return kernel_layout(windowed_sinc_phases(DETECTOR_OVERSAMPLING, DETECTOR_TAPS,
                                              DETECTOR_KAISER_BETA))


def lookahead_frames(sample_rate_hz: float, lookahead_ms: float) -> int:
    """Frames of the attack ramp (the box filter's length) for a lookahead in ms."""
    return max(1, int(round(lookahead_ms * 1e-3 * sample_rate_hz)))


@dataclass
class LimiterState:
    """Every array :func:`_limiter_run` reads or writes, allocated once (not per block)."""

    s: np.ndarray       # (N_S,) scalars (entries S_*)
    delay: np.ndarray   # (2, latency_frames) delay line
    hist: np.ndarray    # (2, ...) interpolator histories (edgemix.dsp.truepeak layout)
    coef: np.ndarray    # (DETECTOR_TAPS, DETECTOR_OVERSAMPLING) detector
    mcoef: np.ndarray   # the rate's BS.1770 interpolator (edgemix.dsp.truepeak layout)
    box: np.ndarray     # (W,) release envelope over the lookahead
    wedge: np.ndarray   # (2, W + 2 HOLD_FRAMES) minima: values, interval indices

    @classmethod
    def allocate(cls, sample_rate_hz: float,
                 lookahead_ms: float = DEFAULT_LOOKAHEAD_MS) -> "LimiterState":
        w = lookahead_frames(sample_rate_hz, lookahead_ms)
        coef = detector_coefficients()
        mcoef, m_raw = interpolator_for_rate(sample_rate_hz)
        # the meter's window, moved back to the detector's interval, must fit the ring
        m_off = DETECTOR_DELAY - m_raw
        if not (0 <= m_off and m_off + mcoef.shape[0] <= DETECTOR_TAPS):  # a design error
            raise RuntimeError("the meter's interpolator does not fit the detector's history")
        st = cls(s=np.zeros(N_S),
                 delay=np.zeros((2, DETECTOR_DELAY + w + HOLD_FRAMES - 1)),
                 hist=history(2, DETECTOR_TAPS), coef=coef, mcoef=mcoef, box=np.ones(w),
                 wedge=np.zeros((2, w + 2 * HOLD_FRAMES)))
        st.s[S_SUM_ABS] = float(max(np.abs(coef).sum(axis=0).max(),
                                    np.abs(mcoef).sum(axis=0).max()))
        st.s[S_METER_RAW] = float(m_raw)
        st.reset()
        return st

    @property
    def latency_frames(self) -> int:
        return self.delay.shape[1]

    def reset(self) -> None:
        """Silence everywhere, unity gain; the crossfade snaps to the switch next call."""
        keep = self.s[S_SUM_ABS], self.s[S_METER_RAW]
        self.s[:] = 0.0
        self.s[S_SUM_ABS], self.s[S_METER_RAW] = keep
        self.s[S_ENV] = 1.0
        self.s[S_MIX] = -1.0
        self.s[S_BOX_SUM] = float(self.box.shape[0])
        self.s[S_GAIN] = 1.0
        self.s[S_MIN_GAIN] = 1.0
        # a history of zeros is quiet under any threshold
        self.s[S_QUIET] = float(DETECTOR_TAPS)
        self.delay[:] = 0.0
        self.hist[:] = 0.0
        self.box[:] = 1.0
        self.wedge[:] = 0.0


@kernel(inline="always")
def _limiter_views(table, s):
    """A :class:`LimiterState` in an arena, as :func:`_limiter_run` takes it."""
    return (_f64_1(table, s, 0), _f64_2(table, s, 1), _f64_2(table, s, 2),
            _f64_2(table, s, 3), _f64_2(table, s, 4), _f64_1(table, s, 5),
            _f64_2(table, s, 6))


def _db(gain: float) -> float:
    return -20.0 * math.log10(gain) if gain > 0.0 else math.inf


class Limiter:
    """Stereo-linked lookahead true-peak limiter for the master bus.

    ``Limiter(48000, ceiling_dbtp=-1.0, release_ms=100.0)``; the defaults and the ranges
    are the schema's ``limiter_ceiling_dbtp`` / ``limiter_release_ms``.  ``process(block)``
    takes ``(frames, 2)`` audio and returns it limited and delayed by ``latency_frames``;
    with a float32 C-contiguous block and ``out`` given it allocates nothing.

    Threads: ``process`` and ``reset`` belong to the audio thread.  Setting ``ceiling_dbtp``,
    ``release_ms`` or ``on`` from another thread is a single float store, picked up at the
    start of the next ``process`` call.
    """

    #: Frames converted to the engine's layout per kernel call.
    CHUNK = 4096

    def __init__(self, sample_rate_hz: float, ceiling_dbtp: float = CEILING_SPEC.default,
                 release_ms: float = RELEASE_SPEC.default, on: bool = bool(ON_SPEC.default),
                 lookahead_ms: float = DEFAULT_LOOKAHEAD_MS):
        fs = float(sample_rate_hz)
        if not (math.isfinite(fs) and 8000.0 <= fs <= 768000.0):
            raise ValueError(f"sample rate {sample_rate_hz!r} Hz: use 8000 .. 768000")
        lo, hi = LOOKAHEAD_RANGE_MS
        try:
            la = float(lookahead_ms)
        except (TypeError, ValueError):
            raise ValueError(f"lookahead_ms = {lookahead_ms!r}: expected a number") from None
        if not lo <= la <= hi:
            raise ValueError(f"lookahead_ms = {lookahead_ms!r} is out of range: "
                             f"use {lo:g} .. {hi:g}")
        self.sample_rate_hz = fs
        self.lookahead_ms = la
        self.ceiling_dbtp = ceiling_dbtp
        self.release_ms = release_ms
        self.on = on
        self._state = LimiterState.allocate(fs, la)
        self._work = np.zeros((2, self.CHUNK), np.float32)

    # ---- parameters (validated against the schema) -------------------------------------
    @property
    def ceiling_dbtp(self) -> float:
        return self._ceiling_dbtp

    @ceiling_dbtp.setter
    def ceiling_dbtp(self, value) -> None:
        self._ceiling_dbtp = CEILING_SPEC.check(value)

    @property
    def release_ms(self) -> float:
        return self._release_ms

    @release_ms.setter
    def release_ms(self, value) -> None:
        self._release_ms = RELEASE_SPEC.check(value)

    @property
    def on(self) -> bool:
        """In circuit (``limiter_on``); False bypasses with the same latency."""
        return self._on >= 0.5

    @on.setter
    def on(self, value) -> None:
        self._on = ON_SPEC.check(float(bool(value)) if isinstance(value, bool) else value)

    # ---- audio thread -------------------------------------------------------------------
    def process(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Limit a ``(frames, 2)`` block; returns ``(frames, 2)`` float32 (``out`` if given)."""
        x = block
        if not (isinstance(x, np.ndarray) and x.dtype == np.float32):
            x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"block of shape {x.shape}: expected (frames, 2) stereo")
        frames = x.shape[0]
        if out is None:
            out = np.empty((frames, 2), np.float32)
        elif out.shape != (frames, 2) or out.dtype != np.float32:
            raise ValueError(f"out must be a float32 array of shape ({frames}, 2)")
        st, work = self._state, self._work
        for start in range(0, frames, self.CHUNK):
            n = min(self.CHUNK, frames - start)
            np.copyto(work[:, :n], x[start:start + n].T)
            _limiter_run(work, n, self._on, self._ceiling_dbtp, self._release_ms,
                         self.sample_rate_hz, st.s, st.delay, st.hist, st.coef, st.mcoef,
                         st.box, st.wedge)
            np.copyto(out[start:start + n], work[:, :n].T)
        return out

    def reset(self) -> None:
        """Clear the delay line, detector and gain; keep the parameters."""
        self._state.reset()

    # ---- read-outs ----------------------------------------------------------------------
    @property
    def latency_frames(self) -> int:
        """Frames from an input sample to the output (the same in and out of circuit)."""
        return self._state.latency_frames

    @property
    def gain_reduction_db(self) -> float:
        """Gain reduction applied to the last output frame, dB (>= 0)."""
        return _db(self._state.s[S_GAIN]) + 0.0

    @property
    def max_gain_reduction_db(self) -> float:
        """Largest gain reduction since construction or ``reset()``, dB (>= 0)."""
        return _db(self._state.s[S_MIN_GAIN]) + 0.0

    @property
    def guard_count(self) -> int:
        """Input samples replaced (NaN, Inf or beyond +-1e6) since reset."""
        return int(self._state.s[S_GUARDED])

    @property
    def state(self) -> LimiterState:
        """The state arrays (for calling the kernel from another kernel, and for tests)."""
        return self._state
