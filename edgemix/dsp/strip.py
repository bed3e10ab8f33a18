"""The channel strips: every channel of a block in one fused kernel.

Chain per channel (DESIGN.md): input trim and polarity -> high-pass (12 or 24 dB/oct) ->
4-band parametric EQ -> gate/expander -> compressor -> [gain-sharing automixer] -> fader and
mute -> constant-power pan -> aux sends (pre or post fader).

Three rates:
* **per sample**: the audio, the dynamics ballistics, and one-pole smoothing of every gain
  (trim, fader, pan, sends, make-up, and each stage's in-circuit crossfade), so no move is
  ever a jump;
* **control rate**, every ``TICK`` samples of the *absolute* sample clock: parameter targets
  are read, filter parameters glide toward them (per-column smoothing times from the
  schema) and a section's coefficients are recomputed only when its parameters moved;
  because ticks are anchored to the sample clock, not to block boundaries, any block size
  gives the same output (DESIGN.md contract 2);
* **per block**: nothing but loop bounds.

State lives in arrays owned by the console (``StripState``); the kernels only loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgemix.dsp._jit import kernel
from edgemix.dsp.biquad import (BUTTERWORTH2_Q, BUTTERWORTH4_Q, HIGHPASS, HIGHSHELF, LOWSHELF,
                                PEAK, rbj_coefficients, set_identity)
from edgemix.dsp.dynamics import (GATE_ENVELOPE_RELEASE_MS, compressor_step, db_to_gain,
                                  gain_of_db, gate_step, time_constant_alpha)
from edgemix.dsp.meters import DEFAULT_PEAK_DECAY_DB_PER_S, DEFAULT_RMS_TIME_CONSTANT_MS
from edgemix.params import CH, CHANNEL_PARAMS, MAX_AUX, N_CH

#: Control-rate period in samples (0.33 ms at 48 kHz): fine enough that a filter glide is
#: smooth, coarse enough that recomputing six sections costs little per sample.
TICK = 16

#: Period of the upkeep (snapping arrived gains, flushing near-denormal states, deciding
#: which faded-out stages can be skipped), in samples; a multiple of TICK.
UPKEEP = 256

#: Biquad sections per channel: two for the high-pass, four EQ bands.
N_SECTIONS = 6
EQ_KINDS = (LOWSHELF, PEAK, PEAK, HIGHSHELF)

# Per-sample smoothed gains and crossfades, one column each.
G_IN, M_HPF, M_EQ, M_GATE, M_COMP, G_MAKEUP, G_L, G_R = range(8)
G_AUX = 8
N_GAINS = G_AUX + MAX_AUX

# Dynamics and meter state per channel.
D_YL, D_MS, D_ENV, D_OPEN, D_HOLD, D_YG, D_PEAK, D_METER_MS = range(8)
N_DYN = 8

# Cached control-rate constants per channel.
(K_A_ATT, K_A_REL, K_A_RMS, K_KNEE_LO_SQ, K_OPEN_LIN, K_CLOSE_LIN, K_HOLD, K_A_OPEN,
 K_A_CLOSE, K_A_ENV, K_HPF_ACT, K_EQ_ACT, K_GATE_ACT, K_COMP_ACT, K_MOVING) = range(15)
N_CONST = 15

# How a column is handled at a control tick.
CLASS_GAIN, CLASS_FILTER, CLASS_DYN, CLASS_OTHER = range(4)

#: Channel meters (pre-fader) use the bus meters' ballistics (``meters.py``: IEC 60268-18
#: peak return, 300 ms RMS), computed inline here so the strip reads its signal once.
METER_PEAK_FALL_DB_PER_S = DEFAULT_PEAK_DECAY_DB_PER_S
METER_RMS_MS = DEFAULT_RMS_TIME_CONSTANT_MS

#: Inputs beyond +/-1e6 (+120 dBFS) are as broken as NaN: the guard replaces both.
GUARD_LIMIT = 1.0e6

#: A crossfade below this is treated as finished and the stage is skipped.
ACTIVE_EPS = 1e-6

#: Filter parameters glide until within this relative distance of their target.
_FILTER_TOL = 1e-6
#: A smoothed gain this close (relative) to its target has arrived and is snapped to it.
_GAIN_SNAP = 1e-9
#: States below this magnitude are flushed to 0 (far below float32 audio resolution, far
#: above the denormal range that would slow every operation on them).
_DENORMAL_GUARD = 1e-25

_FILTER_BAND = {"hpf_hz": 0, "hpf_slope_db_oct": 0}
for _b in range(1, 5):
    for _s in ("hz", "gain_db", "q"):
        _FILTER_BAND[f"eq{_b}_{_s}"] = _b

_GAIN_COLUMNS = {"trim_db", "polarity_invert", "hpf_on", "eq_on", "gate_on", "comp_on",
                 "comp_makeup_db", "fader_db", "mute_on", "pan"}


def _column_tables(fs_hz: float):
    """Per-column tables that tell the tick how to treat each parameter (from the schema)."""
    cls = np.full(N_CH, CLASS_OTHER, np.int64)
    band = np.full(N_CH, -1, np.int64)
    logscale = np.zeros(N_CH, np.bool_)
    alpha = np.ones(N_CH)
    for j, spec in enumerate(CHANNEL_PARAMS):
        if spec.name in _FILTER_BAND:
            cls[j] = CLASS_FILTER
            band[j] = _FILTER_BAND[spec.name]
            logscale[j] = spec.scale == "log"
            if spec.smoothing_ms > 0:
                alpha[j] = 1.0 - math.exp(-TICK * 1000.0 / (spec.smoothing_ms * fs_hz))
        elif spec.name in _GAIN_COLUMNS or spec.name.startswith("aux"):
            cls[j] = CLASS_GAIN
        elif spec.name.startswith(("comp_", "gate_")):
            cls[j] = CLASS_DYN
    return cls, band, logscale, alpha


def _gain_alphas(fs_hz: float) -> np.ndarray:
    """Per-sample one-pole coefficient of each smoothed gain, from its column's smoothing."""
    def a(name):
        ms = next(s.smoothing_ms for s in CHANNEL_PARAMS if s.name == name)
        return 1.0 - math.exp(-1000.0 / (ms * fs_hz))
    out = np.empty(N_GAINS)
    out[G_IN] = a("trim_db")
    out[M_HPF] = a("hpf_on")
    out[M_EQ] = a("eq_on")
    out[M_GATE] = a("gate_on")
    out[M_COMP] = a("comp_on")
    out[G_MAKEUP] = a("comp_makeup_db")
    out[G_L] = out[G_R] = a("fader_db")
    out[G_AUX:] = a("aux1_send_db")
    return out


