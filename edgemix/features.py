"""Streaming per-channel features: what each mic delivers, and how it sits in the mix.

Every hop (default 100 ms, anchored to an absolute sample counter so any block size gives
the same numbers) the extractor publishes a ``(n_channels, len(FEATURE_NAMES))`` float32
snapshot.  Features are taken from the *raw input* of each channel (before trim/EQ), so a
model maps what the mic delivers to absolute console settings.

What is measured, and over which window
---------------------------------------
* Loudness is K-weighted (ITU-R BS.1770-4 eq. 1-2, the two-stage pre-filter: a +4 dB high
  shelf and a 38 Hz high-pass).  ``loudness_st_lufs`` is the BS.1770 / EBU Tech 3341
  short-term loudness: the mean K-weighted power of the last 3 s (30 hops of 100 ms, the
  window sliding hop by hop; the time before the stream started counts as silence).
* ``rms_st_dbfs``, ``peak_st_dbfs`` and ``crest_db`` (peak minus RMS) are unweighted over
  the same 3 s.
* A hop is *active* when its K-weighted loudness is above -70 LUFS (BS.1770's absolute gate)
  and within 20 LU of the loudest hop of the last 10 s (the relative gate of EBU Tech 3342).
  ``activity_ratio`` is the fraction of active hops in the last 10 s.
* "When it plays" statistics average only active hops, with an exponential memory of
  ``ACTIVE_TAU_S`` (bias-corrected: the estimate is ``acc / weight``, so the first active
  hop is not pulled toward zero): ``loudness_active_lufs``, the power spectrum behind
  centroid, roll-off, flatness, low-frequency content and the band levels, and the mix
  context.  A singer between phrases keeps the spectrum of the phrases.
* The spectrum is a Hann-windowed FFT of the last ``n_fft`` samples (2048 at 44.1/48 kHz:
  23 Hz bins), taken every ``n_fft/2`` samples, frame mean removed (a DC offset is not
  low-frequency content).  Each channel's frames are staggered by ``c * n_fft / (2 C)``
  samples so every audio block carries about the same number of FFTs: at 64-frame blocks
  and 32 channels that is two 1024-point complex FFTs per block, never a burst of 32.
  Why an FFT and not an IIR filterbank: centroid, roll-off and flatness need a fine
  spectrum that a 16-band filterbank cannot give, and a filterbank costs ~10 flops per band
  per sample (~160 per sample per channel) where the staggered FFT costs ~60.
* Bands: 16 bands equally spaced on the ERB-rate scale (Glasberg & Moore 1990,
  ``E(f) = 21.4 log10(1 + 0.00437 f)``) from 40 Hz to 16 kHz.  ``bandNN_<fc>hz_rel_db`` is
  the band's share of the channel's own power (20 Hz - 20 kHz), so the spectral shape does
  not depend on gain.  ``flatness_ratio`` is the geometric over the arithmetic mean of the
  16 band power densities (white noise ~1, a tone ~0).
* Mix context: ``maskNN_<fc>hz_db`` is the channel's band power over the sum of every other
  channel's band power (powers add for uncorrelated sources), a band-wise masking
  indicator in the sense of Hafezi & Reiss (2015); ``rel_loudness_lu`` is the channel's
  active K-weighted power against the sum of the others' (LU).

Floors (silence never gives NaN/inf): levels are floored at ``FLOOR_DB`` (-100 dB / LUFS);
a channel with no active hop yet has centroid 0 Hz, roll-off 0 Hz, flatness 0, low-frequency
ratio 0, band levels ``FLOOR_DB``; ratios of two silences are 0 dB; every ratio in dB is
clamped to +-``-FLOOR_DB``.

K-weighting coefficients come from ``edgemix.dsp.loudness.k_weighting_coefficients`` (the
programme meter's; one derivation for the whole project).

Threads: ``process``/``reset`` belong to the thread that feeds audio (the runner calls the
private kernel ``_feature_block`` from inside its own block kernel); ``snapshot`` may be read
from the control thread (it copies).
"""
from __future__ import annotations

import math

import numpy as np

