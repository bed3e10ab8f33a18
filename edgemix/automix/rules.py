"""The rule-based auto-mix policy: gain staging, high-pass, role balance, pan by role and
gain sharing for speech -- the tedious, technical moves, each explained.

Per-role targets (:data:`ROLE_TARGETS`) are shared with the teacher (``export/teacher.py``).
Where they come from:

* **Gain staging** aims every channel's active loudness (``loudness_active_lufs``, what the
  mic delivers when the source plays) at ``TRIM_TARGET_LUFS`` = -24 LUFS, i.e. near the
  -18 dBFS alignment level of EBU R68 for steady material, and keeps at least
  ``HEADROOM_PEAK_DBFS`` between the loudest recent peak and full scale.
* **Balance**: the fader then sets the role's level relative to the lead element
  (``balance_lu``).  The ordering -- lead vocal (or the talker) loudest, kick/snare/bass
  next, then guitars and keys, then backing vocals, pads and cymbals -- is the one reported
  in studies of professional mixes (Pestana & Reiss 2014, "Intelligent audio production
  strategies informed by best practices", AES 53rd Conf.; De Man et al. 2014, "An analysis
  and evaluation of audio features for multitrack music mixtures", ISMIR); the numbers
  are this project's settings, chosen inside that ordering.
* **High-pass** "below each source's useful range" (Pestana & Reiss 2014 list high-passing
  every non-bass source as a best practice): the corner goes just under the frequency
  below which at most ``HPF_BELOW_SHARE`` of the channel's energy lies, clamped to a range
  per role (kick and bass only get a rumble filter).
* **Pan**: the lead, kick, snare, bass and talkers in the centre, low-frequency sources
  central, the rest spread alternately left/right by role (Pestana & Reiss 2014; De Man &
  Reiss 2013 "A knowledge-engineered autonomous mixing system", AES 135th Conv.).
* **The lead on top** (:func:`lead_channels`, :data:`LEAD_OVER_REST_LU`): the lead element
  -- the lead vocal, else the talkers, else a lone backing vocal, else the lead instrument
  (the melodic channel that plays most) -- is the loudest element and the rest is built
  around it (Pestana & Reiss 2014, best practice "the vocal is the most prominent element";
  the same ordering in De Man et al. 2014).  Stated target: the lead's BS.1770 loudness
  ``LEAD_OVER_REST_LU`` = +3 LU over the summed loudness of everything else, the middle of
  the 0 .. +6 LU a pop or rock mix keeps (this project's setting, issue 10: every other
  channel at its ``balance_lu`` from the lead alone adds up to more than the lead once there
  are more than a handful of them, so the rest moves down together).
* **Gain sharing** (``automix_on``) for speech channels: the Dugan-style automixer keeps
  the total gain constant so only the talking mics are open.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np

from edgemix import features as F
from edgemix import params as P
from edgemix.automix.explain import percent, sentence
from edgemix.automix.policy import Policy, Proposal
from edgemix.roles import ROLE_NAMES, role_index

#: Active loudness every channel is trimmed to (EBU R68 alignment, -18 dBFS RMS ~ -24 LUFS
#: for full-band programme with its K-weighting and crest).
TRIM_TARGET_LUFS = -24.0
#: The loudest recent peak after trim stays at least this far below full scale.
HEADROOM_PEAK_DBFS = -6.0
#: High-pass: at most this share of the energy may lie below the corner's band edge.
HPF_BELOW_SHARE = 0.01
#: The corner sits this factor under that frequency (a 24 dB/oct Butterworth is -3 dB at
#: the corner, about -1 dB a quarter octave above it).
HPF_EDGE_FACTOR = 0.8
#: A channel with at least this much energy below 100 Hz is a low-frequency source: kept
#: central and only rumble-filtered.
LF_SOURCE_RATIO = 0.3
#: Features are trusted once a channel has been active for this fraction of the last 10 s.
MIN_ACTIVITY = 0.05
#: The lead's loudness over the sum of all other channels (LU) and the range it may take
#: (the module docstring says where it comes from).
LEAD_OVER_REST_LU = 3.0
LEAD_OVER_REST_RANGE_LU = (0.0, 6.0)
#: Voices that lead a mix, in order: the first role present is the lead (every channel of it).
LEAD_VOICE_ROLES = ("lead_vocal", "speech", "backing_vocal")
#: Roles that may carry the tune when nobody sings or speaks (one channel leads: the one
#: that plays most).
LEAD_INSTRUMENT_ROLES = ("guitar", "keys_piano", "other", "pad")
#: Corners of the shelves that correct the mix's spectral tilt (teacher step 5; the model
#: policy sets them where it moves the shelf gains).
TILT_LOW_SHELF_HZ = 250.0
TILT_HIGH_SHELF_HZ = 4000.0
#: A channel with at least this share of its energy above ``HIGH_SOURCE_HZ`` is a
#: high-frequency source (hi-hat, cymbals, a shaker): it never gets a low-shelf boost.
#: Boosting lows where the source has none raises only its bleed, hum and noise; the tilt
#: belongs on the channels that carry the low end (Izhaki, "Mixing Audio", 2008, on EQ:
#: correct a mix's balance on the tracks that cause it, and boost only what a source has).
HIGH_SOURCE_HZ = 2000.0
HIGH_SOURCE_SHARE = 0.5


@dataclass(frozen=True)
class RoleTarget:
    """Mix targets for one role (used by the rule policy and the teacher).

    ``balance_lu``: loudness relative to the lead element; ``hpf_range_hz``: where the
    high-pass may go; ``pan_width``: how far off centre (0..1) the role is spread;
    ``reverb_send_db``: aux 1 send (teacher); ``crest_target_db``: short-term crest factor
    the teacher's compressor aims at (Giannoulis, Massberg & Reiss 2013: set the ratio and
    threshold from the level distribution; crest targets here are this project's settings).
    """

    balance_lu: float
    hpf_range_hz: tuple[float, float]
    pan_width: float
    reverb_send_db: float
    crest_target_db: float


ROLE_TARGETS: Mapping[str, RoleTarget] = MappingProxyType({
    "kick": RoleTarget(-3.0, (20.0, 40.0), 0.0, -30.0, 12.0),
    "snare": RoleTarget(-4.0, (60.0, 120.0), 0.0, -14.0, 12.0),
    "hats_overheads": RoleTarget(-9.0, (100.0, 400.0), 0.6, -20.0, 14.0),
    "bass": RoleTarget(-3.0, (20.0, 40.0), 0.0, -40.0, 10.0),
    "guitar": RoleTarget(-6.0, (60.0, 150.0), 0.6, -18.0, 12.0),
    "keys_piano": RoleTarget(-6.0, (30.0, 100.0), 0.35, -16.0, 13.0),
    "pad": RoleTarget(-10.0, (40.0, 150.0), 0.5, -14.0, 10.0),
    "lead_vocal": RoleTarget(0.0, (70.0, 150.0), 0.0, -14.0, 11.0),
    "backing_vocal": RoleTarget(-8.0, (100.0, 250.0), 0.45, -12.0, 11.0),
    "speech": RoleTarget(0.0, (80.0, 160.0), 0.0, -90.0, 12.0),
    "other": RoleTarget(-10.0, (60.0, 300.0), 0.4, -16.0, 13.0),
})
assert set(ROLE_TARGETS) == set(ROLE_NAMES)


def hpf_corner_hz(band_rel_db: np.ndarray, role: str) -> tuple[float, float, float]:
    """The rule's high-pass corner from a channel's band levels (dB re its total).

    The cumulative share of energy below each band edge is interpolated on a log-frequency
    axis to find the frequency ``edge`` below which ``HPF_BELOW_SHARE`` of the energy lies
    (continuous in the features, so small measurement jitter moves the corner a little
    instead of flipping it between band edges).  Returns ``(corner_hz, edge_hz,
    share_above_edge)``; ``edge_hz`` is 0 when even the lowest band edge has more below it.
    """
    share = 10.0 ** (np.asarray(band_rel_db, dtype=np.float64) / 10.0)
    lo, hi = ROLE_TARGETS[role].hpf_range_hz
    edges = F.BAND_EDGES_HZ
    # below[k]: share of the energy under edges[k] (what is not in the bands above it).
    above = np.concatenate([np.cumsum(share[::-1])[::-1], [0.0]])
    below = np.clip(1.0 - above, 0.0, 1.0)
    if below[0] > HPF_BELOW_SHARE:
        return float(lo), 0.0, float(1.0 - below[0])
    k = int(np.argmax(below > HPF_BELOW_SHARE)) if (below > HPF_BELOW_SHARE).any() else len(edges) - 1
    k = max(k, 1)
    span = below[k] - below[k - 1]
    frac = (HPF_BELOW_SHARE - below[k - 1]) / span if span > 0 else 1.0
    frac = min(max(frac, 0.0), 1.0)
    edge = math.exp(math.log(edges[k - 1]) + frac * (math.log(edges[k]) - math.log(edges[k - 1])))
    corner = HPF_EDGE_FACTOR * edge
    return float(min(max(corner, lo), hi)), float(edge), 1.0 - HPF_BELOW_SHARE


def share_above_hz(band_rel_db: np.ndarray, hz: float) -> float:
    """Share (0..1) of a channel's band energy above ``hz``, from its band levels (dB re any
    common reference: the features' ``band*_rel_db`` or the teacher's band powers); the band
    that holds ``hz`` is split on a log-frequency axis."""
    p = 10.0 ** (np.asarray(band_rel_db, dtype=np.float64) / 10.0)
    total = float(p.sum())
    if not total > 0.0:
        return 0.0
    lo, hi = F.BAND_EDGES_HZ[:-1], F.BAND_EDGES_HZ[1:]
    frac = np.clip((np.log(hi) - np.log(np.maximum(lo, hz))) / (np.log(hi) - np.log(lo)), 0, 1)
    return float((p * frac).sum() / total)


def is_high_source(band_rel_db: np.ndarray) -> bool:
    """True for a channel whose energy lies above ``HIGH_SOURCE_HZ`` (no low-shelf boost)."""
    return share_above_hz(band_rel_db, HIGH_SOURCE_HZ) >= HIGH_SOURCE_SHARE


def lead_channels(roles: Sequence[str], activity=None) -> tuple[int, ...]:
    """The channels that carry the lead element.

    Every channel of the first voice role present (``LEAD_VOICE_ROLES``: lead vocals, else
    the talkers of a panel, else backing vocals with no lead singer); when nobody sings or
    speaks, the one channel of a ``LEAD_INSTRUMENT_ROLES`` role that plays most
    (``activity``, one number per channel; the first such channel when not given or tied).
    Empty when there is none (a drum-only session)."""
    for voice in LEAD_VOICE_ROLES:
        found = tuple(c for c, r in enumerate(roles) if r == voice)
        if found:
            return found
    cand = [c for c, r in enumerate(roles) if r in LEAD_INSTRUMENT_ROLES]
    if not cand:
        return ()
    if activity is None:
        return (cand[0],)
    act = np.asarray(activity, dtype=np.float64)
    return (max(cand, key=lambda c: (act[c], -c)),)


def balance_target_lu(role: str, is_lead: bool) -> float:
    """A channel's loudness relative to the lead element: 0 for the lead itself, else its
    role's ``balance_lu``."""
    return 0.0 if is_lead else ROLE_TARGETS[role].balance_lu


