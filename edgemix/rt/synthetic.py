"""The built-in synthetic session: a few instrument-like channels that need no files.

A small deterministic generator (``seed`` fixes everything) for ``edgemix demo``, the
profiler, the board's ARM check and tests: a band (kick, snare, hats, bass, keys, pad, a
vowel-like lead voice and a speech-like voice, cycled when more channels are asked for) or
a speech panel (talkers taking turns, for the gain-sharing automixer).  It renders a loop of
``loop_s`` seconds once (vectorised numpy, offline) and serves blocks from it.  The richer
training-data synthesiser (``export/synth.py``) is the host toolchain's: the runtime never
imports it.
"""
from __future__ import annotations

import numpy as np

#: (role, level dBFS) of the generated channels, cycled.
VOICES = (("kick", -12.0), ("snare", -14.0), ("hats_overheads", -24.0), ("bass", -16.0),
          ("keys_piano", -20.0), ("pad", -24.0), ("lead_vocal", -18.0), ("speech", -20.0))


def _env(t, period_s, offset_s, decay_s):
    """Exponential decay restarted every ``period_s`` (a hit)."""
    ph = np.mod(t - offset_s, period_s)
    return np.exp(-ph / decay_s)


def _voice(role, t, fs, rng):
    bpm = 120.0
    beat = 60.0 / bpm
    if role == "kick":
        ph = np.mod(t, beat)
        f = 45.0 + 80.0 * np.exp(-ph / 0.03)  # falling pitch, the classic kick sweep
        phase = 2 * np.pi * np.cumsum(f) / fs
        return np.sin(phase) * np.exp(-ph / 0.18)
    if role == "snare":
        e = _env(t, 2 * beat, beat, 0.12)
        return 0.6 * rng.standard_normal(t.size) * e + 0.4 * np.sin(2 * np.pi * 190 * t) * e
    if role == "hats_overheads":
        n = rng.standard_normal(t.size)
        n = np.diff(n, prepend=0.0)  # crude high-pass: hats live above a few kHz
        return 0.5 * n * _env(t, beat / 2, 0.0, 0.04)
    if role == "bass":
        roots = np.array([55.0, 55.0, 73.42, 65.41])
        f = roots[(t // (4 * beat)).astype(int) % roots.size]
        phase = 2 * np.pi * np.cumsum(f) / fs
        return (np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.1 * np.sin(3 * phase)) * \
            (0.6 + 0.4 * _env(t, beat, 0.0, 0.25))
    if role in ("keys_piano", "pad"):
        chords = np.array([[220.0, 277.18, 329.63], [293.66, 369.99, 440.0],
                           [246.94, 311.13, 369.99], [261.63, 329.63, 392.0]])
        idx = (t // (4 * beat)).astype(int) % len(chords)
        out = np.zeros_like(t)
        for k in range(3):
            phase = 2 * np.pi * np.cumsum(chords[idx, k] * (0.5 if role == "pad" else 1.0)) / fs
            out += np.sin(phase) + (0.2 * np.sin(3 * phase) if role == "keys_piano" else 0.0)
        env = _env(t, beat, 0.0, 0.6) if role == "keys_piano" else 0.8
        return out / 3.0 * env
    # voices: a glottal-ish pulse train through two formant resonators (a sung "ah" or
    # syllable-rate modulated speech)
    f0 = (196.0 if role == "lead_vocal" else 120.0) * (1.0 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = np.cumsum(f0) / fs
    src = np.mod(phase, 1.0) - 0.5
    out = np.zeros_like(t)
    for fc, bw in ((700.0, 110.0), (1220.0, 120.0)):
        # two-pole resonator, applied as its (decayed-to-nothing) impulse response by FFT
        # convolution: h[n] = (1 - r) r^n sin(w (n + 1)) / sin(w)
        r, w = np.exp(-np.pi * bw / fs), 2 * np.pi * fc / fs
        k = np.arange(4096)
        h = (1.0 - r) * r ** k * np.sin(w * (k + 1)) / np.sin(w)
        m = 1 << int(np.ceil(np.log2(src.size + h.size)))
        out += np.fft.irfft(np.fft.rfft(src, m) * np.fft.rfft(h, m), m)[:src.size]
    if role == "speech":
        out *= 0.5 * (1.0 + np.sin(2 * np.pi * 4.0 * t)) * (np.mod(t, 3.0) < 2.2)
    return out


def _panel_voice(c, n, t, fs):
    """Talker ``c`` of ``n`` on a panel: its own pitch and vowel, speaking in its turns
    (about 3 s each, round the table, with a short overlap at each hand-over) at a
    syllable rate of about 4 Hz: what a gain-sharing automixer sees."""
    f0 = (95.0 + 120.0 * ((c * 0.618) % 1.0)) * (1.0 + 0.02 * np.sin(2 * np.pi * 3.1 * t + c))
    src = np.mod(np.cumsum(f0) / fs, 1.0) - 0.5
    out = np.zeros_like(t)
    formants = ((700.0, 1220.0), (500.0, 1500.0), (400.0, 2000.0), (600.0, 1000.0))[c % 4]
    for fc, bw in zip(formants, (110.0, 130.0)):
        r, w = np.exp(-np.pi * bw / fs), 2 * np.pi * fc / fs
        k = np.arange(4096)
        h = (1.0 - r) * r ** k * np.sin(w * (k + 1)) / np.sin(w)
        m = 1 << int(np.ceil(np.log2(src.size + h.size)))
        out += np.fft.irfft(np.fft.rfft(src, m) * np.fft.rfft(h, m), m)[:src.size]
    turn_s = 3.0
    slot = np.mod(t / turn_s, n)            # whose turn, as a position round the table
    mine = np.mod(slot - c, n)
    speaking = (mine < 1.0) | (mine > n - 0.1)  # own turn, plus the overlap before it
    syllables = 0.5 * (1.0 + np.sin(2 * np.pi * (4.0 + 0.3 * c) * t))
    return out * syllables * speaking


#: The kinds of synthetic session.
KINDS = ("band", "speech")


def render_synthetic(n_channels: int, sample_rate_hz: float, seconds: float,
                     seed: int = 1, kind: str = "band") -> tuple[np.ndarray, tuple[str, ...]]:
    """``(frames, n_channels)`` float32 and the role of each channel; deterministic.
    ``kind``: ``band`` (the voices above, cycled) or ``speech`` (a panel of talkers)."""
    if n_channels < 1:
        raise ValueError("a synthetic session needs at least one channel")
    if kind not in KINDS:
        raise ValueError(f"kind = {kind!r}: use one of {', '.join(KINDS)}")
    fs = float(sample_rate_hz)
    n = max(1, int(round(seconds * fs)))
    t = np.arange(n) / fs
    x = np.zeros((n, n_channels), dtype=np.float32)
    roles = []
    for c in range(n_channels):
        role, level_db = VOICES[c % len(VOICES)] if kind == "band" else ("speech", -20.0)
        rng = np.random.default_rng([seed, c])
        if kind == "band":
            v = _voice(role, t, fs, rng)
        else:  # talkers' mics differ by up to +-6 dB, as a real panel's do
            v = _panel_voice(c, n_channels, t, fs)
            level_db += float(rng.uniform(-6.0, 6.0))
        peak = np.max(np.abs(v)) or 1.0
        # cycled copies differ in level so duplicated roles are not identical
        gain = 10.0 ** ((level_db - 3.0 * (c // len(VOICES))) / 20.0) / peak
        x[:, c] = (v * gain).astype(np.float32)
        roles.append(role)
    return x, tuple(roles)


class SyntheticSource:
    """Serve a synthetic session block by block, looping a rendered ``loop_s`` seconds."""

    def __init__(self, n_channels: int, sample_rate_hz: float, duration_s: float,
                 seed: int = 1, loop_s: float = 8.0):
        self.n_channels = int(n_channels)
        self.sample_rate_hz = float(sample_rate_hz)
        self.total_frames = int(round(duration_s * sample_rate_hz))
        self.loop, self.roles = render_synthetic(
            n_channels, sample_rate_hz, min(loop_s, duration_s), seed)
        self.pos = 0

    def read(self, out: np.ndarray) -> int:
        """Fill ``out`` (``(frames, n_channels)`` float32); return frames filled (0 = end)."""
        n = min(out.shape[0], self.total_frames - self.pos)
        done = 0
        L = self.loop.shape[0]
        while done < n:
            s = (self.pos + done) % L
            k = min(n - done, L - s)
            out[done:done + k] = self.loop[s:s + k]
            done += k
        self.pos += n
        return n
