"""Session synthesiser: deterministic multitrack sessions of known instrument roles, recorded
under known (random) raw conditions -- the ground truth the teacher and the tests use.

``synth_session(seed)`` builds a song (tempo, key, chord progression, sections with
entries and exits) or a spoken panel, renders one mono stem per role with simple but
plausible synthesis, and then "records" it:

* drums: kick = pitch-swept sine (150 -> 50 Hz) plus a noise click; snare = two damped
  modes (185/330 Hz) plus band-limited noise; hats/overheads = high-passed noise ticks on
  eighths plus crashes at section starts; other = a shaker (16th-note band-passed noise);
* bass/keys/pad from harmonic oscillators with envelopes (piano partials with stiff-string
  inharmonicity f_k = k f0 sqrt(1 + B k^2) and faster decay of upper partials; pads of
  detuned sawtooth partials through a one-pole low-pass);
* guitar: Karplus-Strong plucked strings (Karplus & Strong 1983: a noise burst in a
  delay line of one period, averaged and damped each pass), strummed chords;
* voices and speech: formant synthesis (a glottal sawtooth through three vowel resonators
  with Peterson & Barney 1952 formant frequencies), pitch contours (melody with glide and
  vibrato; speech with declination), syllable-rate amplitude envelopes, fricative noise
  for consonants, phrases and pauses; panels take turns.

Recording conditions, per channel, in this order: mic colouration (a low/high shelf pair
for a spectral tilt plus one resonant peak), normalisation of the coloured source to
``NOMINAL_LUFS`` (``source_level_lufs``: K-weighted power of its loudest 20 % of 100 ms
hops), bleed from the other
sources (delayed, attenuated, heavier between drums), the gain offset (-30 .. +10 dB:
preamp gain set wrong), polarity flip, noise floor (fixed dBFS: after the preamp) and DC
offset.  ``Session`` records every one of them, and ``Session.clean`` keeps the coloured,
normalised sources (before bleed/offset), so a test can check that the offsets are what the
metadata says.

Everything is drawn from ``numpy.random.default_rng(seed)`` child streams, so a seed always
gives the same session, bit for bit.  Offline and vectorised: a 30 s 16-channel session
takes about a second.

``load_stems(folder)`` reads real mono stems instead (soundfile), guessing roles from the
file names.
"""
from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass, field

import numpy as np
import scipy.signal

from edgemix.dsp.biquad import ba, coefficients
from edgemix.dsp.loudness import k_weighting_coefficients
from edgemix.roles import ROLE_NAMES, role_index
from edgemix.session import guess_role  # noqa: F401  (the runtime's: stems named by role)

#: Playing level of each clean source (``source_level_lufs``), before the offsets.
NOMINAL_LUFS = -30.0
GAIN_OFFSET_RANGE_DB = (-30.0, 10.0)
NOISE_FLOOR_RANGE_DBFS = (-90.0, -70.0)
DC_OFFSET_MAX = 0.003
TILT_RANGE_DB = (-6.0, 6.0)
RESONANCE_GAIN_RANGE_DB = (-6.0, 8.0)
BLEED_RANGE_DB = {"drums": (-24.0, -12.0), "default": (-48.0, -30.0)}

_DRUMS = ("kick", "snare", "hats_overheads")
_OPEN_MICS = ("lead_vocal", "backing_vocal", "speech", "guitar", "other") + _DRUMS
_LOUD_ACOUSTIC = _DRUMS + ("guitar", "lead_vocal", "backing_vocal", "speech")


def _bleeds(mic_role: str, source_role: str) -> bool:
    """Whether a source leaks into a mic: open mics hear loud acoustic sources (drums, amps,
    voices); DI'd bass/keys/pads neither leak nor pick up anything."""
    return mic_role in _OPEN_MICS and source_role in _LOUD_ACOUSTIC
_BAND_LINEUP = ("kick", "snare", "hats_overheads", "hats_overheads", "bass", "guitar",
                "guitar", "keys_piano", "pad", "lead_vocal", "backing_vocal", "backing_vocal",
                "other", "keys_piano", "guitar", "backing_vocal")
#: Peterson & Barney (1952) adult male formants F1-F3 (Hz) for five vowels.
_VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010],
                    [570, 840, 2410], [300, 870, 2240]], dtype=np.float64)
_PROGRESSIONS = ((0, 7, 9, 5), (9, 5, 0, 7), (0, 5, 7, 5), (2, 7, 0, 9), (0, 9, 5, 7))
_MINOR_DEGREES = (2, 4, 9)          # ii, iii, vi of a major key are minor chords
_SECTION_PLAN = (("intro", 2, 4), ("verse", 4, 8), ("chorus", 4, 8), ("verse", 4, 8),
                 ("chorus", 4, 8), ("bridge", 2, 4), ("chorus", 4, 8), ("outro", 2, 4))