from edgemix.dsp._jit import kernel
from edgemix.dsp.loudness import LUFS_OFFSET_DB, k_weighting_coefficients

# --------------------------------------------------------------------------------------
# Constants (the definitions above, in one place)

FLOOR_DB = -100.0
#: Power below which a quantity counts as silence (-100 dB re full scale, mean square).
EPS_POWER = 10.0 ** (FLOOR_DB / 10.0)
SHORT_TERM_S = 3.0
ACTIVITY_S = 10.0
ACTIVE_TAU_S = 3.0
ABS_GATE_LUFS = -70.0
REL_GATE_LU = -20.0
LF_CUTOFF_HZ = 100.0
SPECTRUM_LO_HZ = 20.0
SPECTRUM_HI_HZ = 20000.0
ROLLOFF_FRACTION = 0.85
#: BS.1770 eq. 2: loudness = -0.691 + 10 log10(K-weighted mean square).
LUFS_OFFSET = LUFS_OFFSET_DB

N_BANDS = 16
_BAND_LO_HZ, _BAND_HI_HZ = 40.0, 16000.0


def _erb_rate(f):
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(f, dtype=np.float64))


def _erb_rate_inv(e):
    return (10.0 ** (np.asarray(e, dtype=np.float64) / 21.4) - 1.0) / 0.00437


_E = np.linspace(_erb_rate(_BAND_LO_HZ), _erb_rate(_BAND_HI_HZ), N_BANDS + 1)
#: Band edges in Hz (17 values), ERB-rate spaced 40 Hz .. 16 kHz.
BAND_EDGES_HZ: np.ndarray = _erb_rate_inv(_E)
BAND_EDGES_HZ.setflags(write=False)
#: Band centres in Hz (ERB-rate midpoints).
BAND_CENTRES_HZ: np.ndarray = _erb_rate_inv(0.5 * (_E[:-1] + _E[1:]))
BAND_CENTRES_HZ.setflags(write=False)

_SCALAR_NAMES = (
    "loudness_st_lufs", "loudness_active_lufs", "rms_st_dbfs", "peak_st_dbfs", "crest_db",
    "activity_ratio", "centroid_hz", "rolloff_hz", "flatness_ratio", "lf_below_100hz_ratio",
)
#: The model's input columns, in order.  Stable: append, never reorder.
FEATURE_NAMES: tuple[str, ...] = (
    _SCALAR_NAMES
    + tuple(f"band{i:02d}_{fc:.0f}hz_rel_db" for i, fc in enumerate(BAND_CENTRES_HZ))
    + tuple(f"mask{i:02d}_{fc:.0f}hz_db" for i, fc in enumerate(BAND_CENTRES_HZ))
    + ("rel_loudness_lu",)
)
N_FEATURES = len(FEATURE_NAMES)
#: Column of each feature by name.
FEATURE_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}

# Column numbers used by the kernel (module-level ints are compile-time constants).
F_LST, F_LACT, F_RMS, F_PEAK, F_CREST, F_ACT, F_CENT, F_ROLL, F_FLAT, F_LF = range(10)
F_BAND = 10
F_MASK = F_BAND + N_BANDS
F_REL = F_MASK + N_BANDS

# Per-channel state layout: fixed head, then variable-length sections (offsets in ``lay``).
_KW = 0            # 4: K-weighting biquad states (2 sections x 2, transposed direct form II)
_HZ, _HMS, _HPK, _HNF = 4, 5, 6, 7   # current hop: sum K-weighted sq, sum sq, peak, n frames
_EW, _EZ = 8, 9    # active EMA: weight, K-weighted power accumulator
_HEAD = 10
# ``lay`` entries: offsets of the sections and sizes.
L_RING, L_HSPEC, L_ESPEC, L_STZ, L_STMS, L_STPK, L_ACTL, L_ACTF, L_SPEC, L_NFFT, L_NBIN, \
    L_NST, L_NACT, L_WIDTH = range(14)
