"""Mono compatibility: what the mix loses when folded to mono, and which channels cause it.

* **Correlation** of the stereo master, ``sum L R / sqrt(sum L^2 sum R^2)`` (the
  phase-correlation meter's reading over the whole programme: +1 mono, 0 unrelated or
  wide, -1 one side the other inverted).
* **Per-band mono loss**: in each octave band (ISO 266 centres 31.5 Hz .. 16 kHz) the power
  of the mono fold ``L + R`` against the power sum ``P_L + P_R`` of the two sides,
  ``loss_db = 10 log10((P_L + P_R) / (P_L + P_R + 2 Re S_LR))`` from the Welch cross
  spectrum: 0 dB for unrelated sides, -3 dB (a gain) for a centred source, large where the
  sides cancel.  ``MAX_LOSS_DB`` caps a total cancellation.
* **Culprits** (:func:`related_pairs`): pairs of channels that are one signal, found by
  the cross-correlation of every pair within ``MAX_LAG_MS``: the lag of the largest
  PHAT-weighted (whitened, Knapp & Carter 1976) correlation, refined to a fraction of a
  sample by a parabola through the peak, and the plain normalised correlation at that lag
  as the strength.  Two kinds hurt a mono fold:

  - an **inverted pair** (lag within ``SAME_TIME_MS``, correlation at most
    ``-MIN_CORRELATION``): the two cancel;
  - a **comb pair** (``SAME_TIME_MS`` < lag <= ``MAX_LAG_MS``, correlation at least
    ``MIN_CORRELATION``): a Haas double or two mics of one source at different distances;
    summed, the delay ``tau`` puts notches at odd multiples of ``1 / (2 tau)``.

Each finding carries its fix in words (:func:`warnings`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

#: Octave band centres (ISO 266) and the loss cap.
OCTAVE_CENTRES_HZ = (31.5, 63.0, 125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0)
MAX_LOSS_DB = 60.0
#: A band's loss at or above this is worth a warning (a quarter of the power gone).
LOSS_WARN_DB = 1.25
#: Pairs: how far apart in time, how alike, and what counts as "at the same time".
MAX_LAG_MS = 30.0
SAME_TIME_MS = 0.05
MIN_CORRELATION = 0.5
#: At or above this a delayed pair is one signal copied (a Haas double), not two mics
#: (whose colourations differ and keep their correlation lower).
COPY_CORRELATION = 0.98
#: Longest stretch the pair search reads (the loudest, from the channels' common energy).
ANALYSIS_S = 8.0
WELCH_NFFT = 4096
#: The pair search's coarse pass: decimation factor and how much weaker than the threshold
#: its low-band peak may be and still be looked at in full.
COARSE = 8
COARSE_MIN = 0.5


@dataclass(frozen=True)
class Pair:
    """Channels ``a`` and ``b`` carry one signal: ``b`` is ``delay_ms`` late against ``a``
    (negative: early) with normalised correlation ``correlation`` at that lag."""

    a: str
    b: str
    delay_ms: float
    correlation: float

    @property
    def inverted(self) -> bool:
        return self.correlation < 0.0

    @property
    def kind(self) -> str:
        """``"inverted"``, ``"comb"`` or ``"related"`` (neither hurts a fold)."""
        if abs(self.delay_ms) <= SAME_TIME_MS:
            return "inverted" if self.correlation <= -MIN_CORRELATION else "related"
        return "comb" if abs(self.correlation) >= MIN_CORRELATION else "related"


@dataclass(frozen=True)
class MonoFold:
    """The stereo master's correlation and its per-band loss folded to mono."""

    correlation: float
    bands_hz: tuple[float, ...]
    loss_db: tuple[float, ...]

    @property
    def worst_band(self) -> tuple[float, float]:
        k = int(np.argmax(self.loss_db))
        return self.bands_hz[k], self.loss_db[k]


