"""Arrangements for the sampled-instrument sessions: a song in a style (tempo, meter, key,
chord progression, sections in which parts enter and drop out) written as note lists per
part, to be played by real samples (``export/sampler.py``).

Styles are drum grids plus a bass rhythm, a comping rhythm and a density, after the
textbook grooves (rock/pop backbeat on 2 and 4, funk sixteenths with ghost notes, four on
the floor, a jazz ride with swung eighths, a 3/4 waltz, a half-time ballad).  Every draw
comes from the generator passed in: a seed gives the same song.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from export.sampler import Note

#: Per style: tempo range (bpm), steps per bar (16ths; 12 for 3/4), kick/snare/hat steps,
#: swing (share of a 16th the off-16ths are delayed by), bass steps, comping steps,
#: hat piece ('hat_closed' or 'ride').
STYLES = {
    "rock": dict(tempo=(100, 145), steps=16, kick=(0, 8, 10), snare=(4, 12),
                 hats=(0, 2, 4, 6, 8, 10, 12, 14), swing=0.0, bass=(0, 2, 8, 10, 12),
                 comp=(0, 3, 6, 8, 11, 14), hat="hat_closed"),
    "pop": dict(tempo=(88, 124), steps=16, kick=(0, 6, 8), snare=(4, 12),
                hats=tuple(range(0, 16, 2)), swing=0.0, bass=(0, 6, 8, 14),
                comp=(0, 4, 8, 12), hat="hat_closed"),
    "funk": dict(tempo=(92, 115), steps=16, kick=(0, 3, 10), snare=(4, 7, 12, 15),
                 hats=tuple(range(16)), swing=0.0, bass=(0, 3, 6, 10, 11, 14),
                 comp=(2, 6, 10, 14), hat="hat_closed"),
    "disco": dict(tempo=(115, 130), steps=16, kick=(0, 4, 8, 12), snare=(4, 12),
                  hats=(2, 6, 10, 14), swing=0.0, bass=(0, 2, 4, 6, 8, 10, 12, 14),
                  comp=(2, 6, 10, 14), hat="hat_open"),
    "jazz": dict(tempo=(110, 170), steps=16, kick=(0,), snare=(4, 12),
                 hats=(0, 4, 6, 8, 12, 14), swing=0.33, bass=(0, 4, 8, 12),
                 comp=(6, 14), hat="ride"),
    "ballad": dict(tempo=(60, 80), steps=16, kick=(0, 10), snare=(8,),
                   hats=tuple(range(0, 16, 2)), swing=0.0, bass=(0, 8),
                   comp=(0, 8), hat="hat_closed"),
    "waltz": dict(tempo=(90, 150), steps=12, kick=(0,), snare=(4, 8),
                  hats=(0, 4, 8), swing=0.0, bass=(0,), comp=(4, 8), hat="hat_closed"),
}
_PROGRESSIONS = ((0, 7, 9, 5), (9, 5, 0, 7), (0, 5, 7, 5), (2, 7, 0, 9), (0, 9, 5, 7),
                 (0, 3, 5, 0), (9, 7, 5, 7), (0, 0, 5, 7))
_MINOR_DEGREES = (2, 4, 9)
#: Probability that a part plays in a section; 'fill' is the drum fill at a section's end.
_SECTIONS = ("intro", "verse", "chorus", "bridge", "outro")
_PLAYS = {
    "intro": dict(drums=0.5, bass=0.5, guitar=0.6, keys=0.7, pad=0.8, lead=0.1, backing=0.0,
                  other=0.3),
    "verse": dict(drums=0.95, bass=0.95, guitar=0.7, keys=0.7, pad=0.4, lead=1.0, backing=0.2,
                  other=0.5),
    "chorus": dict(drums=1.0, bass=1.0, guitar=0.9, keys=0.8, pad=0.8, lead=1.0, backing=0.9,
                   other=0.7),
    "bridge": dict(drums=0.6, bass=0.7, guitar=0.5, keys=0.9, pad=0.9, lead=0.6, backing=0.5,
                   other=0.3),
    "outro": dict(drums=0.6, bass=0.6, guitar=0.6, keys=0.8, pad=0.9, lead=0.3, backing=0.3,
                  other=0.3),
}


@dataclass
class Song:
    style: str
    tempo_bpm: float
    steps: int               # 16th steps per bar
    step_s: float
    n_bars: int
    key_midi: int            # pitch class of the key (0 = C)
    chords: np.ndarray       # (n_bars, 3) chord tones relative to the key
    section_of_bar: tuple
    density: float           # 0..1: how many optional hits and notes are played
    seconds: float

    @property
    def bar_s(self) -> float:
        return self.steps * self.step_s

    def step_time(self, bar: int, step: int, swing: float = 0.0) -> float:
        late = swing * self.step_s if step % 2 == 1 else 0.0
        return bar * self.bar_s + step * self.step_s + late


def arrange(rng: np.random.Generator, seconds: float, style: str | None = None) -> Song:
    """A song of ``seconds`` (the last bar may run past the end: it is cut)."""
    style = style or str(rng.choice(sorted(STYLES)))
    st = STYLES[style]
    tempo = float(rng.uniform(*st["tempo"]))
    step_s = 60.0 / tempo / 4.0
    n_bars = int(math.ceil(seconds / (st["steps"] * step_s))) + 1
    prog = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    chords = np.zeros((n_bars, 3), np.int64)
    for b in range(n_bars):
        deg = prog[b % 4]
        chords[b] = (deg, deg + (3 if deg in _MINOR_DEGREES else 4), deg + 7)
    secs = []
    start = int(rng.integers(len(_SECTIONS)))
    while len(secs) < n_bars:                      # sections of 1..2 bars: short sessions
        name = _SECTIONS[(start + len(set(secs))) % len(_SECTIONS)] \
            if rng.random() < 0.7 else str(rng.choice(_SECTIONS))
        secs += [name] * int(rng.integers(1, 3))
    return Song(style, tempo, st["steps"], step_s, n_bars, int(rng.integers(12)), chords,
                tuple(secs[:n_bars]), float(rng.uniform(0.3, 1.0)), float(seconds))


def bars_playing(rng, song: Song, part: str) -> np.ndarray:
    """Which bars a part plays (per section, at least one bar)."""
    on = np.array([rng.random() < _PLAYS[s][part] for s in song.section_of_bar])
    if not on[:-1].any():
        on[int(rng.integers(max(1, song.n_bars - 1)))] = True
    return on


def drum_hits(rng, song: Song, piece: str, bars) -> list[tuple[float, float]]:
    """(time s, velocity 0..1) of one drum piece: the style's grid, accents, optional
    ghost notes by density, a crash on section starts, fills before a new section."""
    st = STYLES[song.style]
    grid = {"kick": st["kick"], "snare": st["snare"], "hat_closed": st["hats"],
            "hat_open": st["hats"][::2] if piece != st["hat"] else st["hats"],
            "ride": st["hats"], "shaker": tuple(range(song.steps)),
            "clap": st["snare"], "crash": (), "tom": ()}[piece]
    hits = []
    for b in np.flatnonzero(bars):
        new_section = b == 0 or song.section_of_bar[b] != song.section_of_bar[b - 1]
        if piece == "crash" and new_section:
            hits.append((song.step_time(b, 0), rng.uniform(0.6, 1.0)))
        for s in range(song.steps):
            base = s in grid
            ghost = not base and piece in ("snare", "hat_closed", "kick", "shaker") and \
                rng.random() < 0.12 * song.density
            fill = piece in ("snare", "tom") and b + 1 < song.n_bars and \
                song.section_of_bar[b + 1] != song.section_of_bar[b] and \
                s >= song.steps - 4 and rng.random() < 0.6
            if not (base or ghost or fill):
                continue
            if base and piece != "kick" and rng.random() < 0.05:
                continue                            # a human misses one now and then
            accent = 1.0 if s % 4 == 0 else 0.8
            v = (rng.uniform(0.15, 0.35) if ghost and not fill else
                 accent * rng.uniform(0.6, 1.0))
            t = song.step_time(b, s, st["swing"]) + rng.normal(0.0, 0.004)
            hits.append((max(t, 0.0), float(v)))
    return hits


def _chord_pitches(song, b, low, high, n_notes, rng):
    """A voicing of bar ``b``'s chord in ``low..high`` (MIDI)."""
    pcs = [(song.key_midi + c) % 12 for c in song.chords[b]]
    cands = [m for m in range(low, high + 1) if m % 12 in pcs]
    start = int(rng.integers(0, max(1, len(cands) - n_notes)))
    return cands[start:start + n_notes]


