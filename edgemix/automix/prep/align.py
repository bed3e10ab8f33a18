"""Polarity and time alignment between the mics of one source (GCC-PHAT class).

Two mics on one source (kick in/out, snare top/bottom, bass DI and amp, overheads against
the close mics, guitar close and room) hear the same wave with a different colouration, a
different distance (a delay) and sometimes the opposite polarity.  Summed unaligned they
comb-filter; summed inverted they cancel the low end.  This module finds which channels
are such pairs, how late one is against the other to a fraction of a sample, whether it
is inverted, and how sure that is, and it abstains rather than guess.

The method, per pair, from short-time spectra (Hann frames):

1. **Related?**  The cross-spectrum ``G = conj(X_a) X_b`` and the two auto-spectra are
   averaged over the frames.  The magnitude-squared coherence ``|G|^2 / (P_a P_b)`` does
   not change when either channel is filtered (a mic's colouration, an EQ), while bleed,
   noise and other sources lower it.  Its power-weighted mean ``q`` (``sum |G| / sum
   sqrt(P_a P_b)``) is the share of the two channels that is one wave: near 1 for two mics
   of one source, low for a vocal against a guitar with bleed either way.
2. **The delay: generalised cross-correlation** (Knapp & Carter 1976) with the phase
   transform, each bin weighted by its coherence ``g^2 / (1 - g^2)`` (their maximum-
   likelihood weighting: bins where the pair is one wave count, bins of noise and bleed
   do not).  Hann windows, because Clifford & Reiss (JAES 2013, "Using delay estimation to
   reduce comb filtering of arbitrary musical sources") show GCC-PHAT's accuracy on music
   depends on the window, and windows that taper to zero (Hann, Blackman) keep it for
   band-limited sources where a rectangular window fails.
3. **A fraction of a sample**: the peak of the correlation, found on a 4x grid within
   ``+/- params.MAX_DELAY_MS``, is refined by Newton's method on the band-limited
   correlation itself, ``r(t) = sum_k Re(C_k exp(j w_k t))``, so there is no parabolic
   interpolation bias.  Offline, the frames of the later channel are then taken again
   shifted by the whole-sample lag and the residual is estimated the same way: the
   windows then overlap fully, which removes the coherence loss of long delays.
4. **Polarity** is the sign of the peak.
5. **Abstain** (``Alignment.abstained`` names why) when the peak is ambiguous (a second
   peak, outside the main lobe, nearly as high: a narrowband source whose correlation
   rings, or bleed arriving both ways), when the delay is too imprecise (the Cramer-Rao
   bound of Knapp & Carter's estimator from the coherence and the frame count), or when
   the pair is only weakly one wave (heavy bleed).

Channels that are related form groups; each group is a maximum spanning tree of its
confident pairs, rooted at its earliest channel (the closest mic: the DI, the kick in,
the snare top).  Every other channel gets one :class:`Alignment` against its parent.
:func:`corrections` turns those into strip settings: ``delay_ms`` delays every earlier
channel to meet the group's latest one (a delay can only be added; with the sample rate
given, the whole group a further 15 samples, for the strip's full interpolator),
``polarity_invert`` flips the channels that are inverted against the root.

The same pair estimator serves the live path (``edgemix.automix.prep.live``), which keeps
the averaged spectra as running sums.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from edgemix import params as P

#: Frame length in seconds (rounded up to a power of two: 8192 at 48 kHz).  Long enough
#: that the largest delay is a small part of a frame, short enough for many frames.
FRAME_S = 0.16
#: Lowest and highest frequency used (below 20 Hz is rumble; near Nyquist every
#: converter's anti-alias filter makes the phase meaningless).
F_LO_HZ = 20.0
F_HI_FRACTION = 0.45
#: Channels quieter than this (RMS, dBFS) take no part: nothing to align.
SILENT_DBFS = -70.0
#: Power-weighted coherence below which two channels are not considered one source.
Q_RELATED = 0.25
#: ... and below which they are related only through heavy bleed: abstain.
Q_CONFIDENT = 0.4
#: A second correlation peak this high against the first makes the peak ambiguous.
AMBIGUITY_MAX = 0.7
#: A later peak of the same polarity this far on is a reflection (walls are rarely nearer
#: than 0.35 m to a mic), not a rival.
REFLECTION_MS = 1.0
#: Largest Cramer-Rao standard deviation (samples) of a delay still given.
STD_MAX_SAMPLES = 0.3
#: The fast screen (:func:`screen`) below which a pair is not estimated at all.
SCREEN_MIN = 0.3
#: Fewer frames than this with both channels playing: too little programme.
MIN_FRAMES = 8
#: Consecutive groups of frames (independent stretches of programme) for the jackknife estimate of a lag's precision.
JACKKNIFE_GROUPS = 4
#: Coherence is capped here before the ML weight g^2/(1-g^2) (a weight of 99).
_G2_CAP = 0.99
#: Grid of the first peak search, in points per sample.
_UPSAMPLE = 2


@dataclass(frozen=True)
class Alignment:
    """One channel against the related channel it is aligned to.

    ``delay_ms``: how late ``channel`` is against ``aligned_to`` (negative when it is
    earlier).  ``polarity_inverted``: ``channel`` is inverted against ``aligned_to``.
    ``confidence`` 0..1.  ``correlation``: the pair's broadband correlation at that lag
    (signed: an inverted pair reads negative).  ``abstained``: None, or why no estimate
    is given (then ``delay_ms`` is 0, ``polarity_inverted`` False and ``aligned_to`` the
    channel it seemed related to).
    """

    channel: str
    aligned_to: str
    delay_ms: float
    polarity_inverted: bool
    confidence: float
    correlation: float
    abstained: str | None = None


@dataclass(frozen=True)
class PairEstimate:
    """What the pair estimator found for channel b against channel a."""

    lag_samples: float      # how late b is against a (fractional)
    inverted: bool
    coherence: float        # q: power-weighted coherence 0..1
    peak: float             # ML-weighted phase consistency at the peak, 0..1
    ambiguity: float        # second peak / first peak, 0..1
    std_samples: float      # Cramer-Rao standard deviation of the lag
    correlation: float      # broadband correlation at the lag (signed)
    confidence: float       # 0..1
    abstained: str | None   # None or the reason

    @property
    def related(self) -> bool:
        return self.coherence >= Q_RELATED


def frame_length(sample_rate_hz: float) -> int:
    """Frame length in samples at this rate: a power of two of at least ``FRAME_S``."""
    return 1 << int(math.ceil(math.log2(FRAME_S * sample_rate_hz)))


def max_lag_samples(sample_rate_hz: float) -> float:
    """The search range: the strip's longest delay (``params.MAX_DELAY_MS``)."""
    return P.MAX_DELAY_MS * 1e-3 * sample_rate_hz