#: Probability that a role plays in a section of each kind.
_PLAYS = {
    "intro": dict(kick=0.3, snare=0.2, hats_overheads=0.6, bass=0.4, guitar=0.6, keys_piano=0.7,
                  pad=0.8, lead_vocal=0.0, backing_vocal=0.0, other=0.3),
    "verse": dict(kick=0.9, snare=0.9, hats_overheads=0.9, bass=0.9, guitar=0.7, keys_piano=0.6,
                  pad=0.4, lead_vocal=1.0, backing_vocal=0.2, other=0.5),
    "chorus": dict(kick=1.0, snare=1.0, hats_overheads=1.0, bass=1.0, guitar=0.9, keys_piano=0.8,
                   pad=0.8, lead_vocal=1.0, backing_vocal=0.9, other=0.7),
    "bridge": dict(kick=0.5, snare=0.4, hats_overheads=0.7, bass=0.7, guitar=0.5, keys_piano=0.9,
                   pad=0.9, lead_vocal=0.5, backing_vocal=0.5, other=0.3),
    "outro": dict(kick=0.5, snare=0.5, hats_overheads=0.8, bass=0.6, guitar=0.6, keys_piano=0.8,
                  pad=0.9, lead_vocal=0.2, backing_vocal=0.2, other=0.3),
}


@dataclass
class Session:
    """A synthesised (or loaded) multitrack session and its ground truth.

    ``stems`` ``(frames, channels)`` float32 raw recordings.  Per channel (arrays of length
    ``channels``): ``roles``, ``gain_offsets_db`` (raw level = NOMINAL_LUFS + offset when
    the source plays), ``polarity_inverted``, ``dc_offsets``, ``noise_floor_dbfs``,
    ``tilt_db``/``resonance_hz``/``resonance_gain_db``/``resonance_q`` (mic colouration).
    ``bleed_db[i, j]``: level of source j in channel i relative to source j's own
    nominal level (-inf where none) and ``bleed_delay_ms[i, j]``.  ``clean``: the
    coloured, normalised sources ``(frames, channels)`` float32 (None for loaded stems).
    """

    stems: np.ndarray
    sample_rate_hz: int
    roles: tuple[str, ...]
    gain_offsets_db: np.ndarray
    polarity_inverted: np.ndarray
    dc_offsets: np.ndarray
    noise_floor_dbfs: np.ndarray
    tilt_db: np.ndarray
    resonance_hz: np.ndarray
    resonance_gain_db: np.ndarray
    resonance_q: np.ndarray
    bleed_db: np.ndarray
    bleed_delay_ms: np.ndarray
    clean: np.ndarray | None
    seed: int | None = None
    tempo_bpm: float = 0.0
    sections: tuple = ()
    names: tuple[str, ...] = field(default=())

    @property
    def n_channels(self) -> int:
        return self.stems.shape[1]

    @property
    def role_indices(self) -> np.ndarray:
        return np.array([role_index(r) for r in self.roles], dtype=np.int64)


# --------------------------------------------------------------------------------------
# Helpers


def _biquad(x, kind, f0, sr, q=0.7071, gain_db=0.0):
    f0 = min(f0, 0.45 * sr)
    b, a = ba(coefficients(kind, f0, sr, q=q, gain_db=gain_db))
    return scipy.signal.lfilter(b, a, x)


def _onepole_lp(x, fc, sr):
    a = math.exp(-2.0 * math.pi * fc / sr)
    return scipy.signal.lfilter([1.0 - a], [1.0, -a], x)


def _midi_hz(m):
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


def _add(buf, start, sig):
    """Overlap-add ``sig`` into ``buf`` at sample ``start`` (clipped at the end)."""
    if start >= len(buf):
        return
    n = min(len(sig), len(buf) - start)
    buf[start:start + n] += sig[:n]


def _adsr(n, sr, attack_s, decay_s, sustain, release_s):
    """Attack-decay-sustain envelope of ``n`` samples with a release tail at the end."""
    t = np.arange(n) / sr
    env = np.where(t < attack_s, t / max(attack_s, 1e-6),
                   sustain + (1.0 - sustain) * np.exp(-(t - attack_s) / max(decay_s, 1e-6)))
    nr = min(n, int(release_s * sr))
    if nr > 0:
        env[n - nr:] *= np.linspace(1.0, 0.0, nr)
    return env


