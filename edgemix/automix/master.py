"""The master fader toward the session's loudness target, from the channels' measured levels.

Every channel is trimmed to the staging level and balanced by its fader, so what the mix
adds up to depends on how many channels play and how loud the balance puts them, never on
the input gains.  :class:`MasterLoudness` estimates the mix's programme loudness from the
feature snapshot and the channel targets the console was given (trim, fader, mute: a
person's settings included) and moves the master fader so the mix lands at the session's
``loudness_target_lufs`` (:mod:`edgemix.session`: live -18 LUFS by default).

The estimate: each playing channel's loudness after its trim and fader is its measured
when-it-plays loudness (``loudness_active_lufs``, ITU-R BS.1770 K-weighted) plus both
gains; uncorrelated sources add in power (the same assumption as the features' mix
context), each weighted by the share of the time it plays (``activity_ratio``): an
integrated measurement of the mix hears a channel only while it plays.  Constant-power
panning keeps a channel's power in the stereo sum, and BS.1770 sums the two channels'
powers.  Left out: the EQ's and the compressor's effect on loudness and the reverb return;
the master limiter holds the true-peak ceiling whatever the estimate says.

The move is smoothed and rate limited like every automatic parameter
(:mod:`edgemix.automix.policy`: ``SMOOTH_HOPS``, 0.5 dB dead band, 1 dB per hop), and a
master parameter the session sets (``[master]``) is the person's: never proposed.
"""
from __future__ import annotations

import math

import numpy as np

from edgemix import features as F
from edgemix import params as P
from edgemix.automix.explain import sentence
from edgemix.automix.policy import SMOOTH_HOPS, Limit
from edgemix.automix.rules import MIN_ACTIVITY

#: Dead band and step per hop of the master fader (the channel faders' :data:`LIMITS`).
MASTER_LIMIT = Limit(0.5, 1.0)


def mix_loudness_lufs(features: np.ndarray, channel_params: np.ndarray) -> float:
    """Estimated programme loudness (LUFS) of the mix before the master fader (module
    docstring); -inf when nothing plays."""
    f = np.asarray(features, dtype=np.float64)
    cp = np.asarray(channel_params, dtype=np.float64)
    playing = (f[:, F.F_ACT] >= MIN_ACTIVITY) & (f[:, F.F_LACT] > F.ABS_GATE_LUFS) \
        & (cp[:, P.CH.mute_on] < 0.5) & (cp[:, P.CH.fader_db] > P.OFF_DB)
    if not playing.any():
        return -math.inf
    level = f[playing, F.F_LACT] + cp[playing, P.CH.trim_db] + cp[playing, P.CH.fader_db]
    power = float(np.sum(f[playing, F.F_ACT] * 10.0 ** (level / 10.0)))
    return 10.0 * math.log10(power) if power > 0.0 else -math.inf


class MasterLoudness:
    """Master fader proposals toward ``target_lufs``.

    ``person``: master parameter names the session set (never proposed).  Threads: the
    control thread's, once per hop (:meth:`propose`)."""

    def __init__(self, target_lufs: float, person=()):
        self.target_lufs = float(target_lufs)
        self.person = frozenset(person)
        self.reset()

    def reset(self) -> None:
        self._smooth = math.nan

    @property
    def active(self) -> bool:
        return "master_fader_db" not in self.person

    def propose(self, features: np.ndarray, channel_params: np.ndarray,
                master_fader_db: float) -> tuple[float, str] | None:
        """``(master_fader_db, why)`` for this hop from the snapshot and the channel targets
        now on the console, or None (no opinion: nothing plays, or the person set it)."""
        if not self.active:
            return None
        est = mix_loudness_lufs(features, channel_params)
        if not math.isfinite(est):
            return None
        spec = P.MASTER_SPECS["master_fader_db"]
        want = float(spec.clip(self.target_lufs - est))
        # smoothed on the fader's 0..1 scale, then dead band and slew (policy.LIMITS' way)
        u = spec.to_norm(want)
        a = math.exp(-1.0 / SMOOTH_HOPS)
        first = not math.isfinite(self._smooth)
        self._smooth = u if first else a * self._smooth + (1 - a) * u
        smoothed = float(spec.from_norm(self._smooth))
        if first:                      # the first estimate is taken whole (as the faders)
            master_fader_db = smoothed
        d = smoothed - master_fader_db
        value = master_fader_db if abs(d) <= MASTER_LIMIT.dead_band else \
            master_fader_db + max(-MASTER_LIMIT.max_step, min(MASTER_LIMIT.max_step, d))
        value = float(spec.clip(value))
        why = (f"the channels sum to {est:.1f} LUFS before the master; the session's "
               f"loudness target is {self.target_lufs:.0f} LUFS")
        return value, sentence("master_fader_db", value, why)