AUX_SEND_COLS = np.array([getattr(CH, f"aux{k}_send_db") for k in range(1, MAX_AUX + 1)])
AUX_PRE_COLS = np.array([getattr(CH, f"aux{k}_pre") for k in range(1, MAX_AUX + 1)])


@dataclass
class StripState:
    """Every array the strip kernels read or write, allocated once per console."""

    cur: np.ndarray        # (C, N_CH) control-rate values (NaN = recompute at next tick)
    gain: np.ndarray       # (C, N_GAINS) smoothed gains now
    gain_t: np.ndarray     # (C, N_GAINS) their targets
    gain_prev: np.ndarray  # (C, N_GAINS) the targets before this block's first tick
    coef: np.ndarray       # (C, N_SECTIONS, 5) biquad coefficients
    z: np.ndarray          # (C, N_SECTIONS, 2) biquad states
    dyn: np.ndarray        # (C, N_DYN) dynamics and meter state
    k: np.ndarray          # (C, N_CONST) cached constants
    col_class: np.ndarray  # (N_CH,) tables from the schema
    col_band: np.ndarray
    col_log: np.ndarray
    col_alpha: np.ndarray
    gain_alpha: np.ndarray  # (N_GAINS,)
    meter_k: np.ndarray     # (2,) peak fall multiplier per sample, RMS one-pole coefficient

    @classmethod
    def allocate(cls, n_channels: int, fs_hz: float) -> "StripState":
        c_cls, c_band, c_log, c_alpha = _column_tables(fs_hz)
        meter_k = np.array([10.0 ** (-METER_PEAK_FALL_DB_PER_S / (20.0 * fs_hz)),
                            1.0 - math.exp(-1000.0 / (METER_RMS_MS * fs_hz))])
        st = cls(cur=np.empty((n_channels, N_CH)), gain=np.zeros((n_channels, N_GAINS)),
                 gain_t=np.zeros((n_channels, N_GAINS)),
                 gain_prev=np.zeros((n_channels, N_GAINS)),
                 coef=np.zeros((n_channels, N_SECTIONS, 5)),
                 z=np.zeros((n_channels, N_SECTIONS, 2)), dyn=np.zeros((n_channels, N_DYN)),
                 k=np.zeros((n_channels, N_CONST)), col_class=c_cls, col_band=c_band,
                 col_log=c_log, col_alpha=c_alpha, gain_alpha=_gain_alphas(fs_hz),
                 meter_k=meter_k)
        st.reset()
        return st

    def reset(self) -> None:
        """Clear audio state; the next tick recomputes everything and snaps gains."""
        self.cur[:] = np.nan
        self.z[:] = 0.0
        self.dyn[:] = 0.0
        self.gain[:] = np.nan  # NaN = snap to target at the next tick
        self.k[:, K_MOVING] = 1.0

    def targets_changed(self) -> None:
        """Tell the next tick of every channel to scan its parameter columns."""
        self.k[:, K_MOVING] = 1.0

