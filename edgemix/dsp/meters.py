"""Simple bus meters: sample peak with hold and decay, one-pole RMS, stereo correlation.

All three run per sample on ``(channels, frames)`` float32 blocks with float64 state owned
by the caller, so their readings after any frame are the same whatever the block sizes
(the same float operations in the same order).  Readings are taken from the state after
a block.

* **Peak** (per channel): instant attack to ``|x|``; the reading holds for ``hold_ms`` after
  the last new peak, then falls at ``decay_db_per_s`` (a linear-in-dB fall, i.e. the level
  is multiplied by ``10^(-decay / (20 fs))`` per sample).  The default fall of 20 dB in
  1.7 s is the return time of the IEC 60268-18 digital peak meter.  The largest ``|x|``
  since reset is kept as well (the "max peak" number beside a meter).
* **RMS** (per channel): mean square through a one-pole low-pass,
  ``ms += (1 - a) (x^2 - ms)`` with ``a = exp(-1 / (tau fs))``, so a step in mean square
  reaches 1 - 1/e of its final value after ``tau`` (the usual exponential averaging of an
  RMS meter); the reading is ``sqrt(ms)``.
* **Correlation** (channels 0 and 1): the normalised cross-correlation
  ``r = <LR> / sqrt(<L^2><R^2>)`` with the three averages ``<.>`` taken by the same
  one-pole; +1 for identical channels, -1 for inverted, near 0 for unrelated ones.  It
  reads 0 when either channel's mean square is below ``CORRELATION_FLOOR`` (-100 dBFS):
  the phase of silence is undefined and a meter should rest at the centre.

Values below ``_FLUSH`` are set to exactly 0 so long silences never leave denormals in
the state (they are slow on x86).  Non-finite samples are read as 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgemix.dsp._jit import kernel
from edgemix.dsp.arena import _f64_1, _f64_2

#: IEC 60268-18 digital peak meter return: 20 dB in 1.7 s.
DEFAULT_PEAK_DECAY_DB_PER_S = 20.0 / 1.7
DEFAULT_PEAK_HOLD_MS = 500.0
#: Averaging time of the RMS meter (the integration time of a VU-like reading).
DEFAULT_RMS_TIME_CONSTANT_MS = 300.0
DEFAULT_CORRELATION_TIME_CONSTANT_MS = 300.0
#: Mean square (per channel) below which the correlation reads 0: -100 dBFS.
CORRELATION_FLOOR = 1e-10

#: Columns of the peak state: displayed level, hold frames left, max |x| since reset.
PEAK_LEVEL = 0
PEAK_HOLD_LEFT = 1
PEAK_MAX = 2
N_PEAK_STATE = 3
#: Entries of the correlation state: <L^2>, <R^2>, <LR>, last reading r.
CORR_LL = 0
CORR_RR = 1
CORR_LR = 2
CORR_R = 3
N_CORR_STATE = 4

_FLUSH = 1e-30
_FINITE_MAX = 3.5e38


def one_pole_coefficient(time_constant_ms: float, sample_rate_hz: float) -> float:
    """``a = exp(-1 / (tau fs))`` of a one-pole average; 0 (no averaging) for tau = 0."""
    if time_constant_ms <= 0.0:
        return 0.0
    return math.exp(-1000.0 / (time_constant_ms * sample_rate_hz))


def peak_decay_per_sample(decay_db_per_s: float, sample_rate_hz: float) -> float:
    """Per-sample factor of a fall of ``decay_db_per_s`` dB per second."""
    return 10.0 ** (-decay_db_per_s / (20.0 * sample_rate_hz))


def hold_frames_for(hold_ms: float, sample_rate_hz: float) -> int:
    return int(round(hold_ms * 1e-3 * sample_rate_hz))


@dataclass
class PeakState:
    """A peak meter's state: ``state`` (channels, N_PEAK_STATE) and its two constants."""

    state: np.ndarray
    decay: float   # per-sample fall factor (:func:`peak_decay_per_sample`)
    hold: float    # hold, frames

    @classmethod
    def allocate(cls, n_channels: int, sample_rate_hz: float,
                 decay_db_per_s: float = None, hold_ms: float = None) -> "PeakState":
        d = DEFAULT_PEAK_DECAY_DB_PER_S if decay_db_per_s is None else decay_db_per_s
        h = DEFAULT_PEAK_HOLD_MS if hold_ms is None else hold_ms
        return cls(state=np.zeros((n_channels, N_PEAK_STATE)),
                   decay=peak_decay_per_sample(d, sample_rate_hz),
                   hold=float(hold_frames_for(h, sample_rate_hz)))

    def reset(self) -> None:
        self.state[:] = 0.0