# ``L_SPEC`` section: spectral statistics of the active-hop spectrum, then band powers.
S_CENT, S_ROLL, S_FLAT, S_LF, S_TOTAL, S_BANDP = range(6)
S_LEN = S_BANDP + N_BANDS
# ``cfg`` entries.
C_HOP, C_FHOP, C_ALPHA, C_PNORM = range(4)
C_K = 4            # 10: K-weighting b0 b1 b2 a1 a2 for the shelf, then the high-pass
C_LEN = 14


def fft_size_for(sample_rate_hz: float) -> int:
    """Analysis FFT length: the power of two nearest 42.7 ms (2048 at 44.1/48 kHz)."""
    return int(2 ** round(math.log2(sample_rate_hz * 0.0427)))


# --------------------------------------------------------------------------------------
# Kernels


@kernel(inline="always")
def _db10(p, floor_db):
    if p <= 0.0:
        return floor_db
    v = 10.0 * math.log10(p)
    return v if v > floor_db else floor_db


@kernel(inline="always")
def _ratio_db(num, den):
    # 10 log10((num + eps) / (den + eps)), clamped: two silences compare as 0 dB.
    v = 10.0 * math.log10((num + EPS_POWER) / (den + EPS_POWER))
    lim = -FLOOR_DB
    if v > lim:
        return lim
    if v < -lim:
        return -lim
    return v


@kernel
def _frame_power(st, c, t, lay, tab, itab, fftw):
    """Power spectrum of channel ``c``'s last n_fft samples, added into its hop spectrum.

    A real FFT of length N through one complex FFT of length M = N/2 (the "two for one"
    packing: z[n] = x[2n] + i x[2n+1]; X[k] = E[k] + W_N^k O[k] with
    E = (Z[k] + conj Z[M-k]) / 2, O = (Z[k] - conj Z[M-k]) / 2i).  Power is scaled so the
    one-sided bins sum to the frame's windowed mean square (Parseval), see ``cfg[C_PNORM]``.
    """
    n_fft = lay[L_NFFT]
    m = n_fft // 2
    ring = lay[L_RING]
    # tab layout: window (N) | fft cos (M/2) | fft sin (M/2) | post cos (M+1) | post sin (M+1)
    o_cos = n_fft
    o_sin = o_cos + m // 2
    o_pc = o_sin + m // 2
    o_ps = o_pc + m + 1
    # Unroll the ring, oldest sample first (the slot of absolute sample s is s % N), into
    # a linear scratch row in two contiguous pieces; remove the frame mean.
    start = t % n_fft
    lin = fftw[2]
    mean = 0.0
    i = 0
    for n in range(start, n_fft):
        v = st[c, ring + n]
        lin[i] = v
        mean += v
        i += 1
    for n in range(0, start):
        v = st[c, ring + n]
        lin[i] = v
        mean += v
        i += 1
    mean /= n_fft
    re = fftw[0]
    im = fftw[1]
    for j in range(m):
        r = itab[j]                      # bit-reversed order for the in-place FFT
        re[r] = (lin[2 * j] - mean) * tab[2 * j]
        im[r] = (lin[2 * j + 1] - mean) * tab[2 * j + 1]
    # Iterative radix-2 decimation in time (Cooley-Tukey), twiddle hoisted per column.
    for k0 in range(0, m, 2):
        i2 = k0 + 1
        tr, ti = re[i2], im[i2]
        re[i2] = re[k0] - tr
        im[i2] = im[k0] - ti
        re[k0] += tr
        im[k0] += ti
    size = 4
    while size <= m:
        half = size // 2
        step = m // size
        for j in range(half):
            wr = tab[o_cos + j * step]
            wi = tab[o_sin + j * step]
            for i1 in range(j, m, size):
                i2 = i1 + half
                tr = wr * re[i2] - wi * im[i2]
                ti = wr * im[i2] + wi * re[i2]
                re[i2] = re[i1] - tr
                im[i2] = im[i1] - ti
                re[i1] += tr
                im[i1] += ti
        size *= 2
    hs = lay[L_HSPEC]
    # k = 0 and k = M: E = Re Z[0], O = Im Z[0], W = +1 / -1.
    x0 = re[0] + im[0]
    xm = re[0] - im[0]
    st[c, hs] += x0 * x0
    st[c, hs + m] += xm * xm
    for k in range(1, m):
        k2 = m - k
        zr, zi = re[k], im[k]
        cr, ci = re[k2], -im[k2]
        er = 0.5 * (zr + cr)
        ei = 0.5 * (zi + ci)
        # (Z - conj Z') / 2i = (Zi - Ci)/2 - i (Zr - Cr)/2
        orr = 0.5 * (zi - ci)
        oi = -0.5 * (zr - cr)
        pc = tab[o_pc + k]
        ps = tab[o_ps + k]
        xr = er + pc * orr - ps * oi
        xi = ei + pc * oi + ps * orr
        st[c, hs + k] += 2.0 * (xr * xr + xi * xi)   # one-sided: the mirror bin too