@kernel(inline="always")
def _tick(c, p, st_cur, gain, gain_t, coef, z, dyn, k, col_class, col_band, col_log, col_alpha,
          fs_hz, n_aux, upkeep):
    """Control-rate update of channel ``c``: glide, recompute what moved, decide what runs.

    Nearly free when nothing moves: the column scan runs only while ``k[c, K_MOVING]`` is
    set (by the console when new targets arrive; cleared once every column has arrived),
    and the upkeep below only every ``UPKEEP`` samples of the clock.
    """
    if k[c, K_MOVING] > 0.0:
        _tick_columns(c, p, st_cur, gain, gain_t, coef, k, col_class, col_band, col_log,
                      col_alpha, fs_hz, n_aux)
        upkeep = True  # a stage switched in must start at this tick
    if not upkeep:
        return
    # Gains that have arrived snap to their target: a one-pole never quite gets there, and
    # one heading for 0 would otherwise end in denormals (slow on every x86 and ARM core).
    for i in range(N_GAINS):
        t = gain_t[c, i]
        if abs(gain[c, i] - t) <= _GAIN_SNAP * abs(t) + _DENORMAL_GUARD:
            gain[c, i] = t
    # Filter and detector states decaying in silence: flush before they turn denormal.
    for i in range(N_SECTIONS):
        for j in range(2):
            if abs(z[c, i, j]) < _DENORMAL_GUARD:
                z[c, i, j] = 0.0
    for i in range(N_DYN):
        if abs(dyn[c, i]) < _DENORMAL_GUARD:
            dyn[c, i] = 0.0

    # Which stages run until the next upkeep: those switched in, or still fading out.
    _set_active(c, gain, gain_t, k, M_HPF, K_HPF_ACT)
    _set_active(c, gain, gain_t, k, M_EQ, K_EQ_ACT)
    _set_active(c, gain, gain_t, k, M_GATE, K_GATE_ACT)
    _set_active(c, gain, gain_t, k, M_COMP, K_COMP_ACT)
    if k[c, K_COMP_ACT] == 0.0:
        dyn[c, D_YL] = 0.0
        dyn[c, D_MS] = 0.0
    if k[c, K_GATE_ACT] == 0.0:
        dyn[c, D_YG] = 0.0
        dyn[c, D_ENV] = 0.0
        dyn[c, D_OPEN] = 0.0
        dyn[c, D_HOLD] = 0.0


@kernel(inline="always")
def _set_active(c, gain, gain_t, k, m, flag):
    if gain_t[c, m] > 0.0 or gain[c, m] > ACTIVE_EPS:
        k[c, flag] = 1.0
    else:
        k[c, flag] = 0.0
        gain[c, m] = 0.0