def band(frame: int, sample_rate_hz: float) -> tuple[int, int]:
    """First and last+1 rfft bin used (``F_LO_HZ`` .. ``F_HI_FRACTION`` of the rate)."""
    k_lo = max(1, int(math.ceil(F_LO_HZ * frame / sample_rate_hz)))
    k_hi = int(F_HI_FRACTION * frame)
    return k_lo, k_hi


def frame_spectra(x: np.ndarray, frame: int, hop: int, start: int = 0,
                  n_frames: int | None = None) -> np.ndarray:
    """Hann-windowed rfft frames of ``x[start:]``, ``(n_frames, frame // 2 + 1)``."""
    avail = (len(x) - start - frame) // hop + 1
    n = max(0, avail if n_frames is None else min(n_frames, avail))
    if n == 0:
        return np.zeros((0, frame // 2 + 1), np.complex128)
    idx = start + hop * np.arange(n)[:, None] + np.arange(frame)[None, :]
    return np.fft.rfft(x[idx] * np.hanning(frame + 2)[1:-1], axis=1)


def estimate_pair(G: np.ndarray, Pa: np.ndarray, Pb: np.ndarray, n_frames: float,
                  groups: tuple | None, sample_rate_hz: float, frame: int,
                  max_lag: float | None = None,
                  start: tuple[float, bool] | None = None) -> PairEstimate:
    """Delay, polarity and confidence of b against a from averaged spectra.

    ``G`` is the mean of ``conj(X_a) X_b`` over ``n_frames`` frames, ``Pa``/``Pb`` the mean
    ``|X|^2``, all over the full rfft bins of ``frame``.  ``groups``, when given, holds the
    same as sums per group of frames ``(G (K, bins), Pa, Pb, counts (K,))``: the lag's
    spread over leave-one-group-out estimates (a jackknife) then bounds the precision
    from below, which the Cramer-Rao bound alone overstates where bleed biases the phase.
    ``start = (lag, inverted)`` skips the search and only refines from there.
    """
    k_lo, k_hi = band(frame, sample_rate_hz)
    g, pa, pb = G[k_lo:k_hi], Pa[k_lo:k_hi], Pb[k_lo:k_hi]
    w = 2.0 * np.pi * np.arange(k_lo, k_hi) / frame                  # rad / sample
    amp = np.abs(g)
    floor = 1e-30 + 1e-15 * float(np.sqrt(pa.max(initial=0.0) * pb.max(initial=0.0)))
    # Magnitude-squared coherence, debiased for a finite number of frames (its expected
    # value for two unrelated signals is about 1 / n_frames).
    nf = max(float(n_frames), 2.0)
    g2 = amp * amp / np.maximum(pa * pb, floor * floor)
    g2 = np.clip((g2 * nf - 1.0) / (nf - 1.0), 0.0, _G2_CAP)
    weight = g2 / (1.0 - g2)                                          # Knapp & Carter ML
    unit = np.where(amp > floor, g / np.maximum(amp, floor), 0.0)
    pa_sum, pb_sum = float(pa.sum()), float(pb.sum())
    nothing = PairEstimate(0.0, False, 0.0, 0.0, 1.0, math.inf, 0.0, 0.0, "not related")
    if weight.sum() <= 0.0 or pa_sum <= 0.0 or pb_sum <= 0.0:
        return nothing
    if max_lag is None:
        max_lag = max_lag_samples(sample_rate_hz)

    # third-octave bands: agreement with a lag is judged per band, so that bins agreeing by
    # chance (a third of random phases lie within 60 degrees) count for nothing
    f = np.arange(k_lo, k_hi) * sample_rate_hz / frame
    band_of = _bands_for(frame, float(sample_rate_hz))
    n_bands = int(band_of[-1]) + 1
    band_lo_hz = np.full(n_bands, np.inf)
    np.minimum.at(band_lo_hz, band_of, f)
    w_band = np.bincount(band_of, weights=weight, minlength=n_bands)
    ea_band = np.bincount(band_of, weights=g2 * pa, minlength=n_bands)
    eb_band = np.bincount(band_of, weights=g2 * pb, minlength=n_bands)

    def agreement(t, sign):
        """Per band: the ML-weighted mean cos(phase error) at lag t, 0 where it disagrees."""
        cos = sign * (unit * np.exp(1j * w * t)).real
        rho = np.bincount(band_of, weights=weight * cos, minlength=n_bands) / \
            np.maximum(w_band, 1e-300)
        return np.maximum(rho, 0.0)

    def explained(t, sign):
        """How much of each channel one wave at lag t explains, the lesser of the two
        (bleed explains much of the mic it leaks into only when that mic is nearly
        silent itself, never much of both)."""
        rho2 = agreement(t, sign) ** 2
        return min(float(np.dot(rho2, ea_band)) / pa_sum, float(np.dot(rho2, eb_band)) / pb_sum)

    def refine(t, sign, only=None):
        """Newton on the ML-weighted correlation of the bands that agree with lag t (the
        others belong to another wave, bleed, or to noise).  After each round, a band
        whose own phase slope points elsewhere by more than its precision allows is
        dropped: bleed arriving at nearly the same lag (a snare in two kick mics) agrees
        roughly, and its sharp high bands would otherwise pull the estimate to itself.
        ``only``: a boolean per band, the bands allowed at all."""
        allowed = np.ones(n_bands, bool) if only is None else only
        keep = (agreement(t, sign) > _AGREE) & allowed
        for _ in range(4):
            mask = keep[band_of]
            c = unit * weight * mask
            for _ in range(12):
                ph = np.exp(1j * w * t) * c
                d1 = -sign * float(np.dot(w, ph.imag))
                d2 = -sign * float(np.dot(w * w, ph.real))
                if d2 >= 0.0:
                    break
                step = min(max(-d1 / d2, -0.5), 0.5)
                t = min(max(t + step, -max_lag), max_lag)
                if abs(step) < 1e-7:
                    break
            # each band's own residual lag (weighted phase-slope fit) and its precision
            theta = np.angle(sign * unit * np.exp(1j * w * t))
            wm = weight * mask
            num = np.bincount(band_of, weights=wm * w * theta, minlength=n_bands)
            den = np.bincount(band_of, weights=wm * w * w, minlength=n_bands)
            off = num / np.maximum(den, 1e-300)
            tol = _BAND_SIGMAS / np.sqrt(2.0 * nf * np.maximum(den, 1e-300)) + _BAND_SLACK
            new_keep = (agreement(t, sign) > _AGREE) & (np.abs(off) <= tol) & allowed
            if not new_keep.any() or np.array_equal(new_keep, keep):
                break
            keep = new_keep
        return t, weight * keep[band_of]

    if start is not None:
        cands = [(float(start[0]), -1.0 if start[1] else 1.0)]
    else:
        cands = _candidates(unit * weight, w, k_lo, frame, sample_rate_hz, max_lag)
    # the few candidates that explain the most at their coarse lag are refined
    coarse = sorted(((explained(t0, s0), t0, s0) for t0, s0 in cands), key=lambda x: -x[0])
    scored = []
    for _, t0, sign in coarse[:_REFINED]:
        t, wk = refine(t0, sign)
        scored.append((explained(t, sign), t, sign, wk))
    scored.sort(key=lambda x: -x[0])
    q, t, sign, wk = scored[0]
    if start is None:
        # The low and the high bands refined apart: one wave gives one lag in both, a
        # source heard low with bleed heard high (a kick in/out pair with the snare in
        # both) gives two, and the rival check below sees them.
        # It counts where the low bands carry most of what the wave explains (a room
        # spreads a broadband source's low bands by its reflections instead), and only
        # when the two lags are more than a sample apart.
        low = band_lo_hz < SPLIT_HZ
        split = []
        for part in (low, ~low):
            if part.any() and (agreement(t, sign)[part] > _AGREE).any():
                t2, wk2 = refine(t, sign, part)
                split.append((explained(t2, sign), t2, sign, wk2))
    # A rival is another refined solution, distinct beyond both their precisions (two
    # waves: bleed at a nearby lag), or of the other polarity.  A later solution of the
    # same polarity more than REFLECTION_MS on is a reflection of the same wave.
    def crlb(wk_):
        f_ = 2.0 * nf * float(np.dot(w * w, wk_))
        return 1.0 / math.sqrt(f_) if f_ > 0.0 else math.inf
    s_best = crlb(wk)
    late = REFLECTION_MS * 1e-3 * sample_rate_hz
    rival = 0.0
    for q2, t2, s2, wk2 in scored[1:]:
        distinct = abs(t2 - t) > 3.0 * math.hypot(s_best, crlb(wk2)) + 0.25
        if (s2 != sign and abs(t2 - t) > 1.0) or (distinct and not t2 > t + late):
            rival = max(rival, q2)
    if start is None and split:
        rho2 = agreement(t, sign) ** 2 * (ea_band / pa_sum + eb_band / pb_sum)
        low_share = float(rho2[band_lo_hz < SPLIT_HZ].sum()) / max(float(rho2.sum()), 1e-300)
        for q2, t2, _, wk2 in split:
            if low_share >= SPLIT_SHARE and \
                    abs(t2 - t) > 1.0 + 3.0 * math.hypot(s_best, crlb(wk2)):
                rival = max(rival, q2)
    ambiguity = rival / q if q > 0 else 1.0
    # precision: the Cramer-Rao bound of the ML estimator over the agreeing bins (Knapp &
    # Carter 1976, eq. 15, discretised: var = 1 / (2 frames sum_k w_k^2 g^2 / (1 - g^2)))
    fisher = 2.0 * nf * float(np.dot(w * w, wk))
    std = 1.0 / math.sqrt(fisher) if fisher > 0.0 else math.inf
    if groups is not None and len(groups[3]) > 1 and math.isfinite(std):
        Gg, Pag, Pbg, ng = groups
        total = float(ng.sum())
        leave = []
        for i in range(len(ng)):
            rest = total - ng[i]
            if rest < 2:
                continue
            e = estimate_pair((G * total - Gg[i]) / rest, (Pa * total - Pag[i]) / rest,
                              (Pb * total - Pbg[i]) / rest, rest, None, sample_rate_hz,
                              frame, max_lag, start=(t, sign < 0.0))
            leave.append(e.lag_samples)
        if len(leave) > 1:
            k = len(leave)
            jack = math.sqrt((k - 1) / k * float(np.sum((np.asarray(leave)
                                                         - np.mean(leave)) ** 2)))
            std = max(std, jack)
    ph = (unit * weight * (wk > 0) * np.exp(1j * w * t)).real
    peak = sign * float(ph.sum()) / max(float(wk.sum()), 1e-300)
    # broadband correlation at the lag (what a correlation meter shows once aligned)
    corr = float(np.dot(np.exp(1j * w * t), g).real / math.sqrt(pa_sum * pb_sum))
    confidence = q * (1.0 - ambiguity) * (math.erf(0.5 / (std * math.sqrt(2.0)))
                                          if math.isfinite(std) else 0.0)
    est = PairEstimate(t, sign < 0.0, q, peak, ambiguity, std, corr, float(confidence), None)
    return _decide(est)


#: Octave sub-bands whose correlations propose candidate lags (Hz): a source heard in one
#: band only (a kick's thump) stands out there even where bleed dominates the full band;
#: cf. Cobos et al., "Frequency-sliding generalized cross-correlation" (IEEE/ACM TASLP 2020).
SUB_BANDS_HZ = tuple(20.0 * 2.0 ** i for i in range(10)) + (math.inf,)
#: Third-octave bands in which agreement with a lag is judged (finer than the candidate
#: bands, so that a snare's body bleeding into a kick's top octave is told apart).
AGREEMENT_BANDS_HZ = tuple(20.0 * 2.0 ** (i / 3.0) for i in range(30)) + (math.inf,)
#: ... each of at least this many bins (merged upwards where a third-octave holds fewer):
#: a band of one bin agrees with any lag a quarter of the time by chance.
AGREEMENT_MIN_BINS = 8


@functools.lru_cache(maxsize=16)
def _bands_for(frame: int, fs: float) -> np.ndarray:
    k_lo, k_hi = band(frame, fs)
    out = _agreement_bands(np.arange(k_lo, k_hi) * fs / frame)
    out.flags.writeable = False
    return out


def _agreement_bands(f: np.ndarray) -> np.ndarray:
    """Band index of each bin of frequencies ``f``: third-octaves of at least
    ``AGREEMENT_MIN_BINS`` bins."""
    third = np.searchsorted(np.asarray(AGREEMENT_BANDS_HZ), f, side="right") - 1
    out = np.empty(len(f), np.int64)
    band, count, prev = 0, 0, third[0] if len(f) else 0
    for i, t in enumerate(third):
        if t != prev and count >= AGREEMENT_MIN_BINS:
            band += 1
            count = 0
        prev = t
        out[i] = band
        count += 1
    if len(f) and count < AGREEMENT_MIN_BINS and band > 0:
        out[out == band] = band - 1        # a short last band joins the one below
    return out


#: The low and high parts refined apart to find two waves at nearby lags (Hz).
SPLIT_HZ = 250.0
#: ... when the low part carries at least this share of the explained energy.
SPLIT_SHARE = 0.6
#: Candidates refined (the best by how much they explain at their coarse lag).
_REFINED = 4
#: A band takes part in the refinement when its mean cos(phase error) is above this.
_AGREE = 0.5
#: ... and its own phase slope agrees with the lag within this many of its standard
#: deviations plus a slack (samples).
_BAND_SIGMAS = 4.0
_BAND_SLACK = 0.1
#: Candidate peaks taken from each sub-band's correlation and the full band's.
PEAKS_PER_BAND = 3


def _candidates(c, w, k_lo, frame, fs, max_lag):
    """(lag, sign) candidates: the highest peaks of each band's weighted correlation."""
    m = _UPSAMPLE * frame
    lags = np.arange(m, dtype=np.float64)
    lags[lags >= m / 2] -= m
    lags /= _UPSAMPLE
    inside = np.flatnonzero(np.abs(lags) <= max_lag)
    f = (k_lo + np.arange(len(c))) * fs / frame
    edges = [(SUB_BANDS_HZ[i], SUB_BANDS_HZ[i + 1]) for i in range(len(SUB_BANDS_HZ) - 1)]
    out: list[tuple[float, float]] = []
    for lo, hi in [(0.0, math.inf)] + edges:
        sel = (f >= lo) & (f < hi)
        if not sel.any():
            continue
        spec = np.zeros(m // 2 + 1, np.complex128)
        spec[k_lo:k_lo + len(c)] = np.where(sel, c, 0.0)
        r = np.fft.irfft(spec, m)[inside]
        a = np.abs(r)
        # local maxima of |r|, highest first
        peaks = np.flatnonzero((a[1:-1] >= a[:-2]) & (a[1:-1] >= a[2:])) + 1
        for i in peaks[np.argsort(-a[peaks])][:PEAKS_PER_BAND]:
            cand = (float(lags[inside[i]]), 1.0 if r[i] >= 0.0 else -1.0)
            if not any(s == cand[1] and abs(t - cand[0]) < 1.0 for t, s in out):
                out.append(cand)
    return out


def _decide(est: PairEstimate) -> PairEstimate:
    """Abstain where the estimate is not sure enough to act on."""
    if est.coherence < Q_RELATED:
        return _abstain(est, "not related")
    if est.ambiguity > AMBIGUITY_MAX:
        return _abstain(est, f"ambiguous peak (a rival {100 * est.ambiguity:.0f} % as good)")
    if est.std_samples > STD_MAX_SAMPLES:
        return _abstain(est, f"imprecise ({est.std_samples:.2f} samples standard deviation)")
    if est.coherence < Q_CONFIDENT:
        return _abstain(est, f"weakly related ({100 * est.coherence:.0f} % one wave: "
                             "heavy bleed?)")
    return est


def _abstain(est: PairEstimate, why: str) -> PairEstimate:
    return PairEstimate(est.lag_samples, est.inverted, est.coherence, est.peak, est.ambiguity,
                        est.std_samples, est.correlation, 0.0 if why == "not related"
                        else est.confidence, why)


def screen(G: np.ndarray, Pa: np.ndarray, Pb: np.ndarray, frame: int,
           sample_rate_hz: float):
    """A fast first look at a pair: ``sum |G| / sum sqrt(Pa Pb)`` over the band (the
    power-weighted coherence, before any lag is chosen).  Mics of one source score near 1,
    independent channels about ``1 / sqrt(frames)``; bleed can score high too, which the
    full estimate then tells apart.  Pairs under ``SCREEN_MIN`` are not estimated.  Sums
    run over the last axis: ``(pairs, bins)`` arrays give one score per pair."""
    k_lo, k_hi = band(frame, sample_rate_hz)
    geo = np.sqrt(Pa[..., k_lo:k_hi] * Pb[..., k_lo:k_hi]).sum(axis=-1)
    q = np.abs(G[..., k_lo:k_hi]).sum(axis=-1) / np.maximum(geo, 1e-300)
    return float(q) if np.ndim(q) == 0 else q


def _mono(name: str, x) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 2:
        a = a.mean(axis=1) if a.shape[1] <= 8 else a.mean(axis=0)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"stem {name!r}: expected a 1-D (frames,) or 2-D (frames, "
                         f"channels) array of samples")
    a = a.astype(np.float64)
    a[~np.isfinite(a)] = 0.0
    return a


def _pair_stats(Xa: np.ndarray, Xb: np.ndarray):
    """Frame-averaged cross- and auto-spectra over the frames where both are playing, and
    the same sums per group of frames (``JACKKNIFE_GROUPS`` consecutive runs)."""
    ea = np.sum(np.abs(Xa) ** 2, axis=1)
    eb = np.sum(np.abs(Xb) ** 2, axis=1)
    act = (ea > 1e-9 * max(ea.max(initial=0.0), 1e-300)) & \
          (eb > 1e-9 * max(eb.max(initial=0.0), 1e-300))
    n = int(act.sum())
    if n == 0:
        return None
    Xa, Xb = Xa[act], Xb[act]
    cross, pa, pb = np.conj(Xa) * Xb, np.abs(Xa) ** 2, np.abs(Xb) ** 2
    edges = (np.arange(JACKKNIFE_GROUPS + 1) * n) // JACKKNIFE_GROUPS
    sums = tuple(np.add.reduceat(v, edges[:-1], axis=0) if n >= JACKKNIFE_GROUPS
                 else np.zeros((0, v.shape[1]), v.dtype) for v in (cross, pa, pb))
    counts = np.diff(edges).astype(np.float64) if n >= JACKKNIFE_GROUPS else np.zeros(0)
    total = sums[0].sum(axis=0) if n >= JACKKNIFE_GROUPS else cross.sum(axis=0)
    return (total / n, pa.mean(axis=0), pb.mean(axis=0), n, sums + (counts,))


def analyse_pair(a: np.ndarray, b: np.ndarray, sample_rate_hz: float,
                 spectra: tuple[np.ndarray, np.ndarray] | None = None) -> PairEstimate:
    """The estimate for mono signals ``a`` and ``b`` (b against a), with the offline
    residual pass; ``spectra`` are their ``frame_spectra`` when already computed."""
    fs = float(sample_rate_hz)
    frame = frame_length(fs)
    hop = frame // 2
    Xa, Xb = spectra if spectra is not None else (frame_spectra(a, frame, hop),
                                                  frame_spectra(b, frame, hop))
    st = _pair_stats(Xa, Xb)
    if st is None or st[3] < MIN_FRAMES:
        return PairEstimate(0.0, False, 0.0, 0.0, 1.0, math.inf, 0.0, 0.0,
                            "too little programme")
    first = estimate_pair(*st[:4], None, fs, frame)   # the jackknife: in the fine pass
    if not first.related:
        return first
    # Residual pass: take b's frames shifted by the whole-sample lag, so the two windows
    # see the same stretch of the wave, and refine from there.
    lag = int(round(first.lag_samples))
    n = min(Xa.shape[0], Xb.shape[0])
    if lag >= 0:
        Ya, Yb = frame_spectra(a, frame, hop, 0, n), frame_spectra(b, frame, hop, lag, n)
    else:
        Ya, Yb = frame_spectra(a, frame, hop, -lag, n), frame_spectra(b, frame, hop, 0, n)
    k = min(Ya.shape[0], Yb.shape[0])
    st2 = _pair_stats(Ya[:k], Yb[:k])
    if st2 is None or st2[3] < MIN_FRAMES:
        return first
    fine = estimate_pair(*st2, fs, frame, start=(first.lag_samples - lag, first.inverted))
    # the rivals were weighed over the whole range by the first pass
    est = PairEstimate(lag + fine.lag_samples, fine.inverted, fine.coherence, fine.peak,
                       first.ambiguity, fine.std_samples, fine.correlation,
                       fine.confidence if fine.abstained is None else first.confidence, None)
    return _decide(est)


def find_alignments(stems: Mapping[str, np.ndarray], sample_rate_hz: float) -> list[Alignment]:
    """Which channels are mics of one source, and how each is late and inverted against
    the one it is aligned to.

    ``stems``: name -> samples ``(frames,)`` or ``(frames, channels)`` (folded to mono),
    all at ``sample_rate_hz``; stems of different lengths are compared over the shortest.
    Returns one :class:`Alignment` per channel that has a related channel, except each
    group's root (its earliest channel, which the others are aligned to, directly or
    through another member); an abstained entry where a channel's only relations are
    unsure.  Unrelated or silent channels get no entry.
    """
    fs = float(sample_rate_hz)
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"sample rate {sample_rate_hz!r}: use a positive number of Hz")
    names = [str(n) for n in stems]
    if len(set(names)) != len(names):
        raise ValueError("stem names must be unique")
    sig = {n: _mono(n, stems[k]) for n, k in zip(names, stems)}
    if not sig:
        return []
    length = min(len(v) for v in sig.values())
    frame = frame_length(fs)
    hop = frame // 2
    live = [n for n in names
            if length > 0 and 10 * math.log10(float(np.mean(sig[n][:length] ** 2)) + 1e-30)
            > SILENT_DBFS]
    spectra = {n: frame_spectra(sig[n][:length], frame, hop) for n in live}
    live = [n for n in live if spectra[n].shape[0] >= MIN_FRAMES]   # too short: no pair
    power = {n: np.mean(np.abs(spectra[n]) ** 2, axis=0) for n in live}
    pairs: dict[tuple[str, str], PairEstimate] = {}
    for i, a in enumerate(live):
        for b in live[i + 1:]:
            cross = np.einsum("fk,fk->k", np.conj(spectra[a]), spectra[b]) / spectra[a].shape[0]
            if screen(cross, power[a], power[b], frame, fs) < SCREEN_MIN:
                continue                  # unrelated: not worth the full estimate
            est = analyse_pair(sig[a][:length], sig[b][:length], fs, (spectra[a], spectra[b]))
            if est.related or (est.abstained and est.abstained != "not related"
                               and est.abstained != "too little programme"):
                pairs[(a, b)] = est
    return _tree(live, pairs, fs)


def _tree(names: list[str], pairs: Mapping[tuple[str, str], PairEstimate],
          fs: float) -> list[Alignment]:
    """Groups as maximum spanning trees of the confident pairs, rooted at the earliest."""
    sure = sorted(((e.confidence, a, b) for (a, b), e in pairs.items() if e.abstained is None),
                  reverse=True)
    parent = {n: n for n in names}

    def root(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n
    edges: dict[str, list[tuple[str, float, bool, PairEstimate]]] = {n: [] for n in names}
    for _, a, b in sure:                     # Kruskal
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        parent[ra] = rb
        e = pairs[(a, b)]
        edges[a].append((b, e.lag_samples, e.inverted, e))
        edges[b].append((a, -e.lag_samples, e.inverted, e))
    out: list[Alignment] = []
    seen: set[str] = set()
    for start in names:
        if start in seen or not edges[start]:
            continue
        # arrival time and polarity of every member against ``start``
        when, flip, order = {start: 0.0}, {start: False}, [start]
        for n in order:
            for m, lag, inv, _ in edges[n]:
                if m not in when:
                    when[m], flip[m] = when[n] + lag, flip[n] ^ inv
                    order.append(m)
        seen.update(order)
        first = min(order, key=lambda n: (when[n], names.index(n)))
        done = {first}
        queue = [first]
        for n in queue:                       # re-root at the earliest channel
            for m, lag, inv, e in edges[n]:
                if m in done:
                    continue
                done.add(m)
                queue.append(m)
                out.append(Alignment(m, n, 1e3 * lag / fs, bool(inv), round(e.confidence, 4),
                                     round(e.correlation, 4), None))
    # channels whose only relations are unsure
    placed = {a.channel for a in out} | {a.aligned_to for a in out}
    unsure: dict[str, tuple[float, str, PairEstimate]] = {}
    for (a, b), e in pairs.items():
        if e.abstained is None:
            continue
        for ch, other in ((b, a), (a, b)):
            if ch not in placed and (ch not in unsure or e.coherence > unsure[ch][0]):
                unsure[ch] = (e.coherence, other, e)
    for ch in names:
        if ch in unsure and not (unsure[ch][1] in unsure and unsure[unsure[ch][1]][1] == ch
                                 and names.index(ch) < names.index(unsure[ch][1])):
            _, other, e = unsure[ch]
            out.append(Alignment(ch, other, 0.0, False, round(e.confidence, 4),
                                 round(e.correlation, 4), e.abstained))
    return out


def corrections(alignments: Iterable[Alignment],
                sample_rate_hz: float | None = None) -> dict[str, tuple[float, bool]]:
    """Strip settings that align each group: ``{channel: (delay_ms, polarity_invert)}``.

    Every channel is delayed to meet its group's latest channel (a delay can only be
    added); channels inverted against the group's root are flipped.  With the sample rate
    given, every member of a group is delayed by at least ``delay.HALF_TAPS - 1`` samples
    more, so that each gets the strip's full-length interpolator (``edgemix/dsp/delay.py``:
    shorter delays have fewer taps); the group's relative timing is unchanged.  Abstained
    entries change nothing; channels of no group are left out.
    """
    links = [a for a in alignments if a.abstained is None]
    when: dict[str, float] = {}
    flip: dict[str, bool] = {}
    group: dict[str, str] = {}
    pending = list(links)
    for a in links:
        if a.aligned_to not in {b.channel for b in links}:
            when.setdefault(a.aligned_to, 0.0)
            flip.setdefault(a.aligned_to, False)
            group.setdefault(a.aligned_to, a.aligned_to)
    while pending:
        rest = []
        for a in pending:
            if a.aligned_to in when:
                when[a.channel] = when[a.aligned_to] + a.delay_ms
                flip[a.channel] = flip[a.aligned_to] ^ a.polarity_inverted
                group[a.channel] = group[a.aligned_to]
            else:
                rest.append(a)
        if len(rest) == len(pending):
            break                                 # a cycle: not from find_alignments
        pending = rest
    latest: dict[str, float] = {}
    for ch, g in group.items():
        latest[g] = max(latest.get(g, -math.inf), when[ch])
    lift = 0.0
    if sample_rate_hz is not None:
        from edgemix.dsp.delay import HALF_TAPS
        lift = 1e3 * (HALF_TAPS - 1) / float(sample_rate_hz)
    return {ch: (min(P.MAX_DELAY_MS, latest[group[ch]] - when[ch] + lift), flip[ch])
            for ch in group}