def correlation(left, right) -> float:
    """The phase-correlation reading of a stereo signal (0 for a silent side)."""
    left = np.asarray(left, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    den = math.sqrt(float(np.dot(left, left)) * float(np.dot(right, right)))
    return float(np.dot(left, right) / den) if den > 0 else 0.0


def welch_spectra(left, right, sample_rate_hz: float, nfft: int = WELCH_NFFT):
    """``(freqs_hz, P_L, P_R, S_LR)``: Welch averages (Hann, 50 % overlap) of the two power
    spectra and the cross spectrum ``conj(L) R``, in the same (unnormalised) units."""
    n = len(left)
    nfft = min(nfft, max(1 << int(math.floor(math.log2(max(n, 16)))), 16))
    hop = nfft // 2
    w = np.hanning(nfft + 2)[1:-1]
    starts = np.arange(0, max(n - nfft, 0) + 1, hop)
    pl = np.zeros(nfft // 2 + 1)
    pr = np.zeros(nfft // 2 + 1)
    plr = np.zeros(nfft // 2 + 1, dtype=complex)
    for k in range(0, len(starts), 256):              # 256 frames at a time: bounded memory
        idx = starts[k:k + 256, None] + np.arange(nfft)[None, :]
        fl = np.fft.rfft(left[idx] * w, axis=1)
        fr = np.fft.rfft(right[idx] * w, axis=1)
        pl += np.sum(fl.real ** 2 + fl.imag ** 2, axis=0)
        pr += np.sum(fr.real ** 2 + fr.imag ** 2, axis=0)
        plr += np.sum(np.conj(fl) * fr, axis=0)
    return np.fft.rfftfreq(nfft, 1.0 / sample_rate_hz), pl, pr, plr


def mono_fold(left, right, sample_rate_hz: float) -> MonoFold:
    """Correlation and per-octave-band mono loss of a stereo master (1-D ``left``/``right``)."""
    left = np.asarray(left, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    if left.shape != right.shape or left.ndim != 1:
        raise ValueError("left and right must be 1-D and of one length")
    sr = float(sample_rate_hz)
    f, pl, pr, plr = welch_spectra(left, right, sr)
    bands = octave_bands(f, sr)
    losses = band_losses(pl, pr, plr, bands)
    return MonoFold(correlation(left, right), tuple(fc for fc, _ in bands), tuple(losses))


def octave_bands(freqs_hz: np.ndarray, sample_rate_hz: float) -> list[tuple[float, np.ndarray]]:
    """``(centre_hz, bins)`` of each octave band below Nyquist that holds a bin."""
    out = []
    for fc in OCTAVE_CENTRES_HZ:
        lo, hi = fc / math.sqrt(2.0), fc * math.sqrt(2.0)
        if lo >= sample_rate_hz / 2:
            break
        sel = (freqs_hz >= lo) & (freqs_hz < hi)
        if sel.any():
            out.append((fc, sel))
    return out


def band_losses(pl, pr, plr, bands) -> list[float]:
    """The mono loss of each band (module docstring) from the two power spectra and the
    cross spectrum."""
    losses = []
    for _, sel in bands:
        ps = float(pl[sel].sum() + pr[sel].sum())
        pm = ps + 2.0 * float(plr[sel].real.sum())
        losses.append(0.0 if ps <= 1e-20 else round(10.0 * math.log10(
            ps / max(pm, ps * 10.0 ** (-MAX_LOSS_DB / 10.0))), 3))
    return losses


def loudest_window(stems: np.ndarray, length: int) -> slice:
    """The ``length``-sample stretch where the channels together are loudest (1 s steps)."""
    n = stems.shape[0]
    if n <= length:
        return slice(0, n)
    e = np.concatenate([[0.0], np.cumsum(np.sum(stems.astype(np.float64) ** 2, axis=1))])
    starts = np.arange(0, n - length + 1, max(length // 12, 1))
    k = int(starts[np.argmax(e[starts + length] - e[starts])])
    return slice(k, k + length)


def related_pairs(names: Sequence[str], stems: np.ndarray, sample_rate_hz: float, *,
                  max_lag_ms: float = MAX_LAG_MS, min_correlation: float = MIN_CORRELATION
                  ) -> list[Pair]:
    """Every pair of channels (columns of ``stems``, ``(frames, channels)``) whose
    normalised cross-correlation within ``max_lag_ms`` reaches ``min_correlation`` in
    magnitude, strongest first."""
    stems = np.asarray(stems, dtype=np.float64)
    if stems.ndim != 2 or stems.shape[1] != len(names):
        raise ValueError(f"stems {stems.shape}: expected (frames, {len(names)})")
    sr = float(sample_rate_hz)
    win = loudest_window(stems, int(ANALYSIS_S * sr))
    x = stems[win] - stems[win].mean(axis=0)
    n = x.shape[0]
    lag = int(math.ceil(max_lag_ms * 1e-3 * sr))
    nfft = 1 << int(math.ceil(math.log2(n + lag + 1)))
    spec = np.fft.rfft(x, n=nfft, axis=0)
    energy = np.sum(x * x, axis=0)
    # A coarse pass first: the cross-correlation of the signals low-passed and decimated
    # by COARSE (the cross spectrum's lowest bins, inverted on a short grid), which
    # finds the candidate pairs for a fraction of the cost of the full-rate one.
    nc = nfft // COARSE
    low = spec[:nc // 2 + 1]
    e_low = np.sum(low.real ** 2 + low.imag ** 2, axis=0)
    lag_c = lag // COARSE + 2
    out: list[Pair] = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if energy[i] <= 1e-12 or energy[j] <= 1e-12:
                continue
            cc = np.fft.irfft(np.conj(low[:, i]) * low[:, j], nc)
            cc = np.r_[cc[:lag_c + 1], cc[-lag_c:]]
            # normalised: irfft on nc points of one-sided bins is (2 / nc) x their sum
            den = 2.0 * math.sqrt(e_low[i] * e_low[j]) / nc
            if den <= 0 or np.max(np.abs(cc)) / den < COARSE_MIN * min_correlation:
                continue
            cross = np.conj(spec[:, i]) * spec[:, j]          # peak at +tau: j late
            plain = np.fft.irfft(cross, nfft)
            mag = np.abs(cross)
            phat = np.fft.irfft(cross / np.maximum(mag, mag.max() * 1e-9), nfft)
            lags = np.r_[0:lag + 1, -lag:0]
            p = np.r_[phat[:lag + 1], phat[-lag:]]
            k = int(np.argmax(np.abs(p)))
            tau = float(lags[k]) + _parabola(phat, int(lags[k]) % nfft, nfft)
            r = float(plain[int(lags[k]) % nfft] / math.sqrt(energy[i] * energy[j]))
            if abs(r) >= min_correlation:
                out.append(Pair(names[i], names[j], tau / sr * 1e3, r))
    out.sort(key=lambda q: -abs(q.correlation))
    return out


def _parabola(c: np.ndarray, k: int, n: int) -> float:
    """Sub-sample offset of the peak at ``k`` of the circular sequence ``c``."""
    y0, y1, y2 = c[(k - 1) % n], c[k], c[(k + 1) % n]
    den = y0 - 2.0 * y1 + y2
    return float(0.5 * (y0 - y2) / den) if den != 0 else 0.0


def comb_notches_hz(delay_ms: float, n: int = 3) -> list[float]:
    """The first ``n`` notches of ``x(t) + x(t - tau)``: odd multiples of ``1 / (2 tau)``."""
    tau = abs(delay_ms) * 1e-3
    return [(2 * k + 1) / (2.0 * tau) for k in range(n)] if tau > 0 else []


def warnings(fold: MonoFold | None, pairs: Sequence[Pair],
             aligned: Mapping[str, str] | None = None) -> list[str]:
    """One sentence per finding, each saying the fix.  ``aligned``: channel -> the channel
    its alignment was measured against (mics of one source, which alignment fixes)."""
    aligned = dict(aligned or {})
    out = []
    for p in pairs:
        kind = p.kind
        same_source = aligned.get(p.b) == p.a or aligned.get(p.a) == p.b
        if kind == "inverted":
            out.append(f"{p.a} and {p.b} are one signal in opposite polarity (correlation "
                       f"{p.correlation:+.2f}): folded to mono they cancel; invert the "
                       f"polarity of {p.b}")
        elif kind == "comb":
            late, early = (p.b, p.a) if p.delay_ms > 0 else (p.a, p.b)
            notches = ", ".join(f"{f:.0f}" for f in comb_notches_hz(p.delay_ms))
            # one signal, delayed: the same colouration (a copy), not two mics
            copy = abs(p.correlation) >= COPY_CORRELATION
            what = "a Haas double" if copy or not same_source else "two mics of one source"
            fix = (f"narrow the pair, or replace {late} with a separate take instead of a "
                   "delayed copy" if what == "a Haas double" else
                   f"delay {early} by {abs(p.delay_ms):.2f} ms (delay_ms) to align them")
            pol = ", inverted" if p.inverted else ""
            out.append(f"{late} is {early} {abs(p.delay_ms):.2f} ms late ({what}, "
                       f"correlation {p.correlation:+.2f}{pol}): folded to mono it "
                       f"comb-filters (notches at {notches} Hz ...); {fix}")
    if fold is not None:
        bad = [(f, l) for f, l in zip(fold.bands_hz, fold.loss_db) if l >= LOSS_WARN_DB]
        if bad:
            worst = max(bad, key=lambda t: t[1])
            cause = "; see the pairs above" if any(p.kind != "related" for p in pairs) else ""
            out.append(f"the master loses up to {worst[1]:.1f} dB at {_hz(worst[0])} folded "
                       f"to mono (correlation {fold.correlation:+.2f}){cause}")
        elif fold.correlation < 0.0:
            out.append(f"the master's correlation is {fold.correlation:+.2f}: check it in mono")
    return out


def _hz(f: float) -> str:
    return f"{f / 1000:g} kHz" if f >= 1000 else f"{f:g} Hz"


class LiveMono:
    """The mono fold measured live on the control side, for the desk and the web surface.

    The control loop already reads every channel's raw input; :meth:`process` folds each
    block to stereo with the console's own gains as last staged (trim, polarity, fader,
    mute and the constant-power pan law ``L = cos, R = sin`` of ``(pan + 1) pi / 4``; the
    strip's EQ and dynamics are left out: the fold's phase relations, which are what mono
    compatibility is about, come from polarity, delay and pan) and keeps exponentially
    weighted (``tau_s``) Welch sums of ``P_L``, ``P_R``, ``S_LR`` and the correlation's
    time-domain sums.  :meth:`snapshot` is a small JSON-ready dict: the correlation, the
    per-octave loss, the worst band and a warning sentence (or None).

    Threads: ``process``/``reset`` belong to the thread that feeds the control loop;
    ``snapshot`` may be read from any thread (it reads a published dict).
    """

    def __init__(self, sample_rate_hz: float, n_channels: int, tau_s: float = 3.0,
                 nfft: int = 2048):
        self.sample_rate_hz = float(sample_rate_hz)
        self.n_channels = int(n_channels)
        self.nfft = int(nfft)
        self.tau_s = float(tau_s)
        self._win = np.hanning(self.nfft + 2)[1:-1]
        self._bands = octave_bands(np.fft.rfftfreq(self.nfft, 1.0 / self.sample_rate_hz),
                                   self.sample_rate_hz)
        self.reset()

    def reset(self) -> None:
        n = self.nfft // 2 + 1
        self._pl, self._pr = np.zeros(n), np.zeros(n)
        self._plr = np.zeros(n, dtype=complex)
        self._lr = self._ll = self._rr = 0.0
        self._tail = np.zeros((0, 2))
        self._published = {"correlation": 0.0, "bands_hz": [b for b, _ in self._bands],
                           "loss_db": [0.0] * len(self._bands), "worst_band_hz": None,
                           "worst_loss_db": 0.0, "warning": None}

    @staticmethod
    def gains(channel_params: np.ndarray) -> np.ndarray:
        """``(n_channels, 2)`` left/right gains of each channel's input in the master."""
        from edgemix import params as P
        cp = np.asarray(channel_params, dtype=np.float64)
        g = np.asarray(P.db_to_gain(cp[:, P.CH.trim_db] + cp[:, P.CH.fader_db]))
        g = np.where(cp[:, P.CH.fader_db] <= P.OFF_DB, 0.0, g)
        g = g * np.where(cp[:, P.CH.polarity_invert] >= 0.5, -1.0, 1.0)
        g = g * np.where(cp[:, P.CH.mute_on] >= 0.5, 0.0, 1.0)
        th = (np.clip(cp[:, P.CH.pan], -1.0, 1.0) + 1.0) * math.pi / 4.0
        return np.stack([g * np.cos(th), g * np.sin(th)], axis=1)

    def process(self, frames: np.ndarray, channel_params: np.ndarray | None) -> None:
        """Fold ``(frames, n_channels)`` raw input with ``channel_params`` (the console's
        staged ``(n_channels, N_CH)``; None: unity, centred) and update the measure."""
        x = np.asarray(frames, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_channels or not len(x):
            return
        if channel_params is None:
            from edgemix import params as P
            channel_params = P.channel_defaults(self.n_channels)
        lr = x @ self.gains(channel_params)
        if not np.all(np.isfinite(lr)):
            return
        a = math.exp(-len(x) / (self.tau_s * self.sample_rate_hz))
        self._ll = a * self._ll + float(lr[:, 0] @ lr[:, 0])
        self._rr = a * self._rr + float(lr[:, 1] @ lr[:, 1])
        self._lr = a * self._lr + float(lr[:, 0] @ lr[:, 1])
        buf = np.concatenate([self._tail, lr])
        hop = self.nfft // 2
        k = 0
        while k + self.nfft <= len(buf):
            seg = buf[k:k + self.nfft] * self._win[:, None]
            fl, fr = np.fft.rfft(seg[:, 0]), np.fft.rfft(seg[:, 1])
            b = math.exp(-hop / (self.tau_s * self.sample_rate_hz))
            self._pl = b * self._pl + (fl.real ** 2 + fl.imag ** 2)
            self._pr = b * self._pr + (fr.real ** 2 + fr.imag ** 2)
            self._plr = b * self._plr + np.conj(fl) * fr
            k += hop
        self._tail = buf[k:]
        self._publish()

    def _publish(self) -> None:
        den = math.sqrt(self._ll * self._rr)
        r = self._lr / den if den > 0 else 0.0
        losses = band_losses(self._pl, self._pr, self._plr, self._bands)
        k = int(np.argmax(losses)) if losses else 0
        worst = losses[k] if losses else 0.0
        fc = self._bands[k][0] if losses else None
        warn = None
        if worst >= LOSS_WARN_DB:
            warn = (f"mono fold loses {worst:.1f} dB at {_hz(fc)} (correlation {r:+.2f}): "
                    "check for an inverted channel or a delayed copy panned apart")
        self._published = {"correlation": round(float(r), 4),
                           "bands_hz": [b for b, _ in self._bands], "loss_db": losses,
                           "worst_band_hz": fc, "worst_loss_db": worst, "warning": warn}

    def snapshot(self) -> dict:
        """The latest measure: ``correlation``, ``bands_hz``, ``loss_db``,
        ``worst_band_hz``, ``worst_loss_db``, ``warning`` (a sentence or None)."""
        return dict(self._published)