def staging_trim(l_act: float, peak_dbfs: float) -> tuple[float, str]:
    """Trim (dB, in range) that stages a channel playing at ``l_act`` LUFS with peaks at
    ``peak_dbfs`` to ``TRIM_TARGET_LUFS``, keeping ``HEADROOM_PEAK_DBFS``, and why."""
    by_loudness = TRIM_TARGET_LUFS - l_act
    by_peak = HEADROOM_PEAK_DBFS - peak_dbfs
    if by_peak < by_loudness:
        trim = by_peak
        why = (f"peaks reach {peak_dbfs:.1f} dBFS: keep {-HEADROOM_PEAK_DBFS:.0f} dB "
               f"headroom (loudness alone would ask {by_loudness:+.1f} dB)")
    else:
        trim = by_loudness
        why = f"plays at {l_act:.1f} LUFS; gain staging to {TRIM_TARGET_LUFS:.0f} LUFS"
    return float(P.CHANNEL_SPECS["trim_db"].clip(trim)), why


def lead_margin_move(margin_lu: float) -> float:
    """The common fader move (dB) of everything but the lead that brings a measured lead
    margin over the rest into ``LEAD_OVER_REST_LU`` .. the top of its range: down when the
    rest is too loud (the usual case with many channels), up when the lead stands too far
    out."""
    target = min(max(margin_lu, LEAD_OVER_REST_LU), LEAD_OVER_REST_RANGE_LU[1])
    return float(margin_lu - target)


