"""Slow, obvious references for the channel strip: plain Python, one sample at a time.

Written from the sources, not from the kernels: the RBJ cookbook for coefficients, the
Giannoulis-Massberg-Reiss (2012) equations for the compressor, the constant-power pan law.
Parameters are static here (the console snaps every parameter at a reset), so no glide.
"""
from __future__ import annotations

import math

import numpy as np

from tests.reference.delay_ref import delayed


def rbj(kind, f0, fs, q, gain_db=0.0):
    """RBJ Audio EQ Cookbook: returns (b, a) with a[0] = 1."""
    A = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * f0 / fs
    cs, sn = math.cos(w0), math.sin(w0)
    al = sn / (2 * q)
    if kind == "highpass":
        b = [(1 + cs) / 2, -(1 + cs), (1 + cs) / 2]
        a = [1 + al, -2 * cs, 1 - al]
    elif kind == "lowpass":
        b = [(1 - cs) / 2, 1 - cs, (1 - cs) / 2]
        a = [1 + al, -2 * cs, 1 - al]
    elif kind == "peak":
        b = [1 + al * A, -2 * cs, 1 - al * A]
        a = [1 + al / A, -2 * cs, 1 - al / A]
    elif kind == "lowshelf":
        r = 2 * math.sqrt(A) * al
        b = [A * ((A + 1) - (A - 1) * cs + r), 2 * A * ((A - 1) - (A + 1) * cs),
             A * ((A + 1) - (A - 1) * cs - r)]
        a = [(A + 1) + (A - 1) * cs + r, -2 * ((A - 1) + (A + 1) * cs),
             (A + 1) + (A - 1) * cs - r]
    elif kind == "highshelf":
        r = 2 * math.sqrt(A) * al
        b = [A * ((A + 1) + (A - 1) * cs + r), -2 * A * ((A - 1) + (A + 1) * cs),
             A * ((A + 1) + (A - 1) * cs - r)]
        a = [(A + 1) - (A - 1) * cs + r, 2 * ((A - 1) - (A + 1) * cs),
             (A + 1) - (A - 1) * cs - r]
    else:
        raise ValueError(kind)
    return np.array(b) / a[0], np.array(a) / a[0]


def hpf_sections(f0, fs, slope_db_oct):
    """Butterworth high-pass as RBJ sections: Q from the pole angles of order 2 or 4."""
    if slope_db_oct == 24:
        qs = [1 / (2 * math.cos(math.pi / 8)), 1 / (2 * math.cos(3 * math.pi / 8))]
    else:
        qs = [1 / math.sqrt(2)]
    return [rbj("highpass", f0, fs, q) for q in qs]


def lfilter_df1(b, a, x):
    """Direct form I difference equation, the textbook way."""
    y = np.zeros(len(x))
    x1 = x2 = y1 = y2 = 0.0
    for n, xn in enumerate(x):
        yn = b[0] * xn + b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2
        x2, x1, y2, y1 = x1, xn, y1, yn
        y[n] = yn
    return y


def comp_static_db(x_db, thr, ratio, knee):
    """Giannoulis et al. 2012, eq. (4): output level for input level (dB)."""
    if 2 * (x_db - thr) < -knee:
        return x_db
    if 2 * abs(x_db - thr) <= knee:
        return x_db + (1 / ratio - 1) * (x_db - thr + knee / 2) ** 2 / (2 * knee)
    return thr + (x_db - thr) / ratio


def compressor(x, fs, thr, ratio, knee, attack_ms, release_ms, makeup_db, rms=False, rms_ms=10.0):
    """Feed-forward compressor, log-domain smooth branching detector (eq. 17)."""
    aa = math.exp(-1 / (attack_ms * 1e-3 * fs))
    ar = math.exp(-1 / (release_ms * 1e-3 * fs))
    am = math.exp(-1 / (rms_ms * 1e-3 * fs))
    yl = 0.0
    ms = 0.0
    out = np.zeros(len(x))
    gr = np.zeros(len(x))
    for n, xn in enumerate(x):
        if rms:
            ms = am * ms + (1 - am) * xn * xn
            lvl = 10 * math.log10(ms) if ms > 0 else -400.0
        else:
            lvl = 20 * math.log10(abs(xn)) if xn != 0 else -400.0
        xl = lvl - comp_static_db(lvl, thr, ratio, knee) if ratio > 1 else 0.0
        if xl > yl:
            yl = aa * yl + (1 - aa) * xl
        else:
            yl = ar * yl + (1 - ar) * xl
        gr[n] = yl
        out[n] = xn * 10 ** ((makeup_db - yl) / 20)
    return out, gr


def pan_gains(pan):
    """Constant-power (sin/cos) pan law, -3 dB at centre."""
    th = (pan + 1) * math.pi / 4
    return math.cos(th), math.sin(th)


def strip(x, fs, p):
    """One channel through the input delay, trim, polarity, HPF, EQ, compressor, fader
    and pan.

    ``p`` is a dict of parameter values (the gate is left out here: tested on its own).
    Returns (left, right, pre_fader).
    """
    s = np.asarray(x, dtype=np.float64)
    if p.get("delay_ms", 0.0):
        s = delayed(s, p["delay_ms"] * 1e-3 * fs)
    s = s * 10 ** (p["trim_db"] / 20)
    if p["polarity_invert"]:
        s = -s
    if p["hpf_on"]:
        for b, a in hpf_sections(p["hpf_hz"], fs, int(p["hpf_slope_db_oct"])):
            s = lfilter_df1(b, a, s)
    if p["eq_on"]:
        for band, kind in zip(range(1, 5), ("lowshelf", "peak", "peak", "highshelf")):
            b, a = rbj(kind, p[f"eq{band}_hz"], fs, p[f"eq{band}_q"], p[f"eq{band}_gain_db"])
            s = lfilter_df1(b, a, s)
    if p["comp_on"]:
        s, _ = compressor(s, fs, p["comp_threshold_db"], p["comp_ratio"], p["comp_knee_db"],
                          p["comp_attack_ms"], p["comp_release_ms"], p["comp_makeup_db"],
                          bool(p["comp_detector_rms"]), p["comp_rms_ms"])
    fader = 0.0 if p["fader_db"] <= -90 else 10 ** (p["fader_db"] / 20)
    fader *= 1 - p["mute_on"]
    gl, gr = pan_gains(p["pan"])
    return s * fader * gl, s * fader * gr, s
