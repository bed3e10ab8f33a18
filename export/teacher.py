"""The teacher: an offline whole-session mixer that renders with the engine and iterates
toward mixing targets from the literature.  Its per-channel settings (at least
``params.MODEL_OUTPUTS``) label the sessions the student model learns from.

Targets, in the order they are applied, and where they come from:

1. **Gain staging** -- trim every channel so it plays at ``TRIM_TARGET_LUFS`` (EBU R68
   alignment; shared with the rule policy, ``edgemix.automix.rules``), the playing level
   measured by ``export.synth.source_level_lufs`` (loudest 20 % of 100 ms hops).  On a synthesised
   session this undoes the unknown preamp offsets.
2. **High-pass below each source's useful range** (Pestana & Reiss 2014, "Intelligent audio
   production strategies informed by best practices", AES 53rd Conf.: high-pass all but the
   bass instruments) -- the rule policy's corner (``rules.hpf_corner_hz``) on the
   channel's own long-term spectrum.
3. **Compression to a crest-factor target** per role (``RoleTarget.crest_target_db``):
   threshold a little above the channel's RMS level, ratio chosen so the peaks above it come
   down by the excess crest, attack/release per role class; parameter roles follow
   Giannoulis, Massberg & Reiss 2013, "Parameter automation in a dynamic range compressor",
   JAES 61(10) (threshold from the level distribution, ratio from the desired reduction,
   attack/release from the signal's envelope class).
4. **Masking reduction** (Hafezi & Reiss 2015, "Autonomous multitrack equalization based on
   masking reduction", JAES 63(5)): where a less important channel is louder than a more
   important one in a band that matters to the latter, cut the masker there with a peaking
   EQ (band 2 below 1 kHz, band 3 above), by the masking margin up to ``MAX_MASK_CUT_DB``.
5. **Spectral balance of the mix** (Ma, De Man, Pestana et al. 2015, "Implementation of an
   intelligent equalization tool using Yule-Walker for music mixing and mastering", and the
   long-term average spectra of commercial mixes behind it): the mix's spectral slope over
   100 Hz .. 10 kHz is brought toward ``MIX_TILT_DB_PER_OCT`` (at most
   ``MAX_TILT_SHELF_DB`` of change at each end).  The slope value is this project's setting
   within the range those spectra show.  *Where* the correction goes is an engineer's
   choice, not every channel alike: the master bus here has no EQ, so the shelves go on the
   channels that carry the end of the spectrum being corrected -- the fewest, loudest first,
   that together make ``TILT_COVER`` of the mix's energy below ``TILT_LOW_SHELF_HZ`` (low
   shelf) or above ``TILT_HIGH_SHELF_HZ`` (high shelf) -- by as much as moves that end of the
   mix by the wanted amount (at most ``MAX_SOURCE_SHELF_DB`` per channel).  A channel whose
   energy lies above 2 kHz (``rules.is_high_source``: a hi-hat, cymbals) never gets a low
   boost (Izhaki, "Mixing Audio", 2008: correct a balance on the tracks that cause it;
   boosting a band a source does not have raises only its bleed and noise).  Before this,
   every channel got the same +-3 dB shelves, hi-hats included (issue 10).
6. **Loudness balance by role, the lead on top** (Pestana & Reiss 2014; De Man et al.
   2014): each channel, rendered alone through the engine with all of the above, is brought
   by its fader to ``MIX_REF_LUFS`` + its balance from the lead (playing level;
   ``rules.balance_target_lu``: 0 for the lead element, ``RoleTarget.balance_lu`` for the
   others), iterated because the compressor is level dependent.  Then the lead element
   (``rules.lead_channels``: the lead vocal, else the talkers, else the lead instrument) is
   measured against the sum of everything else (BS.1770 integrated loudness of the two
   renders) and the rest moves together until the lead sits ``rules.LEAD_OVER_REST_LU`` =
   +3 LU over it (range 0 .. +6 LU: ``rules.lead_margin_move``).  Per-role targets alone
   put the lead 3 to 4 LU *under* a band of eight.
7. **Panning by role and spectrum** (Pestana & Reiss 2014; De Man & Reiss 2013): the rule
   policy's pans (centre roles and low-frequency sources central, the rest alternating).
8. **Reverb send by role** (``RoleTarget.reverb_send_db``; drier low end, wetter vocals);
   gain sharing (``automix_on``) for the talkers of a panel.
9. **Master loudness and true-peak ceiling** (ITU-R BS.1770-4 integrated loudness, -1 dBTP
   max as in EBU R128; BS.1770-4 Annex 2 true peak by 4x oversampling): the master fader
   brings the rendered mix to the session's loudness target
   (``session.loudness_target_lufs`` when the session has one, else ``target_lufs``, by
   default the live default :data:`edgemix.session.DEFAULT_LOUDNESS_TARGET_LUFS`; -23 LUFS
   is broadcast's).  The master limiter, its ceiling at ``ceiling_dbtp``, holds the true
   peak and may take up to ``LIMITER_MAX_DB`` off the loudest peaks (a live target of -18
   LUFS leaves 17 dB for peaks, and a drum-heavy mix's crest reaches 20 dB); a mix that
   would need more is brought down by the master fader instead, short of the target.

Slow by design (several whole-session renders).  ``teach(session)`` returns a
:class:`TeacherResult`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.signal

from edgemix import features as F
from edgemix import params as P
from edgemix.automix.explain import sentence
from edgemix.automix.rules import (LEAD_OVER_REST_LU, ROLE_TARGETS, TILT_HIGH_SHELF_HZ,
                                   TILT_LOW_SHELF_HZ, TRIM_TARGET_LUFS, RulePolicy,
                                   balance_target_lu, hpf_corner_hz, is_high_source,
                                   lead_channels, lead_margin_move)
from edgemix.session import DEFAULT_LOUDNESS_TARGET_LUFS
from export.synth import Session, source_level_lufs

#: Active loudness of the lead element in the (pre-master) mix; the other roles sit
#: ``balance_lu`` from it.
MIX_REF_LUFS = TRIM_TARGET_LUFS
#: Programme loudness when the session names none (the session's live default) and the
#: maximum true peak (EBU R128's -1 dBTP).
TARGET_LUFS = DEFAULT_LOUDNESS_TARGET_LUFS
CEILING_DBTP = -1.0
#: The most the master limiter may take off the mix's true peak (this project's setting).
LIMITER_MAX_DB = 3.0
MAX_MASK_CUT_DB = 6.0
#: Margin (dB) by which a masker may sit under the maskee in a band before it counts.
MASK_MARGIN_DB = 3.0
#: A band "matters" to a channel when it is within this much of the channel's strongest band.
ESSENTIAL_BAND_DB = 12.0
MIX_TILT_DB_PER_OCT = -4.5
#: Most change of either end of the mix's spectrum per tilt correction, and most shelf gain
#: on one channel; the channels that make this share of an end's energy carry its shelf;
#: a channel with less than TILT_MIN_SHARE of it is never one of them.
MAX_TILT_SHELF_DB = 3.0
MAX_SOURCE_SHELF_DB = 6.0
TILT_COVER = 0.8
TILT_MIN_SHARE = 0.1
#: Importance for masking: a channel is protected from channels of lower rank.
IMPORTANCE = {"lead_vocal": 3, "speech": 3, "kick": 2, "snare": 2, "bass": 2,
              "backing_vocal": 1, "guitar": 1, "keys_piano": 1, "hats_overheads": 0, "pad": 0,
              "other": 0}
#: Compressor time constants per envelope class (attack ms, release ms).
_TIMES = {"kick": (10.0, 100.0), "snare": (5.0, 100.0), "hats_overheads": (5.0, 80.0),
          "bass": (15.0, 200.0), "guitar": (10.0, 150.0), "keys_piano": (10.0, 200.0),
          "pad": (30.0, 300.0), "lead_vocal": (5.0, 150.0), "backing_vocal": (5.0, 150.0),
          "speech": (5.0, 200.0), "other": (10.0, 150.0)}
_RENDER_BLOCK = 4096


@dataclass
class TeacherResult:
    """Settings in units and the mix they give.

    ``channel_params`` ``(n_channels, N_CH)``, ``master_params`` ``(N_MS,)``, ``mix``
    ``(frames, 2)`` float32 rendered with the engine; ``explanations[ch][name]`` why;
    ``report``: measured values (per-channel solo loudness, master loudness, true peak).
    """

    channel_params: np.ndarray
    master_params: np.ndarray
    mix: np.ndarray
    explanations: tuple[dict[str, str], ...]
    report: dict = field(default_factory=dict)

    @property
    def model_outputs(self) -> np.ndarray:
        """``(n_channels, len(params.MODEL_OUTPUTS))`` in units."""
        return self.channel_params[:, P.MODEL_OUTPUT_COLUMNS].copy()


# --------------------------------------------------------------------------------------
# Measurement helpers (offline, numpy)


def true_peak_dbtp(x: np.ndarray) -> float:
    """BS.1770-4 Annex 2 true peak: 4x oversampled sample peak, dBTP (-inf for silence)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    up = scipy.signal.resample_poly(x, 4, 1, axis=0)
    pk = float(np.max(np.abs(up))) if up.size else 0.0
    return 20.0 * math.log10(pk) if pk > 0 else -math.inf