@kernel
def _run_channel(x, c, n0, n1, t0, st, lay, cfg, tab, itab, fftw):
    """Samples ``n0..n1`` of channel ``c`` (absolute time of sample n is t0 + n)."""
    n_fft = lay[L_NFFT]
    ring = lay[L_RING]
    fhop = int(cfg[C_FHOP])
    offset = (c * fhop) // x.shape[0]
    b0, b1, b2, a1, a2 = cfg[C_K], cfg[C_K + 1], cfg[C_K + 2], cfg[C_K + 3], cfg[C_K + 4]
    d0, d1, d2, e1, e2 = cfg[C_K + 5], cfg[C_K + 6], cfg[C_K + 7], cfg[C_K + 8], cfg[C_K + 9]
    s1, s2, s3, s4 = st[c, _KW], st[c, _KW + 1], st[c, _KW + 2], st[c, _KW + 3]
    hz, hms, hpk = st[c, _HZ], st[c, _HMS], st[c, _HPK]
    for n in range(n0, n1):
        v = float(x[c, n])
        if not abs(v) <= 1e6:          # NaN/Inf (or absurd) would poison the filter state
            v = 0.0
        t = t0 + n
        # BS.1770 eq. 1 pre-filter, transposed direct form II, two sections.
        y = b0 * v + s1
        s1 = b1 * v - a1 * y + s2
        s2 = b2 * v - a2 * y
        z = d0 * y + s3
        s3 = d1 * y - e1 * z + s4
        s4 = d2 * y - e2 * z
        hz += z * z
        hms += v * v
        av = abs(v)
        if av > hpk:
            hpk = av
        st[c, ring + t % n_fft] = v
        if (t + 1 + offset) % fhop == 0:
            _frame_power(st, c, t + 1, lay, tab, itab, fftw)
            st[c, _HNF] += 1.0
    st[c, _KW], st[c, _KW + 1], st[c, _KW + 2], st[c, _KW + 3] = s1, s2, s3, s4
    st[c, _HZ], st[c, _HMS], st[c, _HPK] = hz, hms, hpk


