"""Why the model policy moves each parameter, in an engineer's words: what was measured and
what target the move aims for ("trim +6.0 dB: plays at -30.0 LUFS; staging to -24 LUFS",
"fader -3.0 dB: bass plays at -24.0 LUFS after trim; target 3 LU under the lead vocal",
"HPF 110 Hz: 1 % of the energy lies below 110 Hz; target at most 1 % ...").

The network proposes EQ, compression and the reverb send; the reasons for those are read
from the channel's own measurements (its feature snapshot after staging,
:mod:`edgemix.automix.staging`) and the targets the teacher trained it toward
(``rules.ROLE_TARGETS``, the teacher's masking margin and mix tilt).  The role is one
reason among them (:meth:`edgemix.automix.recognition.Recognition.phrase`), never the
explanation.

Each function returns the reason only; :func:`edgemix.automix.explain.sentence` puts the
parameter and its value in front.
"""
from __future__ import annotations

import math

import numpy as np

from edgemix import features as F
from edgemix.automix.explain import percent
from edgemix.automix.rules import (HIGH_SOURCE_HZ, HIGH_SOURCE_SHARE, HPF_BELOW_SHARE,
                                   ROLE_TARGETS, TILT_HIGH_SHELF_HZ, TILT_LOW_SHELF_HZ,
                                   share_above_hz)
from edgemix.automix.staging import _rescaled_context

#: The teacher's targets that the network learned and these sentences state
#: (``export/teacher.py``: ``MIX_TILT_DB_PER_OCT`` and ``MASK_MARGIN_DB``; edgemix never
#: imports export, so tests/test_model_reasons.py checks the two copies agree).
MIX_TILT_DB_PER_OCT = -4.5
MASK_MARGIN_DB = 3.0
#: A shelf or peaking move smaller than this (dB) is "no move" in the sentences.
NO_MOVE_DB = 0.5


#: How the sentences name a role.
ROLE_WORDS = {"hats_overheads": "hi-hat/overhead", "keys_piano": "keys", "pad": "pad",
              "lead_vocal": "lead vocal", "backing_vocal": "backing vocal",
              "other": "channel of another kind"}


def name_of(role: str) -> str:
    return ROLE_WORDS.get(role, role.replace("_", " "))


def _k_power_gain() -> np.ndarray:
    """BS.1770 K-weighting's power gain at each band centre (at 48 kHz)."""
    import scipy.signal
    from edgemix.dsp.loudness import k_weighting_coefficients
    k = k_weighting_coefficients(48000.0)
    w = 2.0 * math.pi * F.BAND_CENTRES_HZ / 48000.0
    g = np.ones(F.N_BANDS)
    for sec in (k[:5], k[5:]):
        _, h = scipy.signal.freqz(sec[:3], [1.0, sec[3], sec[4]], worN=w)
        g *= np.abs(h) ** 2
    return g


#: K-weighting power gain per band: turns a loudness into an unweighted power.
K_POWER_GAIN = _k_power_gain()


def shares_above(bands_db: np.ndarray, hz: float) -> np.ndarray:
    """``rules.share_above_hz`` for every channel at once: ``(n, N_BANDS)`` band levels ->
    ``(n,)`` shares of each channel's energy above ``hz``.  (The rule is the reference; it
    sits in a teacher label source whose bytes key the shipped labels, so it is not
    rewritten there: tests/test_model_reasons.py checks the two agree.)"""
    p = 10.0 ** (np.asarray(bands_db, dtype=np.float64) / 10.0)
    total = p.sum(axis=1)
    lo, hi = F.BAND_EDGES_HZ[:-1], F.BAND_EDGES_HZ[1:]
    frac = np.clip((np.log(hi) - np.log(np.maximum(lo, hz))) / (np.log(hi) - np.log(lo)), 0, 1)
    return np.where(total > 0.0, (p * frac).sum(axis=1) / np.where(total > 0.0, total, 1.0),
                    0.0)


