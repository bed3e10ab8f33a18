"""Compressor and gate/expander: gain computers and ballistics, one sample at a time.

The compressor follows Giannoulis, Massberg & Reiss, "Digital Dynamic Range Compressor
Design -- A Tutorial and Analysis", JAES 60(6), 2012: a feed-forward design whose level
detector sits in the log domain after the gain computer (their Fig. 7b), with the soft-knee
static curve of their eq. (4) and the smooth branching peak detector of eq. (17).  Attack
and release are one-pole time constants: ``alpha = exp(-1 / (tau fs))`` (their eq. 7), so a
step in gain reduction reaches 1 - 1/e of its final value after ``tau``.

The step functions take and return scalars so a strip kernel keeps every state variable in a
register across its sample loop; the public classes run the same steps over whole signals
(for tests and offline use).
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from edgemix.dsp._jit import kernel
from edgemix.params import CHANNEL_SPECS, OFF_DB

#: Release of the gate's peak envelope follower.  The gate decides open/closed on this
#: envelope (instant attack), so 10 ms keeps it from chattering inside one period of a low
#: note (a 100 Hz cycle) while still following syllables; hold and hysteresis do the rest.
GATE_ENVELOPE_RELEASE_MS = 10.0

#: Gain reductions below this many dB are flushed to exactly 0 so an idle compressor skips
#: the exp() per sample and never leaves denormals in its state.
FLUSH_DB = 1e-7

#: A floor for levels in dB (10 log10 of a power below 1e-20, i.e. -200 dB).
FLOOR_DB = -200.0


#: dB <-> log2 factors.
LOG2_10_OVER_20 = math.log2(10.0) / 20.0
DB10_PER_LOG2 = 10.0 * math.log10(2.0)
DB20_PER_LOG2 = 20.0 * math.log10(2.0)
_LN2 = math.log(2.0)
_SQRT2 = math.sqrt(2.0)
_MANTISSA = 0x000FFFFFFFFFFFFF
_EXP_ONE = 0x3FF0000000000000
_MAGIC = 4503599627370496.0  # 2^52
_MAGIC_BITS = 0x4330000000000000  # its bits


@intrinsic
def _f64_bits(typingctx, x):
    """Reinterpret a float64 as its IEEE-754 bits (an LLVM bitcast: no call, no memory)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, n):
    """Reinterpret IEEE-754 bits as a float64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@kernel(inline="always")
def _fast_log2(x):
    """log2 of a positive float64, inline (no libm call), |error| < 1e-9 for normal x
    (finite for 0 and denormals: about -1023).

    Why not ``math.log``: a libm call cannot be vectorised and, in a scalar loop, spills
    every live register (x86-64 has no callee-saved vector registers).  Method: x = m 2^e
    with m in [1/sqrt2, sqrt2), and log2(m) = (2/ln2) atanh(t), t = (m - 1)/(m + 1),
    |t| < 0.172, summed to t^11 (the next term is below 1e-10).

    Written for SIMD across channels (``strip.py``): the branch is a select, and the
    exponent becomes a float through the 2^52 "magic number" (bits of 2^52 + k are
    0x4330000000000000 + k), because AVX2 has no int64 <-> float64 conversion.
    """
    bits = _f64_bits(x)
    e = _bits_f64(((bits >> 52) & 0x7FF) | _MAGIC_BITS) - (_MAGIC + 1023.0)
    m = _bits_f64((bits & _MANTISSA) | _EXP_ONE)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1.0 if big else e
    t = (m - 1.0) / (m + 1.0)
    t2 = t * t
    s = t * (1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0 + t2 * (
        1.0 / 9.0 + t2 * (1.0 / 11.0))))))
    return e + s * (2.0 / _LN2)


@kernel(inline="always")
def _fast_exp2(y):
    """2^y inline (no libm call), relative error < 1e-9, for y >= -1000 (0 below).

    2^y = 2^n e^(f ln2), n = round(y), |f ln2| <= 0.347, e^z by its Taylor series to z^8.
    2^n is built from the bits of n + 1023 + 2^52 shifted into the exponent field (no
    int64 conversion, see ``_fast_log2``); ``np.floor`` keeps n a float (``math.floor``
    would return an int64).
    """
    yc = max(y, -1000.0)
    n = np.floor(yc + 0.5)
    z = (yc - n) * _LN2
    p = 1.0 + z * (1.0 + z * (0.5 + z * (1.0 / 6.0 + z * (1.0 / 24.0 + z * (
        1.0 / 120.0 + z * (1.0 / 720.0 + z * (1.0 / 5040.0 + z * (1.0 / 40320.0))))))))
    r = p * _bits_f64(_f64_bits(n + (_MAGIC + 1023.0)) << 52)
    return 0.0 if y < -1000.0 else r


@kernel(inline="always")
def _fast_db_to_gain(db):
    """``10^(db/20)`` per sample, inline (see ``_fast_exp2``)."""
    return _fast_exp2(db * LOG2_10_OVER_20)


@kernel(inline="always")
def _gain_of_db(db):
    """A fader-style level: ``10^(db/20)``, and exactly 0 at ``params.OFF_DB`` or below
    (the "off" position of faders, sends and returns).  Control rate: exact ``pow``."""
    return 0.0 if db <= OFF_DB else 10.0 ** (db / 20.0)


@kernel(inline="always")
def _power_to_db(power):
    """``10 log10(power)`` per sample for power > 1e-300, inline (see ``_fast_log2``)."""
    return DB10_PER_LOG2 * _fast_log2(power)


@kernel
def _time_constant_alpha(time_ms, fs_hz):
    """One-pole coefficient for a time constant: ``exp(-1 / (tau fs))``; 0 for tau = 0."""
    if time_ms <= 0.0:
        return 0.0
    return math.exp(-1000.0 / (time_ms * fs_hz))


@kernel(inline="always")
def _knee_curve_db(over_db, slope, knee_db, half_inv_knee):
    """Giannoulis 2012 eq. 4 as a gain (dB, <= 0) for ``over_db`` = level - threshold.

    ``slope`` = 1/ratio - 1 and ``half_inv_knee`` = 1/(2 W) (0 for a hard knee) are
    control-rate constants, so a sample costs no division.  Selects, not branches: the
    strip evaluates it for four channels at once.
    """
    t = over_db + 0.5 * knee_db
    g = slope * over_db if 2.0 * over_db > knee_db else slope * t * t * half_inv_knee
    return 0.0 if 2.0 * over_db < -knee_db else g


@kernel(inline="always")
def _half_inverse_knee(knee_db):
    return 0.5 / knee_db if knee_db > 0.0 else 0.0


@kernel
def _expander_gain_db(x_db, threshold_db, ratio, range_db):
    """Downward expander below threshold: ``(x - T)(ratio - 1)``, no deeper than ``-range``."""
    if x_db >= threshold_db:
        return 0.0
    return max(-range_db, (x_db - threshold_db) * (ratio - 1.0))


@kernel(inline="always")
def _compressor_step(x, yl_db, ms, rms_mode, a_rms, knee_lo_sq, threshold_db, slope, knee_db,
                    half_inv_knee, a_attack, a_release):
    """One sample of detector + gain computer + ballistics.

    Returns ``(yl_db, ms)``: the smoothed gain reduction in dB (>= 0) and the RMS
    detector's mean square.  ``knee_lo_sq`` is the squared linear level where the knee
    starts (below it the gain computer gives 0 dB; +inf for ratio 1:1); ``slope`` and
    ``half_inv_knee`` as in ``_knee_curve_db``.  Branch-free, so the strip's channel loop
    vectorises: every path is computed and selected.
    """
    ms = a_rms * ms + (1.0 - a_rms) * x * x
    lvl_sq = ms if rms_mode else x * x
    xl = -_knee_curve_db(_power_to_db(lvl_sq) - threshold_db, slope, knee_db, half_inv_knee)
    xl = xl if lvl_sq > knee_lo_sq else 0.0
    # smooth branching detector (eq. 17): attack while reduction grows, release otherwise
    a = a_attack if xl > yl_db else a_release
    yl_db = a * yl_db + (1.0 - a) * xl
    return (0.0 if yl_db < FLUSH_DB else yl_db), ms


@kernel(inline="always")
def _knee_start_sq(threshold_db, ratio, knee_db):
    """Squared linear level where the knee starts; +inf at 1:1 (no gain reduction)."""
    if ratio <= 1.0:
        return np.inf
    return 10.0 ** ((threshold_db - 0.5 * knee_db) / 10.0)


@kernel
def _gate_step(x, env, is_open, hold_left, yg_db, a_env, open_lin, close_lin, hold_samples,
              threshold_db, ratio, range_db, a_open, a_close):
    """One sample of the gate/expander with hysteresis and hold.

    Opens when the peak envelope reaches the threshold; closes only after it has stayed
    below ``threshold - hysteresis`` (``close_lin``) for ``hold_samples``.  While closed the
    gain follows the expander curve (a gate at high ratio), smoothed with the opening and
    closing time constants in the dB domain.  Returns ``(env, is_open, hold_left, yg_db)``;
    ``yg_db`` <= 0 is the gate's gain.
    """
    ax = abs(x)
    env = max(ax, a_env * env)
    if env >= open_lin:
        is_open = 1.0
        hold_left = hold_samples
    elif is_open > 0.0:
        if env < close_lin:
            if hold_left > 0.0:
                hold_left -= 1.0
            else:
                is_open = 0.0
        else:
            hold_left = hold_samples
    if is_open > 0.0:
        target = 0.0
    else:
        env_db = DB20_PER_LOG2 * _fast_log2(env) if env > 1e-10 else FLOOR_DB
        target = _expander_gain_db(env_db, threshold_db, ratio, range_db)
    if target > yg_db:
        yg_db = a_open * yg_db + (1.0 - a_open) * target
    else:
        yg_db = a_close * yg_db + (1.0 - a_close) * target
    if yg_db > -FLUSH_DB:
        yg_db = 0.0
    return env, is_open, hold_left, yg_db


@kernel
def _compressor_run(x, y, gr_db, state, fs_hz, threshold_db, ratio, knee_db, attack_ms,
                    release_ms, makeup_db, rms_mode, rms_ms):
    a_att = _time_constant_alpha(attack_ms, fs_hz)
    a_rel = _time_constant_alpha(release_ms, fs_hz)
    a_rms = _time_constant_alpha(rms_ms, fs_hz)
    knee_lo_sq = _knee_start_sq(threshold_db, ratio, knee_db)
    slope = 1.0 / ratio - 1.0
    hik = _half_inverse_knee(knee_db)
    yl, ms = state[0], state[1]
    for n in range(x.shape[0]):
        yl, ms = _compressor_step(x[n], yl, ms, rms_mode, a_rms, knee_lo_sq, threshold_db,
                                 slope, knee_db, hik, a_att, a_rel)
        gr_db[n] = yl
        y[n] = x[n] * _fast_db_to_gain(makeup_db - yl)
    state[0], state[1] = yl, ms


@kernel
def _gate_run(x, y, gain_db, state, fs_hz, threshold_db, hysteresis_db, range_db, ratio,
              attack_ms, hold_ms, release_ms):
    a_env = _time_constant_alpha(GATE_ENVELOPE_RELEASE_MS, fs_hz)
    a_open = _time_constant_alpha(attack_ms, fs_hz)
    a_close = _time_constant_alpha(release_ms, fs_hz)
    open_lin = 10.0 ** (threshold_db / 20.0)
    close_lin = 10.0 ** ((threshold_db - hysteresis_db) / 20.0)
    hold = math.floor(hold_ms * 1e-3 * fs_hz + 0.5)
    env, is_open, hold_left, yg = state[0], state[1], state[2], state[3]
    for n in range(x.shape[0]):
        env, is_open, hold_left, yg = _gate_step(x[n], env, is_open, hold_left, yg, a_env,
                                                open_lin, close_lin, hold, threshold_db,
                                                ratio, range_db, a_open, a_close)
        gain_db[n] = yg
        y[n] = x[n] * _fast_db_to_gain(yg)
    state[0], state[1], state[2], state[3] = env, is_open, hold_left, yg


def _settings(prefix: str, given: dict) -> dict:
    """Defaults from the schema for ``prefix*`` parameters, overridden and range-checked."""
    out = {n[len(prefix):]: s.default for n, s in CHANNEL_SPECS.items() if n.startswith(prefix)}
    for name, value in given.items():
        key = prefix + name
        if key not in CHANNEL_SPECS:
            raise ValueError(f"unknown setting {name!r}: use one of {', '.join(sorted(out))}")
        out[name] = CHANNEL_SPECS[key].check(value)
    return out


class Compressor:
    """A mono compressor on whole signals, streaming; the same steps as the channel strip.

    Settings are the ``comp_*`` parameters of the schema without the prefix, e.g.
    ``Compressor(48000, threshold_db=-20, ratio=4)``.  ``process`` returns the output and
    the gain reduction in dB per sample.
    """

    def __init__(self, sample_rate_hz: float, **settings):
        self.fs_hz = float(sample_rate_hz)
        self.settings = _settings("comp_", settings)
        self.state = np.zeros(2)

    def process(self, x):
        x = np.ascontiguousarray(x, dtype=np.float64)
        y, gr = np.empty_like(x), np.empty_like(x)
        s = self.settings
        _compressor_run(x, y, gr, self.state, self.fs_hz, s["threshold_db"], s["ratio"],
                        s["knee_db"], s["attack_ms"], s["release_ms"], s["makeup_db"],
                        bool(s["detector_rms"]), s["rms_ms"])
        return y, gr

    def reset(self):
        self.state[:] = 0.0


class Gate:
    """A mono gate/expander on whole signals, streaming; the same steps as the channel strip.

    Settings are the ``gate_*`` parameters of the schema without the prefix.  ``process``
    returns the output and the gate gain in dB per sample.
    """

    def __init__(self, sample_rate_hz: float, **settings):
        self.fs_hz = float(sample_rate_hz)
        self.settings = _settings("gate_", settings)
        self.state = np.zeros(4)
        self.state[3] = 0.0

    def process(self, x):
        x = np.ascontiguousarray(x, dtype=np.float64)
        y, g = np.empty_like(x), np.empty_like(x)
        s = self.settings
        _gate_run(x, y, g, self.state, self.fs_hz, s["threshold_db"], s["hysteresis_db"],
                  s["range_db"], s["ratio"], s["attack_ms"], s["hold_ms"], s["release_ms"])
        return y, g

    def reset(self):
        self.state[:] = 0.0
