"""Slow, obvious per-hop features for checking ``edgemix.features`` (whole signal at once).

Straight from the definitions in the ``edgemix.features`` docstring, with nothing
streamed: the whole K-weighted signal is filtered by ``scipy.signal.lfilter`` with
pyloudnorm's De Man K-weighting filters (a third-party derivation), every analysis frame
is cut from the zero-padded signal and transformed by ``numpy.fft.rfft``, and every
window/gate/average is recomputed from the full per-hop history with plain loops.
Only the constants (band edges, gates, time constants) are imported from the module.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.signal
from pyloudnorm.iirfilter import IIRfilter

from edgemix import features as F


def k_weight(x: np.ndarray, sr: float) -> np.ndarray:
    shelf = IIRfilter(3.99984385397, 0.7071752369554193, 1681.9744509555319, sr,
                      "high_shelf_DeMan")
    hp = IIRfilter(0.0, 0.5003270373253953, 38.13547087613982, sr, "high_pass_DeMan")
    y = scipy.signal.lfilter(shelf.b, shelf.a, x)
    return scipy.signal.lfilter(hp.b, hp.a, y)


def _db(p, floor=F.FLOOR_DB):
    return max(10.0 * math.log10(p), floor) if p > 0 else floor


def _ratio_db(a, b):
    v = 10.0 * math.log10((a + F.EPS_POWER) / (b + F.EPS_POWER))
    return min(max(v, F.FLOOR_DB), -F.FLOOR_DB)


def features_ref(x: np.ndarray, sr: float, hop_ms: float = 100.0) -> np.ndarray:
    """``x`` (frames, channels) -> ``(n_hops, channels, N_FEATURES)``: the snapshot after
    each completed hop."""
    x = np.asarray(x, dtype=np.float64)
    n, n_ch = x.shape
    hop = int(round(hop_ms * 1e-3 * sr))
    n_fft = F.fft_size_for(sr)
    m = n_fft // 2
    n_hops = n // hop
    hop_s = hop / sr
    n_st = max(1, int(round(F.SHORT_TERM_S / hop_s)))
    n_act = max(1, int(round(F.ACTIVITY_S / hop_s)))
    alpha = math.exp(-hop_s / F.ACTIVE_TAU_S)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    freq = np.arange(m + 1) * sr / n_fft
    edges = F.BAND_EDGES_HZ
    ana = (freq >= F.SPECTRUM_LO_HZ) & (freq <= min(F.SPECTRUM_HI_HZ, sr / 2))

    out = np.zeros((n_hops, n_ch, F.N_FEATURES))
    # Per-channel, per-hop raw quantities.
    kz = np.zeros((n_ch, n_hops))
    ms = np.zeros((n_ch, n_hops))
    pk = np.zeros((n_ch, n_hops))
    spec = np.zeros((n_ch, n_hops, m + 1))
    nfr = np.zeros((n_ch, n_hops))
    padded = np.concatenate([np.zeros((n_fft, n_ch)), x])
    for c in range(n_ch):
        y = k_weight(x[:, c], sr)
        for h in range(n_hops):
            seg = slice(h * hop, (h + 1) * hop)
            kz[c, h] = np.mean(y[seg] ** 2)
            ms[c, h] = np.mean(x[seg, c] ** 2)
            pk[c, h] = np.max(np.abs(x[seg, c]))
        offset = (c * m) // n_ch
        t_all = np.arange(1, n_hops * hop + 1)
        for t in t_all[(t_all + offset) % m == 0]:      # frame ends on the absolute clock
            frame = padded[t:t + n_fft, c]          # x[t - n_fft : t] with zeros before 0
            frame = (frame - frame.mean()) * win
            p = np.abs(np.fft.rfft(frame)) ** 2
            p[1:m] *= 2.0
            h = (t - 1) // hop
            spec[c, h] += p / (n_fft * np.sum(win ** 2))
            nfr[c, h] += 1

    hop_lufs = F.LUFS_OFFSET + np.array([[_db(v, F.FLOOR_DB - F.LUFS_OFFSET) for v in row]
                                         for row in kz])
    active = np.zeros((n_ch, n_hops), dtype=bool)
    ew = np.zeros(n_ch)
    ez = np.zeros(n_ch)
    es = np.zeros((n_ch, m + 1))
    for h in range(n_hops):
        band_p = np.zeros((n_ch, F.N_BANDS))
        for c in range(n_ch):
            lo_st = max(0, h - n_st + 1)
            z_st = kz[c, lo_st:h + 1].sum() / n_st        # time before the start is silence
            ms_st = ms[c, lo_st:h + 1].sum() / n_st
            pk_st = pk[c, lo_st:h + 1].max()
            lo_act = max(0, h - n_act + 1)
            ref = max(F.FLOOR_DB, hop_lufs[c, lo_act:h + 1].max())
            active[c, h] = hop_lufs[c, h] > F.ABS_GATE_LUFS and \
                hop_lufs[c, h] > ref + F.REL_GATE_LU
            if active[c, h]:
                ew[c] = alpha * ew[c] + (1 - alpha)
                ez[c] = alpha * ez[c] + (1 - alpha) * kz[c, h]
                es[c] = alpha * es[c] + (1 - alpha) * spec[c, h] / nfr[c, h]
            row = out[h, c]
            row[F.F_LST] = F.LUFS_OFFSET + _db(z_st, F.FLOOR_DB - F.LUFS_OFFSET)
            row[F.F_LACT] = (F.LUFS_OFFSET + _db(ez[c] / ew[c], F.FLOOR_DB - F.LUFS_OFFSET)
                             if ew[c] > 0 else F.FLOOR_DB)
            row[F.F_RMS] = _db(ms_st)
            row[F.F_PEAK] = _db(pk_st ** 2)
            row[F.F_CREST] = row[F.F_PEAK] - row[F.F_RMS]
            row[F.F_ACT] = active[c, lo_act:h + 1].sum() / (h + 1 - lo_act)
            p = es[c] / ew[c] if ew[c] > 0 else np.zeros(m + 1)
            total = p[ana].sum()
            for b in range(F.N_BANDS):
                sel = (freq >= edges[b]) & (freq < edges[b + 1])
                band_p[c, b] = p[sel].sum()
            if total > F.EPS_POWER:
                row[F.F_CENT] = np.sum(freq[ana] * p[ana]) / total
                cum = np.cumsum(p[ana])
                row[F.F_ROLL] = freq[ana][np.argmax(cum >= F.ROLLOFF_FRACTION * total)]
                row[F.F_LF] = p[ana & (freq < F.LF_CUTOFF_HZ)].sum() / total
                dens = np.array([band_p[c, b] / np.sum((freq >= edges[b]) & (freq < edges[b + 1]))
                                 for b in range(F.N_BANDS)]) + 1e-30
                row[F.F_FLAT] = min(1.0, math.exp(np.mean(np.log(dens))) / np.mean(dens))
                for b in range(F.N_BANDS):
                    row[F.F_BAND + b] = max(10 * math.log10(band_p[c, b] / total + 1e-30),
                                            F.FLOOR_DB)
            else:
                row[F.F_BAND:F.F_BAND + F.N_BANDS] = F.FLOOR_DB
        e_act = np.where(ew > 0, ez / np.where(ew > 0, ew, 1.0), 0.0)
        for c in range(n_ch):
            others = [j for j in range(n_ch) if j != c]
            for b in range(F.N_BANDS):
                out[h, c, F.F_MASK + b] = _ratio_db(band_p[c, b], band_p[others, b].sum())
            out[h, c, F.F_REL] = _ratio_db(e_act[c], e_act[others].sum())
    return out