def _name(role: str) -> str:
    return role.replace("_", " ")


def balance_faders(roles: Sequence[str], staged_lufs, activity) -> list[tuple[float, str] | None]:
    """Faders from measured levels: each channel to its role's balance from the lead, the
    rest moved together so the lead sits ``LEAD_OVER_REST_LU`` over it.

    ``staged_lufs``: each channel's playing level after its trim (LUFS; NaN where it has not
    played: no opinion, None); ``activity``: the share of the time it plays (0..1), which
    weights its power in the sum of the rest (a loudness measurement of the rest hears a
    channel only while it plays).  Returns ``(fader_db, why)`` per channel: why names the
    measured level, the role's target and, for the rest, the common move and the lead's
    resulting margin."""
    lev = np.asarray(staged_lufs, dtype=np.float64)
    act = np.clip(np.asarray(activity, dtype=np.float64), 0.0, 1.0)
    playing = np.isfinite(lev)
    leads = [c for c in lead_channels([r if playing[c] else "" for c, r in enumerate(roles)],
                                      act) if playing[c]]
    spec = P.CHANNEL_SPECS["fader_db"]
    # the lead's level: the power mean of its channels (a panel: the talkers' common level)
    ref = (10.0 * math.log10(np.mean(10.0 ** (lev[leads] / 10.0))) if leads
           else TRIM_TARGET_LUFS)
    lead_name = _name(roles[leads[0]]) if leads else "lead"
    if leads and len(leads) == 1 and roles[leads[0]] in LEAD_INSTRUMENT_ROLES:
        lead_name = f"{_name(roles[leads[0]])} (the lead instrument)"
    fader = np.full(len(roles), np.nan)
    for c, role in enumerate(roles):
        if playing[c]:
            fader[c] = ref + balance_target_lu(role, c in leads) - lev[c]
    rest = [c for c in range(len(roles)) if playing[c] and c not in leads]
    move = 0.0
    margin = math.nan
    if leads and rest:
        p_rest = float(np.sum(act[rest] * 10.0 ** ((lev[rest] + fader[rest]) / 10.0)))
        if p_rest > 0.0:
            margin = ref - 10.0 * math.log10(p_rest)
            move = lead_margin_move(margin)
            fader[rest] += move
            margin -= move
    out: list[tuple[float, str] | None] = []
    for c, role in enumerate(roles):
        if not playing[c]:
            out.append(None)
            continue
        v = float(spec.clip(fader[c]))
        if c in leads:
            why = f"{lead_name} is the lead, playing at {lev[c]:.1f} LUFS after trim"
            if rest and math.isfinite(margin):
                why += (f"; the rest sums {margin:.1f} LU under it (target "
                        f"{LEAD_OVER_REST_LU:.0f} LU over the rest)")
        else:
            bal = balance_target_lu(role, False)
            why = (f"{_name(role)} plays at {lev[c]:.1f} LUFS after trim; target "
                   f"{abs(bal):.0f} LU under the {lead_name}" if leads else
                   f"{_name(role)} plays at {lev[c]:.1f} LUFS after trim; target "
                   f"{bal:+.0f} LU against {TRIM_TARGET_LUFS:.0f} LUFS (no lead element)")
            if abs(move) >= 0.05:
                why += (f"; everything but the lead {move:+.1f} dB so the {lead_name} sits "
                        f"{margin:.0f} LU over the rest (target {LEAD_OVER_REST_LU:.0f} .. "
                        f"{LEAD_OVER_REST_RANGE_LU[1]:.0f} LU)")
        out.append((v, why))
    return out


