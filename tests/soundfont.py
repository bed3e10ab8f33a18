"""Real sampled instruments for tests: General MIDI parts rendered by FluidSynth from a
SoundFont (``fluidsynth`` and ``fluid-soundfont-gm``, scripts/apt-test.txt).

Each part is written as a MIDI file (mido) and rendered once by the ``fluidsynth`` command
(no reverb or chorus, so a stem is its instrument only); the render is cached under the
repository's gitignored ``.cache/soundfont/``, keyed by the MIDI bytes, the SoundFont and
the options, so a second test run reads the WAV instead of rendering.

``render_parts(seconds, seed)`` returns the stems of one song: drums (kick, snare, hats,
crash and toms on GM channel 10), bass, piano, guitar, strings and a lead line, all at
48 kHz, mono, as float32.
"""
from __future__ import annotations

import hashlib
import pathlib
import shutil
import subprocess

import numpy as np

SAMPLE_RATE_HZ = 48000
SOUNDFONTS = (pathlib.Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
              pathlib.Path("/usr/share/sounds/sf2/TimGM6mb.sf2"))
CACHE = pathlib.Path(__file__).resolve().parents[1] / ".cache" / "soundfont"
BPM = 112.0


def available() -> str | None:
    """None when FluidSynth and a SoundFont are installed, else why not (a skip reason)."""
    if shutil.which("fluidsynth") is None:
        return "fluidsynth is not installed (scripts/apt-test.txt: apt-get install fluidsynth)"
    if not any(s.is_file() for s in SOUNDFONTS):
        return "no GM SoundFont (scripts/apt-test.txt: apt-get install fluid-soundfont-gm)"
    try:
        import mido  # noqa: F401
    except ImportError:
        return "mido is not installed"
    return None


def soundfont() -> pathlib.Path:
    return next(s for s in SOUNDFONTS if s.is_file())