def integrated_lufs(x: np.ndarray, sr: float) -> float:
    """BS.1770-4 gated integrated loudness (pyloudnorm, De Man's K-weighting)."""
    import pyloudnorm
    return float(pyloudnorm.Meter(sr, filter_class="DeMan").integrated_loudness(
        np.asarray(x, dtype=np.float64)))


def band_levels(x: np.ndarray, sr: float, per_active_hop: bool = True) -> np.ndarray:
    """Long-term band powers (dB) of a mono/stereo signal on the features' ERB bands,
    averaged over its active 100 ms hops (so an intermittent source is not diluted), or
    over the whole signal with ``per_active_hop=False`` (its share of a mix's energy)."""
    x = np.asarray(x, dtype=np.float64)
    mono = x if x.ndim == 1 else x.sum(axis=1) / math.sqrt(x.shape[1])
    hop = int(round(0.1 * sr))
    n = len(mono) // hop
    if n == 0:
        return np.full(F.N_BANDS, F.FLOOR_DB)
    ms = np.mean(mono[:n * hop].reshape(n, hop) ** 2, axis=1)
    act = ms > max(ms.max() * 10 ** (-2.0), 1e-12)         # within 20 dB of the loudest hop
    frac = max(float(act.mean()), 1e-3) if per_active_hop else 1.0
    f, p = scipy.signal.welch(mono, sr, nperseg=4096)
    out = np.empty(F.N_BANDS)
    df = f[1] - f[0]
    for b in range(F.N_BANDS):
        sel = (f >= F.BAND_EDGES_HZ[b]) & (f < F.BAND_EDGES_HZ[b + 1])
        pw = float(p[sel].sum() * df) / frac
        out[b] = 10.0 * math.log10(pw) if pw > 1e-20 else F.FLOOR_DB
    return out


