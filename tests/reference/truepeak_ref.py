"""Slow, obvious true-peak references (plain numpy, whole signals, no state).

* :func:`estimates_ref` -- the per-sample estimate the streaming kernel returns, written
  as the annex describes it: zero-stuff by L, filter with the prototype ``h[L k + p]``,
  absolute value; plus the sample itself ``raw_tap`` frames back.
* :func:`true_peak_resampled_db` -- an independent oracle: scipy's polyphase resampler
  (``resample_poly``, its own Kaiser-windowed FIR), ``up`` times.
* :func:`true_peak_fft_db` -- band-limited (periodic sinc) interpolation by FFT of the
  signal padded with silence on both sides: exact for content below Nyquist.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import resample, resample_poly


def prototype_from_phases(phases: np.ndarray) -> np.ndarray:
    """``(L, taps)`` printed phases -> the prototype ``h`` with ``h[L k + p] = phases[p, k]``."""
    phases = np.asarray(phases, dtype=np.float64)
    L, taps = phases.shape
    h = np.zeros(L * taps)
    for p in range(L):
        for k in range(taps):
            h[L * k + p] = phases[p, k]
    return h


def estimates_ref(x: np.ndarray, phases: np.ndarray, raw_tap: int) -> np.ndarray:
    """Per input sample ``n``: ``max(|x[n - raw_tap]|, |y[L n + p]| for p < L)`` where ``y``
    is ``x`` zero-stuffed by ``L`` and filtered by the prototype (history before 0 = 0)."""
    x = np.asarray(x, dtype=np.float64)
    L = np.asarray(phases).shape[0]
    h = prototype_from_phases(phases)
    stuffed = np.zeros(L * x.size)
    stuffed[::L] = x
    y = np.convolve(stuffed, h)[: L * x.size]
    est = np.abs(y).reshape(x.size, L).max(axis=1)
    raw = np.zeros(x.size)
    raw[raw_tap:] = np.abs(x[: x.size - raw_tap])
    return np.maximum(est, raw)


def true_peak_resampled_db(x: np.ndarray, up: int = 8) -> float:
    """Largest ``|x|`` of ``x`` (any shape, frames first) resampled ``up`` times, dB."""
    y = resample_poly(np.asarray(x, dtype=np.float64), up, 1, axis=0)
    return float(20.0 * np.log10(np.abs(y).max()))


def true_peak_fft_db(x: np.ndarray, up: int = 16) -> float:
    """Largest ``|x|`` of the band-limited interpolation ``up`` times, dB (frames first)."""
    x = np.asarray(x, dtype=np.float64)
    pad = np.concatenate([np.zeros_like(x), x, np.zeros_like(x)], axis=0)
    y = resample(pad, pad.shape[0] * up, axis=0)
    return float(20.0 * np.log10(np.abs(y).max()))