def _k_weighted_hop_powers(x: np.ndarray, sr: float) -> np.ndarray:
    """Mean K-weighted power of each whole 100 ms hop (BS.1770 eq. 1-2; channel powers add,
    G = 1); ``x`` is ``(frames,)`` or ``(frames, channels)``.  Empty when under one hop."""
    c = k_weighting_coefficients(sr)
    x = np.asarray(x, dtype=np.float64)
    y = scipy.signal.lfilter(c[0:3], [1.0, c[3], c[4]], x, axis=0)
    y = scipy.signal.lfilter(c[5:8], [1.0, c[8], c[9]], y, axis=0)
    hop = int(round(0.1 * sr))
    n = y.shape[0] // hop
    z = (y[:n * hop].reshape((n, hop) + y.shape[1:]) ** 2).mean(axis=1)
    return z.sum(axis=1) if z.ndim > 1 else z


def active_loudness_lufs(x: np.ndarray, sr: float, gate_rel_lu: float = -20.0) -> float:
    """K-weighted loudness of the 100 ms hops above -70 LUFS and within ``gate_rel_lu`` of
    the loudest hop (the "when it plays" level; -inf for silence).  ``x`` is ``(frames,)``
    or ``(frames, channels)``; channel powers add (BS.1770 eq. 2 with G = 1)."""
    z = _k_weighted_hop_powers(x, sr)
    if z.size == 0:
        return -math.inf
    with np.errstate(divide="ignore"):
        l_hop = -0.691 + 10.0 * np.log10(z)
    keep = (l_hop > -70.0) & (l_hop > l_hop.max() + gate_rel_lu)
    if not keep.any():
        return -math.inf
    return float(-0.691 + 10.0 * np.log10(np.mean(z[keep])))


#: Share of the 100 ms hops (the loudest) that :func:`source_level_lufs` averages.
SOURCE_LEVEL_TOP_FRACTION = 0.2


def source_level_lufs(x: np.ndarray, sr: float,
                      top_fraction: float = SOURCE_LEVEL_TOP_FRACTION) -> float:
    """A source's playing level: the K-weighted power mean of its loudest ``top_fraction``
    of 100 ms hops, in LUFS (-inf for silence).

    A fixed *count* of hops is averaged, so noise floor and bleed filling the quiet hops
    barely move it (they add little power to the loudest hops), unlike a relative gate,
    which admits more and more quiet hops as the floor rises.  The synthesiser normalises
    its sources with it (``NOMINAL_LUFS``) and the teacher stages gain with it, so on a
    synthesised session the teacher's trims undo the recording offsets.
    """
    z = _k_weighted_hop_powers(x, sr)
    n = z.size
    if n == 0:
        return -math.inf
    k = max(1, int(math.ceil(top_fraction * n)))
    top = np.sort(z)[n - k:]
    p = float(top.mean())
    return -0.691 + 10.0 * math.log10(p) if p > 1e-15 else -math.inf


# --------------------------------------------------------------------------------------
# Arrangement


@dataclass
class _Song:
    sr: int
    n: int
    tempo_bpm: float
    beat_s: float
    n_bars: int
    key_midi: int
    chords: np.ndarray        # (n_bars, 3) midi pitch classes relative to key (root, 3rd, 5th)
    section_of_bar: list
    sections: tuple


def _arrange(rng, seconds, sr) -> _Song:
    tempo = float(rng.uniform(80.0, 140.0))
    beat = 60.0 / tempo
    n_bars = int(math.ceil(seconds / (4 * beat)))
    key = int(rng.integers(0, 12))
    prog = _PROGRESSIONS[rng.integers(len(_PROGRESSIONS))]
    chords = np.zeros((n_bars, 3), dtype=np.int64)
    for b in range(n_bars):
        deg = prog[b % 4]
        third = 3 if deg in _MINOR_DEGREES else 4
        chords[b] = (deg, deg + third, deg + 7)
    section_of_bar = []
    sections = []
    bar = 0
    plan = list(_SECTION_PLAN)
    while bar < n_bars:
        name, lo, hi = plan.pop(0) if plan else ("chorus", 4, 8)
        length = int(rng.integers(lo, hi + 1))
        length = min(length, n_bars - bar)
        sections.append((name, bar * 4 * beat, min((bar + length) * 4 * beat, seconds)))
        section_of_bar += [name] * length
        bar += length
    return _Song(sr, int(round(seconds * sr)), tempo, beat, n_bars, key, chords, section_of_bar,
                 tuple(sections))


def _bars_playing(rng, song: _Song, role: str) -> np.ndarray:
    """Which bars a role plays: decided per section, at least one section."""
    names = [s[0] for s in song.sections]
    on = np.array([rng.random() < _PLAYS[nm].get(role, 0.5) for nm in names])
    if not on.any():
        on[[i for i, nm in enumerate(names) if nm == "chorus"] or [0]] = True
    bars = []
    for sec_on, (nm, t0, t1) in zip(on, song.sections):
        n_b = int(round((t1 - t0) / (4 * song.beat_s) + 0.4999))
        bars += [bool(sec_on)] * max(n_b, 1)
    return np.array(bars[:song.n_bars] + [False] * max(0, song.n_bars - len(bars)))