@kernel
def _spectral_stats(sc, lay, cfg, tab, itab):
    """Centroid, roll-off, flatness, LF ratio and band powers of the active-hop spectrum
    of one channel (row ``sc`` of the state), stored in its ``L_SPEC`` section."""
    m = lay[L_NFFT] // 2
    es = lay[L_ESPEC]
    sp = lay[L_SPEC]
    # itab after the bit-reversal table: first bin of each band (N_BANDS + 1 edges), then
    # the analysis range [lo, hi) and the end of the low-frequency range.
    o_edge = m
    k_lo = itab[o_edge + N_BANDS + 1]
    k_hi = itab[o_edge + N_BANDS + 2]
    k_lf = itab[o_edge + N_BANDS + 3]
    o_freq = lay[L_NFFT] + m + 2 * (m + 1)
    w = sc[_EW]
    scale = cfg[C_PNORM] / w if w > 0.0 else 0.0
    bp = sp + S_BANDP
    for b in range(N_BANDS):
        acc = 0.0
        for k in range(itab[o_edge + b], itab[o_edge + b + 1]):
            acc += sc[es + k]
        sc[bp + b] = acc * scale
    total = 0.0
    fsum = 0.0
    for k in range(k_lo, k_hi):
        p = sc[es + k]
        total += p
        fsum += p * tab[o_freq + k]
    lf = 0.0
    for k in range(k_lo, k_lf):
        lf += sc[es + k]
    total *= scale
    fsum *= scale
    lf *= scale
    cent = 0.0
    roll = 0.0
    flat = 0.0
    lf_ratio = 0.0
    if total > EPS_POWER:
        cent = fsum / total
        lf_ratio = lf / total
        target = ROLLOFF_FRACTION * total
        acc = 0.0
        for k in range(k_lo, k_hi):
            acc += sc[es + k] * scale
            if acc >= target:
                roll = tab[o_freq + k]
                break
        # Flatness over band densities (power per bin): geometric / arithmetic mean.
        lg = 0.0
        ar = 0.0
        for b in range(N_BANDS):
            d = sc[bp + b] / (itab[o_edge + b + 1] - itab[o_edge + b]) + 1e-30
            lg += math.log(d)
            ar += d
        flat = math.exp(lg / N_BANDS) / (ar / N_BANDS)
        if flat > 1.0:
            flat = 1.0
    sc[sp + S_CENT] = cent
    sc[sp + S_ROLL] = roll
    sc[sp + S_FLAT] = flat
    sc[sp + S_LF] = lf_ratio
    sc[sp + S_TOTAL] = total


@kernel
def _finish_hop(st, clock, lay, cfg, tab, itab, snap):
    """Close the hop for every channel: rings, gate, EMA, spectral features, mix context.

    Spectral statistics are recomputed only for channels whose hop was active (the
    active-hop spectrum of the others has not changed), so the cost of a hop boundary
    scales with the number of playing channels.
    """
    n_ch = st.shape[0]
    h = int(clock[1])
    hop = cfg[C_HOP]
    alpha = cfg[C_ALPHA]
    m = lay[L_NFFT] // 2
    n_st = lay[L_NST]
    n_act = lay[L_NACT]
    hs, es, sp = lay[L_HSPEC], lay[L_ESPEC], lay[L_SPEC]
    o_stz, o_stms, o_stpk = lay[L_STZ], lay[L_STMS], lay[L_STPK]
    o_actl, o_actf = lay[L_ACTL], lay[L_ACTF]
    bp = sp + S_BANDP
    slot = h % n_st
    aslot = h % n_act
    n_seen = h + 1 if h + 1 < n_act else n_act
    for c in range(n_ch):
        sc = st[c]
        kz = sc[_HZ] / hop
        sc[o_stz + slot] = kz
        sc[o_stms + slot] = sc[_HMS] / hop
        sc[o_stpk + slot] = sc[_HPK]
        z_sum = 0.0
        ms_sum = 0.0
        pk_max = 0.0
        for i in range(n_st):
            z_sum += sc[o_stz + i]
            ms_sum += sc[o_stms + i]
            p = sc[o_stpk + i]
            if p > pk_max:
                pk_max = p
        l_st = LUFS_OFFSET + _db10(z_sum / n_st, FLOOR_DB - LUFS_OFFSET)
        rms_db = _db10(ms_sum / n_st, FLOOR_DB)
        pk_db = _db10(pk_max * pk_max, FLOOR_DB)
        # Gate (BS.1770 absolute, Tech 3342 relative against the loudest recent hop).
        l_hop = LUFS_OFFSET + _db10(kz, FLOOR_DB - LUFS_OFFSET)
        sc[o_actl + aslot] = l_hop
        ref = FLOOR_DB
        for i in range(n_act):
            v = sc[o_actl + i]
            if v > ref:
                ref = v
        active = l_hop > ABS_GATE_LUFS and l_hop > ref + REL_GATE_LU
        sc[o_actf + aslot] = 1.0 if active else 0.0
        n_on = 0.0
        for i in range(n_act):
            n_on += sc[o_actf + i]
        nf = sc[_HNF]
        if active:
            sc[_EW] = alpha * sc[_EW] + (1.0 - alpha)
            sc[_EZ] = alpha * sc[_EZ] + (1.0 - alpha) * kz
            inv = (1.0 - alpha) / nf if nf > 0.0 else 0.0
            for k in range(m + 1):
                sc[es + k] = alpha * sc[es + k] + inv * sc[hs + k]
                sc[hs + k] = 0.0
            _spectral_stats(sc, lay, cfg, tab, itab)
        else:
            for k in range(m + 1):
                sc[hs + k] = 0.0
        sc[_HZ] = 0.0
        sc[_HMS] = 0.0
        sc[_HPK] = 0.0
        sc[_HNF] = 0.0
        w = sc[_EW]
        l_act = FLOOR_DB
        if w > 0.0:
            l_act = LUFS_OFFSET + _db10(sc[_EZ] / w, FLOOR_DB - LUFS_OFFSET)
        snap[c, F_LST] = l_st
        snap[c, F_LACT] = l_act
        snap[c, F_RMS] = rms_db
        snap[c, F_PEAK] = pk_db
        snap[c, F_CREST] = pk_db - rms_db
        snap[c, F_ACT] = n_on / n_seen
        snap[c, F_CENT] = sc[sp + S_CENT]
        snap[c, F_ROLL] = sc[sp + S_ROLL]
        snap[c, F_FLAT] = sc[sp + S_FLAT]
        snap[c, F_LF] = sc[sp + S_LF]
        total = sc[sp + S_TOTAL]
        for b in range(N_BANDS):
            if total > EPS_POWER:
                v = 10.0 * math.log10(sc[bp + b] / total + 1e-30)
                snap[c, F_BAND + b] = v if v > FLOOR_DB else FLOOR_DB
            else:
                snap[c, F_BAND + b] = FLOOR_DB
    # Mix context: each channel against the sum of the others (band powers, active loudness).
    for b in range(N_BANDS):
        s = 0.0
        for c in range(n_ch):
            s += st[c, bp + b]
        tot = s
        for c in range(n_ch):
            own = st[c, bp + b]
            rest = tot - own
            snap[c, F_MASK + b] = _ratio_db(own, rest if rest > 0.0 else 0.0)
    tot_z = 0.0
    for c in range(n_ch):
        w = st[c, _EW]
        if w > 0.0:
            tot_z += st[c, _EZ] / w
    for c in range(n_ch):
        w = st[c, _EW]
        own = st[c, _EZ] / w if w > 0.0 else 0.0
        rest = tot_z - own
        snap[c, F_REL] = _ratio_db(own, rest if rest > 0.0 else 0.0)
    clock[1] = h + 1