@kernel
def _tick_columns(c, p, st_cur, gain, gain_t, coef, k, col_class, col_band, col_log, col_alpha,
                  fs_hz, n_aux):
    """Move every column of channel ``c`` toward its target; recompute what moved."""
    dirty_bands = 0
    dirty_gain = False
    dirty_dyn = False
    moving = False
    for j in range(p.shape[1]):
        t = p[c, j]
        v = st_cur[c, j]
        if v == t:
            continue
        cl = col_class[j]
        if cl == CLASS_FILTER and v == v and col_alpha[j] < 1.0:
            a = col_alpha[j]
            if col_log[j]:
                v = v * (t / v) ** a
            else:
                v = v + a * (t - v)
            if abs(v - t) <= _FILTER_TOL * max(1.0, abs(t)):
                v = t
            else:
                moving = True
        else:
            v = t
        st_cur[c, j] = v
        if cl == CLASS_GAIN:
            dirty_gain = True
        elif cl == CLASS_FILTER:
            dirty_bands |= 1 << col_band[j]
        elif cl == CLASS_DYN:
            dirty_dyn = True
    k[c, K_MOVING] = 1.0 if moving else 0.0

    cur = st_cur[c]
    if dirty_bands & 1:
        if cur[CH.hpf_slope_db_oct] > 18.0:
            rbj_coefficients(HIGHPASS, cur[CH.hpf_hz], 0.0, BUTTERWORTH4_Q[0], fs_hz, coef[c, 0], 0)
            rbj_coefficients(HIGHPASS, cur[CH.hpf_hz], 0.0, BUTTERWORTH4_Q[1], fs_hz, coef[c, 1], 0)
        else:
            rbj_coefficients(HIGHPASS, cur[CH.hpf_hz], 0.0, BUTTERWORTH2_Q, fs_hz, coef[c, 0], 0)
            set_identity(coef[c, 1], 0)
    for b in range(4):
        if dirty_bands & (2 << b):
            base = CH.eq1_hz + 3 * b
            rbj_coefficients(EQ_KINDS[b], cur[base], cur[base + 1], cur[base + 2], fs_hz,
                             coef[c, 2 + b], 0)

    if dirty_gain:
        g = gain_t[c]
        g[G_IN] = 10.0 ** (cur[CH.trim_db] / 20.0) * (1.0 - 2.0 * cur[CH.polarity_invert])
        g[M_HPF] = cur[CH.hpf_on]
        g[M_EQ] = cur[CH.eq_on]
        g[M_GATE] = cur[CH.gate_on]
        g[M_COMP] = cur[CH.comp_on]
        g[G_MAKEUP] = 10.0 ** (cur[CH.comp_makeup_db] / 20.0)
        mute = 1.0 - cur[CH.mute_on]
        fader = gain_of_db(cur[CH.fader_db])
        # constant-power pan, -3 dB at centre: theta in [0, pi/2], L = cos, R = sin
        theta = (cur[CH.pan] + 1.0) * (math.pi / 4.0)
        g[G_L] = fader * mute * math.cos(theta)
        g[G_R] = fader * mute * math.sin(theta)
        for a in range(n_aux):
            send = gain_of_db(cur[AUX_SEND_COLS[a]])
            if cur[AUX_PRE_COLS[a]] > 0.5:
                g[G_AUX + a] = send * mute
            else:
                g[G_AUX + a] = send * fader * mute
        for i in range(gain.shape[1]):
            if gain[c, i] != gain[c, i]:  # after reset: start at the target, no ramp
                gain[c, i] = g[i]

    if dirty_dyn:
        kc = k[c]
        kc[K_A_ATT] = time_constant_alpha(cur[CH.comp_attack_ms], fs_hz)
        kc[K_A_REL] = time_constant_alpha(cur[CH.comp_release_ms], fs_hz)
        kc[K_A_RMS] = time_constant_alpha(cur[CH.comp_rms_ms], fs_hz)
        if cur[CH.comp_ratio] <= 1.0:
            kc[K_KNEE_LO_SQ] = np.inf  # 1:1 never reduces gain: skip the detector's log
        else:
            kc[K_KNEE_LO_SQ] = 10.0 ** ((cur[CH.comp_threshold_db] - 0.5 * cur[CH.comp_knee_db]) / 10.0)
        kc[K_OPEN_LIN] = 10.0 ** (cur[CH.gate_threshold_db] / 20.0)
        kc[K_CLOSE_LIN] = 10.0 ** ((cur[CH.gate_threshold_db] - cur[CH.gate_hysteresis_db]) / 20.0)
        kc[K_HOLD] = math.floor(cur[CH.gate_hold_ms] * 1e-3 * fs_hz + 0.5)
        kc[K_A_OPEN] = time_constant_alpha(cur[CH.gate_attack_ms], fs_hz)
        kc[K_A_CLOSE] = time_constant_alpha(cur[CH.gate_release_ms], fs_hz)
        kc[K_A_ENV] = time_constant_alpha(GATE_ENVELOPE_RELEASE_MS, fs_hz)


