"""RBJ-cookbook biquads: coefficient formulas and the per-sample section.

Coefficients follow Robert Bristow-Johnson, "Cookbook formulae for audio EQ biquad filter
coefficients" (the W3C Audio EQ Cookbook text), normalised so ``a0 = 1``, stored as
``(b0, b1, b2, a1, a2)``.  The section runs in transposed direct form II in float64: the
canonical choice for floating point (two state variables, good noise behaviour at low
corner frequencies relative to the sample rate).

The filters of a channel strip are recomputed only when a parameter moves (at the control
rate, see ``strip.py``); each section here is a pure function of its inputs.
"""
from __future__ import annotations

import math

import numpy as np

from edgemix.dsp._jit import kernel

# Filter kinds (integers so they can be stored in arrays and read by kernels).
HIGHPASS = 0
LOWPASS = 1
PEAK = 2
LOWSHELF = 3
HIGHSHELF = 4
KINDS = {"highpass": HIGHPASS, "lowpass": LOWPASS, "peak": PEAK,
         "lowshelf": LOWSHELF, "highshelf": HIGHSHELF}

#: Q of the two sections of a 4th-order Butterworth high-pass: 1 / (2 cos(k pi / 8)),
#: k = 1, 3 (poles of the Butterworth polynomial), so the cascade is -3 dB at the corner.
BUTTERWORTH4_Q = (1.0 / (2.0 * math.cos(math.pi / 8.0)), 1.0 / (2.0 * math.cos(3.0 * math.pi / 8.0)))
#: Q of a 2nd-order Butterworth section.
BUTTERWORTH2_Q = 1.0 / math.sqrt(2.0)

#: Highest corner as a fraction of the sample rate: above ~0.49 fs the bilinear warping makes
#: the cookbook sections degenerate (sin(w0) -> 0), so corners are clamped there.
MAX_CORNER_FRACTION = 0.49


@kernel
def _rbj_coefficients(kind, f0_hz, gain_db, q, fs_hz, out, offset):
    """Write normalised ``(b0, b1, b2, a1, a2)`` of one RBJ section into ``out[offset:offset+5]``.

    ``gain_db`` is used by the peak and shelf kinds only.  Shelves use the cookbook's Q form
    of alpha (``alpha = sin(w0) / (2 Q)``), so a shelf Q of 1/sqrt(2) is the steepest
    monotonic shelf (S = 1).
    """
    f0 = min(max(f0_hz, 1e-3), MAX_CORNER_FRACTION * fs_hz)
    w0 = 2.0 * math.pi * f0 / fs_hz
    cw = math.cos(w0)
    alpha = math.sin(w0) / (2.0 * q)
    if kind == HIGHPASS:
        b0 = (1.0 + cw) * 0.5
        b1 = -(1.0 + cw)
        b2 = b0
        a0 = 1.0 + alpha
        a1 = -2.0 * cw
        a2 = 1.0 - alpha
    elif kind == LOWPASS:
        b0 = (1.0 - cw) * 0.5
        b1 = 1.0 - cw
        b2 = b0
        a0 = 1.0 + alpha
        a1 = -2.0 * cw
        a2 = 1.0 - alpha
    elif kind == PEAK:
        a = 10.0 ** (gain_db / 40.0)
        b0 = 1.0 + alpha * a
        b1 = -2.0 * cw
        b2 = 1.0 - alpha * a
        a0 = 1.0 + alpha / a
        a1 = -2.0 * cw
        a2 = 1.0 - alpha / a
    elif kind == LOWSHELF:
        a = 10.0 ** (gain_db / 40.0)
        tsa = 2.0 * math.sqrt(a) * alpha
        b0 = a * ((a + 1.0) - (a - 1.0) * cw + tsa)
        b1 = 2.0 * a * ((a - 1.0) - (a + 1.0) * cw)
        b2 = a * ((a + 1.0) - (a - 1.0) * cw - tsa)
        a0 = (a + 1.0) + (a - 1.0) * cw + tsa
        a1 = -2.0 * ((a - 1.0) + (a + 1.0) * cw)
        a2 = (a + 1.0) + (a - 1.0) * cw - tsa
    else:  # HIGHSHELF
        a = 10.0 ** (gain_db / 40.0)
        tsa = 2.0 * math.sqrt(a) * alpha
        b0 = a * ((a + 1.0) + (a - 1.0) * cw + tsa)
        b1 = -2.0 * a * ((a - 1.0) + (a + 1.0) * cw)
        b2 = a * ((a + 1.0) + (a - 1.0) * cw - tsa)
        a0 = (a + 1.0) - (a - 1.0) * cw + tsa
        a1 = 2.0 * ((a - 1.0) - (a + 1.0) * cw)
        a2 = (a + 1.0) - (a - 1.0) * cw - tsa
    inv = 1.0 / a0
    out[offset] = b0 * inv
    out[offset + 1] = b1 * inv
    out[offset + 2] = b2 * inv
    out[offset + 3] = a1 * inv
    out[offset + 4] = a2 * inv


@kernel
def _set_identity(out, offset):
    """A pass-through section (used for the unused half of a 12 dB/oct high-pass)."""
    out[offset] = 1.0
    out[offset + 1] = 0.0
    out[offset + 2] = 0.0
    out[offset + 3] = 0.0
    out[offset + 4] = 0.0


@kernel
def _biquad_run(x, y, c, z):
    """Filter ``x`` into ``y`` through one TDF-II section ``c`` with state ``z`` (2,)."""
    b0, b1, b2, a1, a2 = c[0], c[1], c[2], c[3], c[4]
    s1, s2 = z[0], z[1]
    for n in range(x.shape[0]):
        xn = x[n]
        yn = b0 * xn + s1
        s1 = b1 * xn - a1 * yn + s2
        s2 = b2 * xn - a2 * yn
        y[n] = yn
    z[0] = s1
    z[1] = s2


def coefficients(kind: str, f0_hz: float, fs_hz: float, q: float = BUTTERWORTH2_Q,
                 gain_db: float = 0.0) -> np.ndarray:
    """Normalised ``(b0, b1, b2, a1, a2)`` of one RBJ section (validating its arguments)."""
    if kind not in KINDS:
        raise ValueError(f"unknown filter kind {kind!r}: use one of {', '.join(KINDS)}")
    if not (fs_hz > 0 and f0_hz > 0 and q > 0):
        raise ValueError("sample rate, frequency and Q must be positive")
    out = np.empty(5)
    _rbj_coefficients(KINDS[kind], float(f0_hz), float(gain_db), float(q), float(fs_hz), out, 0)
    return out


def ba(coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(b, a)`` polynomials of a section, as ``scipy.signal`` takes them."""
    return np.array(coef[:3]), np.array([1.0, coef[3], coef[4]])


class Biquad:
    """One section on a mono signal, streaming (state kept between calls).

    Any thread may call, one at a time; ``process`` allocates its output.
    """

    def __init__(self, kind: str, f0_hz: float, fs_hz: float, q: float = BUTTERWORTH2_Q,
                 gain_db: float = 0.0):
        self.coef = coefficients(kind, f0_hz, fs_hz, q, gain_db)
        self.state = np.zeros(2)

    def process(self, x) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError("Biquad.process takes a 1-D signal")
        y = np.empty_like(x)
        _biquad_run(x, y, self.coef, self.state)
        return y

    def reset(self) -> None:
        self.state[:] = 0.0
