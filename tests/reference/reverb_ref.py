"""Slow, obvious reference of the FDN reverb (``edgemix.dsp.reverb``), in plain Python.

Written from the equations, not from the kernel:
* each delay line is its own ring of exactly ``d_i`` samples (read the oldest, write the
  newest), where the kernel shares one power-of-two ring with a mask;
* the feedback is ``scipy.linalg.hadamard(16) @ y / 4`` (a matrix product), where the kernel
  runs a fast Walsh-Hadamard transform;
* the absorption pole is found by root-finding ``|H(e^jw)| = g^2`` with ``brentq``, where the
  kernel uses the closed form;
* the input high-pass comes from ``scipy.signal.butter(2, ..., 'highpass')`` (bilinear with
  pre-warping: the same section as the RBJ cookbook's with Q = 1/sqrt(2)).

Only the design data (line lengths, diffuser lengths and gains, tap and injection vectors,
the control period and glide times) are taken from the module under test.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.signal

from edgemix import params as P
from edgemix.dsp import reverb as R


def _pole_for(g: float, w: float) -> float:
    """The one-pole low-pass pole p in [0, 1) with |(1-p)/(1-p e^-jw)| = g^2 / g = g."""
    def f(p):
        return (1.0 - p) ** 2 / (1.0 - 2.0 * p * math.cos(w) + p * p) - g * g
    return scipy.optimize.brentq(f, 0.0, 1.0 - 1e-15, xtol=1e-16, rtol=8.9e-16, maxiter=500)


def absorption(delays, decay_s, damping_hz, fs):
    """(b, p) per line: H_i(z) = b_i / (1 - p_i z^-1), DC gain 10^(-3 d_i / (fs T60))."""
    w = 2.0 * math.pi * min(damping_hz, R.MAX_DAMPING_FRACTION * fs) / fs
    b, p = [], []
    for d in delays:
        g = 10.0 ** (-3.0 * d / (fs * decay_s))
        pole = _pole_for(g, w)
        b.append(g * (1.0 - pole))
        p.append(pole)
    return b, p


def _glide(cur, target, a):
    lc, lt = math.log(cur), math.log(target)
    if abs(lt - lc) < 1e-9:
        return target
    return math.exp(lc + a * (lt - lc))


def reverb_reference(send, fs, schedule):
    """Return ``(2, frames)`` float64 for ``send`` ``(n_in, frames)``.

    ``schedule`` is a list of ``(start_sample, master_array)``: the master parameters in
    force from that sample on (read, like the kernel, only at control ticks).
    """
    send = np.asarray(send, dtype=np.float64)
    n_in, frames = send.shape
    delays = [int(d) for d in R.line_delays(fs)]
    apd = [int(m) for m in R.allpass_delays(fs)]
    apg = list(R.AP_GAINS)
    mix = R.mix_vectors()
    tap_l, tap_r = mix[R.M_TAP_L], mix[R.M_TAP_R]
    inj = [mix[R.M_IN_MONO]] if n_in == 1 else [mix[R.M_IN_L], mix[R.M_IN_R]]
    H = scipy.linalg.hadamard(R.N_LINES).astype(np.float64) / math.sqrt(R.N_LINES)
    n_lines = len(delays)
    d_min = min(delays)

    a_glide = 1.0 - math.exp(-R.TICK * 1000.0 / (R.GLIDE_MS * fs))
    a_pre = 1.0 - math.exp(-1000.0 / (R.PREDELAY_GLIDE_MS * fs))
    a_ret = 1.0 - math.exp(-1000.0 / (P.MASTER_SPECS["reverb_return_db"].smoothing_ms * fs))

    lines = [[0.0] * d for d in delays]
    ap_rings = [[[0.0] * m for m in apd] for _ in range(n_in)]
    history = [[] for _ in range(n_in)]          # high-passed send, all of it
    hp_z = [[0.0, 0.0] for _ in range(n_in)]
    y = [0.0] * n_lines
    out = np.zeros((2, frames))

    primed = False
    decay = damp = lowcut = pd = ret = pd_t = ret_t = 0.0
    # coefficients: values at the previous tick and at this one; in between, sample k
    # (0-based) after a tick uses old + (k + 1) / TICK * (new - old)
    b_old = p_old = b_new = p_new = None
    hp_old = hp_new = None

    def master_at(t):
        m = schedule[0][1]
        for start, arr in schedule:
            if start <= t:
                m = arr
        return m

    def highpass(fc):
        b, a = scipy.signal.butter(2, fc, "highpass", fs=fs)
        return np.concatenate([b / a[0], a[1:] / a[0]])

    for t in range(frames):
        if t % R.TICK == 0:
            m = master_at(t)
            T, fd, fl = m[P.MS.reverb_decay_s], m[P.MS.reverb_damping_hz], m[P.MS.reverb_lowcut_hz]
            pd_t = max(m[P.MS.reverb_predelay_ms] * fs / 1000.0 - d_min, 0.0)
            rdb = m[P.MS.reverb_return_db]
            ret_t = 0.0 if rdb <= P.OFF_DB else 10.0 ** (rdb / 20.0)
            if not primed:
                decay, damp, lowcut, pd, ret = T, fd, fl, pd_t, ret_t
                b_new, p_new = absorption(delays, decay, damp, fs)
                hp_new = highpass(lowcut)
                primed = True
            else:
                if decay != T or damp != fd:
                    decay, damp = _glide(decay, T, a_glide), _glide(damp, fd, a_glide)
                if lowcut != fl:
                    lowcut = _glide(lowcut, fl, a_glide)
            b_old, p_old, hp_old = b_new, p_new, hp_new
            b_new, p_new = absorption(delays, decay, damp, fs)
            hp_new = highpass(lowcut)
        frac_tick = (t % R.TICK + 1) / R.TICK
        bcoef = [o + frac_tick * (nw - o) for o, nw in zip(b_old, b_new)]
        pcoef = [o + frac_tick * (nw - o) for o, nw in zip(p_old, p_new)]
        hp = hp_old + frac_tick * (hp_new - hp_old)
        hb, ha = hp[:3], np.concatenate([[1.0], hp[3:]])
        pd += min(max(a_pre * (pd_t - pd), -R.PREDELAY_SLEW), R.PREDELAY_SLEW)
        ret += a_ret * (ret_t - ret)

        # line outputs through the absorption filters
        for i in range(n_lines):
            r = lines[i][t % delays[i]]
            v = bcoef[i] * r + pcoef[i] * y[i]
            y[i] = 0.0 if abs(v) < 1e-30 else v
        yv = np.array(y)
        fb = H @ yv

        for c in range(n_in):
            x = send[c, t]
            if not abs(x) < 1e6:
                x = 0.0
            z = hp_z[c]
            xh = hb[0] * x + z[0]
            z[0] = hb[1] * x - ha[1] * xh + z[1]
            z[1] = hb[2] * x - ha[2] * xh
            history[c].append(xh)
            k = int(math.floor(pd))
            f = pd - k

            def past(j):
                return history[c][t - j] if t - j >= 0 else 0.0
            s = (1.0 - f) * past(k) + f * past(k + 1)
            for a, m_ap in enumerate(apd):
                ring = ap_rings[c][a]
                wd = ring[t % m_ap]
                wn = s + apg[a] * wd
                ring[t % m_ap] = wn
                s = wd - apg[a] * wn
            fb = fb + inj[c] * s

        for i in range(n_lines):
            lines[i][t % delays[i]] = fb[i]
        out[0, t] = ret * float(tap_l @ yv)
        out[1, t] = ret * float(tap_r @ yv)
    return out


def predicted_rt60(fs, decay_s, damping_hz, f_hz):
    """RT60 at ``f_hz`` (scalar or array) predicted from the loop filters: energy lost per
    sample, averaged over the whole delay memory (the mode-decay rate of an FDN with an
    orthogonal matrix, Jot & Chaigne 1991): T = 60 sum(d_i) / (fs sum(-20 log10 |H_i(f)|))."""
    delays = R.line_delays(fs)
    b, p = absorption(delays, decay_s, damping_hz, fs)
    w = 2.0 * np.pi * np.asarray(f_hz, dtype=np.float64) / fs
    loss_db = sum(-20.0 * np.log10(np.abs(bi / (1.0 - pi * np.exp(-1j * w))))
                  for bi, pi in zip(b, p))
    return 60.0 * float(delays.sum()) / (fs * loss_db)


def predicted_band_rt60(fs, decay_s, damping_hz, fc, band_weight, lo_db=-5.0, hi_db=-35.0):
    """T30 that Schroeder integration should find in a band whose power response is
    ``band_weight(f)``, if the reverb's spectrum is flat and each frequency decays at
    ``predicted_rt60``: EDC(t) = sum_f w(f) T(f) / k exp(-k t / T(f)), k = 6 ln 10."""
    f = np.linspace(20.0, 0.49 * fs, 2000)
    w = band_weight(f)
    T = predicted_rt60(fs, decay_s, damping_hz, f)
    k = 6.0 * math.log(10.0)
    t = np.linspace(0.0, 2.0 * decay_s, 4000)
    edc = (w * T / k * np.exp(-k * t[:, None] / T)).sum(axis=1)
    edc_db = 10.0 * np.log10(edc / edc[0])
    sel = (edc_db <= lo_db) & (edc_db >= hi_db)
    return -60.0 / np.polyfit(t[sel], edc_db[sel], 1)[0]