def _bar_start(song, bar) -> int:
    return int(round(bar * 4 * song.beat_s * song.sr))


# --------------------------------------------------------------------------------------
# Instruments (each returns a float64 mono signal of song.n samples, arbitrary level)


def _kick(rng, song, bars):
    sr = song.sr
    t = np.arange(int(0.5 * sr)) / sr
    f = 50.0 + rng.uniform(80, 130) * np.exp(-t / 0.03)
    hit = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / rng.uniform(0.15, 0.35))
    hit += 0.3 * rng.standard_normal(len(t)) * np.exp(-t / 0.003)
    out = np.zeros(song.n)
    for bar in np.flatnonzero(bars):
        for beat in (0, 2) + ((2.5,) if rng.random() < 0.3 else ()):
            _add(out, _bar_start(song, bar) + int(beat * song.beat_s * sr),
                 hit * rng.uniform(0.8, 1.0))
    return out


def _snare(rng, song, bars):
    sr = song.sr
    t = np.arange(int(0.4 * sr)) / sr
    tone = (np.sin(2 * np.pi * 185 * t) + 0.5 * np.sin(2 * np.pi * 330 * t)) * np.exp(-t / 0.08)
    noise = _biquad(rng.standard_normal(len(t)), "highpass", 1500.0, sr)
    hit = 0.6 * tone + noise * np.exp(-t / rng.uniform(0.1, 0.2))
    out = np.zeros(song.n)
    for bar in np.flatnonzero(bars):
        for beat in (1, 3):
            _add(out, _bar_start(song, bar) + int(beat * song.beat_s * sr),
                 hit * rng.uniform(0.85, 1.0))
        if rng.random() < 0.3:
            _add(out, _bar_start(song, bar) + int(3.75 * song.beat_s * sr), 0.3 * hit)
    return out


def _hats(rng, song, bars):
    sr = song.sr
    t = np.arange(int(0.1 * sr)) / sr
    tick = _biquad(rng.standard_normal(len(t)), "highpass", 7000.0, sr) * np.exp(-t / 0.025)
    tc = np.arange(int(2.0 * sr)) / sr
    crash = _biquad(rng.standard_normal(len(tc)), "highpass", 3000.0, sr) * np.exp(-tc / 0.9)
    out = np.zeros(song.n)
    starts = {int(round(s[1] / (4 * song.beat_s))) for s in song.sections}
    for bar in np.flatnonzero(bars):
        b0 = _bar_start(song, bar)
        for e in range(8):
            _add(out, b0 + int(e * 0.5 * song.beat_s * sr), tick * (1.0 if e % 2 == 0 else 0.6))
        if bar in starts:
            _add(out, b0, 0.7 * crash)
    return out


def _shaker(rng, song, bars):
    sr = song.sr
    t = np.arange(int(0.08 * sr)) / sr
    grain = _biquad(rng.standard_normal(len(t)), "peak", 6000.0, sr, q=1.0, gain_db=12.0)
    grain = _biquad(grain, "highpass", 3000.0, sr) * np.exp(-t / 0.02)
    out = np.zeros(song.n)
    for bar in np.flatnonzero(bars):
        for s in range(16):
            _add(out, _bar_start(song, bar) + int(s * 0.25 * song.beat_s * sr),
                 grain * (1.0 if s % 4 == 0 else 0.5))
    return out


_NOTE_CACHE: dict = {}


def _harmonic_note(f0, n, sr, n_harm, tilt, decay_s=None, inharm=0.0):
    """Sum of sine partials (cached: songs repeat their notes; callers must not modify)."""
    key = (round(float(f0), 6), n, sr, n_harm, tilt, decay_s, inharm)
    hit = _NOTE_CACHE.get(key)
    if hit is not None:
        return hit
    if len(_NOTE_CACHE) > 512:
        _NOTE_CACHE.clear()
    out = _render_partials(f0, n, sr, n_harm, tilt, decay_s, inharm)
    out.setflags(write=False)
    _NOTE_CACHE[key] = out
    return out


def _render_partials(f0, n, sr, n_harm, tilt, decay_s, inharm):
    t = np.arange(n) / sr
    out = np.zeros(n)
    for k in range(1, n_harm + 1):
        fk = k * f0 * math.sqrt(1.0 + inharm * k * k)
        if fk > 0.45 * sr:
            break
        amp = k ** -tilt
        if decay_s is not None:
            amp = amp * np.exp(-t / (decay_s / k ** 0.7))
        out += amp * np.sin(2 * np.pi * fk * t + k)
    return out