def activity(x: np.ndarray, sr: float) -> float:
    """Share of the 100 ms hops of a mono signal within 20 dB of its loudest (0 for silence):
    how much of the session a channel plays (picks the lead instrument)."""
    hop = int(round(0.1 * sr))
    n = len(x) // hop
    if n == 0:
        return 0.0
    ms = np.mean(np.asarray(x[:n * hop], dtype=np.float64).reshape(n, hop) ** 2, axis=1)
    if not ms.max() > 1e-12:
        return 0.0
    return float(np.mean(ms > ms.max() * 10 ** (-2.0)))


def _crest_db(x: np.ndarray, sr: float) -> tuple[float, float]:
    """(crest factor dB, RMS dBFS) over the active 100 ms hops of a mono signal."""
    hop = int(round(0.1 * sr))
    n = len(x) // hop
    seg = np.asarray(x[:n * hop], dtype=np.float64).reshape(n, hop)
    ms = np.mean(seg ** 2, axis=1)
    act = ms > max(ms.max() * 0.01, 1e-12)
    if not act.any():
        return 0.0, F.FLOOR_DB
    rms = math.sqrt(float(ms[act].mean()))
    pk = float(np.max(np.abs(seg[act])))
    return 20.0 * math.log10(pk / rms), 20.0 * math.log10(rms)


# --------------------------------------------------------------------------------------
# Rendering with the engine