@dataclass
class RmsState:
    """An RMS meter's state: the mean square per channel and the one-pole coefficient."""

    state: np.ndarray
    a: float

    @classmethod
    def allocate(cls, n_channels: int, sample_rate_hz: float,
                 time_constant_ms: float = None) -> "RmsState":
        tc = DEFAULT_RMS_TIME_CONSTANT_MS if time_constant_ms is None else time_constant_ms
        return cls(state=np.zeros(n_channels), a=one_pole_coefficient(tc, sample_rate_hz))

    def reset(self) -> None:
        self.state[:] = 0.0


@dataclass
class CorrelationState:
    """A correlation meter's state (N_CORR_STATE,) and its one-pole coefficient."""

    state: np.ndarray
    a: float

    @classmethod
    def allocate(cls, sample_rate_hz: float,
                 time_constant_ms: float = None) -> "CorrelationState":
        tc = (DEFAULT_CORRELATION_TIME_CONSTANT_MS if time_constant_ms is None
              else time_constant_ms)
        return cls(state=np.zeros(N_CORR_STATE), a=one_pole_coefficient(tc, sample_rate_hz))

    def reset(self) -> None:
        self.state[:] = 0.0


@kernel(inline="always")
def _peak_views(table, s):
    """A :class:`PeakState` in an arena, as :func:`_peak_process` takes it: decay, hold,
    state."""
    return _f64_1(table, s, 1)[0], _f64_1(table, s, 2)[0], _f64_2(table, s, 0)


@kernel(inline="always")
def _correlation_views(table, s):
    """A :class:`CorrelationState` in an arena, as :func:`_correlation_process` takes it."""
    return _f64_1(table, s, 1)[0], _f64_1(table, s, 0)


@kernel
def _peak_process(x, decay_per_sample, hold_frames, state):
    """Peak meter over ``x`` (channels, frames); ``state`` (channels, N_PEAK_STATE)."""
    for c in range(x.shape[0]):
        level = state[c, PEAK_LEVEL]
        hold = state[c, PEAK_HOLD_LEFT]
        top = state[c, PEAK_MAX]
        for k in range(x.shape[1]):
            a = abs(np.float64(x[c, k]))
            if not a < _FINITE_MAX:
                a = 0.0
            if a >= level:
                level = a
                hold = hold_frames
            elif hold > 0.0:
                hold -= 1.0
            else:
                level *= decay_per_sample
                if level < _FLUSH:
                    level = 0.0
            if a > top:
                top = a
        state[c, PEAK_LEVEL] = level
        state[c, PEAK_HOLD_LEFT] = hold
        state[c, PEAK_MAX] = top


@kernel
def _rms_process(x, a, state):
    """One-pole mean square per channel of ``x`` (channels, frames); ``state`` (channels,)."""
    g = 1.0 - a
    for c in range(x.shape[0]):
        ms = state[c]
        for k in range(x.shape[1]):
            v = np.float64(x[c, k])
            if not abs(v) < _FINITE_MAX:
                v = 0.0
            ms += g * (v * v - ms)
            if ms < _FLUSH:
                ms = 0.0
        state[c] = ms


@kernel
def _correlation_process(x, a, state):
    """Running correlation of channels 0 and 1 of ``x``; returns r, also in state[CORR_R]."""
    g = 1.0 - a
    ll = state[CORR_LL]
    rr = state[CORR_RR]
    lr = state[CORR_LR]
    for k in range(x.shape[1]):
        u = np.float64(x[0, k])
        v = np.float64(x[1, k])
        if not abs(u) < _FINITE_MAX:
            u = 0.0
        if not abs(v) < _FINITE_MAX:
            v = 0.0
        ll += g * (u * u - ll)
        rr += g * (v * v - rr)
        lr += g * (u * v - lr)
        if ll < _FLUSH:
            ll = 0.0
        if rr < _FLUSH:
            rr = 0.0
        if abs(lr) < _FLUSH:
            lr = 0.0
    state[CORR_LL] = ll
    state[CORR_RR] = rr
    state[CORR_LR] = lr
    r = 0.0
    if ll >= CORRELATION_FLOOR and rr >= CORRELATION_FLOOR:
        # Cauchy-Schwarz bounds |r| <= 1; the clamp only catches rounding.
        r = min(1.0, max(-1.0, lr / math.sqrt(ll * rr)))
    state[CORR_R] = r
    return r


def channels_first_view(block, n_channels: int) -> np.ndarray:
    """Validate a ``(frames, channels)`` block (or ``(frames,)`` for one channel) and return
    its ``(channels, frames)`` view: no copy for float32 C-contiguous input."""
    x = block
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous):
        x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1 and n_channels == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2 or x.shape[1] != n_channels:
        raise ValueError(f"block has shape {np.shape(block)}: give (frames, "
                         f"{n_channels}) samples, one column per channel")
    return x.T


