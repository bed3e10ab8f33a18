"""The FX-bus stereo reverb: a 16-line feedback delay network (FDN).

Signal flow of one send channel (the console's aux 1, mono; a stereo send is accepted)::

    send -> input high-pass (reverb_lowcut_hz) -> pre-delay -> 4 series allpass diffusers
         -> injected into the 16 lines -> [delay d_i -> absorption filter H_i] x 16
         -> 16x16 Hadamard feedback -> back into the lines
    return L/R = two orthogonal sign patterns over the 16 absorption-filter outputs,
                 times the smoothed reverb_return_db

* **Feedback matrix**: the Sylvester Hadamard matrix scaled by 1/sqrt(16), orthogonal, so the
  loop without absorption is lossless and every line feeds every other one with equal
  weight (the densest mixing an orthogonal matrix gives; a Householder matrix of size 16 would
  keep 7/8 of each line on itself).  Applied as a fast Walsh-Hadamard transform, 64 adds.
* **Delay lengths**: 16 lengths spread geometrically over 12 .. 60 ms, each rounded to the
  nearest unused prime number of samples at the running sample rate, so the lengths are
  mutually prime at every rate (no coinciding echoes, Jot & Chaigne 1991 section 3).
* **Absorption filters** (Jot & Chaigne 1991, "Digital delay networks for designing
  artificial reverberators", AES 90th Convention, preprint 3030; Jot 1992): line ``i`` of
  length ``d_i`` ends in ``H_i(z) = g_i (1 - p_i) / (1 - p_i z^-1)``.  Its DC gain is
  ``g_i = 10^(-3 d_i / (fs T60))``, so every line loses 60 dB in ``T60`` seconds whatever its
  length and the whole network decays at ``T60`` at low and mid frequencies.  The pole ``p_i``
  is chosen so that ``|H_i| = g_i^2`` at ``reverb_damping_hz``: the RT60 there is exactly half
  ``reverb_decay_s`` and keeps falling above it (first-order roll-off), like air absorption.
  Solving ``|(1-p)/(1-p e^-jw)|^2 = g^2`` gives ``A p^2 - 2 B p + A = 0`` with
  ``A = 1 - g^2``, ``B = 1 - g^2 cos w``; the root inside the unit circle is
  ``p = A / (B + sqrt(B^2 - A^2))``.  ``|H_i| <= g_i < 1`` at every frequency, and the
  feedback matrix is orthogonal, so the network is stable for every parameter value.
* **Diffusion**: four Schroeder allpasses in series with Dattorro's lengths and gains (J.
  Dattorro, "Effect Design Part 1", JAES 45(9), 1997: 142, 107, 379, 277 samples at
  29761 Hz, gains 0.75, 0.75, 0.625, 0.625) smear each transient before it enters the lines,
  so the echo density is high from the start.
* **Stereo**: L and R read the line outputs through two orthogonal +-1 patterns (rows of a
  Hadamard matrix times a fixed sign scramble); with mutually uncorrelated lines the
  interaural correlation of the tail is ~0.
* **Pre-delay**: the return starts ``reverb_predelay_ms`` after the send.  The shortest line
  (12 ms) already delays the first arrival, so the pre-delay buffer holds the difference;
  below 12 ms the onset is the shortest line's length.

Three rates, as in the channel strips:
* per sample: the audio, and one-pole smoothing of the return gain and of the pre-delay
  (slew-limited: a pre-delay move glides like a tape delay instead of jumping);
* every ``TICK`` samples of the *absolute* sample clock (kept in the state, so any block size
  gives the same output): targets are read from the master parameter array, ``decay``,
  ``damping`` and ``lowcut`` glide toward them in the log domain over ``GLIDE_MS``, and the
  absorption and high-pass coefficients are recomputed only while they move, and ramp
  linearly to their new values over the next ``TICK`` samples (no control-rate zipper);
* per block: nothing but loop bounds.

State lives in a :class:`ReverbState` owned by the caller; ``_reverb_block`` only loops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgemix import params as P
from edgemix.dsp._jit import kernel
from edgemix.dsp.arena import _f64_1, _f64_2, _f64_3, _i64_1
from edgemix.dsp.biquad import BUTTERWORTH2_Q, HIGHPASS, _rbj_coefficients
from edgemix.dsp.dynamics import _gain_of_db
from edgemix.params import MS

N_LINES = 16
#: Line lengths before rounding to primes: 12 ms * 5^(i/15), i = 0..15 (12 .. 60 ms).
#: Their sum (0.48 s) keeps the modal density above Schroeder's 0.15 * T60 modes per Hz
#: up to T60 = 3 s; the allpass diffusion hides the rest.
LINE_MS = tuple(12.0 * 5.0 ** (i / 15.0) for i in range(N_LINES))
#: Order in which the lengths are assigned to the lines (interleaved short/long so each
#: Hadamard butterfly pairs lines of different lengths).
_LINE_ORDER = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)

#: Dattorro's input diffusers: lengths in samples at 29761 Hz, and gains.
_AP_SAMPLES_29761 = (142, 107, 379, 277)
AP_GAINS = (0.75, 0.75, 0.625, 0.625)
N_AP = len(AP_GAINS)

#: Control-rate period in samples.
TICK = 32
#: Glide time of decay, damping and low-cut (log domain): 50 ms moves a setting without a
#: click yet follows a knob.  The schema gives these parameters no smoothing time of their
#: own (``smoothing_ms`` 0), so the reverb's coefficient glide is set here.
GLIDE_MS = 50.0
#: Glide of the pre-delay (per sample): a one-pole of this time constant, its speed capped
#: at ``PREDELAY_SLEW`` samples per sample so the read point moves at 0.75x .. 1.25x speed
#: (a pre-delay move bends the pitch of the send by at most +-25 %, like a tape delay,
#: instead of clicking); a 0 -> 200 ms move takes ~0.8 s at any sample rate.
PREDELAY_GLIDE_MS = 100.0
PREDELAY_SLEW = 0.25
#: Damping corners above this fraction of the sample rate are clamped (w -> pi makes the
#: pole design degenerate, and there is nothing to damp up there).
MAX_DAMPING_FRACTION = 0.45
#: Line states below this magnitude (-600 dB) are flushed to zero so a decayed tail never
#: runs on subnormal numbers (which are ~100x slower on x86).
_FLUSH = 1e-30
#: Send samples whose magnitude is not below this (and NaN) are replaced by 0: one bad
#: sample would otherwise circulate in the network for ever.
_SEND_LIMIT = 1e6
#: Output scale: the return of white noise at the default settings (1.8 s, 6 kHz damping,
#: 150 Hz low-cut) has about the power of the send (measured, tests/test_reverb.py).
OUTPUT_GAIN = 3.5

# Scalar state, one slot each in ``ReverbState.ctl``.
(C_CLOCK, C_PRIMED, C_FS, C_DECAY, C_DAMP, C_LOWCUT, C_PRE, C_PRE_T, C_RET, C_RET_T,
 C_A_GLIDE, C_A_PRE, C_A_RET, C_DMIN, C_LMASK, C_PMASK, C_AMASK, C_RAMP_LINES,
 C_RAMP_HP) = range(19)
C_HP = 19          # high-pass coefficients (b0, b1, b2, a1, a2) in use now
C_HP_INC = 24      # ... their per-sample increments toward
C_HP_TGT = 29      # ... the values computed at the last tick
C_HPZ = 34         # 2 TDF-II states per send channel, 2 send channels
N_CTL = 38

# Rows of ``ReverbState.coef`` (absorption filters ``b_i / (1 - p_i z^-1)``): the values in
# use now, their per-sample increments, and the values computed at the last tick.  Between
# two ticks every coefficient moves by equal steps from the old to the new tick value: a
# coefficient that jumped every ``TICK`` samples would modulate the tail at fs / TICK
# (1.5 kHz) while a setting glides, an audible zipper.
K_B, K_P, K_B_INC, K_P_INC, K_B_TGT, K_P_TGT = range(6)
#: Extra samples per delay-memory row: rows of exactly 2^k float64 sit a multiple of 4 kB
#: apart, so the 16 writes of one sample all land in one cache set (4K aliasing); a pad
#: of 8 samples (one 64-byte cache line) spreads them.  Indexing still wraps with 2^k - 1.
_ROW_PAD = 8

# Rows of ``ReverbState.mix``: output taps, and the injection for a mono or stereo send.
M_TAP_L, M_TAP_R, M_IN_MONO, M_IN_L, M_IN_R = range(5)

_HADAMARD_NORM = 1.0 / math.sqrt(N_LINES)

_SIGN_SCRAMBLE = np.array([1, -1, 1, 1, -1, 1, -1, -1, 1, 1, -1, 1, -1, 1, 1, -1], np.float64)
_SIGN_INJECT = np.array([1, 1, -1, 1, -1, -1, 1, -1, 1, -1, 1, 1, -1, -1, -1, 1], np.float64)


def hadamard(n: int) -> np.ndarray:
    """The Sylvester Hadamard matrix of order ``n`` (a power of two), entries +-1."""
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % k for k in range(2, int(math.isqrt(n)) + 1))


def _nearest_unused_prime(n: int, used: set) -> int:
    for step in range(0, n):
        for cand in (n - step, n + step):
            if cand not in used and _is_prime(cand):
                return cand
    raise ValueError(f"no prime near {n}")  # unreachable for n >= 2


def line_delays(fs_hz: float) -> np.ndarray:
    """The 16 line lengths in samples at ``fs_hz``: mutually prime (distinct primes)."""
    used: set = set()
    out = np.empty(N_LINES, np.int64)
    for i, k in enumerate(_LINE_ORDER):
        d = _nearest_unused_prime(max(2, round(LINE_MS[k] * fs_hz / 1000.0)), used)
        used.add(d)
        out[i] = d
    return out


def allpass_delays(fs_hz: float) -> np.ndarray:
    """Diffuser lengths in samples at ``fs_hz`` (Dattorro's, rescaled from 29761 Hz)."""
    return np.array([max(1, round(m * fs_hz / 29761.0)) for m in _AP_SAMPLES_29761], np.int64)


def mix_vectors() -> np.ndarray:
    """``(5, 16)``: L and R output taps, mono injection, stereo L and R injections.

    The taps are Hadamard rows 1 and 14 (orthogonal) times a fixed sign scramble, so they are
    orthogonal to each other but not aligned with the feedback matrix's own rows.  Each row
    has unit Euclidean norm (the stereo injections spread each side over 8 lines).
    """
    h = hadamard(N_LINES)
    m = np.zeros((5, N_LINES))
    m[M_TAP_L] = OUTPUT_GAIN * _SIGN_SCRAMBLE * h[1] / math.sqrt(N_LINES)
    m[M_TAP_R] = OUTPUT_GAIN * _SIGN_SCRAMBLE * h[14] / math.sqrt(N_LINES)
    m[M_IN_MONO] = _SIGN_INJECT / math.sqrt(N_LINES)
    even = np.arange(N_LINES) % 2 == 0
    m[M_IN_L] = np.where(even, _SIGN_INJECT, 0.0) / math.sqrt(N_LINES / 2)
    m[M_IN_R] = np.where(~even, _SIGN_INJECT, 0.0) / math.sqrt(N_LINES / 2)
    return m


def _pow2_at_least(n: int) -> int:
    return 1 << max(1, int(n - 1).bit_length())


@dataclass
class ReverbState:
    """Every array the reverb kernel reads or writes, allocated once for a sample rate."""

    lines: np.ndarray      # (16, 2^k + pad) float64 delay memory, written at clock & (2^k-1)
    pre: np.ndarray        # (2, 2^k + pad) float64 pre-delay memory per send channel
    ap: np.ndarray         # (2, N_AP, 2^k + pad) float64 diffuser memory per send channel
    y: np.ndarray          # (16,) absorption-filter outputs (their one-pole states)
    scratch: np.ndarray    # (16,) feedback vector being transformed
    coef: np.ndarray       # (6, 16) absorption filters: rows K_B .. K_P_TGT
    delays: np.ndarray     # (16,) int64 line lengths
    ap_delays: np.ndarray  # (N_AP,) int64
    ap_gains: np.ndarray   # (N_AP,) float64
    mix: np.ndarray        # (5, 16) taps and injections
    ctl: np.ndarray        # (N_CTL,) scalars: clock, smoothed values, high-pass

    @classmethod
    def allocate(cls, fs_hz: float) -> "ReverbState":
        delays = line_delays(fs_hz)
        apd = allpass_delays(fs_hz)
        max_pre = math.ceil(P.MASTER_SPECS["reverb_predelay_ms"].max * fs_hz / 1000.0)
        n_line = _pow2_at_least(int(delays.max()) + 1)
        n_pre = _pow2_at_least(max_pre + 2)
        n_ap = _pow2_at_least(int(apd.max()) + 1)
        st = cls(lines=np.zeros((N_LINES, n_line + _ROW_PAD)),
                 pre=np.zeros((2, n_pre + _ROW_PAD)),
                 ap=np.zeros((2, N_AP, n_ap + _ROW_PAD)),
                 y=np.zeros(N_LINES), scratch=np.zeros(N_LINES), coef=np.zeros((6, N_LINES)),
                 delays=delays, ap_delays=apd, ap_gains=np.array(AP_GAINS),
                 mix=mix_vectors(), ctl=np.zeros(N_CTL))
        c = st.ctl
        c[C_FS] = fs_hz
        c[C_DMIN] = float(delays.min())
        c[C_LMASK], c[C_PMASK], c[C_AMASK] = n_line - 1, n_pre - 1, n_ap - 1
        c[C_A_GLIDE] = 1.0 - math.exp(-TICK * 1000.0 / (GLIDE_MS * fs_hz))
        c[C_A_PRE] = 1.0 - math.exp(-1000.0 / (PREDELAY_GLIDE_MS * fs_hz))
        c[C_A_RET] = 1.0 - math.exp(
            -1000.0 / (P.MASTER_SPECS["reverb_return_db"].smoothing_ms * fs_hz))
        st.reset()
        return st

    def reset(self) -> None:
        """Silence every memory and rewind the clock; the next tick snaps to the targets."""
        for a in (self.lines, self.pre, self.ap, self.y, self.scratch):
            a[:] = 0.0
        self.ctl[C_CLOCK] = 0.0
        self.ctl[C_PRIMED] = 0.0
        self.ctl[C_HPZ:C_HPZ + 4] = 0.0
        self.coef[:] = 0.0

    def arrays(self) -> tuple:
        """The state arguments of ``_reverb_block`` in order (after ``master``)."""
        return (self.lines, self.pre, self.ap, self.y, self.scratch, self.coef, self.delays,
                self.ap_delays, self.ap_gains, self.mix, self.ctl)


@kernel(inline="always")
def _reverb_views(table, s):
    """A :class:`ReverbState` in an arena, as :func:`_reverb_block` takes it."""
    return (_f64_2(table, s, 0), _f64_2(table, s, 1), _f64_3(table, s, 2),
            _f64_1(table, s, 3), _f64_1(table, s, 4), _f64_2(table, s, 5),
            _i64_1(table, s, 6), _i64_1(table, s, 7), _f64_1(table, s, 8),
            _f64_2(table, s, 9), _f64_1(table, s, 10))


@kernel
def _absorption_coefficients(delays, decay_s, damping_hz, fs_hz, coef, row):
    """Jot's per-line absorption filters for a wanted RT60 (see the module docstring).

    Writes ``coef[row, i] = b_i = g_i (1 - p_i)`` and ``coef[row + 1, i] = p_i``.
    """
    w = 2.0 * math.pi * min(damping_hz, MAX_DAMPING_FRACTION * fs_hz) / fs_hz
    cw = math.cos(w)
    for i in range(delays.shape[0]):
        # g_i = 10^(-3 d_i / (fs T60)): -60 dB after T60 seconds, per line (Jot & Chaigne)
        g = 10.0 ** (-3.0 * delays[i] / (fs_hz * decay_s))
        g2 = g * g
        a = 1.0 - g2
        b = 1.0 - g2 * cw
        # the smaller root of A p^2 - 2 B p + A = 0 (the roots are reciprocal)
        p = a / (b + math.sqrt(max(b * b - a * a, 0.0)))
        coef[row, i] = g * (1.0 - p)
        coef[row + 1, i] = p


@kernel(inline="always")
def _glide_log(cur, target, a):
    """One control-rate step of a log-domain one-pole glide; snaps when within 1e-9."""
    lc = math.log(cur)
    lt = math.log(target)
    if abs(lt - lc) < 1e-9:
        return target
    return math.exp(lc + a * (lt - lc))


@kernel
def _tick(master, ctl, coef, delays):
    """Control-rate update: read targets, glide, recompute the coefficients that move and
    set up their per-sample ramps to the next tick."""
    fs = ctl[C_FS]
    decay_t = master[MS.reverb_decay_s]
    damp_t = master[MS.reverb_damping_hz]
    lowcut_t = master[MS.reverb_lowcut_hz]
    ctl[C_PRE_T] = max(master[MS.reverb_predelay_ms] * fs / 1000.0 - ctl[C_DMIN], 0.0)
    ctl[C_RET_T] = _gain_of_db(master[MS.reverb_return_db])
    n_lines = coef.shape[1]
    # the ramps of the last interval end here, exactly on their targets
    for i in range(n_lines):
        coef[K_B, i] = coef[K_B_TGT, i]
        coef[K_P, i] = coef[K_P_TGT, i]
        coef[K_B_INC, i] = 0.0
        coef[K_P_INC, i] = 0.0
    for j in range(5):
        ctl[C_HP + j] = ctl[C_HP_TGT + j]
        ctl[C_HP_INC + j] = 0.0
    ctl[C_RAMP_LINES] = 0.0
    ctl[C_RAMP_HP] = 0.0
    if ctl[C_PRIMED] == 0.0:
        ctl[C_DECAY] = decay_t
        ctl[C_DAMP] = damp_t
        ctl[C_LOWCUT] = lowcut_t
        ctl[C_PRE] = ctl[C_PRE_T]
        ctl[C_RET] = ctl[C_RET_T]
        ctl[C_PRIMED] = 1.0
        _absorption_coefficients(delays, decay_t, damp_t, fs, coef, K_B_TGT)
        _rbj_coefficients(HIGHPASS, lowcut_t, 0.0, BUTTERWORTH2_Q, fs, ctl, C_HP_TGT)
        for i in range(n_lines):
            coef[K_B, i] = coef[K_B_TGT, i]
            coef[K_P, i] = coef[K_P_TGT, i]
        for j in range(5):
            ctl[C_HP + j] = ctl[C_HP_TGT + j]
        return
    a = ctl[C_A_GLIDE]
    step = 1.0 / TICK
    if ctl[C_DECAY] != decay_t or ctl[C_DAMP] != damp_t:
        ctl[C_DECAY] = _glide_log(ctl[C_DECAY], decay_t, a)
        ctl[C_DAMP] = _glide_log(ctl[C_DAMP], damp_t, a)
        _absorption_coefficients(delays, ctl[C_DECAY], ctl[C_DAMP], fs, coef, K_B_TGT)
        for i in range(n_lines):
            coef[K_B_INC, i] = (coef[K_B_TGT, i] - coef[K_B, i]) * step
            coef[K_P_INC, i] = (coef[K_P_TGT, i] - coef[K_P, i]) * step
        ctl[C_RAMP_LINES] = 1.0
    if ctl[C_LOWCUT] != lowcut_t:
        ctl[C_LOWCUT] = _glide_log(ctl[C_LOWCUT], lowcut_t, a)
        _rbj_coefficients(HIGHPASS, ctl[C_LOWCUT], 0.0, BUTTERWORTH2_Q, fs, ctl, C_HP_TGT)
        for j in range(5):
            ctl[C_HP_INC + j] = (ctl[C_HP_TGT + j] - ctl[C_HP + j]) * step
        ctl[C_RAMP_HP] = 1.0


@kernel
def _reverb_block(send, out, n_frames, master, lines, pre, ap, y, scratch, coef, delays,
                  ap_delays, ap_gains, mix, ctl):
    """Add the stereo return of ``send[:, :n_frames]`` into ``out[:, :n_frames]``.

    ``send`` is ``(1 or 2, >= n_frames)`` float32 (mono or stereo send bus), ``out`` is
    ``(2, >= n_frames)`` float32 and is *accumulated into*; ``master`` is the ``(N_MS,)``
    float64 master parameter array (read at the ticks); the rest is a :class:`ReverbState`.
    """
    n_in = min(send.shape[0], 2)
    # the line count is the compile-time N_LINES (the state is allocated with it), so the
    # per-line loops and the transform have constant bounds and unroll
    lmask = np.int64(ctl[C_LMASK])
    pmask = np.int64(ctl[C_PMASK])
    amask = np.int64(ctl[C_AMASK])
    n_ap = ap.shape[1]
    in_row = M_IN_MONO if n_in == 1 else M_IN_L
    clock = np.int64(ctl[C_CLOCK])
    pd, ret = ctl[C_PRE], ctl[C_RET]
    a_pre, a_ret = ctl[C_A_PRE], ctl[C_A_RET]
    pd_t, ret_t = ctl[C_PRE_T], ctl[C_RET_T]
    ramp_lines = ctl[C_RAMP_LINES] != 0.0
    ramp_hp = ctl[C_RAMP_HP] != 0.0
    b0, b1, b2 = ctl[C_HP], ctl[C_HP + 1], ctl[C_HP + 2]
    a1, a2 = ctl[C_HP + 3], ctl[C_HP + 4]
    for n in range(n_frames):
        t = clock + n
        if t % TICK == 0:
            ctl[C_PRE] = pd
            ctl[C_RET] = ret
            _tick(master, ctl, coef, delays)
            pd, ret = ctl[C_PRE], ctl[C_RET]
            pd_t, ret_t = ctl[C_PRE_T], ctl[C_RET_T]
            ramp_lines = ctl[C_RAMP_LINES] != 0.0
            ramp_hp = ctl[C_RAMP_HP] != 0.0
            b0, b1, b2 = ctl[C_HP], ctl[C_HP + 1], ctl[C_HP + 2]
            a1, a2 = ctl[C_HP + 3], ctl[C_HP + 4]
        if ramp_hp:
            for j in range(5):
                ctl[C_HP + j] += ctl[C_HP_INC + j]
            b0, b1, b2 = ctl[C_HP], ctl[C_HP + 1], ctl[C_HP + 2]
            a1, a2 = ctl[C_HP + 3], ctl[C_HP + 4]
        pd += min(max(a_pre * (pd_t - pd), -PREDELAY_SLEW), PREDELAY_SLEW)
        ret += a_ret * (ret_t - ret)
        k = np.int64(pd)
        frac = pd - k
        # line outputs through their absorption filters, and the two output taps
        acc_l = 0.0
        acc_r = 0.0
        for i in range(N_LINES):
            r = lines[i, (t - delays[i]) & lmask]
            if ramp_lines:
                coef[K_B, i] += coef[K_B_INC, i]
                coef[K_P, i] += coef[K_P_INC, i]
            v = coef[K_B, i] * r + coef[K_P, i] * y[i]
            if abs(v) < _FLUSH:
                v = 0.0
            y[i] = v
            scratch[i] = v
            acc_l += mix[M_TAP_L, i] * v
            acc_r += mix[M_TAP_R, i] * v
        # feedback: y -> H y / sqrt(N), fast Walsh-Hadamard transform (Sylvester order)
        h = 1
        while h < N_LINES:
            for i0 in range(0, N_LINES, 2 * h):
                for j in range(i0, i0 + h):
                    u = scratch[j]
                    w = scratch[j + h]
                    scratch[j] = u + w
                    scratch[j + h] = u - w
            h *= 2
        for i in range(N_LINES):
            scratch[i] *= _HADAMARD_NORM
        # each send channel: high-pass, pre-delay, diffusion, injection
        for c in range(n_in):
            x = np.float64(send[c, n])
            if not abs(x) < _SEND_LIMIT:
                x = 0.0
            # RBJ high-pass, transposed direct form II
            z1 = ctl[C_HPZ + 2 * c]
            z2 = ctl[C_HPZ + 2 * c + 1]
            xh = b0 * x + z1
            ctl[C_HPZ + 2 * c] = b1 * x - a1 * xh + z2
            ctl[C_HPZ + 2 * c + 1] = b2 * x - a2 * xh
            pre[c, t & pmask] = xh
            # fractional pre-delay by linear interpolation (the glide needs fractions)
            s = (1.0 - frac) * pre[c, (t - k) & pmask] + frac * pre[c, (t - k - 1) & pmask]
            # Schroeder allpasses: w[n] = s + g w[n-m], out = -g w[n] + w[n-m]
            for a in range(n_ap):
                g = ap_gains[a]
                wd = ap[c, a, (t - ap_delays[a]) & amask]
                wn = s + g * wd
                ap[c, a, t & amask] = wn
                s = wd - g * wn
            row = in_row + c
            for i in range(N_LINES):
                scratch[i] += mix[row, i] * s
        for i in range(N_LINES):
            lines[i, t & lmask] = scratch[i]
        out[0, n] += np.float32(ret * acc_l)
        out[1, n] += np.float32(ret * acc_r)
    ctl[C_PRE] = pd
    ctl[C_RET] = ret
    ctl[C_CLOCK] = np.float64(clock + n_frames)


_REVERB_NAMES = tuple(s.name for s in P.MASTER_PARAMS if s.name.startswith("reverb_"))


class Reverb:
    """The FX-bus reverb on its own: mono or stereo send in, stereo return out.

    ``process`` and ``add_return`` belong to the audio thread; ``set`` may be called between
    blocks from the same thread (the console hands parameters over itself).  Parameters are
    the ``reverb_*`` master parameters of :mod:`edgemix.params`; their defaults apply until
    set.
    """

    def __init__(self, sample_rate_hz: float = 48000.0):
        if not (8000 <= float(sample_rate_hz) <= 384000):
            raise ValueError(f"sample rate {sample_rate_hz} Hz: use 8000 .. 384000")
        self.sample_rate_hz = float(sample_rate_hz)
        self._master = P.master_defaults()
        self.state = ReverbState.allocate(self.sample_rate_hz)

    def set(self, name: str, value: float) -> None:
        """Set one ``reverb_*`` parameter (validated against the schema)."""
        if name not in _REVERB_NAMES:
            P.lookup(name)  # unknown names raise with close matches
            raise ValueError(f"{name} is not a reverb parameter: use one of "
                             + ", ".join(_REVERB_NAMES))
        self._master[getattr(MS, name)] = P.MASTER_SPECS[name].check(value, "reverb: ")

    def get(self, name: str) -> float:
        if name not in _REVERB_NAMES:
            raise ValueError(f"{name} is not a reverb parameter")
        return float(self._master[getattr(MS, name)])

    def process(self, send_block) -> np.ndarray:
        """Return for one block: send ``(frames,)``, ``(frames, 1)`` or ``(frames, 2)`` in,
        ``(frames, 2)`` float32 out.  Allocates its output (use ``add_return`` to avoid it)."""
        x = np.asarray(send_block)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] not in (1, 2):
            raise ValueError(f"send block of shape {np.shape(send_block)}: expected (frames,), "
                             "(frames, 1) or (frames, 2)")
        send = np.ascontiguousarray(x.T, dtype=np.float32)
        out = np.zeros((2, send.shape[1]), np.float32)
        self.add_return(send, out)
        return np.ascontiguousarray(out.T)

    def add_return(self, send_cf: np.ndarray, out_cf: np.ndarray) -> None:
        """Engine side: accumulate the return of a ``(1 or 2, frames)`` float32 send into a
        ``(2, frames)`` float32 buffer.  Allocates nothing."""
        if send_cf.dtype != np.float32 or out_cf.dtype != np.float32:
            raise ValueError("send and out must be float32 (channels, frames) arrays")
        if send_cf.ndim != 2 or send_cf.shape[0] not in (1, 2) or out_cf.ndim != 2 \
                or out_cf.shape[0] != 2 or out_cf.shape[1] != send_cf.shape[1]:
            raise ValueError(f"send {send_cf.shape} / out {out_cf.shape}: expected "
                             "(1 or 2, frames) and (2, frames)")
        _reverb_block(send_cf, out_cf, send_cf.shape[1], self._master, *self.state.arrays())

    def reset(self) -> None:
        """Clear the tail and every filter; keep the parameters."""
        self.state.reset()

    @property
    def onset_samples(self) -> int:
        """Samples from a send impulse to the first non-zero return sample (current setting)."""
        pre = self._master[MS.reverb_predelay_ms] * self.sample_rate_hz / 1000.0
        return int(math.floor(max(pre, self.state.ctl[C_DMIN])))