class RulePolicy(Policy):
    """Rules over a feature snapshot; ``roles`` are the channels' role names."""

    outputs = ("trim_db", "hpf_on", "hpf_hz", "fader_db", "pan", "automix_on",
               "automix_weight_db")

    def __init__(self, roles: Sequence[str]):
        self.roles = tuple(roles)
        for r in self.roles:
            role_index(r)
        if not self.roles:
            raise ValueError("roles is empty: give one role per channel")

    def propose(self, features: np.ndarray) -> Proposal:
        feats = np.asarray(features, dtype=np.float64)
        n = len(self.roles)
        if feats.shape != (n, F.N_FEATURES):
            raise ValueError(f"features shape {feats.shape}: expected ({n}, {F.N_FEATURES}) "
                             "(one FeatureExtractor snapshot)")
        prop = Proposal.empty(n)
        pans = self._pans(feats)
        speech = [r == "speech" for r in self.roles]
        staged = np.full(n, np.nan)          # playing level after trim, where measured
        for c, role in enumerate(self.roles):
            f = feats[c]
            # Gain sharing is about the role, not the signal: decide it always.
            if speech[c]:
                prop.set(c, "automix_on", 1.0, sentence(
                    "automix_on", 1.0, "speech channel: gain sharing keeps the total gain "
                    "constant so only the talking mics are open"))
                prop.set(c, "automix_weight_db", 0.0, sentence(
                    "automix_weight_db", 0.0, "all talkers have equal priority"))
            elif any(speech):
                prop.set(c, "automix_on", 0.0, sentence(
                    "automix_on", 0.0, f"{role.replace('_', ' ')} is not speech: left out "
                    "of gain sharing"))
            prop.set(c, "pan", pans[c][0], sentence("pan", pans[c][0], pans[c][1]))
            active = f[F.F_ACT] >= MIN_ACTIVITY and f[F.F_LACT] > F.ABS_GATE_LUFS
            if not active:
                continue                  # no opinion on levels/filters without signal
            # Gain staging: loudness target, limited by peak headroom.
            trim, why = staging_trim(f[F.F_LACT], f[F.F_PEAK])
            prop.set(c, "trim_db", trim, sentence("trim_db", trim, why))
            staged[c] = f[F.F_LACT] + trim
            # High-pass below the useful range.
            corner, edge, above = hpf_corner_hz(f[F.F_BAND:F.F_BAND + F.N_BANDS], role)
            lf = f[F.F_LF]
            if lf >= LF_SOURCE_RATIO:
                why = (f"{percent(lf)} of this channel's energy is below 100 Hz: "
                       "a rumble filter only")
            elif edge > 0:
                why = f"{percent(above)} of this channel's energy lies above {edge:.0f} Hz"
                lo, hi = ROLE_TARGETS[role].hpf_range_hz
                if corner >= hi and HPF_EDGE_FACTOR * edge > hi:
                    why += f"; {hi:.0f} Hz is the highest setting for a {role.replace('_', ' ')}"
                elif corner <= lo and HPF_EDGE_FACTOR * edge < lo:
                    why += f"; {lo:.0f} Hz is the lowest setting for a {role.replace('_', ' ')}"
            else:
                why = (f"{percent(lf)} of the energy is below 100 Hz: the lowest "
                       f"setting for a {role.replace('_', ' ')}")
            if lf >= LF_SOURCE_RATIO:
                corner = ROLE_TARGETS[role].hpf_range_hz[0]
            prop.set(c, "hpf_on", 1.0, sentence("hpf_on", 1.0, "high-pass below the source"))
            prop.set(c, "hpf_hz", corner, sentence("hpf_hz", corner, why))
        # Balance: faders from the measured levels after trim, the lead on top.
        for c, fw in enumerate(balance_faders(self.roles, staged, feats[:, F.F_ACT])):
            if fw is not None:
                prop.set(c, "fader_db", fw[0], sentence("fader_db", fw[0], fw[1]))
        return prop

    def _pans(self, feats: np.ndarray) -> list[tuple[float, str]]:
        """Pan per channel and why: centre roles and LF sources centre, the others spread
        alternately, the first of each role to the left."""
        out = []
        side = {}
        for c, role in enumerate(self.roles):
            width = ROLE_TARGETS[role].pan_width
            lf = feats[c, F.F_LF]
            name = role.replace("_", " ")
            if width == 0.0:
                out.append((0.0, f"{name} belongs in the centre"))
                continue
            if lf >= LF_SOURCE_RATIO and feats[c, F.F_ACT] >= MIN_ACTIVITY:
                out.append((0.0, f"{percent(lf)} of its energy is below 100 Hz: "
                                 "low frequencies stay central"))
                continue
            k = side.get(role, 0)
            side[role] = k + 1
            same = sum(r == role for r in self.roles)
            if same == 1:
                # a lone spread role leans to the side with fewer spread sources so far
                left = sum(1 for v, _ in out if v < 0)
                right = sum(1 for v, _ in out if v > 0)
                sign = -1.0 if left <= right else 1.0
            else:
                sign = -1.0 if k % 2 == 0 else 1.0
            v = sign * width
            out.append((v, f"{name} spread {'left' if v < 0 else 'right'} by role"
                           + (f" ({k + 1} of {same})" if same > 1 else "")))
        return out