def render(stems: np.ndarray, sr: float, channel_params: np.ndarray,
           master_params: np.ndarray, n_aux: int = 1) -> np.ndarray:
    """The engine's stereo mix of ``stems`` ``(frames, channels)`` with these settings."""
    from edgemix.console import Console
    x = np.ascontiguousarray(stems, dtype=np.float32)
    con = Console(sample_rate_hz=sr, block_size=_RENDER_BLOCK, n_channels=x.shape[1],
                  n_aux=n_aux)
    con.stage(np.asarray(channel_params, dtype=np.float64),
              np.asarray(master_params, dtype=np.float64))
    out = np.empty((x.shape[0], 2), dtype=np.float32)
    con.process(x, out=out)
    latency = int(getattr(con, "latency_frames", 0))
    if latency:
        out = np.concatenate([out[latency:], np.zeros((latency, 2), np.float32)])
    return out


def _solo_master() -> np.ndarray:
    """Master settings for measuring one channel: no reverb return, no limiter, unity."""
    m = P.master_defaults()
    m[P.MS.reverb_return_db] = P.OFF_DB
    m[P.MS.limiter_on] = 0.0
    m[P.MS.master_fader_db] = 0.0
    return m


def _solo(stems, sr, params, c) -> np.ndarray:
    row = params[c:c + 1].copy()
    row[0, P.CH.aux1_send_db] = P.OFF_DB
    return render(stems[:, c:c + 1], sr, row, _solo_master())


# --------------------------------------------------------------------------------------
# The teacher