def bass_notes(rng, song: Song, bars) -> list[Note]:
    st = STYLES[song.style]
    out = []
    for b in np.flatnonzero(bars):
        root = 28 + (song.key_midi + song.chords[b, 0]) % 12
        for s in st["bass"]:
            if rng.random() > 0.6 + 0.4 * song.density and s != 0:
                continue
            p = root + (12 if rng.random() < 0.2 else 0) + (7 if rng.random() < 0.15 else 0)
            length = song.step_s * rng.uniform(1.0, 2.5 if st["bass"] != (0,) else 6.0)
            out.append(Note(song.step_time(b, s, st["swing"]), length, int(p),
                            int(rng.integers(80, 120))))
    return out


def comp_notes(rng, song: Song, bars, low: int, high: int, strum: bool) -> list[Note]:
    """Chords on the style's comping rhythm (a strum: notes a few ms apart)."""
    st = STYLES[song.style]
    out = []
    arpeggio = rng.random() < 0.3
    for b in np.flatnonzero(bars):
        chord = _chord_pitches(song, b, low, high, int(rng.integers(3, 6)), rng)
        steps = st["comp"] if not arpeggio else tuple(range(0, song.steps, 2))
        for k, s in enumerate(steps):
            t = song.step_time(b, s, st["swing"])
            length = song.step_s * (rng.uniform(1.5, 4.0) if not arpeggio else 2.0)
            vel = int(rng.integers(60, 110))
            if arpeggio:
                out.append(Note(t, length * 2, chord[k % len(chord)], vel))
                continue
            for i, p in enumerate(chord):
                out.append(Note(t + (0.008 * i if strum else 0.0), length, p, vel))
    return out