@kernel
def guard_input(x_fc, work_cf, count):
    """Copy ``(frames, channels)`` input to ``(channels, frames)``, replacing bad samples.

    NaN, +/-Inf and magnitudes beyond ``GUARD_LIMIT`` become 0 and are counted in
    ``count[0]``, so no filter or detector state is ever poisoned.
    """
    n_frames, n_ch = x_fc.shape
    bad = 0
    for n in range(n_frames):
        for c in range(n_ch):
            v = x_fc[n, c]
            if not (abs(v) <= GUARD_LIMIT):  # false for NaN too
                v = 0.0
                bad += 1
            work_cf[c, n] = v
    count[0] += bad


@kernel
def strips_pre_fader(work, n_frames, clock, p, cur, gain, gain_t, gain_prev, coef, z, dyn, k,
                     col_class, col_band, col_log, col_alpha, gain_alpha, meter_k, fs_hz, n_aux):
    """Trim, polarity, HPF, EQ, gate and compressor of every channel, in place on ``work``.

    ``work`` is ``(channels, >= n_frames)`` float32; ``clock`` is the absolute index of its
    first sample.  Also updates the per-channel meter states, and keeps the gain targets in
    force before this block's first tick in ``gain_prev`` for ``strips_post_fader``.
    """
    for c in range(work.shape[0]):
        for i in range(gain_t.shape[1]):
            gain_prev[c, i] = gain_t[c, i]
        i = 0
        while i < n_frames:
            phase = (clock + i) % TICK
            if phase == 0:
                _tick(c, p, cur, gain, gain_t, coef, z, dyn, k, col_class, col_band, col_log,
                      col_alpha, fs_hz, n_aux, (clock + i) % UPKEEP == 0)
            end = min(n_frames, i + TICK - phase)
            _strip_segment(c, work, i, end, gain, gain_t, gain_alpha, coef, z, dyn, k, cur,
                           meter_k)
            i = end


