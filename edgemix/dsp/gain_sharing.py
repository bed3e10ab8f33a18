"""The gain-sharing (Dugan) speech automixer.

Dan Dugan's automixer (US patent 3,814,856, 1974; US 3,992,584, 1976; D. Dugan, "Automatic
microphone mixing", JAES 23(6), 442-449, 1975) gives each member microphone the share of
one open mic's gain that its level is of the total::

    g_i^2 = w_i P_i / sum_j w_j P_j          (gain in dB = level_i - total level, in dB)

**Power, not amplitude.**  ``P_i`` is the smoothed mean-square level and the shares are
shares of *power*, so the applied amplitude gain is ``g_i = sqrt(share_i)`` and
``sum_i g_i^2 = 1``.  Microphone signals in a room (ambience, the loudspeaker feedback path,
the talkers themselves at each other's mics) add in power, so a constant sum of squared
gains is what keeps the ambient noise level and the gain before feedback those of a single
open mic ("NOM = 1").  It is also the behaviour Dugan describes: a 3 dB louder channel gets
3 dB more gain and the others 3 dB less; two equal talkers get -3 dB each; with no one
talking, ambience spreads the gain evenly, -6 dB on each of 4 mics and -9 dB on each of 8
(Dugan Model N user guide).  Amplitude shares (``g_i = L_i / sum L``) would give -6 dB each
to two talkers and let the ambient power of N mics fall to 1/N.

``w_i = 10^(automix_weight_db / 10)`` weights the power, so with equal inputs two channels'
gains differ by exactly the difference of their weights in dB.

Around the core:
* **Level detector**: one-pole mean-square over ``automix_detector_ms`` (per sample).
* **Open-mic limit** ``automix_max_open``: only the N members with the largest weighted
  level share the gain; the rest glide to the floor.  A member already open ranks
  ``OPEN_BONUS_DB`` higher, so two near-equal talkers do not swap on every tick.
* **Floor**: no gain goes below ``FLOOR_DB`` (-60 dB), and a silent group (zero total)
  shares equally, so there is never a divide by zero or a hard mute.
* **Last-mic hold** ``automix_last_hold_on``: when no member is *active* the shares are
  frozen, so the last talker's mic stays open instead of every mic sliding to 1/N on room
  noise.  Activity uses a fast (``FAST_MS``) detector against each channel's noise floor,
  tracked by minimum statistics (R. Martin, "Noise power spectral density estimation based
  on optimal smoothing and minimum statistics", IEEE Trans. Speech Audio Proc. 9(5), 2001:
  the minimum of the level over a ``NOISE_WINDOW_S`` window of sub-windows): a member is
  active while its fast level is ``ACTIVITY_DB`` above its floor.  The fast detector drops
  within a few ms of a talker stopping, while the shares' detector has barely moved, so the
  frozen shares are the talker's, not those of a half-decayed level.  (It also freezes the
  shares in the gaps between words, which keeps the room sound still.)  While holding, a
  change of membership ends the hold at once; weights and ``automix_max_open`` take effect
  when someone next talks.
* **Smoothing**: shares are computed every ``TICK`` samples of the absolute sample clock
  (block-size invariant); the applied gain follows them through a per-sample one-pole of
  ``GAIN_GLIDE_MS`` (no zipper noise, no clicks when the open set changes).
* Non-members pass at unity (their gain glides to 1 when they leave the group).

The console runs ``_automix_block`` in place on its ``(channels, frames)`` work buffer
between the strips' dynamics and their faders.  State lives in an :class:`AutomixState`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgemix import params as P
from edgemix.dsp._jit import kernel
from edgemix.dsp.arena import _f64_1, _f64_2
from edgemix.params import CH, MS

#: Control period (samples) at which shares, open set, noise floors and hold are decided.
TICK = 32
#: Time constant of the applied gain's per-sample glide toward its share.
GAIN_GLIDE_MS = 10.0
#: Deepest attenuation of a member (closed or out-shared mic).
FLOOR_DB = -60.0
#: Activity detector time constant (capped at ``automix_detector_ms``).
FAST_MS = 5.0
#: A member is active while its fast level is this far above its noise floor.
ACTIVITY_DB = 10.0
#: Noise-floor window, and the number of sub-windows it is kept in (minimum statistics).
NOISE_WINDOW_S = 2.0
NOISE_SUBWINDOWS = 4
#: Noise floors are not learnt until the fast detector has settled after a reset.
WARMUP_MS = 50.0
#: Ranking bonus of an already-open member under the open-mic limit (hysteresis).
OPEN_BONUS_DB = 2.0

_FLOOR = 10.0 ** (FLOOR_DB / 20.0)
_ACTIVITY = 10.0 ** (ACTIVITY_DB / 10.0)
_BONUS = 10.0 ** (OPEN_BONUS_DB / 10.0)
_INF = 1e300
#: Mean-square inputs at or above this (and NaN) are not let into the detectors.
_LEVEL_LIMIT = 1e12

# Per-channel state columns of ``AutomixState.ch``.
(S_SLOW, S_FAST, S_GAIN, S_TARGET, S_OPEN, S_MEMBER, S_ACTIVE, S_SEL, S_SCORE, S_FLOOR,
 S_CURMIN) = range(11)
S_RING = 11
N_S = S_RING + NOISE_SUBWINDOWS

# Scalars of ``AutomixState.ctl``.
(C_CLOCK, C_FS, C_A_FAST_MAX, C_A_GAIN, C_HAS_SHARES, C_SUB_TICKS, C_WARM, C_HOLDING,
 C_A_SLOW, C_A_FAST) = range(10)
N_CTL = 10


@dataclass
class AutomixState:
    """Every array the automixer kernel reads or writes, allocated once."""

    ch: np.ndarray        # (channels, N_S) float64 per-channel state
    ctl: np.ndarray       # (N_CTL,) float64 clock and constants
    gains_db: np.ndarray  # (channels,) the applied gain of each channel, dB (a meter)

    @classmethod
    def allocate(cls, n_channels: int, fs_hz: float) -> "AutomixState":
        st = cls(ch=np.zeros((n_channels, N_S)), ctl=np.zeros(N_CTL),
                 gains_db=np.zeros(n_channels))
        c = st.ctl
        c[C_FS] = fs_hz
        c[C_A_FAST_MAX] = 1.0 - math.exp(-1000.0 / (FAST_MS * fs_hz))
        c[C_A_GAIN] = 1.0 - math.exp(-1000.0 / (GAIN_GLIDE_MS * fs_hz))
        c[C_SUB_TICKS] = max(1, round(NOISE_WINDOW_S / NOISE_SUBWINDOWS * fs_hz / TICK))
        c[C_WARM] = math.ceil(WARMUP_MS * fs_hz / 1000.0)
        st.reset()
        return st

    def reset(self) -> None:
        """Forget levels, floors and shares; gains back to unity; clock to zero."""
        ch = self.ch
        ch[:] = 0.0
        ch[:, S_GAIN] = 1.0
        ch[:, S_TARGET] = 1.0
        ch[:, S_FLOOR] = _INF
        ch[:, S_CURMIN] = _INF
        ch[:, S_RING:] = _INF
        self.ctl[C_CLOCK] = 0.0
        self.ctl[C_HAS_SHARES] = 0.0
        self.ctl[C_HOLDING] = 0.0
        self.gains_db[:] = 0.0


@kernel(inline="always")
def _automix_views(table, s):
    """An :class:`AutomixState` in an arena, as :func:`_automix_block` takes it."""
    return _f64_2(table, s, 0), _f64_1(table, s, 1), _f64_1(table, s, 2)


@kernel
def _tick(t, chan, master, ch, ctl):
    """Control-rate decision: noise floors, activity, hold, open set and shares."""
    n_ch = ch.shape[0]
    k = t // TICK
    # detector coefficients follow automix_detector_ms at the ticks (block-size invariant)
    a_slow = 1.0 - math.exp(-1000.0 / (master[MS.automix_detector_ms] * ctl[C_FS]))
    ctl[C_A_SLOW] = a_slow
    ctl[C_A_FAST] = max(ctl[C_A_FAST_MAX], a_slow)
    sub = np.int64(ctl[C_SUB_TICKS])
    # minimum statistics: running minimum of the fast level per sub-window, and a ring of
    # the last NOISE_SUBWINDOWS sub-window minima; the floor is the minimum of all of them
    learn = t >= np.int64(ctl[C_WARM])
    rotate = k % sub == 0
    slot = S_RING + (k // sub) % NOISE_SUBWINDOWS
    any_active = False
    changed = False
    n_members = 0
    for c in range(n_ch):
        if learn and ch[c, S_FAST] < ch[c, S_CURMIN]:
            ch[c, S_CURMIN] = ch[c, S_FAST]
        if rotate:
            ch[c, slot] = ch[c, S_CURMIN]
            ch[c, S_CURMIN] = _INF
        fl = ch[c, S_CURMIN]
        for j in range(S_RING, S_RING + NOISE_SUBWINDOWS):
            fl = min(fl, ch[c, j])
        ch[c, S_FLOOR] = fl
        member = chan[c, CH.automix_on] >= 0.5
        active = member and ch[c, S_FAST] > fl * _ACTIVITY
        ch[c, S_ACTIVE] = 1.0 if active else 0.0
        any_active = any_active or active
        m = 1.0 if member else 0.0
        if m != ch[c, S_MEMBER]:
            changed = True
        ch[c, S_MEMBER] = m
        if member:
            n_members += 1
    hold = master[MS.automix_last_hold_on] >= 0.5
    if hold and not any_active and not changed and ctl[C_HAS_SHARES] != 0.0:
        ctl[C_HOLDING] = 1.0
        return
    ctl[C_HOLDING] = 0.0
    ctl[C_HAS_SHARES] = 1.0
    # open set: the max_open members with the largest weighted level (ties: lower index)
    max_open = max(1, np.int64(master[MS.automix_max_open] + 0.5))
    for c in range(n_ch):
        if ch[c, S_MEMBER] != 0.0:
            ch[c, S_SCORE] = 10.0 ** (chan[c, CH.automix_weight_db] / 10.0) * ch[c, S_SLOW]
        else:
            ch[c, S_SCORE] = 0.0
        ch[c, S_SEL] = ch[c, S_MEMBER]
    if max_open < n_members:
        for c in range(n_ch):
            ch[c, S_SEL] = 0.0
        for _ in range(max_open):
            best = -1
            best_score = -1.0
            for c in range(n_ch):
                if ch[c, S_MEMBER] != 0.0 and ch[c, S_SEL] == 0.0:
                    s = ch[c, S_SCORE] * (_BONUS if ch[c, S_OPEN] != 0.0 else 1.0)
                    if s > best_score:
                        best_score = s
                        best = c
            ch[best, S_SEL] = 1.0
    total = 0.0
    n_sel = 0
    for c in range(n_ch):
        if ch[c, S_SEL] != 0.0:
            total += ch[c, S_SCORE]
            n_sel += 1
    for c in range(n_ch):
        if ch[c, S_MEMBER] == 0.0:
            ch[c, S_TARGET] = 1.0
        elif ch[c, S_SEL] != 0.0:
            # g_i^2 = w_i P_i / sum_j w_j P_j (Dugan), equal shares for a silent group
            share = ch[c, S_SCORE] / total if total > 1e-30 else 1.0 / n_sel
            ch[c, S_TARGET] = max(math.sqrt(share), _FLOOR)
        else:
            ch[c, S_TARGET] = _FLOOR
        ch[c, S_OPEN] = ch[c, S_SEL]


@kernel
def _automix_block(buf, n_frames, chan, master, ch, ctl, gains_db):
    """Gain sharing in place on ``buf[:, :n_frames]`` (``(channels, >= n_frames)``, float32 or
    float64, any strides: the console passes its ``(frames, channels)`` work buffer transposed).

    ``chan`` is the ``(channels, N_CH)`` channel parameter array (``automix_on``,
    ``automix_weight_db`` columns), ``master`` the ``(N_MS,)`` master array (read at the
    ticks); ``ch``/``ctl`` an :class:`AutomixState`; ``gains_db`` ``(channels,)`` float64
    receives each channel's applied gain in dB at the block's last sample (for metering).
    """
    n_ch = buf.shape[0]
    clock = np.int64(ctl[C_CLOCK])
    a_gain = ctl[C_A_GAIN]
    i = 0
    while i < n_frames:
        t = clock + i
        phase = t % TICK
        if phase == 0:
            _tick(t, chan, master, ch, ctl)
        end = min(n_frames, i + TICK - phase)
        a_slow = ctl[C_A_SLOW]
        a_fast = ctl[C_A_FAST]
        for c in range(n_ch):
            slow = ch[c, S_SLOW]
            fast = ch[c, S_FAST]
            g = ch[c, S_GAIN]
            tgt = ch[c, S_TARGET]
            for n in range(i, end):
                x = np.float64(buf[c, n])
                p = x * x
                if not p < _LEVEL_LIMIT:
                    p = 0.0
                slow += a_slow * (p - slow)
                fast += a_fast * (p - fast)
                g += a_gain * (tgt - g)
                buf[c, n] = x * g
            ch[c, S_SLOW] = slow
            ch[c, S_FAST] = fast
            ch[c, S_GAIN] = g
        i = end
    for c in range(n_ch):
        gains_db[c] = 20.0 * math.log10(max(ch[c, S_GAIN], 1e-12))
    ctl[C_CLOCK] = np.float64(clock + n_frames)


_CHANNEL_NAMES = ("automix_on", "automix_weight_db")
_MASTER_NAMES = ("automix_max_open", "automix_last_hold_on", "automix_detector_ms")


class GainSharingAutomixer:
    """The automixer on its own: ``(frames, channels)`` in, the same shape out.

    ``process`` and ``process_inplace`` belong to the audio thread; ``set``/``set_channel``
    may be called between blocks on the same thread.  Parameters are the ``automix_*``
    parameters of :mod:`edgemix.params` (schema defaults: no channel is a member, so
    everything passes at unity until ``members`` or ``set_channel`` say otherwise).
    """

    def __init__(self, sample_rate_hz: float = 48000.0, n_channels: int = 4, members=None):
        if not (8000 <= float(sample_rate_hz) <= 384000):
            raise ValueError(f"sample rate {sample_rate_hz} Hz: use 8000 .. 384000")
        if int(n_channels) != n_channels or not 1 <= int(n_channels) <= 256:
            raise ValueError(f"{n_channels} channels: use a whole number 1 .. 256")
        self.sample_rate_hz = float(sample_rate_hz)
        self.n_channels = int(n_channels)
        self._chan = P.channel_defaults(self.n_channels)
        self._master = P.master_defaults()
        self.state = AutomixState.allocate(self.n_channels, self.sample_rate_hz)
        for c in (members or ()):
            self.set_channel(c, "automix_on", 1.0)

    def set(self, name: str, value: float) -> None:
        """Set a group parameter: automix_max_open, automix_last_hold_on, automix_detector_ms."""
        if name not in _MASTER_NAMES:
            P.lookup(name)
            raise ValueError(f"{name} is not an automixer group parameter: use one of "
                             + ", ".join(_MASTER_NAMES) + " (or set_channel for "
                             + ", ".join(_CHANNEL_NAMES) + ")")
        self._master[getattr(MS, name)] = P.MASTER_SPECS[name].check(value, "automixer: ")

    def set_channel(self, channel: int, name: str, value: float) -> None:
        """Set a channel parameter: automix_on (membership) or automix_weight_db."""
        if int(channel) != channel or not 0 <= int(channel) < self.n_channels:
            raise ValueError(f"channel {channel}: use 0 .. {self.n_channels - 1}")
        if name not in _CHANNEL_NAMES:
            P.lookup(name)
            raise ValueError(f"{name} is not an automixer channel parameter: use one of "
                             + ", ".join(_CHANNEL_NAMES))
        self._chan[int(channel), getattr(CH, name)] = P.CHANNEL_SPECS[name].check(
            value, f"automixer channel {channel}: ")

    def process(self, block) -> np.ndarray:
        """Gain-share one block: ``(frames, channels)`` in, ``(frames, channels)`` float32 out.
        Allocates (use ``process_inplace`` on ``(channels, frames)`` buffers to avoid it)."""
        x = np.asarray(block)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"block of shape {x.shape}: expected (frames, {self.n_channels})")
        buf = np.ascontiguousarray(x.T, dtype=np.float32)
        self.process_inplace(buf)
        return np.ascontiguousarray(buf.T)

    def process_inplace(self, buf_cf: np.ndarray) -> None:
        """Engine side: gain-share a ``(channels, frames)`` float32 buffer in place."""
        if buf_cf.dtype != np.float32 or buf_cf.ndim != 2 or buf_cf.shape[0] != self.n_channels:
            raise ValueError(f"buffer must be float32 of shape ({self.n_channels}, frames)")
        _automix_block(buf_cf, buf_cf.shape[1], self._chan, self._master, self.state.ch,
                       self.state.ctl, self.state.gains_db)

    def reset(self) -> None:
        """Forget levels, noise floors and shares (gains back to unity); keep parameters."""
        self.state.reset()

    @property
    def gains_db(self) -> np.ndarray:
        """Each channel's applied automix gain (dB) at the end of the last block (a copy)."""
        return self.state.gains_db.copy()

    @property
    def holding(self) -> bool:
        """True while last-mic hold has frozen the shares (no member active)."""
        return bool(self.state.ctl[C_HOLDING])


@kernel
def _automix_idle(chan, ch):
    """True when no channel is a member and every gain is back at unity: the console may
    then skip ``_automix_block`` (calling ``_automix_skip`` instead) at no audible cost."""
    for c in range(ch.shape[0]):
        if chan[c, CH.automix_on] > 0.5 or ch[c, S_GAIN] != 1.0:
            return False
    return True


@kernel
def _automix_skip(ctl, n_frames):
    """Advance the automixer's clock over a skipped block so its tick grid stays anchored
    to the console's sample clock (block-size invariance)."""
    ctl[C_CLOCK] = ctl[C_CLOCK] + n_frames
