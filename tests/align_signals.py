"""Synthetic mic pairs with exact truth, for the alignment tests.

Two mics of one source: ``mic = polarity * delay(colour(source), d) + room + bleed + noise``.

* **colour** is a zero-phase magnitude response (a tilt, a shelf and a resonance, random
  per mic), so the delay is exactly the one planted: a minimum-phase EQ would add its own
  group delay and make the truth a matter of definition;
* **delay** is a fractional delay done exactly in the frequency domain;
* **room**: discrete early reflections (later than the direct sound) and a diffuse tail;
* **bleed**: another source reaching both mics at other delays (so it correlates between
  them at a different lag, as a hi-hat in two snare mics does), and independent noise, at
  a stated signal-to-(bleed + noise) ratio.
"""
from __future__ import annotations

import hashlib
import os
import pathlib

import numpy as np
from scipy import fft as sfft
from scipy import signal as ssig

FS = 48000.0


def _fft_len(n):
    return sfft.next_fast_len(int(n), real=True)


def delay(x, d_samples, n_out=None):
    """``x`` delayed by ``d_samples`` (fractional, >= 0), band-limited and exact."""
    n = len(x) if n_out is None else n_out
    m = _fft_len(len(x) + int(np.ceil(abs(d_samples))) + 64)
    X = sfft.rfft(x, m)
    w = 2 * np.pi * np.arange(len(X)) / m
    return sfft.irfft(X * np.exp(-1j * w * d_samples), m)[:n]


def colour(x, rng, strength=1.0):
    """A random zero-phase colouration: tilt, low/high shelf, a resonance (dB ~ +/-9)."""
    m = _fft_len(len(x))
    X = sfft.rfft(x, m)
    f = sfft.rfftfreq(m, 1 / FS)
    lf = np.clip(np.log2(np.maximum(f, 20.0) / 1000.0), -4.0, 4.0)
    db = strength * (rng.uniform(-1.5, 1.5) * lf
                     + rng.uniform(-6, 6) / (1 + np.exp(-(lf - rng.uniform(-2, 3)) * 3))
                     + rng.uniform(-9, 9) * np.exp(-0.5 * ((lf - rng.uniform(-2, 3)) / 0.3) ** 2))
    return sfft.irfft(X * 10 ** (db / 20), m)[:len(x)]


def lowpass(x, fc, order=4):
    """Zero-phase Butterworth-shaped magnitude low-pass."""
    m = _fft_len(len(x))
    f = sfft.rfftfreq(m, 1 / FS)
    return sfft.irfft(sfft.rfft(x, m) / np.sqrt(1 + (f / fc) ** (2 * order)), m)[:len(x)]


def highpass(x, fc, order=2):
    m = _fft_len(len(x))
    f = np.maximum(sfft.rfftfreq(m, 1 / FS), 1e-3)
    return sfft.irfft(sfft.rfft(x, m) / np.sqrt(1 + (fc / f) ** (2 * order)), m)[:len(x)]


def room(x, rng, drr_db=3.0, rt60_s=0.5):
    """Early reflections 2..25 ms after the direct sound and a diffuse tail, at a
    direct-to-reverberant ratio of ``drr_db``."""
    n_ir = int(rt60_s * FS)
    ir = np.zeros(n_ir)
    for _ in range(6):
        ir[int(rng.uniform(0.002, 0.025) * FS)] += rng.uniform(0.2, 0.6)  # rigid walls: no inversion
    t = np.arange(n_ir) / FS
    tail = rng.standard_normal(n_ir) * np.exp(-6.9 * t / rt60_s)
    tail[:int(0.01 * FS)] = 0.0
    ir += tail * 0.3
    ir *= 10 ** (-drr_db / 20) / np.sqrt(np.sum(ir ** 2))
    return ssig.oaconvolve(x, ir)[:len(x)]


def _hits(n, rng, period_s, jitter=0.25):
    out, t = [], rng.uniform(0.0, period_s)
    while t < n / FS:
        out.append(int(t * FS))
        t += period_s * rng.uniform(1 - jitter, 1 + jitter)
    return out