def pad_notes(rng, song: Song, bars, low: int = 48, high: int = 76) -> list[Note]:
    out = []
    for b in np.flatnonzero(bars):
        for p in _chord_pitches(song, b, low, high, int(rng.integers(3, 5)), rng):
            out.append(Note(b * song.bar_s, song.bar_s * 0.98, p, int(rng.integers(60, 100))))
    return out


def melody_notes(rng, song: Song, bars, low: int = 60, high: int = 84,
                 sustained: bool = False) -> list[Note]:
    """A line on the key's scale, phrases with rests (a lead instrument or backing 'aah's
    when ``sustained``)."""
    scale = [0, 2, 4, 5, 7, 9, 11]
    pitches = [m for m in range(low, high + 1) if (m - song.key_midi) % 12 in scale]
    out = []
    i = int(rng.integers(len(pitches)))
    for b in np.flatnonzero(bars):
        if sustained:
            chord = _chord_pitches(song, b, low, high, int(rng.integers(1, 3)), rng)
            for p in chord:
                out.append(Note(b * song.bar_s, song.bar_s * 0.95, p, int(rng.integers(60, 100))))
            continue
        s = 0
        while s < song.steps:
            dur = int(rng.choice([2, 2, 4, 4, 6, 8]))
            if rng.random() < 0.25:
                s += dur
                continue
            i = int(np.clip(i + rng.integers(-2, 3), 0, len(pitches) - 1))
            out.append(Note(song.step_time(b, s), dur * song.step_s * 0.9, pitches[i],
                            int(rng.integers(70, 115))))
            s += dur
    return out


# ---- words ---------------------------------------------------------------------------------
_SUBJECTS = ("the council", "our team", "the audience", "my neighbour", "the new plan",
             "this report", "every station", "the river", "the old bridge", "a small band",
             "the committee", "our guest tonight", "the last speaker", "the school")
_VERBS = ("has decided to", "would like to", "is going to", "wants to", "will try to",
          "cannot afford to", "promised to", "is ready to", "forgot to", "agreed to")
_OBJECTS = ("open the doors at seven", "build a better road", "sing one more song",
            "talk about the budget", "answer your questions", "cross the water by night",
            "change the schedule", "play it louder", "keep the lights on",
            "start again from the top", "share the results with everyone",
            "thank the volunteers", "measure the sound in the hall")
_LYRICS = ("oh baby take me home", "we are running through the night",
           "hold on to the light", "I will never let you go", "dancing in the summer rain",
           "all the stars are shining down", "tell me what you want from me",
           "every road leads back to you", "we can make it if we try",
           "the city sleeps but I am awake", "carry me over the river",
           "now the morning comes again")


def sentence(rng) -> str:
    """A plain spoken sentence (subject, verb, object), for panels."""
    s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
    if rng.random() < 0.3:
        s += f", and {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
    return s[0].upper() + s[1:] + "."


def lyric(rng) -> str:
    return str(rng.choice(_LYRICS))
