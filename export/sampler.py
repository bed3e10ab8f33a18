"""Real sampled instruments for training sessions: SoundFonts through FluidSynth, drum kits
of recorded multi-velocity samples (Hydrogen's kit format), and voices from text-to-speech.

Every source is a *library* (one SoundFont, one kit, one voice) with a name, so a session
records which library played each channel and a model can be judged on a library that
training never heard (``export/sampled.py``).  The libraries come from Debian packages
(``scripts/apt-test.txt``): ``fluid-soundfont-gm``, ``musescore-general-soundfont-small``,
``timgm6mb-soundfont`` (SoundFonts, played by ``pyfluidsynth`` on ``libfluidsynth``),
``hydrogen-drumkits`` (each kit is a folder of WAV/FLAC samples and a ``drumkit.xml`` that
maps instruments to velocity layers; read directly here), ``espeak-ng`` and ``festival``
with its ``festvox-*`` voices (called as programs; their output is data, nothing of them
is linked into edgemix).

Everything rendered here is mono float64 at the session's rate, at an arbitrary level
(the recording step normalises it); a note list in, a signal out.  Speech is cached on
disk (content-keyed, ``.cache/sampled/``): a synthesiser program per phrase is the slow
part.
"""
from __future__ import annotations

import functools
import hashlib
import math
import pathlib
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
import scipy.signal

#: The SoundFonts, by library name (Debian package paths).
SOUNDFONTS = {
    "fluidr3": "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "musescore": "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",
    "timgm6mb": "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "opl3": "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2",
}
KIT_DIR = pathlib.Path("/usr/share/hydrogen/data/drumkits")
#: The kits used (folders under KIT_DIR) with kick, snare and hats (the others in the
#: package are percussion or effects kits; "Gimme A Hand 1.0" plays the 'other' role).
KITS = ("Audiophob", "BJA_Pacific", "ColomboAcousticDrumkit", "ElectricEmpireKit",
        "ForzeeStereo", "HardElectro1", "Millo-Drums_v.1", "Millo_MultiLayered2",
        "Millo_MultiLayered3", "The Black Pearl 1.0", "VariBreaks", "rumpf_kit_z01_h2")
PERCUSSION_KIT = "Gimme A Hand 1.0"
#: espeak-ng voice variants (``en-us+m3`` ...) and Festival voices, by library name.
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt2", "klatt3")
ESPEAK_LANGS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029")
FESTIVAL_VOICES = {"festival_kal": "voice_kal_diphone", "festival_ked": "voice_ked_diphone",
                   "festival_slt": "voice_cmu_us_slt_arctic_hts",
                   "festival_ona": "voice_upc_ca_ona_hts", "festival_dita": "voice_czech_dita",
                   "festival_lj": "voice_suo_fi_lj_diphone", "festival_lp": "voice_lp_diphone",
                   "festival_pc": "voice_pc_diphone"}

_SOUNDFONT_PACKAGES = {"fluidr3": "fluid-soundfont-gm",
                       "musescore": "musescore-general-soundfont-small",
                       "timgm6mb": "timgm6mb-soundfont", "opl3": "opl3-soundfont"}

CACHE_DIR = pathlib.Path(__file__).resolve().parents[1] / ".cache" / "sampled"


class MissingLibrary(RuntimeError):
    """A sample library or program is not installed (the message names the package)."""


def _need(path: str | pathlib.Path, package: str) -> pathlib.Path:
    p = pathlib.Path(path)
    if not p.exists():
        raise MissingLibrary(f"{p} is missing: apt-get install {package} "
                             "(scripts/apt-test.txt)")
    return p


def _resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    if sr_from == sr_to:
        return np.asarray(x, np.float64)
    g = math.gcd(int(sr_from), int(sr_to))
    return scipy.signal.resample_poly(np.asarray(x, np.float64), sr_to // g, sr_from // g,
                                      axis=0)


@dataclass(frozen=True)
class Note:
    """One note: onset and length (s), MIDI pitch (or GM drum note), velocity 1..127."""
    start_s: float
    length_s: float
    pitch: int
    velocity: int


# ---- SoundFonts through FluidSynth ---------------------------------------------------------
#: FluidSynth's output gain (the recording step normalises anyway).
FLUID_GAIN = 0.5