def _bass(rng, song, bars):
    sr = song.sr
    out = np.zeros(song.n)
    eighths = rng.random() < 0.5
    step = 0.5 if eighths else 1.0
    for bar in np.flatnonzero(bars):
        root = 28 + song.key_midi + song.chords[bar, 0] % 12      # E1..D#2 region
        for i in range(int(4 / step)):
            note = root + (12 if (i % 4 == 3 and rng.random() < 0.4) else 0) + \
                (7 if rng.random() < 0.15 else 0)
            n = int(step * song.beat_s * sr * 0.9)
            sig = _harmonic_note(_midi_hz(note), n, sr, 10, 1.3) * \
                _adsr(n, sr, 0.005, 0.25, 0.6, 0.03)
            _add(out, _bar_start(song, bar) + int(i * step * song.beat_s * sr), sig)
    return _onepole_lp(out, rng.uniform(600, 1500), sr)


def _karplus_strong(f0, n, sr, rng, damping):
    """Karplus-Strong: y[n] = d (y[n-N] + y[n-N-1]) / 2 after a one-period noise burst,
    computed one period at a time (each period depends only on the previous one)."""
    period = max(2, int(round(sr / f0 - 0.5)))
    y = np.zeros(n + 2 * period)
    y[:period] = _onepole_lp(rng.uniform(-1, 1, period), 4000.0, sr)
    k = period
    while k < n:
        prev = y[k - period - 1:k] if k > period else np.concatenate([[0.0], y[:period]])
        seg = 0.5 * damping * (prev[1:] + prev[:-1])
        y[k:k + period] = seg
        k += period
    return y[:n]


def _guitar(rng, song, bars):
    sr = song.sr
    out = np.zeros(song.n)
    pattern = ((0, 1.0), (1.5, 0.7), (2, 0.9), (3, 0.7)) if rng.random() < 0.6 else \
        ((0, 1.0), (2, 1.0))
    damping = rng.uniform(0.990, 0.997)
    plucks = {}
    for bar in np.flatnonzero(bars):
        pcs = song.chords[bar] + song.key_midi
        voicing = sorted({48 + (pcs[0] % 12), 52 + ((pcs[1] - 52) % 12),
                          55 + ((pcs[2] - 55) % 12), 60 + (pcs[0] % 12), 64 + ((pcs[1] - 64) % 12)})
        for i, (beat, vel) in enumerate(pattern):
            nxt = pattern[i + 1][0] if i + 1 < len(pattern) else 4.0
            n = int((nxt - beat) * song.beat_s * sr)
            down = i % 2 == 0
            for j, note in enumerate(voicing if down else voicing[::-1]):
                key = (note, n)
                if key not in plucks:            # songs repeat their chords: reuse plucks
                    sig = _karplus_strong(float(_midi_hz(note)), n, sr, rng, damping)
                    sig[-min(n, int(0.01 * sr)):] *= np.linspace(1, 0, min(n, int(0.01 * sr)))
                    plucks[key] = sig
                sig = plucks[key]
                _add(out, _bar_start(song, bar) + int(beat * song.beat_s * sr)
                     + int(j * 0.012 * sr), vel * sig)
    return out


def _keys(rng, song, bars):
    sr = song.sr
    out = np.zeros(song.n)
    for bar in np.flatnonzero(bars):
        pcs = song.chords[bar] + song.key_midi
        notes = [57 + ((p - 57) % 12) for p in pcs] + [45 + pcs[0] % 12]
        for half in (0, 2) if rng.random() < 0.7 else (0,):
            n = int((2 if half == 0 else 2) * song.beat_s * sr)
            for note in notes:
                sig = _harmonic_note(float(_midi_hz(note)), n, sr, 8, 1.0, decay_s=1.2,
                                     inharm=2e-4) * _adsr(n, sr, 0.003, 10.0, 1.0, 0.05)
                _add(out, _bar_start(song, bar) + int(half * song.beat_s * sr),
                     sig * rng.uniform(0.7, 1.0))
    return out


def _pad(rng, song, bars):
    sr = song.sr
    out = np.zeros(song.n)
    n = int(4 * song.beat_s * sr) + int(0.3 * sr)
    env = _adsr(n, sr, 0.3, 1.0, 1.0, 0.3)
    for bar in np.flatnonzero(bars):
        pcs = song.chords[bar] + song.key_midi
        for p in pcs:
            f = float(_midi_hz(60 + ((p - 60) % 12)))
            for det in (-0.004, 0.004):
                _add(out, _bar_start(song, bar), _harmonic_note(f * (1 + det), n, sr, 12, 1.0) * env)
    return _onepole_lp(out, rng.uniform(1500, 4000), sr)