class Teacher:
    """Offline mixer; ``teach(session)`` -> :class:`TeacherResult`."""

    def __init__(self, target_lufs: float = TARGET_LUFS, ceiling_dbtp: float = CEILING_DBTP,
                 balance_iterations: int = 3):
        P.MASTER_SPECS["limiter_ceiling_dbtp"].check(ceiling_dbtp, where="teacher: ")
        if not -40.0 <= target_lufs <= -5.0:
            raise ValueError(f"target_lufs = {target_lufs}: use -40 .. -5 LUFS")
        self.target_lufs = float(target_lufs)
        self.ceiling_dbtp = float(ceiling_dbtp)
        self.balance_iterations = int(balance_iterations)

    def teach(self, session: Session) -> TeacherResult:
        stems = np.ascontiguousarray(session.stems, dtype=np.float32)
        sr = float(session.sample_rate_hz)
        roles = session.roles
        n = stems.shape[1]
        if len(roles) != n:
            raise ValueError(f"{len(roles)} roles for {n} channels: give one role per channel")
        target_lufs = float(getattr(session, "loudness_target_lufs", None) or self.target_lufs)
        p = P.channel_defaults(n)
        why: tuple[dict[str, str], ...] = tuple({} for _ in range(n))
        active = np.ones(n, dtype=bool)

        def put(c, name, value, reason):
            spec = P.CHANNEL_SPECS[name]
            v = float(spec.clip(value))
            p[c, getattr(P.CH, name)] = v
            why[c][name] = sentence(name, v, reason)

        # 1. Gain staging on the raw input.  2. High-pass from its spectrum.
        raw_bands = []
        for c in range(n):
            l_raw = source_level_lufs(stems[:, c], sr)
            if not math.isfinite(l_raw):
                active[c] = False
                put(c, "fader_db", P.OFF_DB, "no signal on this channel")
                raw_bands.append(np.full(F.N_BANDS, F.FLOOR_DB))
                continue
            put(c, "trim_db", TRIM_TARGET_LUFS - l_raw,
                f"plays at {l_raw:.1f} LUFS; gain staging to {TRIM_TARGET_LUFS:.0f} LUFS")
            bands = band_levels(stems[:, c], sr)
            raw_bands.append(bands)
            total = 10 * math.log10(np.sum(10 ** (bands / 10)) + 1e-30)
            corner, edge, above = hpf_corner_hz(bands - total, roles[c])
            put(c, "hpf_hz", corner,
                f"{above * 100:.0f} % of the energy lies above {edge:.0f} Hz" if edge > 0 else
                f"the lowest setting for a {roles[c].replace('_', ' ')}")
            p[c, P.CH.hpf_on] = 1.0
            p[c, P.CH.eq_on] = 1.0
            p[c, P.CH.gate_on] = 0.0

        # 3. Compression to the role's crest target (measured on the trimmed, filtered solo).
        for c in np.flatnonzero(active):
            solo = _solo(stems, sr, p, c)
            crest, rms_db = _crest_db(solo.sum(axis=1) / math.sqrt(2.0), sr)
            t = ROLE_TARGETS[roles[c]]
            excess = crest - t.crest_target_db
            att, rel = _TIMES[roles[c]]
            if excess <= 0.5:
                put(c, "comp_ratio", 1.0, f"crest factor {crest:.1f} dB is within the "
                    f"{t.crest_target_db:.0f} dB target: no compression")
                continue
            thr = rms_db + 3.0
            above = max(crest - 3.0, 1.0)                 # peak level above the threshold
            ratio = 1.0 / max(1.0 - min(excess, 0.8 * above) / above, 1.0 / 8.0)
            put(c, "comp_threshold_db", thr, f"3 dB above the channel's RMS level "
                f"({rms_db:.1f} dBFS)")
            put(c, "comp_ratio", ratio, f"crest factor {crest:.1f} dB, target "
                f"{t.crest_target_db:.0f} dB: peaks come down {excess:.1f} dB")
            put(c, "comp_attack_ms", att, f"{roles[c].replace('_', ' ')} envelope")
            put(c, "comp_release_ms", rel, f"{roles[c].replace('_', ' ')} envelope")
            put(c, "comp_makeup_db", 0.0, "level is set by the fader (role balance)")
            p[c, P.CH.comp_on] = 1.0

        # 7. Pan by role and spectrum (the rule policy's, from the raw channel features).
        feats = np.tile(F.silence_row(), (n, 1)).astype(np.float64)
        for c in range(n):
            b = raw_bands[c]
            tot = 10 * math.log10(np.sum(10 ** (b / 10)) + 1e-30)
            feats[c, F.F_BAND:F.F_BAND + F.N_BANDS] = b - tot
            low = 10 ** (b[0] / 10) / max(np.sum(10 ** (b / 10)), 1e-30)
            feats[c, F.F_LF] = low
            feats[c, F.F_ACT] = 1.0 if active[c] else 0.0
        for c, (v, reason) in enumerate(RulePolicy(roles)._pans(feats)):
            put(c, "pan", v, reason)
        # Gain sharing for a panel (the console's Dugan automixer), as the rule policy does.
        if sum(r == "speech" for r in roles) >= 2:
            for c in range(n):
                on = 1.0 if roles[c] == "speech" else 0.0
                put(c, "automix_on", on, "speech: gain sharing keeps only the talking mics "
                    "open" if on else "not speech: left out of gain sharing")
        # 8. Reverb send by role.
        for c in range(n):
            send = ROLE_TARGETS[roles[c]].reverb_send_db
            put(c, "aux1_send_db", send, f"reverb by role ({roles[c].replace('_', ' ')})")

        # The lead element (the lead instrument: the melodic channel that plays most).
        leads = lead_channels([r if active[c] else "" for c, r in enumerate(roles)],
                              [activity(stems[:, c], sr) for c in range(n)])
        # 6 (first pass) so the masking analysis sees the balanced levels.
        solo_lufs = self._balance(stems, sr, p, roles, active, put, leads)
        # 4. Masking reduction, then 5. spectral balance; then re-balance, the lead on top.
        self._unmask(stems, sr, p, roles, active, put)
        self._tilt(stems, sr, p, active, put, raw_bands)
        solo_lufs = self._balance(stems, sr, p, roles, active, put, leads)
        lead_report = self._lead_on_top(stems, sr, p, roles, active, put, leads)

        # 9. Master loudness and true-peak ceiling.
        m = P.master_defaults()
        m[P.MS.limiter_ceiling_dbtp] = self.ceiling_dbtp
        m[P.MS.limiter_on] = 1.0
        m[P.MS.master_fader_db] = 0.0
        for _ in range(3):
            mix = render(stems, sr, p, m)
            loud = integrated_lufs(mix, sr)
            tp = true_peak_dbtp(mix)
            if not math.isfinite(loud):
                break
            step = target_lufs - loud
            # The limiter (ceiling set) may take at most LIMITER_MAX_DB off the peaks; past
            # that the ceiling wins over the loudness target.
            step = min(step, self.ceiling_dbtp + LIMITER_MAX_DB - 0.1 - tp)
            if abs(step) < 0.05:
                break
            m[P.MS.master_fader_db] = float(P.MASTER_SPECS["master_fader_db"].clip(
                m[P.MS.master_fader_db] + step))
        mix = render(stems, sr, p, m)
        move = lead_report["rest_move_db"]
        report = dict(solo_lufs=solo_lufs + np.where(np.isin(np.arange(n), leads), 0.0, move),
                      solo_target_lufs=np.array([
                          MIX_REF_LUFS + balance_target_lu(r, c in leads)
                          + (0.0 if c in leads else move) for c, r in enumerate(roles)]),
                      master_lufs=integrated_lufs(mix, sr), master_dbtp=true_peak_dbtp(mix),
                      target_lufs=target_lufs, **lead_report)
        return TeacherResult(p, m, mix, why, report)

    # -- steps --------------------------------------------------------------------------
    def _balance(self, stems, sr, p, roles, active, put, leads=()) -> np.ndarray:
        """Faders to the role balance, measured on each channel's solo render."""
        out = np.full(len(roles), -math.inf)
        for c in np.flatnonzero(active):
            bal = balance_target_lu(roles[c], c in leads)
            target = MIX_REF_LUFS + bal
            for _ in range(self.balance_iterations):
                got = source_level_lufs(_solo(stems, sr, p, c), sr)
                out[c] = got
                if not math.isfinite(got) or abs(target - got) < 0.1:
                    break
                p[c, P.CH.fader_db] = float(P.CHANNEL_SPECS["fader_db"].clip(
                    p[c, P.CH.fader_db] + target - got))
            put(c, "fader_db", p[c, P.CH.fader_db],
                f"{roles[c].replace('_', ' ')} is the lead, at {target:.0f} LUFS" if c in leads
                else f"{roles[c].replace('_', ' ')} at {target:.0f} LUFS, {bal:+.0f} LU from "
                "the lead")
        return out

    def _lead_on_top(self, stems, sr, p, roles, active, put, leads) -> dict:
        """The rest's faders moved together so the lead element sits LEAD_OVER_REST_LU over
        the sum of everything else (BS.1770 integrated loudness of the two renders; exact
        in one step: nothing level-dependent follows the faders without the master)."""
        rest = [c for c in np.flatnonzero(active) if c not in leads]
        out = dict(lead_channels=np.array(leads, dtype=np.int64), rest_move_db=0.0,
                   lead_over_rest_lu=math.nan)
        if not leads or not rest:
            return out

        def group_lufs(chans):
            q = p.copy()
            q[:, P.CH.mute_on] = 1.0
            q[list(chans), P.CH.mute_on] = 0.0
            q[:, P.CH.aux1_send_db] = P.OFF_DB
            return integrated_lufs(render(stems, sr, q, _solo_master()), sr)

        lead, others = group_lufs(leads), group_lufs(rest)
        if not (math.isfinite(lead) and math.isfinite(others)):
            return out
        margin = lead - others
        move = lead_margin_move(margin)
        lead_name = roles[leads[0]].replace("_", " ")
        for c in rest:
            p[c, P.CH.fader_db] = float(P.CHANNEL_SPECS["fader_db"].clip(
                p[c, P.CH.fader_db] + move))
            if abs(move) >= 0.05:
                bal = balance_target_lu(roles[c], False)
                put(c, "fader_db", p[c, P.CH.fader_db],
                    f"{roles[c].replace('_', ' ')} {bal:+.0f} LU from the lead; the rest "
                    f"summed {margin:.1f} LU under the {lead_name}, so everything but the "
                    f"lead {move:+.1f} dB (target {LEAD_OVER_REST_LU:.0f} LU over the rest)")
        out.update(rest_move_db=move, lead_over_rest_lu=lead - group_lufs(rest))
        return out

    def _unmask(self, stems, sr, p, roles, active, put) -> None:
        """Hafezi & Reiss style masking cuts on less important channels."""
        lev = {c: band_levels(_solo(stems, sr, p, c), sr) for c in np.flatnonzero(active)}
        centres = F.BAND_CENTRES_HZ
        for j in lev:
            best = {}                                   # eq slot -> (margin, band, maskee)
            for i in lev:
                if IMPORTANCE[roles[i]] <= IMPORTANCE[roles[j]]:
                    continue
                li = lev[i]
                essential = li >= li.max() - ESSENTIAL_BAND_DB
                margin = lev[j] - li + MASK_MARGIN_DB
                for b in np.flatnonzero(essential & (margin > 0)):
                    slot = "eq2" if centres[b] < 1000.0 else "eq3"
                    if margin[b] > best.get(slot, (0.0,))[0]:
                        best[slot] = (float(margin[b]), int(b), int(i))
            for slot, (margin, b, i) in best.items():
                fc = float(centres[b])
                bw = float(F.BAND_EDGES_HZ[b + 1] - F.BAND_EDGES_HZ[b])
                cut = -min(margin, MAX_MASK_CUT_DB)
                what = (f"around {fc:.0f} Hz the {roles[j].replace('_', ' ')} is "
                        f"{margin - MASK_MARGIN_DB:+.1f} dB against the "
                        f"{roles[i].replace('_', ' ')} (channel {i + 1}), which needs that band")
                put(j, f"{slot}_hz", fc, what)
                put(j, f"{slot}_q", fc / bw, "one ERB-spaced band wide")
                put(j, f"{slot}_gain_db", cut, what)

    def _tilt(self, stems, sr, p, active, put, raw_bands) -> None:
        """Shelves toward the target mix slope (Ma et al. 2015), on the channels that carry
        the end of the spectrum being corrected (module docstring, step 5)."""
        if not active.any():
            return
        mix = render(stems, sr, p, _solo_master())
        lev = band_levels(mix, sr)
        fc = F.BAND_CENTRES_HZ
        sel = (fc >= 100.0) & (fc <= 10000.0)
        # Band powers of ERB bands grow with bandwidth: compare densities (per Hz).
        bw = np.diff(F.BAND_EDGES_HZ)
        dens = lev - 10 * np.log10(bw)
        # A pink (-3 dB/oct) density spectrum is flat in octave bands; the target slope is
        # for octave-band levels: density slope = target - 3 dB/oct.
        slope = np.polyfit(np.log2(fc[sel]), dens[sel], 1)[0] + 3.0
        err = MIX_TILT_DB_PER_OCT - slope                 # dB/oct to add
        # Shelves at 250 Hz and 4 kHz are 4 octaves apart: -+2 err dB at the two ends tilt
        # the mix by err.
        g = float(np.clip(2.0 * err, -MAX_TILT_SHELF_DB, MAX_TILT_SHELF_DB))
        if abs(g) < 0.5:
            return
        chans = np.flatnonzero(active)
        # each channel's share of the mix's energy (whole-signal band powers of its solo)
        solo = {c: 10.0 ** (band_levels(_solo(stems, sr, p, c), sr, per_active_hop=False)
                            / 10.0) for c in chans}
        why_slope = (f"the mix slopes {slope:+.1f} dB/oct, target {MIX_TILT_DB_PER_OCT:+.1f} "
                     "dB/oct")
        for slot, hz, change, region, where in (
                ("eq1", TILT_LOW_SHELF_HZ, -g, fc < TILT_LOW_SHELF_HZ, "below"),
                ("eq4", TILT_HIGH_SHELF_HZ, g, fc > TILT_HIGH_SHELF_HZ, "above")):
            power = {c: float(solo[c][region].sum()) for c in chans}
            total = sum(power.values())
            if not total > 0.0:
                continue
            share = {c: power[c] / total for c in chans}
            # never a low boost on a high-frequency source (a hi-hat)
            eligible = [c for c in chans
                        if not (slot == "eq1" and change > 0 and is_high_source(raw_bands[c]))]
            chosen, cover = [], 0.0
            for c in sorted(eligible, key=lambda c: -share[c]):
                if share[c] < TILT_MIN_SHARE or cover >= TILT_COVER:
                    break
                chosen.append(c)
                cover += share[c]
            if not chosen:
                continue
            # the chosen carry `cover` of that end: gain so the end moves by `change` dB
            arg = (10.0 ** (change / 10.0) - (1.0 - cover)) / cover
            gain = 10.0 * math.log10(arg) if arg > 0.0 else -MAX_SOURCE_SHELF_DB
            gain = float(np.clip(gain, -MAX_SOURCE_SHELF_DB, MAX_SOURCE_SHELF_DB))
            for c in chosen:
                put(c, f"{slot}_hz", hz, "mix spectral balance")
                put(c, f"{slot}_gain_db", gain, f"{why_slope}; this channel carries "
                    f"{100.0 * share[c]:.0f} % of the mix's energy {where} {hz:.0f} Hz")


def teach(session: Session, **kw) -> TeacherResult:
    """``Teacher(**kw).teach(session)``."""
    return Teacher(**kw).teach(session)
