"""Training and evaluation sessions from real sampled instruments, beside the synthesiser.

A session is a line-up of roles (a band, or a spoken panel), an arrangement in a style
(``export/arrangement.py``) and, per channel, a sample *library* (``export/sampler.py``):
a SoundFont for bass, guitars, keys, pads, choirs and lead instruments; a recorded
multi-velocity drum kit (Hydrogen) or a SoundFont's percussion kit for the drums; a
text-to-speech voice for the lead vocal and the talkers.  The sources then get a room
(a short exponentially decaying noise response, Schroeder 1962) and go through the
synthesiser's recording conditions (``export.synth.record``: mic colouration, level,
bleed, preamp gain -30..+10 dB, polarity, noise floor, DC).

Libraries are split: :data:`TRAIN_LIBRARIES` teach the model; :data:`HELDOUT_LIBRARIES` (a
SoundFont, a kit and a voice training never hears) only judge it.  Each session records
which library played each channel (``Session.libraries``), so results can be reported per
library.

What a session gives the model (features, teacher labels, libraries; never audio) is
cached and shipped by ``export/sampled_data.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgemix.roles import role_index
from export import arrangement as A
from export import sampler as S

SESSION_SECONDS = 6.0
SAMPLE_RATE_HZ = 32000

TRAIN_LIBRARIES = {
    "soundfont": ("fluidr3", "musescore", "opl3"),
    "kit": tuple(k for k in S.KITS if k != "ColomboAcousticDrumkit"),
    "voice": ("espeak", "festival_kal", "festival_ked", "festival_ona", "festival_dita",
              "festival_lj", "festival_lp", "festival_pc"),
}
HELDOUT_LIBRARIES = {
    "soundfont": ("timgm6mb",),
    "kit": ("ColomboAcousticDrumkit",),
    "voice": ("festival_slt",),
}
SPLITS = {"train": TRAIN_LIBRARIES, "heldout": HELDOUT_LIBRARIES}

#: GM programs per role (General MIDI Level 1 instrument map).
PROGRAMS = {
    "bass": (32, 33, 34, 35, 36, 38, 39),
    "guitar": (24, 25, 26, 27, 28, 29, 30),
    "keys_piano": (0, 1, 2, 4, 5, 6, 7, 16, 17, 18, 19),
    "pad": (48, 49, 50, 51, 44, 88, 89, 90, 91, 94, 95),
    "backing_vocal": (52, 53, 54),
    "other_melodic": (56, 61, 65, 66, 71, 73, 80, 81, 11, 12),
}
#: GM percussion notes per kit piece (channel 10).
GM_DRUMS = {"kick": (35, 36), "snare": (38, 40), "hat_closed": (42, 44), "hat_open": (46,),
            "crash": (49, 57), "ride": (51, 59), "tom": (41, 45, 48), "clap": (39,),
            "shaker": (70, 82, 54, 69)}


@dataclass
class SampledSession:
    """The recorded session (``session``: an ``export.synth.Session``) and, per channel,
    the library that played it and the split it came from."""
    session: object
    libraries: tuple[str, ...]
    split: str
    style: str


def lineup(rng: np.random.Generator) -> tuple[str, ...]:
    """A spoken panel of 1..6 (20 %) or a band of 2..20 channels as bands are miked: a
    kit (kick, snare, one or two hat/overhead mics), bass, guitars, keys, pads, a lead
    vocal, backing vocals, an extra (percussion or a lead instrument)."""
    if rng.random() < 0.2:
        return ("speech",) * int(rng.integers(1, 7))
    while True:
        r = []
        if rng.random() < 0.85:
            r += ["kick"] * int(rng.random() < 0.9) + ["snare"] * int(rng.random() < 0.9)
            r += ["hats_overheads"] * int(rng.choice([0, 1, 1, 2, 2]))
        r += ["bass"] * int(rng.random() < 0.85)
        r += ["guitar"] * int(rng.choice([0, 1, 1, 2, 3]))
        r += ["keys_piano"] * int(rng.choice([0, 1, 1, 2]))
        r += ["pad"] * int(rng.choice([0, 0, 1, 2]))
        r += ["lead_vocal"] * int(rng.random() < 0.8)
        r += ["backing_vocal"] * int(rng.choice([0, 0, 1, 2, 3]))
        r += ["other"] * int(rng.choice([0, 0, 0, 1, 2]))
        if len(r) >= 2:
            return tuple(str(x) for x in rng.permutation(r))


def _room(rng, x, sr) -> np.ndarray:
    """A mic's room: dry plus an exponentially decaying noise tail (RT60 0.15..0.9 s),
    wet -30..-10 dB relative to the dry power."""
    rt60 = rng.uniform(0.15, 0.9)
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * np.exp(-6.91 * t / rt60)
    ir[: int(0.003 * sr)] = 0.0                        # first reflections a few ms late
    ir *= 10.0 ** (rng.uniform(-30.0, -10.0) / 20.0) / math.sqrt(np.sum(ir ** 2) + 1e-12)
    import scipy.signal
    return x + scipy.signal.fftconvolve(x, ir)[: len(x)]


#: Range of the per-speaker vocal-tract scale (pitch and formants together, as between
#: speakers: adult formants differ by up to ~20 %, Peterson & Barney 1952).
VOICE_SCALE = (0.85, 1.2)


def _speaker(rng, library):
    """(speaker id, pitch, speed, vocal-tract scale) of one talker of a voice library."""
    scale = float(np.exp(rng.uniform(*np.log(VOICE_SCALE))))
    if library == "espeak":
        return (f"{rng.choice(S.ESPEAK_LANGS)}+{rng.choice(S.ESPEAK_VARIANTS)}",
                int(rng.integers(25, 80)), int(rng.integers(130, 190)), scale)
    return ("", 50, int(rng.integers(140, 180)), scale)


def _say(library, speaker, text, sr, pitch, wpm, scale) -> np.ndarray:
    """A phrase of a talker: the voice's output with its spectrum and pitch scaled by
    ``scale`` (read ``scale`` times faster: a smaller or larger vocal tract)."""
    x = S.speak(library, speaker, text, sr, pitch, wpm)
    t = np.arange(0.0, len(x) - 1, scale)
    return np.interp(t, np.arange(len(x)), x)


#: Share of the training split's SoundFont parts played with their samples' spectra
#: shifted (:func:`_timbre_shifted`), and the shifts (semitones): with three SoundFonts
#: to learn from, each instrument's body resonances would otherwise sit at three places.
TIMBRE_SHIFT_SHARE = 0.6
TIMBRE_SHIFTS = (-3, -2, -1, 1, 2, 3)


def _timbre_shifted(rng, sf, prog, notes, seconds, sr) -> np.ndarray:
    """A part rendered ``k`` semitones low at ``r = 2^(k/12)`` times its tempo, then read
    ``r`` times faster: the same notes at the same times, the samples' resonances and
    noise moved by the ratio ``r`` (another instrument body of the same kind)."""
    k = int(rng.choice(TIMBRE_SHIFTS))
    r = 2.0 ** (k / 12.0)
    shifted = [S.Note(nt.start_s * r, nt.length_s * r, nt.pitch - k, nt.velocity)
               for nt in notes]
    y = S.render_soundfont(sf, prog, shifted, seconds * r + 0.05, sr)
    t = np.arange(int(round(seconds * sr))) * r
    return np.interp(t, np.arange(len(y)), y)


def _speech_track(rng, library, turns, me, seconds, sr) -> np.ndarray:
    """One talker of a panel: sentences filling its turns (``export.synth._speech_turns``)."""
    speaker, pitch, wpm, scale = _speaker(rng, library)
    n = int(round(seconds * sr))
    out = np.zeros(n)
    for sp, t0, t1 in turns:
        if sp != me:
            continue
        t = t0
        while t < t1 - 0.5:
            x = _say(library, speaker, A.sentence(rng), sr, pitch, wpm, scale)
            s = int(t * sr)
            m = min(len(x), int(t1 * sr) - s, n - s)
            if m <= 0:
                break
            out[s:s + m] += x[:m]
            t += m / sr + rng.uniform(0.2, 0.7)
    return out


def _sung_track(rng, library, song, bars, seconds, sr, backing=False) -> np.ndarray:
    """A spoken vocal line: a lyric phrase per playing bar (pitch per phrase around the
    singer's), level swelling with the phrase."""
    speaker, pitch, wpm, scale = _speaker(rng, library)
    n = int(round(seconds * sr))
    out = np.zeros(n)
    for b in np.flatnonzero(bars):
        if backing and rng.random() < 0.4:
            continue
        p = int(np.clip(pitch + rng.integers(-12, 13), 0, 99))
        x = _say(library, speaker, A.lyric(rng), sr, p, wpm, scale)
        s = int((b * song.bar_s + rng.uniform(0.0, 0.2 * song.bar_s)) * sr)
        m = min(len(x), int(1.6 * song.bar_s * sr), n - s)
        if m > 0:
            out[s:s + m] += x[:m] * rng.uniform(0.7, 1.0)
    return out


def _drum_track(rng, kit, piece_set, song, bars, seconds, sr, kit_gains=None):
    """The pieces of ``piece_set`` of one kit (a Hydrogen kit name, or ``sf:<soundfont>``)
    played on their grids, summed (an overhead hears them all at ``kit_gains``)."""
    out = np.zeros(int(round(seconds * sr)))
    for piece in piece_set:
        hits = A.drum_hits(rng, song, piece, bars)
        if not hits:
            continue
        g = (kit_gains or {}).get(piece, 1.0)
        if kit.startswith("sf:"):
            note = int(rng.choice(GM_DRUMS[piece]))
            notes = [S.Note(t, 0.3, note, int(np.clip(v * 127, 1, 127))) for t, v in hits]
            out += g * S.render_soundfont(kit[3:], 0, notes, seconds, sr, drums=True)
        else:
            k = S.load_kit(kit)
            if piece not in k.pieces:
                continue
            out += g * S.render_kit(k, piece, int(rng.integers(len(k.pieces[piece]))), hits,
                                    seconds, sr)
    return out


def render_session(seed: int, split: str = "train", roles=None,
                   seconds: float = SESSION_SECONDS, sr: int = SAMPLE_RATE_HZ,
                   conditions: bool = True, style: str | None = None) -> SampledSession:
    """One session of sampled instruments from the libraries of ``split`` ('train' or
    'heldout'); ``roles`` (default: :func:`lineup`) per channel.  A seed gives the same
    session (FluidSynth and the samples are deterministic)."""
    from export.synth import Session, _speech_turns, record
    libs = SPLITS[split]
    root = np.random.SeedSequence([int(seed), 7])
    arr_ss, lib_ss, rend_ss, cond_ss = root.spawn(4)
    arr = np.random.default_rng(arr_ss)
    lib = np.random.default_rng(lib_ss)
    roles = tuple(roles) if roles is not None else lineup(arr)
    for r in roles:
        role_index(r)
    song = A.arrange(arr, seconds, style)
    n = int(round(seconds * sr))
    # the session's drum kit: a recorded kit, or a SoundFont's own percussion kit (30 %)
    kit = f"sf:{lib.choice(libs['soundfont'])}" if lib.random() < 0.3 else \
        str(lib.choice(libs["kit"]))
    speakers = [c for c, r in enumerate(roles) if r == "speech"]
    turns = _speech_turns(arr, max(1, len(speakers)), seconds)
    drum_bars = A.bars_playing(arr, song, "drums")
    src = np.zeros((len(roles), n))
    used = []
    rngs = [np.random.default_rng(s) for s in rend_ss.spawn(len(roles))]
    for c, role in enumerate(roles):
        rng = rngs[c]
        sf = str(lib.choice(libs["soundfont"]))
        voice = str(lib.choice(libs["voice"]))
        if role in ("kick", "snare"):
            src[c] = _drum_track(rng, kit, (role,), song, drum_bars, seconds, sr)
            name = kit
        elif role == "hats_overheads":
            if rng.random() < 0.5:       # a hat mic
                pieces = ("hat_closed", "hat_open") if rng.random() < 0.5 else ("hat_closed",)
                src[c] = _drum_track(rng, kit, pieces, song, drum_bars, seconds, sr)
            else:                        # an overhead: cymbals, the kit further away
                g = 10.0 ** (rng.uniform(-14.0, -6.0) / 20.0)
                src[c] = _drum_track(rng, kit, ("hat_closed", "crash", "ride", "kick",
                                                "snare", "tom"), song, drum_bars, seconds,
                                     sr, {"kick": g, "snare": g, "tom": g})
            name = kit
        elif role == "speech":
            src[c] = _speech_track(rng, voice, turns, speakers.index(c), seconds, sr)
            name = voice
        elif role == "lead_vocal":
            src[c] = _sung_track(rng, voice, song, A.bars_playing(arr, song, "lead"),
                                 seconds, sr)
            name = voice
        elif role == "backing_vocal" and rng.random() < 0.3:
            src[c] = _sung_track(rng, voice, song, A.bars_playing(arr, song, "backing"),
                                 seconds, sr, backing=True)
            name = voice
        elif role == "other" and rng.random() < 0.5:
            perc = str(lib.choice(libs["soundfont"]))
            pk = f"sf:{perc}" if split == "heldout" or rng.random() < 0.5 else \
                S.PERCUSSION_KIT
            src[c] = _drum_track(rng, pk, ("shaker",) if rng.random() < 0.7 else ("clap",),
                                 song, A.bars_playing(arr, song, "other"), seconds, sr)
            name = perc if pk.startswith("sf:") else pk
        else:
            part = {"bass": "bass", "guitar": "guitar", "keys_piano": "keys", "pad": "pad",
                    "backing_vocal": "backing", "other": "other"}[role]
            bars = A.bars_playing(arr, song, part)
            prog = int(rng.choice(PROGRAMS["other_melodic" if role == "other" else role]))
            if role == "bass":
                notes = A.bass_notes(rng, song, bars)
            elif role == "guitar":
                notes = (A.melody_notes(rng, song, bars, 52, 79) if rng.random() < 0.2 else
                         A.comp_notes(rng, song, bars, 40, 67, strum=True))
            elif role == "keys_piano":
                notes = (A.pad_notes(rng, song, bars, 48, 79) if 16 <= prog <= 19 and
                         rng.random() < 0.5 else A.comp_notes(rng, song, bars, 45, 81, False))
            elif role == "pad":
                notes = A.pad_notes(rng, song, bars)
            elif role == "backing_vocal":
                notes = A.melody_notes(rng, song, bars, 55, 76, sustained=True)
            else:
                notes = A.melody_notes(rng, song, bars)
            if split == "train" and rng.random() < TIMBRE_SHIFT_SHARE:
                src[c] = _timbre_shifted(rng, sf, prog, notes, seconds, sr)
            else:
                src[c] = S.render_soundfont(sf, prog, notes, seconds, sr)
            name = sf
        if role not in ("bass", "keys_piano", "pad") or rng.random() < 0.3:
            src[c] = _room(rng, src[c], sr)          # miked in a room (DI'd ones mostly not)
        used.append(name.removeprefix("sf:"))
    rec = record(src, roles, np.random.default_rng(cond_ss), sr, conditions, keep_clean=False)
    sess = Session(**rec, roles=roles, seed=int(seed), tempo_bpm=song.tempo_bpm,
                   names=tuple(f"in_{c + 1:02d}" for c in range(len(roles))))
    return SampledSession(sess, tuple(used), split, song.style)
