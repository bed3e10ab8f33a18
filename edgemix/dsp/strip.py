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

Layout: SIMD across channels.  The chain of one channel is a long serial dependency
(six biquads, a detector, a log and an exp per sample), so a channel-at-a-time loop is
bound by latency, not arithmetic: plain C -O3 of the same chain runs at ~50 ns per
channel-sample here.  So the audio is ``(frames, channels)``, every per-channel value is
a row ``(quantity, channels)``, and each stage is one pass ``for sample: for channel:``
whose inner loop LLVM vectorises (four float64 channels per AVX2 vector; NEON does two)
with many independent chains in flight.  Every stage's arithmetic per sample is the same
as a scalar strip's, so the result does not depend on the layout.  A stage runs for every
channel when any channel has it in circuit: a channel with the stage out of circuit has
its crossfade at exactly 0 (output untouched), and its stage state is cleared when it
switches in, so no channel depends on another's settings.  Ticks where nothing moves are
skipped, so a pass spans a whole block in the steady state.

State lives in arrays owned by the console (``StripState``); the kernels only loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgemix.dsp._jit import kernel
from edgemix.dsp.arena import _f64_1, _f64_2, _f64_3, _i64_1
from edgemix.dsp.biquad import (BUTTERWORTH2_Q, BUTTERWORTH4_Q, HIGHPASS, HIGHSHELF, LOWSHELF,
                                PEAK, _rbj_coefficients, _set_identity)
from edgemix.dsp.dynamics import (GATE_ENVELOPE_RELEASE_MS, _compressor_step, _fast_db_to_gain,
                                  _gain_of_db, _gate_step, _half_inverse_knee, _knee_start_sq,
                                  _time_constant_alpha)
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

# Cached control-rate constants per channel (rows, so the passes read them as vectors).
(K_A_ATT, K_A_REL, K_A_RMS, K_KNEE_LO_SQ, K_OPEN_LIN, K_CLOSE_LIN, K_HOLD, K_A_OPEN,
 K_A_CLOSE, K_A_ENV, K_HPF_ACT, K_EQ_ACT, K_GATE_ACT, K_COMP_ACT, K_MOVING, K_THR, K_SLOPE,
 K_KNEE, K_HALF_INV_KNEE, K_RMS_MODE, K_G_THR, K_G_RATIO, K_G_RANGE) = range(23)