def _formant_voice(rng, sr, f0_track, syllables, breathy, formant_scale):
    """Glottal sawtooth at ``f0_track`` (Hz per sample), through three vowel resonators per
    syllable, enveloped; ``syllables``: (start, length, vowel index, fricative) in samples."""
    n = len(f0_track)
    phase = np.cumsum(f0_track) / sr
    src = 2.0 * (phase - np.floor(phase)) - 1.0
    src = _onepole_lp(src, 3000.0, sr) + breathy * rng.standard_normal(n) * 0.1
    out = np.zeros(n)
    for start, length, vowel, fric in syllables:
        if start >= n:
            break
        length = min(length, n - start)
        seg = src[start:start + length]
        y = np.zeros(length)
        for i, (fc, amp) in enumerate(zip(_VOWELS[vowel] * formant_scale, (1.0, 0.5, 0.25))):
            bw = 60.0 + 40.0 * i
            y += amp * _biquad(seg, "peak", fc, sr, q=fc / bw, gain_db=20.0) - amp * seg
        env = np.sin(np.pi * np.arange(length) / length) ** 0.7
        y *= env
        if fric:
            m = min(length, int(0.05 * sr))
            y[:m] += _biquad(rng.standard_normal(m), "highpass", 4000.0, sr) * 0.3 * \
                np.hanning(m)
        out[start:start + length] += y
    return out


def _lead_vocal(rng, song, bars, backing=False):
    sr = song.sr
    f0 = np.zeros(song.n)
    syl = []
    base = 57 if rng.random() < 0.5 else 48       # female / male register
    if backing:
        base += 4
    for k, bar in enumerate(np.flatnonzero(bars)):
        if not backing and k % 4 == 3:             # breathe: every 4th sung bar rests
            continue
        b0 = _bar_start(song, bar)
        pcs = song.chords[bar] + song.key_midi
        if backing:
            note = base + ((pcs[1] - base) % 12)
            n = int(4 * song.beat_s * sr * 0.95)
            f0[b0:b0 + n] = _midi_hz(note)
            syl.append((b0, n, int(rng.choice([0, 3, 4])), False))
            continue
        sub = 1.0 if rng.random() < 0.5 else 0.5
        for i in range(int(4 / sub)):
            note = base + ((int(rng.choice(pcs)) - base) % 12) + (12 if rng.random() < 0.1 else 0)
            s0 = b0 + int(i * sub * song.beat_s * sr)
            n = int(sub * song.beat_s * sr * 0.9)
            f0[s0:s0 + n] = _midi_hz(note)
            syl.append((s0, n, int(rng.integers(5)), bool(rng.random() < 0.4)))
    voiced = f0 > 0
    # Glide between notes (one-pole portamento) and 5.5 Hz vibrato of +-0.3 semitone.
    last = np.maximum.accumulate(np.where(voiced, np.arange(song.n), 0))   # forward fill
    f0 = np.where(voiced, f0, f0[last])
    f0 = np.exp(_onepole_lp(np.log(np.maximum(f0, 50.0)), 15.0, sr))
    t = np.arange(song.n) / sr
    f0 *= 2.0 ** ((0.3 if not backing else 0.15) * np.sin(2 * np.pi * 5.5 * t) / 12.0)
    return _formant_voice(rng, sr, f0, syl, 0.3 if backing else 0.15,
                          1.15 if base >= 57 else 1.0)


def _speech_turns(rng, n_speakers, seconds):
    """Panel turn-taking: (speaker, start_s, end_s) turns of 3-10 s, small overlaps."""
    turns = []
    t = rng.uniform(0.0, 1.0)
    order = []
    last = -1
    while t < seconds:
        if not order:                    # everyone speaks once per round, random order
            order = list(rng.permutation(n_speakers))
            if order[0] == last and n_speakers > 1:
                order.append(order.pop(0))
        sp = int(order.pop(0))
        # short sessions still give everyone a turn
        dur = min(rng.uniform(3.0, 10.0), max(2.0, 0.9 * seconds / n_speakers))
        turns.append((sp, t, min(t + dur, seconds)))
        t += dur + rng.uniform(-0.3, 0.8)
        last = sp
    return turns


def _speech(rng, sr, n, turns, me):
    f0 = np.zeros(n)
    syl = []
    female = rng.random() < 0.5
    base = rng.uniform(180, 230) if female else rng.uniform(95, 130)
    for sp, t0, t1 in turns:
        if sp != me:
            continue
        t = t0
        while t < t1 - 0.5:
            n_syl = int(rng.integers(6, 15))
            s_start = int(t * sr)
            for i in range(n_syl):
                d = rng.uniform(0.14, 0.3)
                s0 = int(t * sr)
                m = int(d * sr)
                # Declination across the sentence plus a random accent per syllable.
                f = base * (1.0 - 0.2 * i / n_syl) * (1.0 + 0.08 * rng.standard_normal())
                f0[s0:s0 + m] = f
                syl.append((s0, m, int(rng.integers(5)), bool(rng.random() < 0.5)))
                t += d
                if t > t1:
                    break
            t += rng.uniform(0.3, 1.0)                  # pause between sentences
            del s_start
    voiced = f0 > 0
    f0 = np.where(voiced, f0, base)
    f0 = np.exp(_onepole_lp(np.log(f0), 10.0, sr))
    return _formant_voice(rng, sr, f0, syl, 0.2, 1.15 if female else 1.0)