def _synth(library: str, sr: int):
    """A fresh FluidSynth for one part (a kept one carries state from part to part: the
    same notes came out differently after another part), with its SoundFont loaded
    lazily (``synth.dynamic-sample-loading``: only the samples of the selected preset are
    read, 0.1 s instead of 17 s of decoding for an .sf3)."""
    import fluidsynth
    path = _need(SOUNDFONTS[library], _SOUNDFONT_PACKAGES.get(library, "its SoundFont"))
    fs = fluidsynth.Synth(gain=FLUID_GAIN, samplerate=float(sr))
    fs.setting("synth.reverb.active", 0)
    fs.setting("synth.chorus.active", 0)
    fs.setting("synth.dynamic-sample-loading", 1)
    sfid = fs.sfload(str(path))
    if sfid < 0:
        fs.delete()
        raise MissingLibrary(f"{path}: FluidSynth could not load it")
    return fs, sfid


def _write_float(fs, n: int) -> np.ndarray:
    """``n`` stereo frames as float32 (``fluid_synth_write_float``: no int16 rounding and
    no dither, whose noise pattern would depend on what was rendered before)."""
    import ctypes
    import fluidsynth
    f = fluidsynth._fl.fluid_synth_write_float
    f.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                  ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    out = np.zeros((n, 2), np.float32)
    if n:
        p = out.ctypes.data
        f(fs.synth, n, p, 0, 2, p, 1, 2)
    return out


def render_soundfont(library: str, program: int, notes, seconds: float, sr: int,
                     drums: bool = False) -> np.ndarray:
    """``notes`` played by GM ``program`` of a SoundFont (``drums``: its percussion kit,
    bank 128, on MIDI channel 10), dry (FluidSynth's reverb and chorus off), mono."""
    fs, sfid = _synth(library, int(sr))
    try:
        return _play(fs, sfid, program, notes, int(round(seconds * sr)), sr, drums)
    finally:
        fs.delete()


def _play(fs, sfid, program, notes, n, sr, drums) -> np.ndarray:
    chan = 9 if drums else 0
    fs.program_select(chan, sfid, 128 if drums else 0, 0 if drums else int(program))
    ev = []
    for nt in notes:
        t0 = int(round(nt.start_s * sr))
        ev.append((t0, 1, nt.pitch, nt.velocity))
        ev.append((t0 + max(1, int(round(nt.length_s * sr))), 0, nt.pitch, 0))
    ev.sort(key=lambda e: (e[0], e[1]))   # note-offs before note-ons at one time
    out = np.zeros((n, 2), np.float64)
    done = 0
    for t, on, pitch, vel in ev:
        t = min(t, n)
        if t > done:
            out[done:t] = _write_float(fs, t - done)
            done = t
        if on:
            fs.noteon(chan, int(pitch), int(np.clip(vel, 1, 127)))
        else:
            fs.noteoff(chan, int(pitch))
    if done < n:
        out[done:] = _write_float(fs, n - done)
    return out.mean(axis=1)


# ---- Hydrogen drum kits ------------------------------------------------------------------
#: Kit pieces by the words of Hydrogen instrument names (first match wins).
_PIECE_WORDS = (
    ("tom", ("tom",)),
    ("kick", ("kick", "bassdrum", "bass drum", "bd")),
    ("snare", ("snare", "rimshot", "sd")),
    ("hat_open", ("open hh", "hh open", "hat open", "hat opened", "hi-hat open",
                  "hat semi", "open hat", "hat 1 op", "hi-hat open", "side ohh")),
    ("hat_closed", ("closed hh", "hh", "hat", "hi-hat")),
    ("crash", ("crash", "china", "splash", "cymbal")),
    ("ride", ("ride",)),
    ("shaker", ("maraca", "shaker", "tambourine", "cabasa")),
    ("clap", ("clap",)),
)


def _piece_of(name: str) -> str | None:
    low = name.lower()
    for piece, words in _PIECE_WORDS:
        for w in words:
            if (w in low.split() or w in low) if len(w) > 2 else w in low.split():
                return piece
    return None


@dataclass
class Kit:
    """A Hydrogen kit: per piece (``kick``, ``snare``, ``hat_closed`` ...) its instruments,
    each a list of velocity layers ``(min, max, gain, file)`` (velocity 0..1)."""
    name: str
    pieces: dict


@functools.lru_cache(maxsize=None)
def load_kit(name: str) -> Kit:
    """Read ``drumkit.xml`` of a Hydrogen kit (both the layered and the older one-file
    instrument format)."""
    folder = _need(KIT_DIR / name, "hydrogen-drumkits")
    root = ET.parse(folder / "drumkit.xml").getroot()
    ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
    pieces: dict = {}
    for inst in root.iter(f"{ns}instrument"):
        iname = (inst.findtext(f"{ns}name") or "").strip()
        piece = _piece_of(iname)
        if piece is None:
            continue
        layers = []
        for lay in inst.iter(f"{ns}layer"):
            f = lay.findtext(f"{ns}filename")
            if f and (folder / f).is_file():
                layers.append((float(lay.findtext(f"{ns}min") or 0.0),
                               float(lay.findtext(f"{ns}max") or 1.0),
                               float(lay.findtext(f"{ns}gain") or 1.0), str(folder / f)))
        f = inst.findtext(f"{ns}filename")
        if not layers and f and (folder / f).is_file():
            layers.append((0.0, 1.0, 1.0, str(folder / f)))
        if layers:
            pieces.setdefault(piece, []).append(sorted(layers))
    return Kit(name, pieces)