N_CONST = 23

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
    logscale = np.zeros(N_CH, np.int64)  # 0/1 (int64: every table in one arena buffer)
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
    gain: np.ndarray       # (N_GAINS, C) smoothed gains now
    gain_t: np.ndarray     # (N_GAINS, C) their targets
    gain_prev: np.ndarray  # (N_GAINS, C) the targets before this block's first tick
    coef: np.ndarray       # (N_SECTIONS, 5, C) biquad coefficients
    z: np.ndarray          # (N_SECTIONS, 2, C) biquad states
    dyn: np.ndarray        # (N_DYN, C) dynamics and meter state
    k: np.ndarray          # (N_CONST, C) cached constants
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
        st = cls(cur=np.empty((n_channels, N_CH)), gain=np.zeros((N_GAINS, n_channels)),
                 gain_t=np.zeros((N_GAINS, n_channels)),
                 gain_prev=np.zeros((N_GAINS, n_channels)),
                 coef=np.zeros((N_SECTIONS, 5, n_channels)),
                 z=np.zeros((N_SECTIONS, 2, n_channels)), dyn=np.zeros((N_DYN, n_channels)),
                 k=np.zeros((N_CONST, n_channels)), col_class=c_cls, col_band=c_band,
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
        self.k[:] = 0.0
        self.k[K_MOVING] = 1.0

    def targets_changed(self) -> None:
        """Tell the next tick of every channel to scan its parameter columns."""
        self.k[K_MOVING] = 1.0


@kernel(inline="always")
def _strip_views(table, s):
    """A :class:`StripState` in an arena, in its field order (the strip kernels' order)."""
    return (_f64_2(table, s, 0), _f64_2(table, s, 1), _f64_2(table, s, 2),
            _f64_2(table, s, 3), _f64_3(table, s, 4), _f64_3(table, s, 5),
            _f64_2(table, s, 6), _f64_2(table, s, 7), _i64_1(table, s, 8),
            _i64_1(table, s, 9), _i64_1(table, s, 10), _f64_1(table, s, 11),
            _f64_1(table, s, 12), _f64_1(table, s, 13))

@kernel(inline="always")
def _tick(c, p, st_cur, gain, gain_t, coef, z, dyn, k, col_class, col_band, col_log, col_alpha,
          fs_hz, n_aux, upkeep):
    """Control-rate update of channel ``c``: glide, recompute what moved, decide what runs.

    Nearly free when nothing moves: the column scan runs only while ``k[K_MOVING, c]`` is
    set (by the console when new targets arrive; cleared once every column has arrived),
    and the upkeep below only every ``UPKEEP`` samples of the clock.
    """
    if k[K_MOVING, c] > 0.0:
        _tick_columns(c, p, st_cur, gain, gain_t, coef, k, col_class, col_band, col_log,
                      col_alpha, fs_hz, n_aux)
        upkeep = True  # a stage switched in must start at this tick
    if not upkeep:
        return
    # Gains that have arrived snap to their target: a one-pole never quite gets there, and
    # one heading for 0 would otherwise end in denormals (slow on every x86 and ARM core).
    for i in range(N_GAINS):
        t = gain_t[i, c]
        if abs(gain[i, c] - t) <= _GAIN_SNAP * abs(t) + _DENORMAL_GUARD:
            gain[i, c] = t
    # Filter and detector states decaying in silence: flush before they turn denormal.
    for i in range(N_SECTIONS):
        for j in range(2):
            if abs(z[i, j, c]) < _DENORMAL_GUARD:
                z[i, j, c] = 0.0
    for i in range(N_DYN):
        if abs(dyn[i, c]) < _DENORMAL_GUARD:
            dyn[i, c] = 0.0

    # Which stages are in circuit until the next upkeep: those switched in, or still fading
    # out.  A stage's state is cleared while it is out of circuit and as it switches in, so
    # it always starts from rest, whatever ran meanwhile (another channel may have kept the
    # pass running: see the module docstring).
    if not _set_active(c, gain, gain_t, k, M_HPF, K_HPF_ACT):
        for i in range(2):
            z[i, 0, c] = 0.0
            z[i, 1, c] = 0.0
    if not _set_active(c, gain, gain_t, k, M_EQ, K_EQ_ACT):
        for i in range(2, N_SECTIONS):
            z[i, 0, c] = 0.0
            z[i, 1, c] = 0.0
    if not _set_active(c, gain, gain_t, k, M_GATE, K_GATE_ACT):
        dyn[D_YG, c] = 0.0
        dyn[D_ENV, c] = 0.0
        dyn[D_OPEN, c] = 0.0
        dyn[D_HOLD, c] = 0.0
    if not _set_active(c, gain, gain_t, k, M_COMP, K_COMP_ACT):
        dyn[D_YL, c] = 0.0
        dyn[D_MS, c] = 0.0


@kernel(inline="always")
def _set_active(c, gain, gain_t, k, m, flag):
    """Set whether stage ``m`` of channel ``c`` is in circuit (or fading out); return
    whether it was in circuit already and stays so (False: its state must be cleared)."""
    was = k[flag, c] > 0.0
    if gain_t[m, c] > 0.0 or gain[m, c] > ACTIVE_EPS:
        k[flag, c] = 1.0
        return was
    k[flag, c] = 0.0
    gain[m, c] = 0.0
    return False


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
    k[K_MOVING, c] = 1.0 if moving else 0.0

    cur = st_cur[c]
    if dirty_bands & 1:
        if cur[CH.hpf_slope_db_oct] > 18.0:
            _rbj_coefficients(HIGHPASS, cur[CH.hpf_hz], 0.0, BUTTERWORTH4_Q[0], fs_hz,
                             coef[0, :, c], 0)
            _rbj_coefficients(HIGHPASS, cur[CH.hpf_hz], 0.0, BUTTERWORTH4_Q[1], fs_hz,
                             coef[1, :, c], 0)
        else:
            _rbj_coefficients(HIGHPASS, cur[CH.hpf_hz], 0.0, BUTTERWORTH2_Q, fs_hz,
                             coef[0, :, c], 0)
            _set_identity(coef[1, :, c], 0)
    for b in range(4):
        if dirty_bands & (2 << b):
            base = CH.eq1_hz + 3 * b
            _rbj_coefficients(EQ_KINDS[b], cur[base], cur[base + 1], cur[base + 2], fs_hz,
                             coef[2 + b, :, c], 0)

    if dirty_gain:
        g = gain_t[:, c]
        g[G_IN] = 10.0 ** (cur[CH.trim_db] / 20.0) * (1.0 - 2.0 * cur[CH.polarity_invert])
        g[M_HPF] = cur[CH.hpf_on]
        g[M_EQ] = cur[CH.eq_on]
        g[M_GATE] = cur[CH.gate_on]
        g[M_COMP] = cur[CH.comp_on]
        g[G_MAKEUP] = 10.0 ** (cur[CH.comp_makeup_db] / 20.0)
        mute = 1.0 - cur[CH.mute_on]
        fader = _gain_of_db(cur[CH.fader_db])
        # constant-power pan, -3 dB at centre: theta in [0, pi/2], L = cos, R = sin
        theta = (cur[CH.pan] + 1.0) * (math.pi / 4.0)
        g[G_L] = fader * mute * math.cos(theta)
        g[G_R] = fader * mute * math.sin(theta)
        for a in range(n_aux):
            send = _gain_of_db(cur[AUX_SEND_COLS[a]])
            if cur[AUX_PRE_COLS[a]] > 0.5:
                g[G_AUX + a] = send * mute
            else:
                g[G_AUX + a] = send * fader * mute
        for i in range(gain.shape[0]):
            if gain[i, c] != gain[i, c]:  # after reset: start at the target, no ramp
                gain[i, c] = g[i]

    if dirty_dyn:
        k[K_A_ATT, c] = _time_constant_alpha(cur[CH.comp_attack_ms], fs_hz)
        k[K_A_REL, c] = _time_constant_alpha(cur[CH.comp_release_ms], fs_hz)
        k[K_A_RMS, c] = _time_constant_alpha(cur[CH.comp_rms_ms], fs_hz)
        k[K_KNEE_LO_SQ, c] = _knee_start_sq(cur[CH.comp_threshold_db], cur[CH.comp_ratio],
                                           cur[CH.comp_knee_db])
        k[K_THR, c] = cur[CH.comp_threshold_db]
        k[K_SLOPE, c] = 1.0 / cur[CH.comp_ratio] - 1.0
        k[K_KNEE, c] = cur[CH.comp_knee_db]
        k[K_HALF_INV_KNEE, c] = _half_inverse_knee(cur[CH.comp_knee_db])
        k[K_RMS_MODE, c] = 1.0 if cur[CH.comp_detector_rms] > 0.5 else 0.0
        k[K_OPEN_LIN, c] = 10.0 ** (cur[CH.gate_threshold_db] / 20.0)
        k[K_CLOSE_LIN, c] = 10.0 ** ((cur[CH.gate_threshold_db] - cur[CH.gate_hysteresis_db]) / 20.0)
        k[K_HOLD, c] = math.floor(cur[CH.gate_hold_ms] * 1e-3 * fs_hz + 0.5)
        k[K_A_OPEN, c] = _time_constant_alpha(cur[CH.gate_attack_ms], fs_hz)
        k[K_A_CLOSE, c] = _time_constant_alpha(cur[CH.gate_release_ms], fs_hz)
        k[K_A_ENV, c] = _time_constant_alpha(GATE_ENVELOPE_RELEASE_MS, fs_hz)
        k[K_G_THR, c] = cur[CH.gate_threshold_db]
        k[K_G_RATIO, c] = cur[CH.gate_ratio]
        k[K_G_RANGE, c] = cur[CH.gate_range_db]


@kernel
def _guard_input(x_fc, work, count):
    """Copy ``(frames, channels)`` input into the float64 work buffer, replacing bad samples.

    NaN, +/-Inf and magnitudes beyond ``GUARD_LIMIT`` become 0 and are counted in
    ``count[0]``, so no filter or detector state is ever poisoned.
    """
    n_frames, n_ch = x_fc.shape
    bad = 0
    for n in range(n_frames):
        for c in range(n_ch):
            v = np.float64(x_fc[n, c])
            ok = abs(v) <= GUARD_LIMIT  # false for NaN too
            bad += 0 if ok else 1
            work[n, c] = v if ok else 0.0
    count[0] += bad


@kernel
def _strips_pre_fader(work, n_frames, clock, p, cur, gain, gain_t, gain_prev, coef, z, dyn, k,
                     col_class, col_band, col_log, col_alpha, gain_alpha, meter_k, fs_hz, n_aux):
    """Trim, polarity, HPF, EQ, gate and compressor of every channel, in place on ``work``.

    ``work`` is ``(>= n_frames, channels)`` float64; ``clock`` is the absolute index of its
    first frame.  Also updates the per-channel meter states, and keeps the gain targets in
    force before this block's first tick in ``gain_prev`` for ``_strips_post_fader``.
    """
    n_ch = work.shape[1]
    for i in range(gain_t.shape[0]):
        for c in range(n_ch):
            gain_prev[i, c] = gain_t[i, c]
    i = 0
    while i < n_frames:
        t = clock + i
        phase = t % TICK
        if phase == 0:
            upkeep = t % UPKEEP == 0
            for c in range(n_ch):
                _tick(c, p, cur, gain, gain_t, coef, z, dyn, k, col_class, col_band,
                      col_log, col_alpha, fs_hz, n_aux, upkeep)
        # Run to the next tick that can change anything: the next one while a filter glides
        # or new targets wait, else the next upkeep (ticks in between would do nothing).
        moving = False
        for c in range(n_ch):
            moving |= k[K_MOVING, c] > 0.0
        end = min(n_frames, i + (TICK - phase if moving else UPKEEP - t % UPKEEP))
        _strip_span(work, i, end, gain, gain_t, gain_alpha, coef, z, dyn, k, meter_k)
        i = end


@kernel(inline="always")
def _any(row):
    for c in range(row.shape[0]):
        if row[c] > 0.0:
            return True
    return False


@kernel(inline="always")
def _glide(g, t, a, c):
    """One sample of a smoothed gain: the one-pole step, stored back (``gain_alpha``)."""
    v = g[c] + a * (t[c] - g[c])
    g[c] = v
    return v


@kernel
def _strip_span(w, i0, i1, gain, gain_t, ga, coef, z, dyn, k, meter_k):
    """Every stage of every channel over frames ``i0 .. i1`` (no tick in between).

    Each stage is a ``for frame: for channel:`` pass over rows, so the channel loop is a
    SIMD loop; its per-sample arithmetic is exactly the scalar chain's (DESIGN.md: any
    layout, any block size, the same output).
    """
    n_ch = w.shape[1]
    g_in, t_in, a_in = gain[G_IN], gain_t[G_IN], ga[G_IN]
    for n in range(i0, i1):
        for c in range(n_ch):
            w[n, c] *= _glide(g_in, t_in, a_in, c)
    if _any(k[K_HPF_ACT]):
        _hpf_pass(w, i0, i1, gain[M_HPF], gain_t[M_HPF], ga[M_HPF], coef, z)
    if _any(k[K_EQ_ACT]):
        _eq_pass(w, i0, i1, gain[M_EQ], gain_t[M_EQ], ga[M_EQ], coef, z)
    if _any(k[K_GATE_ACT]):
        _gate_pass(w, i0, i1, gain[M_GATE], gain_t[M_GATE], ga[M_GATE], dyn, k)
    if _any(k[K_COMP_ACT]):
        _comp_pass(w, i0, i1, gain[M_COMP], gain_t[M_COMP], ga[M_COMP], gain[G_MAKEUP],
                   gain_t[G_MAKEUP], ga[G_MAKEUP], dyn, k)
    # channel meters, pre-fader (IEC 60268-18 peak return, RMS one-pole)
    pk, mms = dyn[D_PEAK], dyn[D_METER_MS]
    pk_fall, a_mms = meter_k[0], meter_k[1]
    for n in range(i0, i1):
        for c in range(n_ch):
            s = w[n, c]
            a = abs(s)
            fall = pk[c] * pk_fall
            pk[c] = a if a > fall else fall
            mms[c] += a_mms * (s * s - mms[c])


@kernel(inline="always")
def _section(x, b0, b1, b2, a1, a2, s1, s2, c):
    """One TDF-II biquad step of channel ``c`` (see biquad._biquad_run)."""
    y = b0[c] * x + s1[c]
    s1[c] = b1[c] * x - a1[c] * y + s2[c]
    s2[c] = b2[c] * x - a2[c] * y
    return y


@kernel
def _hpf_pass(w, i0, i1, m, mt, a, coef, z):
    """High-pass (two sections; the second is identity at 12 dB/oct), crossfaded in."""
    c0, c1, z0, z1 = coef[0], coef[1], z[0], z[1]
    for n in range(i0, i1):
        for c in range(w.shape[1]):
            s = w[n, c]
            y = _section(s, c0[0], c0[1], c0[2], c0[3], c0[4], z0[0], z0[1], c)
            y = _section(y, c1[0], c1[1], c1[2], c1[3], c1[4], z1[0], z1[1], c)
            w[n, c] = s + _glide(m, mt, a, c) * (y - s)


@kernel
def _eq_pass(w, i0, i1, m, mt, a, coef, z):
    """The four EQ bands in series, crossfaded in."""
    c0, c1, c2, c3 = coef[2], coef[3], coef[4], coef[5]
    z0, z1, z2, z3 = z[2], z[3], z[4], z[5]
    for n in range(i0, i1):
        for c in range(w.shape[1]):
            s = w[n, c]
            y = _section(s, c0[0], c0[1], c0[2], c0[3], c0[4], z0[0], z0[1], c)
            y = _section(y, c1[0], c1[1], c1[2], c1[3], c1[4], z1[0], z1[1], c)
            y = _section(y, c2[0], c2[1], c2[2], c2[3], c2[4], z2[0], z2[1], c)
            y = _section(y, c3[0], c3[1], c3[2], c3[3], c3[4], z3[0], z3[1], c)
            w[n, c] = s + _glide(m, mt, a, c) * (y - s)


@kernel
def _gate_pass(w, i0, i1, m, mt, a, dyn, k):
    """Gate/expander (hysteresis and hold make it branchy: this pass stays scalar)."""
    for n in range(i0, i1):
        for c in range(w.shape[1]):
            s = w[n, c]
            mg = _glide(m, mt, a, c)
            env, is_open, hold_left, yg = _gate_step(
                s, dyn[D_ENV, c], dyn[D_OPEN, c], dyn[D_HOLD, c], dyn[D_YG, c], k[K_A_ENV, c],
                k[K_OPEN_LIN, c], k[K_CLOSE_LIN, c], k[K_HOLD, c], k[K_G_THR, c],
                k[K_G_RATIO, c], k[K_G_RANGE, c], k[K_A_OPEN, c], k[K_A_CLOSE, c])
            dyn[D_ENV, c], dyn[D_OPEN, c], dyn[D_HOLD, c], dyn[D_YG, c] = env, is_open, hold_left, yg
            w[n, c] = s * (1.0 + mg * (_fast_db_to_gain(yg) - 1.0))


@kernel
def _comp_pass(w, i0, i1, m, mt, a, mk, mkt, a_mk, dyn, k):
    """Compressor with make-up gain, crossfaded in (branch-free: a SIMD loop)."""
    yl, ms = dyn[D_YL], dyn[D_MS]
    rms, a_rms, klo = k[K_RMS_MODE], k[K_A_RMS], k[K_KNEE_LO_SQ]
    thr, slope, knee, hik = k[K_THR], k[K_SLOPE], k[K_KNEE], k[K_HALF_INV_KNEE]
    a_att, a_rel = k[K_A_ATT], k[K_A_REL]
    for n in range(i0, i1):
        for c in range(w.shape[1]):
            s = w[n, c]
            mc = _glide(m, mt, a, c)
            g_mk = _glide(mk, mkt, a_mk, c)
            y, q = _compressor_step(s, yl[c], ms[c], rms[c] > 0.5, a_rms[c], klo[c], thr[c],
                                   slope[c], knee[c], hik[c], a_att[c], a_rel[c])
            yl[c] = y
            ms[c] = q
            w[n, c] = s * (1.0 + mc * (g_mk * _fast_db_to_gain(-y) - 1.0))


@kernel
def _strips_post_fader(work, n_frames, clock, gain, gain_t, gain_prev, gain_alpha, bus, aux,
                      n_aux, direct):
    """Fader, mute, pan and sends: accumulate every channel into the stereo bus and auxes.

    ``bus`` is ``(2, >= n_frames)`` and ``aux`` ``(n_aux, >= n_frames)``, both float32 and
    zeroed by the caller.  Gains glide per sample toward their targets; a target set at this
    block's first tick takes effect from that tick, exactly as in ``_strips_pre_fader``, so
    the block size never changes the output.  Channels are summed in index order (a fixed
    order whatever the block size).  ``direct`` is ``(>= n_frames, channels, 2)`` float32 to
    receive each channel's post-fader, post-pan signal (its direct out), or has 0 frames.
    """
    first_tick = (TICK - clock % TICK) % TICK
    want_direct = direct.shape[0] > 0
    for c in range(work.shape[1]):
        _accumulate(work, c, n_frames, first_tick, gain, gain_t, gain_prev, gain_alpha, G_L,
                    bus, 0, direct, want_direct, 0)
        _accumulate(work, c, n_frames, first_tick, gain, gain_t, gain_prev, gain_alpha, G_R,
                    bus, 1, direct, want_direct, 1)
        for a in range(n_aux):
            _accumulate(work, c, n_frames, first_tick, gain, gain_t, gain_prev, gain_alpha,
                        G_AUX + a, aux, a, direct, False, 0)


@kernel(inline="always")
def _accumulate(work, c, n_frames, first_tick, gain, gain_t, gain_prev, gain_alpha, i, dst, row,
                direct, want_direct, side):
    """``dst[row] += g * work[:, c]`` with gain row ``i`` gliding per sample; the product
    also goes to ``direct[:, c, side]`` when ``want_direct``."""
    g = gain[i, c]
    t_new = gain_t[i, c]
    t = gain_prev[i, c]
    if g == t and t == t_new:  # settled: a plain multiply-add
        if want_direct:
            for n in range(n_frames):
                v = g * work[n, c]
                direct[n, c, side] = v
                dst[row, n] += v
        elif g != 0.0:
            for n in range(n_frames):
                dst[row, n] += g * work[n, c]
        return
    a = gain_alpha[i]
    for n in range(n_frames):
        if n == first_tick:
            t = t_new
        g += a * (t - g)
        v = g * work[n, c]
        if want_direct:
            direct[n, c, side] = v
        dst[row, n] += v
    gain[i, c] = g