@kernel(inline="always")
def _strip_segment(c, x, start, end, g, gt, ga, coef, z, d, kc, cur, meter_k):
    """The per-sample chain of channel ``c`` between two ticks, every state in a local.

    Arrays are indexed with ``c`` rather than sliced: a view per call would cost reference
    counting (atomics) on every segment.
    """
    g_in, t_in, a_in = g[c, G_IN], gt[c, G_IN], ga[G_IN]
    m_h, t_h, a_h = g[c, M_HPF], gt[c, M_HPF], ga[M_HPF]
    m_e, t_e, a_e = g[c, M_EQ], gt[c, M_EQ], ga[M_EQ]
    m_g, t_g, a_g = g[c, M_GATE], gt[c, M_GATE], ga[M_GATE]
    m_c, t_c, a_c = g[c, M_COMP], gt[c, M_COMP], ga[M_COMP]
    g_mk, t_mk, a_mk = g[c, G_MAKEUP], gt[c, G_MAKEUP], ga[G_MAKEUP]
    hpf_on = kc[c, K_HPF_ACT] > 0.0
    eq_on = kc[c, K_EQ_ACT] > 0.0
    gate_on = kc[c, K_GATE_ACT] > 0.0
    comp_on = kc[c, K_COMP_ACT] > 0.0
    # biquad coefficients and states
    h0b0, h0b1, h0b2, h0a1, h0a2 = coef[c, 0, 0], coef[c, 0, 1], coef[c, 0, 2], coef[c, 0, 3], coef[c, 0, 4]
    h1b0, h1b1, h1b2, h1a1, h1a2 = coef[c, 1, 0], coef[c, 1, 1], coef[c, 1, 2], coef[c, 1, 3], coef[c, 1, 4]
    e0b0, e0b1, e0b2, e0a1, e0a2 = coef[c, 2, 0], coef[c, 2, 1], coef[c, 2, 2], coef[c, 2, 3], coef[c, 2, 4]
    e1b0, e1b1, e1b2, e1a1, e1a2 = coef[c, 3, 0], coef[c, 3, 1], coef[c, 3, 2], coef[c, 3, 3], coef[c, 3, 4]
    e2b0, e2b1, e2b2, e2a1, e2a2 = coef[c, 4, 0], coef[c, 4, 1], coef[c, 4, 2], coef[c, 4, 3], coef[c, 4, 4]
    e3b0, e3b1, e3b2, e3a1, e3a2 = coef[c, 5, 0], coef[c, 5, 1], coef[c, 5, 2], coef[c, 5, 3], coef[c, 5, 4]
    h0s1, h0s2, h1s1, h1s2 = z[c, 0, 0], z[c, 0, 1], z[c, 1, 0], z[c, 1, 1]
    e0s1, e0s2, e1s1, e1s2 = z[c, 2, 0], z[c, 2, 1], z[c, 3, 0], z[c, 3, 1]
    e2s1, e2s2, e3s1, e3s2 = z[c, 4, 0], z[c, 4, 1], z[c, 5, 0], z[c, 5, 1]
    yl, ms = d[c, D_YL], d[c, D_MS]
    env, is_open, hold_left, yg = d[c, D_ENV], d[c, D_OPEN], d[c, D_HOLD], d[c, D_YG]
    pk, mms = d[c, D_PEAK], d[c, D_METER_MS]
    pk_fall, a_mms = meter_k[0], meter_k[1]
    a_att, a_rel, a_rms, knee_lo_sq = kc[c, K_A_ATT], kc[c, K_A_REL], kc[c, K_A_RMS], kc[c, K_KNEE_LO_SQ]
    thr, ratio, knee = cur[c, CH.comp_threshold_db], cur[c, CH.comp_ratio], cur[c, CH.comp_knee_db]
    g_open, g_close, g_hold = kc[c, K_OPEN_LIN], kc[c, K_CLOSE_LIN], kc[c, K_HOLD]
    g_thr, g_ratio, g_range = cur[c, CH.gate_threshold_db], cur[c, CH.gate_ratio], cur[c, CH.gate_range_db]
    a_open, a_close, a_env = kc[c, K_A_OPEN], kc[c, K_A_CLOSE], kc[c, K_A_ENV]
    rms_mode = cur[c, CH.comp_detector_rms] > 0.5

    for n in range(start, end):
        g_in += a_in * (t_in - g_in)
        s = x[c, n] * g_in
        if hpf_on:
            m_h += a_h * (t_h - m_h)
            # TDF-II sections (see biquad._biquad_run)
            y = h0b0 * s + h0s1
            h0s1 = h0b1 * s - h0a1 * y + h0s2
            h0s2 = h0b2 * s - h0a2 * y
            w = h1b0 * y + h1s1
            h1s1 = h1b1 * y - h1a1 * w + h1s2
            h1s2 = h1b2 * y - h1a2 * w
            s = s + m_h * (w - s)
        if eq_on:
            m_e += a_e * (t_e - m_e)
            y = e0b0 * s + e0s1
            e0s1 = e0b1 * s - e0a1 * y + e0s2
            e0s2 = e0b2 * s - e0a2 * y
            w = e1b0 * y + e1s1
            e1s1 = e1b1 * y - e1a1 * w + e1s2
            e1s2 = e1b2 * y - e1a2 * w
            y = e2b0 * w + e2s1
            e2s1 = e2b1 * w - e2a1 * y + e2s2
            e2s2 = e2b2 * w - e2a2 * y
            w = e3b0 * y + e3s1
            e3s1 = e3b1 * y - e3a1 * w + e3s2
            e3s2 = e3b2 * y - e3a2 * w
            s = s + m_e * (w - s)
        if gate_on:
            m_g += a_g * (t_g - m_g)
            env, is_open, hold_left, yg = gate_step(s, env, is_open, hold_left, yg, a_env,
                                                    g_open, g_close, g_hold, g_thr, g_ratio,
                                                    g_range, a_open, a_close)
            if yg < 0.0:
                s = s * (1.0 + m_g * (db_to_gain(yg) - 1.0))
        if comp_on:
            m_c += a_c * (t_c - m_c)
            g_mk += a_mk * (t_mk - g_mk)
            yl, ms = compressor_step(s, yl, ms, rms_mode, a_rms, knee_lo_sq, thr, ratio, knee,
                                     a_att, a_rel)
            gc = g_mk if yl == 0.0 else g_mk * db_to_gain(-yl)
            s = s * (1.0 + m_c * (gc - 1.0))
        a = abs(s)
        pk = a if a > pk * pk_fall else pk * pk_fall
        mms += a_mms * (s * s - mms)
        x[c, n] = s

    g[c, G_IN], g[c, M_HPF], g[c, M_EQ], g[c, M_GATE], g[c, M_COMP], g[c, G_MAKEUP] = g_in, m_h, m_e, m_g, m_c, g_mk
    z[c, 0, 0], z[c, 0, 1], z[c, 1, 0], z[c, 1, 1] = h0s1, h0s2, h1s1, h1s2
    z[c, 2, 0], z[c, 2, 1], z[c, 3, 0], z[c, 3, 1] = e0s1, e0s2, e1s1, e1s2
    z[c, 4, 0], z[c, 4, 1], z[c, 5, 0], z[c, 5, 1] = e2s1, e2s2, e3s1, e3s2
    d[c, D_YL], d[c, D_MS] = yl, ms
    d[c, D_ENV], d[c, D_OPEN], d[c, D_HOLD], d[c, D_YG] = env, is_open, hold_left, yg
    d[c, D_PEAK], d[c, D_METER_MS] = pk, mms