@functools.lru_cache(maxsize=512)
def _sample(path: str, sr: int) -> np.ndarray:
    import soundfile as sf
    x, sr0 = sf.read(path, dtype="float64", always_2d=True)
    return _resample(x.mean(axis=1), sr0, sr)


def render_kit(kit: Kit, piece: str, instrument: int, hits, seconds: float,
               sr: int) -> np.ndarray:
    """``hits`` ``[(time_s, velocity 0..1)]`` of one instrument of a kit piece: each hit the
    velocity layer it falls in (Hydrogen's rule), scaled by the velocity, overlap-added."""
    layers = kit.pieces[piece][instrument % len(kit.pieces[piece])]
    n = int(round(seconds * sr))
    out = np.zeros(n)
    for t, v in hits:
        v = float(np.clip(v, 0.0, 1.0))
        lay = next((l for l in layers if l[0] <= v <= l[1]), layers[-1])
        x = _sample(lay[3], sr) * (lay[2] * v)
        s = int(round(t * sr))
        if s < n:
            m = min(len(x), n - s)
            out[s:s + m] += x[:m]
    return out


# ---- voices --------------------------------------------------------------------------------
def voice_libraries() -> tuple[str, ...]:
    """Every voice library: ``espeak`` (its variants are speakers of one library) and each
    Festival voice."""
    return ("espeak",) + tuple(FESTIVAL_VOICES)


def _cache_path(kind: str, key: str) -> pathlib.Path:
    h = hashlib.sha256(key.encode()).hexdigest()[:20]
    return CACHE_DIR / kind / f"{h}.npy"


def speak(library: str, speaker: str, text: str, sr: int, pitch: int = 50,
          speed_wpm: int = 160) -> np.ndarray:
    """``text`` spoken by a voice, mono at ``sr`` (cached).  ``library`` 'espeak' with
    ``speaker`` 'LANG+VARIANT' (pitch 0..99 and speed are espeak-ng's ``-p`` and ``-s``),
    or a Festival voice library (its pitch is its own; ``speed_wpm`` scales its duration
    stretch)."""
    key = f"{library}|{speaker}|{text}|{sr}|{pitch}|{speed_wpm}"
    cache = _cache_path("voice", key)
    if cache.is_file():
        return np.load(cache)
    import soundfile as sf
    with tempfile.TemporaryDirectory() as tmp:
        wav = pathlib.Path(tmp) / "v.wav"
        if library == "espeak":
            exe = shutil.which("espeak-ng")
            if exe is None:
                raise MissingLibrary("espeak-ng is missing: apt-get install espeak-ng")
            cmd = [exe, "-v", speaker, "-p", str(int(pitch)), "-s", str(int(speed_wpm)),
                   "-w", str(wav), text]
            subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        else:
            exe = shutil.which("text2wave")
            if exe is None:
                raise MissingLibrary("festival is missing: apt-get install festival and its "
                                     "festvox-* voices (scripts/apt-test.txt)")
            stretch = 160.0 / max(float(speed_wpm), 40.0)
            ev = f"(begin ({FESTIVAL_VOICES[library]}) " \
                 f"(Parameter.set 'Duration_Stretch {stretch:.3f}))"
            r = subprocess.run([exe, "-eval", ev, "-o", str(wav)], input=text.encode(),
                               capture_output=True, timeout=120)
            if r.returncode != 0 or not wav.is_file():
                raise MissingLibrary(f"festival voice {FESTIVAL_VOICES[library]} failed: "
                                     f"{r.stderr.decode(errors='replace').strip()[:200]}")
        x, sr0 = sf.read(str(wav), dtype="float64", always_2d=True)
    y = _resample(x.mean(axis=1), sr0, sr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmpf = cache.with_suffix(".tmp.npy")
    np.save(tmpf, y)
    tmpf.replace(cache)
    return y


__all__ = ["SOUNDFONTS", "KITS", "PERCUSSION_KIT", "ESPEAK_VARIANTS", "FESTIVAL_VOICES",
           "Note", "Kit", "MissingLibrary", "load_kit", "render_kit", "render_soundfont",
           "speak", "voice_libraries"]