_RENDER = {"kick": _kick, "snare": _snare, "hats_overheads": _hats, "bass": _bass,
           "guitar": _guitar, "keys_piano": _keys, "pad": _pad, "lead_vocal": _lead_vocal,
           "backing_vocal": lambda rng, song, bars: _lead_vocal(rng, song, bars, backing=True),
           "other": _shaker}


# --------------------------------------------------------------------------------------
# Public


def default_roles(seed: int, n_channels: int = 12, kind: str = "band") -> tuple[str, ...]:
    """A plausible line-up: a band (drums first) or a spoken panel of ``n_channels``."""
    if kind == "speech":
        return ("speech",) * n_channels
    if kind != "band":
        raise ValueError(f"kind = {kind!r}: use 'band' or 'speech'")
    if not 1 <= n_channels <= len(_BAND_LINEUP):
        raise ValueError(f"n_channels = {n_channels}: use 1 .. {len(_BAND_LINEUP)} for a band")
    return _BAND_LINEUP[:n_channels]


def synth_session(seed: int, roles=None, seconds: float = 30.0, sample_rate_hz: int = 48000,
                  n_channels: int = 12, kind: str = "band", conditions: bool = True,
                  keep_clean: bool = True) -> Session:
    """Synthesise a session.  ``roles``: role names per channel (default: a line-up of
    ``n_channels`` of ``kind`` 'band' or 'speech').  ``conditions=False`` gives the clean
    sources at ``NOMINAL_LUFS`` (no colouration, bleed, offsets, noise, DC or flips).
    Same seed, same arguments -> the same session, bit for bit."""
    if roles is None:
        roles = default_roles(seed, n_channels, kind)
    roles = tuple(roles)
    for r in roles:
        role_index(r)                                   # ValueError for an unknown role
    if not roles:
        raise ValueError("roles is empty: give at least one role")
    if not 1.0 <= float(seconds) <= 600.0:
        raise ValueError(f"seconds = {seconds}: use 1 .. 600")
    sr = int(sample_rate_hz)
    if not 16000 <= sr <= 192000:
        raise ValueError(f"sample_rate_hz = {sample_rate_hz}: use 16000 .. 192000")
    root = np.random.SeedSequence(int(seed))
    arr_ss, rend_ss, cond_ss = root.spawn(3)
    arr = np.random.default_rng(arr_ss)
    song = _arrange(arr, float(seconds), sr)
    n_ch = len(roles)
    rend_rngs = [np.random.default_rng(s) for s in rend_ss.spawn(n_ch)]
    speakers = [c for c, r in enumerate(roles) if r == "speech"]
    turns = _speech_turns(arr, max(1, len(speakers)), float(seconds))

    src = np.zeros((n_ch, song.n))
    for c, role in enumerate(roles):
        rng = rend_rngs[c]
        if role == "speech":
            src[c] = _speech(rng, sr, song.n, turns, speakers.index(c))
        else:
            bars = _bars_playing(arr, song, role)
            src[c] = _RENDER[role](rng, song, bars)

    rec = record(src, roles, np.random.default_rng(cond_ss), sr, conditions, keep_clean)
    return Session(**rec, roles=roles, seed=int(seed), tempo_bpm=song.tempo_bpm,
                   sections=song.sections,
                   names=tuple(f"{c + 1:02d} {r}" for c, r in enumerate(roles)))