@kernel
def _feature_block(x, n_frames, clock, st, lay, cfg, tab, itab, fftw, snap):
    """Advance the extractor by ``n_frames`` frames of ``x`` ``(channels, >= n_frames)``.

    Non-finite samples (and any beyond +-1e6) are read as 0.  ``clock`` (float64 (2,)):
    absolute samples processed, hops completed.  ``st``: per-channel state
    ``(channels, lay[L_WIDTH])`` float64.  ``cfg``/``tab``/``itab``: constants built by
    :class:`FeatureExtractor`; scratch ``fftw`` ``(3, n_fft)`` float64.  ``snap``
    ``(channels, N_FEATURES)`` float32 is rewritten at every hop boundary crossed.
    Allocates nothing.
    """
    n_ch = x.shape[0]
    hop = int(cfg[C_HOP])
    t0 = int(clock[0])
    n = 0
    while n < n_frames:
        t = t0 + n
        to_hop = hop - t % hop
        n1 = n + to_hop if n + to_hop < n_frames else n_frames
        for c in range(n_ch):
            _run_channel(x, c, n, n1, t0, st, lay, cfg, tab, itab, fftw)
        if n1 - n == to_hop:
            _finish_hop(st, clock, lay, cfg, tab, itab, snap)
        n = n1
    clock[0] = t0 + n_frames


# --------------------------------------------------------------------------------------
# Public wrapper