def _midi(notes, program: int | None, channel: int, seconds: float) -> bytes:
    """A one-track MIDI file of ``notes`` (start_s, dur_s, pitch, velocity)."""
    import io

    import mido
    tpb = 480
    mid = mido.MidiFile(ticks_per_beat=tpb)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tempo = mido.bpm2tempo(BPM)
    tr.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    if program is not None:
        tr.append(mido.Message("program_change", program=program, channel=channel, time=0))
    # no reverb / chorus sends from the part itself
    tr.append(mido.Message("control_change", control=91, value=0, channel=channel, time=0))
    tr.append(mido.Message("control_change", control=93, value=0, channel=channel, time=0))
    ev = []
    for t, d, pitch, vel in notes:
        if t >= seconds:
            continue
        ev.append((t, 1, pitch, vel))
        ev.append((min(t + d, seconds), 0, pitch, 0))
    ev.sort(key=lambda e: (e[0], e[1]))
    now = 0
    for t, on, pitch, vel in ev:
        tick = int(round(mido.second2tick(t, tpb, tempo)))
        kind = "note_on" if on else "note_off"
        tr.append(mido.Message(kind, note=int(pitch), velocity=int(vel), channel=channel,
                               time=max(tick - now, 0)))
        now = max(tick, now)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def render_midi(data: bytes, seconds: float) -> np.ndarray:
    """Render MIDI bytes to a mono float32 stem at 48 kHz (cached)."""
    import soundfile as sf
    sf2 = soundfont()
    opts = ["-ni", "-R", "0", "-C", "0", "-g", "0.6", "-r", str(SAMPLE_RATE_HZ), "-O", "float",
            "-T", "wav"]
    key = hashlib.sha256(data + str(sf2).encode() + " ".join(opts).encode()).hexdigest()[:20]
    CACHE.mkdir(parents=True, exist_ok=True)
    wav = CACHE / f"{key}.wav"
    if not wav.is_file():
        mid = CACHE / f"{key}.mid"
        mid.write_bytes(data)
        tmp = CACHE / f"{key}.tmp.wav"
        subprocess.run(["fluidsynth", *opts, "-F", str(tmp), str(sf2), str(mid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        tmp.replace(wav)
        mid.unlink()
    x, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    assert sr == SAMPLE_RATE_HZ
    y = x.mean(axis=1)
    n = int(round(seconds * SAMPLE_RATE_HZ))
    out = np.zeros(n, np.float32)
    out[:min(n, len(y))] = y[:n]
    return out


def _beats(seconds):
    beat = 60.0 / BPM
    return beat, int(seconds / beat)


def drum_notes(seconds, rng):
    """Kick on 1 and 3, snare on 2 and 4, eighth-note hats, a crash every 8 bars, a tom
    fill every 4 bars; velocities vary like a drummer's."""
    beat, n = _beats(seconds)
    notes = []
    for b in range(n):
        t = b * beat
        bar, pos = divmod(b, 4)
        v = lambda base: int(np.clip(base + rng.normal(0, 10), 30, 127))
        if pos in (0, 2):
            notes.append((t, 0.2, 36, v(110)))
        if pos == 2 and rng.random() < 0.3:
            notes.append((t + beat / 2, 0.2, 36, v(95)))
        if pos in (1, 3):
            notes.append((t, 0.2, 38, v(105)))
        for h in range(2):
            notes.append((t + h * beat / 2, 0.1, 42, v(80 if h else 95)))
        if pos == 0 and bar % 8 == 0:
            notes.append((t, 1.5, 49, v(110)))
        if bar % 4 == 3 and pos == 3:
            for k, tom in enumerate((50, 47, 45, 43)):
                notes.append((t + k * beat / 4, 0.2, tom, v(100)))
    return notes


def _chords():
    return [(48, 52, 55), (45, 48, 52), (41, 45, 48), (43, 47, 50)]   # C Am F G


def bass_notes(seconds, rng):
    beat, n = _beats(seconds)
    roots = [36, 33, 29, 31]
    return [(b * beat + h * beat / 2, beat / 2 * 0.9, roots[(b // 4) % 4] + (12 if h and rng.random() < .3 else 0),
             int(np.clip(95 + rng.normal(0, 8), 40, 127)))
            for b in range(n) for h in range(2)]


def piano_notes(seconds, rng):
    beat, n = _beats(seconds)
    out = []
    for b in range(0, n, 2):
        ch = _chords()[(b // 4) % 4]
        for p in ch:
            out.append((b * beat, 2 * beat * 0.95, p + 12, int(np.clip(75 + rng.normal(0, 8), 30, 127))))
    return out


def guitar_notes(seconds, rng):
    beat, n = _beats(seconds)
    out = []
    for b in range(n):
        ch = _chords()[(b // 4) % 4]
        for k, p in enumerate(ch):          # a strum: strings 15 ms apart
            out.append((b * beat + 0.015 * k, beat * 0.9, p + 12, int(np.clip(80 + rng.normal(0, 8), 30, 127))))
    return out


def strings_notes(seconds, rng):
    beat, n = _beats(seconds)
    return [(b * beat, 4 * beat, p, 70) for b in range(0, n, 4) for p in _chords()[(b // 4) % 4]]


def lead_notes(seconds, rng):
    beat, n = _beats(seconds)
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    out, t = [], 0.0
    while t < seconds:
        d = beat * rng.choice([0.5, 1.0, 1.5, 2.0])
        if rng.random() < 0.8:
            out.append((t, d * 0.9, int(rng.choice(scale)) + 12, int(np.clip(90 + rng.normal(0, 8), 40, 127))))
        t += d
    return out


#: part -> (GM program or None for drums, MIDI channel, note generator)
PARTS = {
    "drums": (None, 9, drum_notes),
    "bass": (33, 0, bass_notes),
    "piano": (0, 1, piano_notes),
    "guitar": (27, 2, guitar_notes),
    "strings": (48, 3, strings_notes),
    "lead": (73, 4, lead_notes),        # a flute: a monophonic, breathy lead line
}


def render_parts(seconds: float = 30.0, seed: int = 0, parts=tuple(PARTS)) -> dict[str, np.ndarray]:
    """The stems of one song, by part name (mono float32 at 48 kHz, cached renders)."""
    out = {}
    for k, name in enumerate(parts):
        program, channel, gen = PARTS[name]
        rng = np.random.default_rng(seed * 100 + k)
        out[name] = render_midi(_midi(gen(seconds, rng), program, channel, seconds), seconds)
    return out