def record(src: np.ndarray, roles, cond: np.random.Generator, sr: int,
           conditions: bool = True, keep_clean: bool = True) -> dict:
    """"Record" clean sources ``(channels, frames)`` float64 (any level; changed in place)
    as the module docstring says: mic colouration, normalisation to ``NOMINAL_LUFS``, bleed,
    gain offset, polarity, noise floor, DC, every draw from ``cond``.  Returns the
    :class:`Session` fields of the recording (``stems`` ... ``clean``); the synthesiser and
    the sampled-instrument sessions (``export/sampled.py``) share it."""
    n_ch = len(roles)
    n = src.shape[1]
    tilt = cond.uniform(*TILT_RANGE_DB, n_ch) if conditions else np.zeros(n_ch)
    res_hz = np.exp(cond.uniform(math.log(200.0), math.log(6000.0), n_ch))
    res_gain = cond.uniform(*RESONANCE_GAIN_RANGE_DB, n_ch) if conditions else np.zeros(n_ch)
    res_q = cond.uniform(0.7, 4.0, n_ch)
    for c in range(n_ch):
        if conditions:
            x = _biquad(src[c], "lowshelf", 300.0, sr, gain_db=-tilt[c] / 2)
            x = _biquad(x, "highshelf", 3000.0, sr, gain_db=tilt[c] / 2)
            src[c] = _biquad(x, "peak", res_hz[c], sr, q=res_q[c], gain_db=res_gain[c])
        level = source_level_lufs(src[c], sr)
        if math.isfinite(level):
            src[c] *= 10.0 ** ((NOMINAL_LUFS - level) / 20.0)

    offsets = cond.uniform(*GAIN_OFFSET_RANGE_DB, n_ch) if conditions else np.zeros(n_ch)
    flips = (cond.random(n_ch) < 0.25) if conditions else np.zeros(n_ch, dtype=bool)
    noise_db = cond.uniform(*NOISE_FLOOR_RANGE_DBFS, n_ch) if conditions else \
        np.full(n_ch, -np.inf)
    dc = cond.uniform(-DC_OFFSET_MAX, DC_OFFSET_MAX, n_ch) if conditions else np.zeros(n_ch)
    bleed_db = np.full((n_ch, n_ch), -np.inf)
    bleed_ms = np.zeros((n_ch, n_ch))
    if conditions:
        for i in range(n_ch):
            for j in range(n_ch):
                if i == j:
                    continue
                drums = roles[i] in _DRUMS and roles[j] in _DRUMS
                lo, hi = BLEED_RANGE_DB["drums" if drums else "default"]
                if not _bleeds(roles[i], roles[j]):
                    continue
                bleed_db[i, j] = cond.uniform(lo, hi)
                bleed_ms[i, j] = cond.uniform(0.5, 8.0)

    out = np.empty((n, n_ch), dtype=np.float32)
    noise_rng = np.random.default_rng(cond.integers(2 ** 63))
    src_t = src.astype(np.float32)            # the mixing below is memory-bound: halve it
    for i in range(n_ch):
        x = src_t[i].copy()
        for j in np.flatnonzero(np.isfinite(bleed_db[i])):
            d = int(round(bleed_ms[i, j] * 1e-3 * sr))
            x[d:] += np.float32(10.0 ** (bleed_db[i, j] / 20.0)) * src_t[j, :n - d]
        x *= np.float32(10.0 ** (offsets[i] / 20.0) * (-1.0 if flips[i] else 1.0))
        if np.isfinite(noise_db[i]):
            x += noise_rng.standard_normal(n, dtype=np.float32) * \
                np.float32(10.0 ** (noise_db[i] / 20.0))
        x += np.float32(dc[i])
        out[:, i] = x
    return dict(
        stems=out, sample_rate_hz=sr, gain_offsets_db=offsets,
        polarity_inverted=flips, dc_offsets=dc, noise_floor_dbfs=noise_db, tilt_db=tilt,
        resonance_hz=res_hz, resonance_gain_db=res_gain, resonance_q=res_q,
        bleed_db=bleed_db, bleed_delay_ms=bleed_ms,
        clean=np.ascontiguousarray(src_t.T) if keep_clean else None)


# --------------------------------------------------------------------------------------
# Real stems

_AUDIO_EXT = (".wav", ".flac", ".aif", ".aiff", ".ogg")


def load_stems(folder) -> Session:
    """Read a folder of mono stems (WAV/FLAC/AIFF/OGG, sorted by name) as a ``Session``.

    All files must share one sample rate and length; roles are guessed from the names.
    The checks and their one-line messages are the runtime's
    (:func:`edgemix.rt.offline.probe_stems`); errors are ``ValueError``.
    Ground-truth fields are unknown: offsets 0 dB, NaN where a value cannot be known.
    """
    from edgemix.rt.offline import StemSource, expand_inputs
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder; give the folder that holds the stems")
    files = expand_inputs([folder], suffixes=_AUDIO_EXT)
    source = StemSource(files, mono=True, same_length=True)
    try:
        stems = np.zeros((source.total_frames, source.n_channels), np.float32)
        source.read(stems)
    finally:
        source.close()
    sr0 = source.sample_rate_hz
    n = stems.shape[1]
    nan = np.full(n, np.nan)
    return Session(
        stems=stems, sample_rate_hz=int(sr0), roles=tuple(guess_role(p.stem) for p in files),
        gain_offsets_db=np.zeros(n), polarity_inverted=np.zeros(n, dtype=bool),
        dc_offsets=nan.copy(), noise_floor_dbfs=nan.copy(), tilt_db=nan.copy(),
        resonance_hz=nan.copy(), resonance_gain_db=nan.copy(), resonance_q=nan.copy(),
        bleed_db=np.full((n, n), np.nan), bleed_delay_ms=np.full((n, n), np.nan), clean=None,
        names=tuple(p.stem for p in files))


__all__ = ["Session", "synth_session", "load_stems", "default_roles", "guess_role",
           "active_loudness_lufs", "source_level_lufs", "NOMINAL_LUFS", "ROLE_NAMES"]
