"""Features as they would be after gain staging: what makes a policy trim-invariant.

The features are measured on the raw input (``edgemix.features``), so the levels in them
and the mix context (each channel's band powers and loudness against the sum of the
others) move with every input gain.  A model fed raw features answers a 20 dB hotter
preamp with a different fader, compressor and even role, and two copies of a session that
differ only in input trims come out as different mixes (issue 10 measured up to 2.8 dB of
third-octave balance difference and 3.8 LU).

The staging trim does not depend on the input gain (it follows the measured loudness:
``rules.staging_trim``), so :func:`staged_features` rewrites a snapshot as it would read
had each channel been trimmed by it: absolute levels move by the trim; the shape features
(band levels relative to the channel's own power, crest, centroid, flatness, activity)
stay; the mix context is recomputed exactly.  For the mix context the kernel reports
``m = 10 log10(own / rest)`` per band (and the same for the active loudness), so each
channel's share of the band's total is ``s = r / (1 + r)`` with ``r = 10^(m/10)``: scale
each share by its channel's trim, and the ratios follow.  Two copies of a session that
differ only in input gains then give the same staged features, up to measurement noise
and the -70 LUFS absolute gate.  One approximation: the kernel adds a -100 dB floor to
both sides of each ratio, so in a band some 30 dB or more under a channel's own total the
ratio is the floor's, and the recomputed value there is only as good as that (measured on
trims 20 dB apart: within 1 dB wherever the channel has energy; the network's outputs
agree to 0.012 of their range).
"""
from __future__ import annotations

import numpy as np

from edgemix import features as F

#: Level features that move with the input gain (dB for dB).
LEVEL_COLUMNS = (F.F_LST, F.F_LACT, F.F_RMS, F.F_PEAK)


def _ratio_db(own: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """The feature kernel's ``own / rest`` in dB: two silences 0 dB, clamped to
    +-``-FLOOR_DB``."""
    lim = -F.FLOOR_DB
    with np.errstate(divide="ignore", invalid="ignore"):
        r = 10.0 * np.log10(own / rest)
    r = np.where(own <= F.EPS_POWER * 1e-10, -lim, np.where(rest <= 0.0, lim, r))
    r = np.where((own <= F.EPS_POWER * 1e-10) & (rest <= F.EPS_POWER * 1e-10), 0.0, r)
    return np.clip(r, -lim, lim)


def _rescaled_context(ratio_db: np.ndarray, silent: np.ndarray, gain_db: np.ndarray):
    """Own-vs-rest ratios ``(n, k)`` after scaling each channel's power by ``gain_db``."""
    r = 10.0 ** (np.asarray(ratio_db, dtype=np.float64) / 10.0)
    share = np.where(silent, 0.0, r / (1.0 + r))
    own = share * 10.0 ** (np.asarray(gain_db, dtype=np.float64)[:, None] / 10.0)
    rest = own.sum(axis=0, keepdims=True) - own
    return _ratio_db(own, np.maximum(rest, 0.0))


def staged_features(features: np.ndarray, trims_db: np.ndarray) -> np.ndarray:
    """A copy of the ``(n, N_FEATURES)`` snapshot as it would read after each channel's
    input were trimmed by ``trims_db`` (NaN: 0 dB).  Floors stay floors."""
    f = np.array(features, dtype=np.float64, copy=True)
    g = np.nan_to_num(np.asarray(trims_db, dtype=np.float64), nan=0.0)
    if f.ndim != 2 or f.shape[1] != F.N_FEATURES or g.shape != (f.shape[0],):
        raise ValueError(f"features {f.shape} and trims {g.shape}: expected (n, "
                         f"{F.N_FEATURES}) and (n,)")
    for col in LEVEL_COLUMNS:
        v = f[:, col]
        f[:, col] = np.where(v <= F.FLOOR_DB, v, np.maximum(v + g, F.FLOOR_DB))
    bands = f[:, F.F_BAND:F.F_BAND + F.N_BANDS]
    f[:, F.F_MASK:F.F_MASK + F.N_BANDS] = _rescaled_context(
        f[:, F.F_MASK:F.F_MASK + F.N_BANDS], bands <= F.FLOOR_DB, g)
    f[:, F.F_REL:F.F_REL + 1] = _rescaled_context(
        f[:, F.F_REL:F.F_REL + 1], (f[:, F.F_LACT] <= F.FLOOR_DB)[:, None], g)
    return f
