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

from edgemix.dsp._jit import kernel
from edgemix.params import CHANNEL_SPECS

#: Release of the gate's peak envelope follower.  The gate decides open/closed on this
#: envelope (instant attack), so 10 ms keeps it from chattering inside one period of a low
#: note (a 100 Hz cycle) while still following syllables; hold and hysteresis do the rest.
GATE_ENVELOPE_RELEASE_MS = 10.0

#: Gain reductions below this many dB are flushed to exactly 0 so an idle compressor skips
#: the exp() per sample and never leaves denormals in its state.
FLUSH_DB = 1e-7

#: A floor for levels in dB (10 log10 of a power below 1e-20, i.e. -200 dB).
FLOOR_DB = -200.0


#: dB <-> natural-log factors.  Per-sample conversions use exp/log with these rather than
#: ``10 ** x`` and ``log10``: the same values to double precision, but ``pow`` and ``log10``
#: cost ~3.5x as much as ``exp`` and ``log`` in libm (35 ns vs 10 ns a pair, measured here).
LN10_OVER_20 = math.log(10.0) / 20.0
DB10_PER_LN = 10.0 / math.log(10.0)
DB20_PER_LN = 20.0 / math.log(10.0)


@kernel(inline="always")
def db_to_gain(db):
    """``10^(db/20)`` per sample, through ``exp``."""
    return math.exp(db * LN10_OVER_20)


@kernel(inline="always")
def power_to_db(power):
    """``10 log10(power)`` per sample, through ``log``."""
    return DB10_PER_LN * math.log(power)


@kernel
def time_constant_alpha(time_ms, fs_hz):
    """One-pole coefficient for a time constant: ``exp(-1 / (tau fs))``; 0 for tau = 0."""
    if time_ms <= 0.0:
        return 0.0
    return math.exp(-1000.0 / (time_ms * fs_hz))


@kernel
def compressor_gain_db(x_db, threshold_db, ratio, knee_db):
    """Static curve: gain in dB (<= 0) for an input level in dB (Giannoulis 2012, eq. 4)."""
    over = x_db - threshold_db
    if 2.0 * over < -knee_db:
        return 0.0
    if 2.0 * abs(over) <= knee_db:
        t = over + 0.5 * knee_db
        return (1.0 / ratio - 1.0) * t * t / (2.0 * knee_db)
    return (1.0 / ratio - 1.0) * over


@kernel
def expander_gain_db(x_db, threshold_db, ratio, range_db):
    """Downward expander below threshold: ``(x - T)(ratio - 1)``, no deeper than ``-range``."""
    if x_db >= threshold_db:
        return 0.0
    return max(-range_db, (x_db - threshold_db) * (ratio - 1.0))


@kernel
def compressor_step(x, yl_db, ms, rms_mode, a_rms, knee_lo_sq, threshold_db, ratio, knee_db,
                    a_attack, a_release):
    """One sample of detector + gain computer + ballistics.

    Returns ``(yl_db, ms)``: the smoothed gain reduction in dB (>= 0) and the RMS
    detector's mean square.  ``knee_lo_sq`` is the squared linear level where the knee
    starts; below it the gain computer is 0 dB and the log is skipped.
    """
    if rms_mode:
        ms = a_rms * ms + (1.0 - a_rms) * x * x
        lvl_sq = ms
    else:
        lvl_sq = x * x
    xl = 0.0
    if lvl_sq > knee_lo_sq:
        xl = -compressor_gain_db(power_to_db(lvl_sq), threshold_db, ratio, knee_db)
    # smooth branching detector (eq. 17): attack while reduction grows, release otherwise
    if xl > yl_db:
        yl_db = a_attack * yl_db + (1.0 - a_attack) * xl
    else:
        yl_db = a_release * yl_db + (1.0 - a_release) * xl
    if yl_db < FLUSH_DB:
        yl_db = 0.0
    return yl_db, ms


@kernel
def gate_step(x, env, is_open, hold_left, yg_db, a_env, open_lin, close_lin, hold_samples,
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
        env_db = DB20_PER_LN * math.log(env) if env > 1e-10 else FLOOR_DB
        target = expander_gain_db(env_db, threshold_db, ratio, range_db)
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
    a_att = time_constant_alpha(attack_ms, fs_hz)
    a_rel = time_constant_alpha(release_ms, fs_hz)
    a_rms = time_constant_alpha(rms_ms, fs_hz)
    knee_lo_db = threshold_db - 0.5 * knee_db
    knee_lo_sq = 10.0 ** (knee_lo_db / 10.0)
    yl, ms = state[0], state[1]
    for n in range(x.shape[0]):
        yl, ms = compressor_step(x[n], yl, ms, rms_mode, a_rms, knee_lo_sq, threshold_db,
                                 ratio, knee_db, a_att, a_rel)
        gr_db[n] = yl
        y[n] = x[n] * db_to_gain(makeup_db - yl)
    state[0], state[1] = yl, ms


@kernel
def _gate_run(x, y, gain_db, state, fs_hz, threshold_db, hysteresis_db, range_db, ratio,
              attack_ms, hold_ms, release_ms):
    a_env = time_constant_alpha(GATE_ENVELOPE_RELEASE_MS, fs_hz)
    a_open = time_constant_alpha(attack_ms, fs_hz)
    a_close = time_constant_alpha(release_ms, fs_hz)
    open_lin = 10.0 ** (threshold_db / 20.0)
    close_lin = 10.0 ** ((threshold_db - hysteresis_db) / 20.0)
    hold = math.floor(hold_ms * 1e-3 * fs_hz + 0.5)
    env, is_open, hold_left, yg = state[0], state[1], state[2], state[3]
    for n in range(x.shape[0]):
        env, is_open, hold_left, yg = gate_step(x[n], env, is_open, hold_left, yg, a_env,
                                                open_lin, close_lin, hold, threshold_db,
                                                ratio, range_db, a_open, a_close)
        gain_db[n] = yg
        y[n] = x[n] * db_to_gain(yg)
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