class MixPicture:
    """What the mix adds up to this hop, from every channel's staged features and faders:
    each channel's share of the mix's energy per band and the mix's spectral slope.

    ``staged``: the snapshot after staging (:func:`~edgemix.automix.staging.staged_features`);
    ``faders_db``: the proposed faders (NaN: 0 dB)."""

    def __init__(self, staged: np.ndarray, faders_db: np.ndarray):
        s = np.asarray(staged, dtype=np.float64)
        g = np.nan_to_num(np.asarray(faders_db, dtype=np.float64), nan=0.0)
        bands = s[:, F.F_BAND:F.F_BAND + F.N_BANDS]
        silent = bands <= F.FLOOR_DB
        # each channel's own spectrum, once per hop: below the low shelf, above the high
        # shelf, above HIGH_SOURCE_HZ (a high-frequency source gets no low boost)
        self.own_below_low = 1.0 - shares_above(bands, TILT_LOW_SHELF_HZ)
        self.own_above_high = shares_above(bands, TILT_HIGH_SHELF_HZ)
        self.own_above_high_source = shares_above(bands, HIGH_SOURCE_HZ)
        self.high_source = self.own_above_high_source >= HIGH_SOURCE_SHARE
        self.mask_db = _rescaled_context(s[:, F.F_MASK:F.F_MASK + F.N_BANDS], silent, g)
        r = 10.0 ** (self.mask_db / 10.0)
        self.share = np.where(silent, 0.0, r / (1.0 + r))      # of the mix's band energy
        # the mix's band powers: each channel's playing level after trim and fader, spread
        # over its bands, weighted by how much of the time it plays
        playing = (s[:, F.F_ACT] > 0.0) & (s[:, F.F_LACT] > F.ABS_GATE_LUFS)
        level = np.where(playing, s[:, F.F_LACT] + g, -np.inf)
        shape = np.where(silent, 0.0, 10.0 ** (bands / 10.0))
        # the loudness is K-weighted: the unweighted power is it over the spectrum's K gain
        k = np.maximum((shape * K_POWER_GAIN).sum(axis=1), 1e-12)
        p = s[:, F.F_ACT, None] * (10.0 ** (level / 10.0) / k)[:, None] * shape
        mix = p.sum(axis=0)
        fc = F.BAND_CENTRES_HZ
        sel = (fc >= 100.0) & (fc <= 10000.0) & (mix > 0.0)
        self.slope_db_oct = math.nan
        if sel.sum() >= 3:
            # densities per Hz against log2 f, +3 dB/oct: the teacher's slope measure (the
            # least-squares line's slope, in closed form)
            dens = 10.0 * np.log10(mix[sel]) - 10.0 * np.log10(np.diff(F.BAND_EDGES_HZ)[sel])
            x = np.log2(fc[sel]) - np.log2(fc[sel]).mean()
            self.slope_db_oct = float((x * (dens - dens.mean())).sum() / (x * x).sum() + 3.0)
        s_ = (f"the mix slopes {self.slope_db_oct:+.1f} dB/oct" if math.isfinite(self.slope_db_oct)
              else "the mix's slope is not measured yet")
        self._slope_phrase = f"{s_}, target {MIX_TILT_DB_PER_OCT:+.1f} dB/oct"

    def share_of_region(self, c: int, below_hz: float | None = None,
                        above_hz: float | None = None) -> float:
        """Channel ``c``'s share of the mix's energy below or above a frequency."""
        fc = F.BAND_CENTRES_HZ
        sel = fc < below_hz if below_hz is not None else fc > above_hz
        return float(np.mean(self.share[c, sel])) if sel.any() else 0.0

    def band_at(self, hz: float) -> int:
        return int(np.argmin(np.abs(np.log(F.BAND_CENTRES_HZ) - math.log(max(hz, 1.0)))))

    def slope_phrase(self) -> str:
        return self._slope_phrase


def hpf(value_hz: float, bands: np.ndarray, role: str) -> str:
    below = 1.0 - share_above_hz(bands, value_hz)
    lo, hi = ROLE_TARGETS[role].hpf_range_hz
    return (f"{percent(below)} of the energy lies below {value_hz:.0f} Hz; target at most "
            f"{percent(HPF_BELOW_SHARE)} below the corner, {lo:.0f} .. {hi:.0f} Hz for a "
            f"{name_of(role)}")


def shelf(slot: str, value_db: float, c: int, mix: MixPicture) -> str:
    """Low shelf (``eq1``) or high shelf (``eq4``) gain."""
    if slot == "eq1":
        hz, where = TILT_LOW_SHELF_HZ, "below"
        share = mix.share_of_region(c, below_hz=hz)
        own = mix.own_below_low[c]
    else:
        hz, where = TILT_HIGH_SHELF_HZ, "above"
        share = mix.share_of_region(c, above_hz=hz)
        own = mix.own_above_high[c]
    head = (f"this channel carries {percent(share)} of the mix's energy {where} "
            f"{hz:.0f} Hz ({percent(own)} of its own)")
    if abs(value_db) < NO_MOVE_DB:
        return f"{head}; {mix.slope_phrase()}: no tilt move here"
    return f"{head}; {mix.slope_phrase()}"