def lin_to_db(lin, power: bool = False):
    """A meter reading in dB: 20 log10 of a level (10 log10 of a power); 0 reads -inf."""
    with np.errstate(divide="ignore"):
        return (10.0 if power else 20.0) * np.log10(np.maximum(lin, 0.0))


class _BlockMeter:
    """Shared validation: ``(frames, channels)`` in, a no-copy (channels, frames) view out."""

    n_channels: int

    def _view(self, block) -> np.ndarray:
        return channels_first_view(block, self.n_channels)


def _check_rate(sample_rate_hz) -> float:
    fs = float(sample_rate_hz)
    if not (math.isfinite(fs) and fs > 0.0):
        raise ValueError(f"sample_rate_hz = {sample_rate_hz!r}: use a positive rate in Hz")
    return fs


def _check_channels(n_channels, minimum: int = 1) -> int:
    if isinstance(n_channels, bool) or int(n_channels) != n_channels or n_channels < minimum:
        raise ValueError(f"n_channels = {n_channels!r}: use a whole number >= {minimum}")
    return int(n_channels)


def _check_time(name: str, value, allow_zero: bool) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0.0 or (v == 0.0 and not allow_zero):
        raise ValueError(f"{name} = {value!r}: use a {'non-negative' if allow_zero else 'positive'}"
                         " finite number")
    return v


class PeakMeter(_BlockMeter):
    """Per-channel sample peak with hold and a dB-linear fall.

    ``process`` (one thread) allocates nothing for float32 C-contiguous input; the
    properties allocate their small result arrays and may be read from any thread.
    """

    def __init__(self, sample_rate_hz: float, n_channels: int = 2,
                 decay_db_per_s: float = DEFAULT_PEAK_DECAY_DB_PER_S,
                 hold_ms: float = DEFAULT_PEAK_HOLD_MS):
        fs = _check_rate(sample_rate_hz)
        self.n_channels = _check_channels(n_channels)
        self.decay_db_per_s = _check_time("decay_db_per_s", decay_db_per_s, False)
        self.hold_ms = _check_time("hold_ms", hold_ms, True)
        self._st = PeakState.allocate(self.n_channels, fs, self.decay_db_per_s, self.hold_ms)
        self.state = self._st.state

    def process(self, block) -> None:
        _peak_process(self._view(block), self._st.decay, self._st.hold, self.state)

    def reset(self) -> None:
        self._st.reset()

    @property
    def peak_dbfs(self) -> np.ndarray:
        """Displayed level per channel (held, then falling), dBFS; -inf for silence."""
        return lin_to_db(self.state[:, PEAK_LEVEL])

    @property
    def max_peak_dbfs(self) -> np.ndarray:
        """Largest sample magnitude per channel since reset, dBFS."""
        return lin_to_db(self.state[:, PEAK_MAX])


class RmsMeter(_BlockMeter):
    """Per-channel RMS with one-pole (exponential) averaging."""

    def __init__(self, sample_rate_hz: float, n_channels: int = 2,
                 time_constant_ms: float = DEFAULT_RMS_TIME_CONSTANT_MS):
        fs = _check_rate(sample_rate_hz)
        self.n_channels = _check_channels(n_channels)
        self.time_constant_ms = _check_time("time_constant_ms", time_constant_ms, False)
        self._st = RmsState.allocate(self.n_channels, fs, self.time_constant_ms)
        self.state = self._st.state

    def process(self, block) -> None:
        _rms_process(self._view(block), self._st.a, self.state)

    def reset(self) -> None:
        self._st.reset()

    @property
    def rms(self) -> np.ndarray:
        """Linear RMS per channel."""
        return np.sqrt(self.state)

    @property
    def rms_dbfs(self) -> np.ndarray:
        """RMS per channel in dB re full-scale amplitude (a full-scale sine reads -3.01)."""
        return lin_to_db(self.state, power=True)


class CorrelationMeter(_BlockMeter):
    """Stereo correlation (phase) meter of the first two channels, -1 .. +1."""

    def __init__(self, sample_rate_hz: float, n_channels: int = 2,
                 time_constant_ms: float = DEFAULT_CORRELATION_TIME_CONSTANT_MS):
        fs = _check_rate(sample_rate_hz)
        self.n_channels = _check_channels(n_channels, minimum=2)
        self.time_constant_ms = _check_time("time_constant_ms", time_constant_ms, False)
        self._st = CorrelationState.allocate(fs, self.time_constant_ms)
        self.state = self._st.state

    def process(self, block) -> None:
        _correlation_process(self._view(block), self._st.a, self.state)

    def reset(self) -> None:
        self._st.reset()

    @property
    def correlation(self) -> float:
        """+1 in phase, 0 unrelated or silent, -1 out of phase."""
        return float(self.state[CORR_R])