def snare(n, rng):
    """Noise bursts (the wires) over a 180-250 Hz body, hits every ~0.3 s."""
    x = np.zeros(n)
    t = np.arange(int(0.3 * FS)) / FS
    for h in _hits(n, rng, 0.3):
        k = min(len(t), n - h)
        f0 = rng.uniform(180, 250)
        body = np.sin(2 * np.pi * f0 * t[:k]) * np.exp(-t[:k] / 0.05)
        wires = rng.standard_normal(k) * np.exp(-t[:k] / rng.uniform(0.06, 0.12))
        x[h:h + k] += rng.uniform(0.5, 1.0) * (0.6 * body + wires)
    return x


def cymbals(n, rng):
    """Long high-passed noise washes (ride, crash, hats)."""
    x = np.zeros(n)
    t = np.arange(int(1.2 * FS)) / FS
    for h in _hits(n, rng, 0.5):
        k = min(len(t), n - h)
        x[h:h + k] += rng.uniform(0.2, 0.6) * rng.standard_normal(k) * np.exp(-t[:k] / 0.4)
    return highpass(x, 3000.0)


def _wavetable(rng, n_harm, decay, size=2048):
    """One period with ``n_harm`` harmonics of amplitude ``decay(j)`` at random phases."""
    ph = np.arange(size) / size * 2 * np.pi
    tab = np.zeros(size)
    for j in range(1, n_harm + 1):
        tab += decay(j) * np.sin(j * ph + rng.uniform(0, 2 * np.pi))
    return tab


def _play(tab, f0, k):
    """``k`` samples of the wavetable at ``f0`` Hz (linear interpolation)."""
    pos = (np.arange(k) * (f0 * len(tab) / FS)) % len(tab)
    i = pos.astype(np.int64)
    frac = pos - i
    return tab[i] * (1 - frac) + tab[(i + 1) % len(tab)] * frac


def guitar(n, rng):
    """Plucked harmonic notes (82..660 Hz fundamentals, rich overtones), ~4 per second."""
    x = np.zeros(n)
    t = np.arange(int(0.6 * FS)) / FS
    for h in _hits(n, rng, 0.25):
        k = min(len(t), n - h)
        f0 = 82.4 * 2 ** (rng.integers(0, 36) / 12)
        amps = rng.uniform(0.3, 1.0, 30)
        note = _play(_wavetable(rng, min(29, int(12000 / f0)), lambda j: amps[j] / j), f0, k)
        x[h:h + k] += note * np.exp(-t[:k] / rng.uniform(0.2, 0.5)) \
            + 0.05 * rng.standard_normal(k) * np.exp(-t[:k] / 0.01)
    return x


def kick(n, rng, beater=True):
    """A pitch-dropping thump (120 -> 50 Hz), hits every ~0.5 s; ``beater`` adds the click
    that a mic inside the drum hears."""
    x = np.zeros(n)
    t = np.arange(int(0.5 * FS)) / FS
    for h in _hits(n, rng, 0.5):
        k = min(len(t), n - h)
        f = 50 + 70 * np.exp(-t[:k] / 0.03)
        phase = 2 * np.pi * np.cumsum(f) / FS
        thump = np.sin(phase) * np.exp(-t[:k] / rng.uniform(0.12, 0.25))
        x[h:h + k] += rng.uniform(0.6, 1.0) * thump
        if beater:
            c = min(k, int(0.004 * FS))
            x[h:h + c] += 0.3 * highpass(rng.standard_normal(c), 2000.0) * np.exp(
                -np.arange(c) / (0.001 * FS))
    return x


def bass(n, rng):
    """Bass notes (41..110 Hz), harmonics to ~3 kHz, legato, ~2 per second."""
    x = np.zeros(n)
    pos = 0
    while pos < n:
        k = min(n - pos, int(rng.uniform(0.3, 0.7) * FS))
        t = np.arange(k) / FS
        f0 = 41.2 * 2 ** (rng.integers(0, 17) / 12)
        note = _play(_wavetable(rng, int(3000 / f0), lambda j: 0.8 ** (j - 1)), f0, k)
        x[pos:pos + k] += note * np.minimum(1.0, t / 0.005) * np.exp(-t / 1.0)
        pos += k
    return x


def _norm(x):
    return x / max(np.sqrt(np.mean(x ** 2)), 1e-12)