def no_low_boost(c: int, mix: MixPicture) -> str:
    """Why a proposed low-shelf boost was refused on a high-frequency source."""
    return (f"{percent(mix.own_above_high_source[c])} of this channel's energy lies "
            f"above {HIGH_SOURCE_HZ / 1000:.0f} kHz: no low boost (target: lows from the "
            "channels that carry them; here a boost would raise only bleed and noise)")


def shelf_corner(slot: str, c: int, mix: MixPicture) -> str:
    own = mix.own_below_low[c] if slot == "eq1" else mix.own_above_high[c]
    where = "below" if slot == "eq1" else "above"
    return (f"the tilt correction's corner; {percent(own)} of this channel's energy lies "
            f"{where} it; {mix.slope_phrase()}")


def peaking(slot: str, value_db: float, hz: float, c: int, mix: MixPicture) -> str:
    """A peaking band (``eq2``/``eq3``): masking against the rest of the mix."""
    b = mix.band_at(hz)
    m = float(mix.mask_db[c, b])
    head = f"around {hz:.0f} Hz this channel sits {m:+.1f} dB against the rest of the mix"
    if value_db <= -NO_MOVE_DB:
        return (f"{head}; cut to unmask the channels that need the band (target "
                f"{MASK_MARGIN_DB:.0f} dB under them)")
    if value_db >= NO_MOVE_DB:
        return f"{head}; lifted toward the rest (target {MASK_MARGIN_DB:.0f} dB masking margin)"
    return f"{head}: nothing to unmask (target {MASK_MARGIN_DB:.0f} dB masking margin)"


def compressor(name: str, value: float, f_staged: np.ndarray, role: str) -> str:
    """Threshold, ratio, attack, release and make-up, from the crest factor and RMS level
    after trim against the role's crest target (``RoleTarget.crest_target_db``)."""
    crest = float(f_staged[F.F_CREST])
    rms = float(f_staged[F.F_RMS])
    t = ROLE_TARGETS[role].crest_target_db
    target = f"target crest {t:.0f} dB for a {name_of(role)}"
    if name == "comp_threshold_db":
        return (f"{value - rms:+.1f} dB from the channel's RMS level ({rms:.1f} dBFS after "
                f"trim); crest factor {crest:.1f} dB, {target}")
    if name == "comp_ratio":
        if value <= 1.05:
            return f"crest factor {crest:.1f} dB, {target}: no compression needed"
        return f"crest factor {crest:.1f} dB, {target}: peaks come down {max(crest - t, 0):.1f} dB"
    if name in ("comp_attack_ms", "comp_release_ms"):
        return f"crest factor {crest:.1f} dB, {target}: a {name_of(role)}'s envelope"
    return (f"plays at {f_staged[F.F_LACT]:.1f} LUFS after trim: the fader sets its level "
            f"(target: its balance), not make-up gain")


def send(value_db: float, f_staged: np.ndarray, role: str, phrase: str) -> str:
    t = ROLE_TARGETS[role].reverb_send_db
    return (f"target {t:.0f} dB of reverb for a {name_of(role)} ({phrase}), on its "
            f"{f_staged[F.F_LACT]:.1f} LUFS after trim")


def pan(reason: str, f_raw: np.ndarray, role: str, phrase: str) -> str:
    w = ROLE_TARGETS[role].pan_width
    width = "centre" if w == 0.0 else f"width {percent(w)}"
    return (f"{reason}; target {width} for a {name_of(role)}; {percent(f_raw[F.F_LF])} of "
            f"its energy below 100 Hz; {phrase}")


def gain_sharing(on: bool, f_raw: np.ndarray, role: str, phrase: str, n_speech: int) -> str:
    act = percent(f_raw[F.F_ACT])
    if on:
        return (f"{phrase}, talking {act} of the last 10 s; {n_speech} speech mic"
                f"{'s' if n_speech != 1 else ''}: gain sharing keeps their total gain at "
                "one open mic's (target: only the talking mics open)")
    return (f"{name_of(role)} is not speech ({phrase}, playing {act} of the last 10 s): "
            "left out of gain sharing (target: speech mics only)")


def gain_sharing_weight(f_raw: np.ndarray) -> str:
    return (f"talking {percent(f_raw[F.F_ACT])} of the last 10 s; target: every talker the "
            "same priority")