def _bit_reverse(m: int) -> np.ndarray:
    bits = m.bit_length() - 1
    j = np.arange(m)
    r = np.zeros(m, dtype=np.int64)
    for b in range(bits):
        r |= ((j >> b) & 1) << (bits - 1 - b)
    return r


class FeatureExtractor:
    """Streaming per-channel features; see the module docstring for the definitions.

    ``process(block)`` takes ``(frames, channels)`` float32 like soundfile; any number of
    frames, any split into blocks gives the same snapshots.  ``snapshot()`` returns a copy
    of the latest ``(n_channels, N_FEATURES)`` float32 features (all floors before the first
    hop).  ``reset()`` clears the audio history.
    """

    def __init__(self, sample_rate_hz: float, n_channels: int, hop_ms: float = 100.0):
        try:
            sample_rate_hz = float(sample_rate_hz)
            hop_ms = float(hop_ms)
        except (TypeError, ValueError):
            raise ValueError("sample_rate_hz and hop_ms must be numbers") from None
        if not 32000.0 <= sample_rate_hz <= 192000.0:
            raise ValueError(f"sample_rate_hz = {sample_rate_hz:g}: use 32000 .. 192000 "
                             "(the top band reaches 16 kHz)")
        if int(n_channels) != n_channels or not 1 <= n_channels <= 256:
            raise ValueError(f"n_channels = {n_channels!r}: use an integer 1 .. 256")
        n_fft = fft_size_for(sample_rate_hz)
        hop = int(round(hop_ms * 1e-3 * sample_rate_hz))
        if hop < n_fft // 2 or hop_ms > 1000.0:
            raise ValueError(f"hop_ms = {hop_ms:g}: use {1000.0 * (n_fft // 2) / sample_rate_hz:.0f}"
                             " .. 1000 ms (at least one analysis frame per hop)")
        self.sample_rate_hz = sample_rate_hz
        self.n_channels = int(n_channels)
        self.hop_frames = hop
        self.hop_ms = 1000.0 * hop / sample_rate_hz
        self.n_fft = n_fft
        m = n_fft // 2
        hop_s = hop / sample_rate_hz
        n_st = max(1, int(round(SHORT_TERM_S / hop_s)))
        n_act = max(1, int(round(ACTIVITY_S / hop_s)))

        lay = np.zeros(14, dtype=np.int64)
        off = _HEAD
        for key, size in ((L_RING, n_fft), (L_HSPEC, m + 1), (L_ESPEC, m + 1), (L_STZ, n_st),
                          (L_STMS, n_st), (L_STPK, n_st), (L_ACTL, n_act), (L_ACTF, n_act), (L_SPEC, S_LEN)):
            lay[key] = off
            off += size
        lay[L_NFFT], lay[L_NBIN], lay[L_NST], lay[L_NACT], lay[L_WIDTH] = n_fft, m + 1, n_st, \
            n_act, off
        self._lay = lay

        cfg = np.zeros(C_LEN, dtype=np.float64)
        cfg[C_HOP] = hop
        cfg[C_FHOP] = m
        cfg[C_ALPHA] = math.exp(-hop_s / ACTIVE_TAU_S)
        win = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)   # periodic Hann
        cfg[C_PNORM] = 1.0 / (n_fft * float(np.sum(win * win)))
        cfg[C_K:C_K + 10] = k_weighting_coefficients(sample_rate_hz)
        self._cfg = cfg

        freq = np.arange(m + 1) * sample_rate_hz / n_fft
        # Bin k belongs to band b when edge[b] <= f_k < edge[b+1]: contiguous bin ranges.
        k_edges = np.searchsorted(freq, BAND_EDGES_HZ, side="left")
        assert np.all(np.diff(k_edges) >= 1), "every band needs at least one FFT bin"
        k_lo = int(np.searchsorted(freq, SPECTRUM_LO_HZ, side="left"))
        k_hi = int(np.searchsorted(freq, min(SPECTRUM_HI_HZ, sample_rate_hz / 2), side="right"))
        k_lf = int(np.searchsorted(freq, LF_CUTOFF_HZ, side="left"))
        ang = 2.0 * np.pi * np.arange(m // 2) / m
        angp = 2.0 * np.pi * np.arange(m + 1) / n_fft
        self._tab = np.ascontiguousarray(np.concatenate(
            [win, np.cos(ang), -np.sin(ang), np.cos(angp), -np.sin(angp), freq]))
        self._itab = np.ascontiguousarray(np.concatenate(
            [_bit_reverse(m), k_edges, [k_lo, k_hi, k_lf]]).astype(np.int64))
        self.bin_freqs_hz = freq

        self._st = np.zeros((self.n_channels, int(off)), dtype=np.float64)
        self._clock = np.zeros(2, dtype=np.float64)
        self._fftw = np.zeros((3, n_fft), dtype=np.float64)
        self._snap = np.zeros((self.n_channels, N_FEATURES), dtype=np.float32)
        self.reset()

    # -- audio thread ---------------------------------------------------------------
    def reset(self) -> None:
        """Forget all audio (state, rings, the clock); the snapshot returns to its floors."""
        self._st[:] = 0.0
        lay = self._lay
        self._st[:, lay[L_ACTL]:lay[L_ACTL] + lay[L_NACT]] = FLOOR_DB
        self._clock[:] = 0.0
        self._snap[:] = silence_row()

    def process(self, block: np.ndarray) -> None:
        """Feed ``(frames, n_channels)`` audio (any float dtype; converted to float32)."""
        x = np.asarray(block)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"block shape {x.shape}: expected (frames, {self.n_channels})")
        if x.shape[0] == 0:
            return
        self.process_channels_first(np.ascontiguousarray(x.T, dtype=np.float32))

    def process_channels_first(self, xt: np.ndarray) -> None:
        """Feed ``(n_channels, frames)`` float32 C-contiguous audio (the engine's layout).

        Anything else is a one-line ``ValueError`` saying what to pass: the kernel is
        compiled for exactly this layout, and another dtype or layout would compile a new
        specialisation in the middle of a show (:meth:`process` converts instead)."""
        if not (isinstance(xt, np.ndarray) and xt.dtype == np.float32 and xt.ndim == 2
                and xt.flags.c_contiguous and xt.shape[0] == self.n_channels):
            got = (f"{xt.dtype} {'C-contiguous' if xt.flags.c_contiguous else 'strided'} "
                   f"array of shape {xt.shape}" if isinstance(xt, np.ndarray)
                   else type(xt).__name__)
            raise ValueError(f"process_channels_first takes a C-contiguous float32 array of "
                             f"shape ({self.n_channels}, frames), got a {got}: use "
                             "process() for (frames, channels) audio of any float dtype")
        _feature_block(xt, xt.shape[1], self._clock, self._st, self._lay, self._cfg, self._tab,
                      self._itab, self._fftw, self._snap)

    def warmup(self) -> None:
        """Compile (or load from Numba's cache) the kernel, across a hop, then reset."""
        self.process_channels_first(np.zeros((self.n_channels, self.hop_frames + 1),
                                             dtype=np.float32))
        self.reset()

    # -- any thread -----------------------------------------------------------------
    def snapshot(self) -> np.ndarray:
        """A copy of the latest features ``(n_channels, N_FEATURES)`` float32."""
        return self._snap.copy()

    @property
    def hops_done(self) -> int:
        return int(self._clock[1])

    @property
    def sample_clock(self) -> int:
        return int(self._clock[0])

    def kernel_args(self):
        """The arrays to pass to ``_feature_block`` after ``(x, n_frames)`` from another
        kernel: ``(clock, st, lay, cfg, tab, itab, fftw, snap)`` (owned here)."""
        return (self._clock, self._st, self._lay, self._cfg, self._tab, self._itab, self._fftw,
                self._snap)


def silence_row() -> np.ndarray:
    """The feature row of a channel that has only ever been silent (the documented floors)."""
    row = np.zeros(N_FEATURES, dtype=np.float32)
    row[[F_LST, F_LACT, F_RMS, F_PEAK]] = FLOOR_DB
    row[F_BAND:F_BAND + N_BANDS] = FLOOR_DB
    return row