def _mic(src, d, rng, snr_db, bleed, bleed_d, inverted=False, room_drr=None, col=1.0,
         shape=None):
    """One mic: the source delayed by d, coloured, optionally roomy; bleed and noise at
    ``snr_db`` below the mic's own signal."""
    s = colour(src, rng, col) if shape is None else shape(colour(src, rng, col))
    if room_drr is not None:
        s = s + room(s, rng, room_drr)
    s = _norm(delay(s, d))
    if inverted:
        s = -s
    interferer = 0.7 * _norm(delay(colour(bleed, rng), bleed_d)) \
        + 0.7 * _norm(rng.standard_normal(len(src)))
    return s + _norm(interferer) * 10 ** (-snr_db / 20)


CASES = ("snare_top_bottom", "overhead_snare", "guitar_close_room", "kick_in_out",
         "bass_di_amp")
BROADBAND = CASES[:3]
NARROWBAND = CASES[3:]


_CACHE = pathlib.Path(__file__).resolve().parents[1] / ".cache" / "align_signals"


def _cached(fn):
    """Keep each rendered pair under ``.cache/`` keyed by this file's source and the
    arguments (rendering is most of the tests' time; a rerun reads it back)."""
    key = hashlib.sha256(pathlib.Path(__file__).read_bytes()).hexdigest()[:12]

    def wrapper(*args, **kw):
        tag = hashlib.sha256(repr((fn.__name__, args, sorted(kw.items()))).encode())
        path = _CACHE / f"{key}-{tag.hexdigest()[:16]}.npz"
        try:
            with np.load(path) as z:
                return tuple(z[f"v{i}"][()] for i in range(len(z.files)))
        except (OSError, ValueError, KeyError):
            pass
        out = fn(*args, **kw)
        try:
            _CACHE.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **{f"v{i}": np.asarray(v) for i, v in enumerate(out)})
            tmp.replace(path)
        except OSError:
            pass
        return out
    return wrapper


@_cached
def pair(case, seed, seconds=4.0, snr_db=10.0):
    """``(a, b, delay_samples, inverted)``: mic b is ``delay_samples`` late against mic a."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    if case == "snare_top_bottom":
        src, other = snare(n, rng), cymbals(n, rng)
        d, inv, kw = rng.uniform(3, 60), True, {}
    elif case == "overhead_snare":
        src, other = snare(n, rng), cymbals(n, rng) + 0.5 * kick(n, rng)
        d, inv, kw = rng.uniform(100, 250), False, {"room_drr": 8.0}
    elif case == "guitar_close_room":
        src, other = guitar(n, rng), snare(n, rng)
        d, inv, kw = rng.uniform(240, 960), bool(rng.integers(2)), {"room_drr": 6.0}
    elif case == "kick_in_out":
        src, other = kick(n, rng), snare(n, rng)
        d, inv = rng.uniform(20, 100), bool(rng.integers(2))
    elif case == "bass_di_amp":
        src, other = bass(n, rng), kick(n, rng)
        d, inv = rng.uniform(50, 400), bool(rng.integers(2))
        kw = {"shape": lambda s: lowpass(np.tanh(1.5 * _norm(s)), 2500.0)}
    else:
        raise ValueError(case)
    src = src + 1e-9 * rng.standard_normal(n)
    d = float(d)
    if case == "kick_in_out":  # the mic outside the drum hears no beater
        kw = {"shape": lambda s: lowpass(s, 400.0)}
    a = _mic(src, 0.0, rng, snr_db, other, rng.uniform(0, 100))
    b = _mic(src, d, rng, snr_db, other, rng.uniform(0, 100), inverted=inv, **kw)
    return a.astype(np.float32), b.astype(np.float32), d, inv


@_cached
def unrelated(seed, seconds=4.0, bleed_db=-10.0):
    """Two mics of different sources, each hearing the other at ``bleed_db``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    kinds = [snare, guitar, bass, kick, cymbals]
    i, j = rng.choice(len(kinds), 2, replace=False)
    s1, s2 = _norm(kinds[i](n, rng)), _norm(kinds[j](n, rng))
    g = 10 ** (bleed_db / 20)
    a = _norm(colour(s1, rng)) + g * _norm(colour(delay(s2, rng.uniform(50, 500)), rng))
    b = _norm(colour(s2, rng)) + g * _norm(colour(delay(s1, rng.uniform(50, 500)), rng))
    a = a + 0.03 * _norm(rng.standard_normal(n)) * np.sqrt(np.mean(a ** 2))
    b = b + 0.03 * _norm(rng.standard_normal(n)) * np.sqrt(np.mean(b ** 2))
    return a.astype(np.float32), b.astype(np.float32)