@kernel
def strips_post_fader(work, n_frames, clock, gain, gain_t, gain_prev, gain_alpha, bus, aux,
                      n_aux):
    """Fader, mute, pan and sends: accumulate every channel into the stereo bus and auxes.

    ``bus`` is ``(2, >= n_frames)`` and ``aux`` ``(n_aux, >= n_frames)``, both float32 and
    zeroed by the caller.  Gains glide per sample toward their targets; a target set at this
    block's first tick takes effect from that tick, exactly as in ``strips_pre_fader``, so
    the block size never changes the output.
    """
    first_tick = (TICK - clock % TICK) % TICK
    for c in range(work.shape[0]):
        _accumulate(work, c, n_frames, first_tick, gain, gain_t, gain_prev, gain_alpha, G_L,
                    bus, 0)
        _accumulate(work, c, n_frames, first_tick, gain, gain_t, gain_prev, gain_alpha, G_R,
                    bus, 1)
        for a in range(n_aux):
            _accumulate(work, c, n_frames, first_tick, gain, gain_t, gain_prev, gain_alpha,
                        G_AUX + a, aux, a)


@kernel(inline="always")
def _accumulate(work, c, n_frames, first_tick, gain, gain_t, gain_prev, gain_alpha, i, dst, row):
    """``dst[row] += g * work[c]`` with gain column ``i`` gliding per sample."""
    g = gain[c, i]
    t_new = gain_t[c, i]
    t = gain_prev[c, i]
    if g == t and t == t_new:  # settled: a plain multiply-add the compiler can vectorise
        if g != 0.0:
            for n in range(n_frames):
                dst[row, n] += g * work[c, n]
        return
    a = gain_alpha[i]
    for n in range(n_frames):
        if n == first_tick:
            t = t_new
        g += a * (t - g)
        dst[row, n] += g * work[c, n]
    gain[c, i] = g
