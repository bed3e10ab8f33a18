"""Programme loudness: ITU-R BS.1770-4 K-weighting, EBU momentary/short-term loudness,
gated integrated loudness and EBU Tech 3342 loudness range, all streaming.

The chain, per ITU-R BS.1770-4 Annex 1 (equation numbers below are that annex's):

* K-weighting: a high-shelf "pre-filter" (head acoustics) followed by the RLB high-pass,
  two biquads per channel in transposed direct form II, float64.
* Mean square of the weighted signal per channel, weighted by the channel gains ``G_i``
  and summed (eq. 1 and 2); loudness ``L = -0.691 + 10 log10(sum G_i z_i)`` (eq. 2).
* Momentary loudness over a 400 ms window and short-term over 3 s, refreshed every
  100 ms (EBU Tech 3341 section 2.2/2.3: at least 10 Hz).
* Integrated loudness of 400 ms blocks with 75 % overlap (the same 100 ms grid), absolute
  gate -70 LKFS, relative gate -10 LU (eq. 3-7).
* Loudness range of the 3 s short-term values on the 100 ms grid, absolute gate -70 LUFS,
  relative gate -20 LU, LRA = 95th - 10th percentile (EBU Tech 3342 section 2).

Streaming design.  The grid is anchored to the absolute frame counter in the state
array: hop ``k`` ends at frame ``k * hop_frames`` whatever the block sizes were, so the
readings after any frame are the same for blocks of 1, 17, 64 or the whole file (the
per-sample work is the same sequence of float operations in the same order, so they are
bit-identical).  Each channel sums its weighted squares into an accumulator during the
hop; at the hop boundary the channel sums (times ``G_i``) go into a ring of the last 30
sub-block energies.  The momentary window is the last 4 entries, the short-term the last 30
(summed afresh each hop, so no running-sum drift).

Integrated loudness and LRA need every block of the programme.  Instead of storing the
programme, each 400 ms block (and each 3 s short-term value) goes into a preallocated
histogram of 0.01 LU bins from -70 to +10 LUFS (values above +10 land in the top bin).
Per bin we keep the count and the exact sum of block powers (integrated) or block
loudness values (LRA), plus exact running totals of everything above the absolute gate.
Hence:

* the absolute-gated mean and the relative gate threshold are exact;
* every block is classified exactly against the relative gate except those in the one
  bin that contains the threshold: those are classified together by their mean loudness
  (exact whenever they are equal, as for steady test tones; tested 0.006 LU either side
  of the gate).  The integrated value is the exact power mean of the included blocks.
  So I is exactly BS.1770-4's value for the programme with, at most, blocks lying within
  0.01 LU of the relative gate moved across it.  On programme material (noise, tones,
  gated speech-like envelopes at 44.1/48/96 kHz) the measured difference from the exact
  whole-signal computation is below 1e-12 LU; the tests require < 0.01 LU.  A contrived
  case (an 8 s two-tone signal with one block 0.0004 LU above the gate sharing its bin
  with thirty blocks 0.004 LU below) is off by 0.1 LU -- the same jump the exact
  algorithm makes if that one block's loudness moves by 0.001 LU;
* the LRA percentiles are read as the mean loudness of the bin holding the ranked value,
  so each percentile is within 0.01 LU of the exact order statistic and LRA within 0.02 LU.

The histograms are scanned only at hop boundaries (every 100 ms), from the relative gate's
bin to the highest occupied bin; the per-sample work is just the two biquads and a square.

Silence reads ``-inf`` LUFS for momentary, short-term and integrated loudness (never NaN);
the loudness range of a programme with no short-term value above the gates reads 0 LU.
Non-finite input samples are read as 0 so one bad sample cannot poison the filter state
(the console's input guard counts them upstream).

Coefficients for any sample rate follow the analogue-prototype derivation used by
libebur128 (``ebur128_init_filter``) and Brecht De Man's ``loudness.py`` (pyloudnorm's
"DeMan" filter class): the bilinear transform with pre-warping of a shelf and a high-pass
whose parameters were fitted to the 48 kHz coefficients of BS.1770-4 Table 1 and 2; at
48 kHz they reproduce those tables to within 1e-15.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from edgemix.dsp._jit import kernel
from edgemix.dsp.arena import _f64_1, _f64_2, _i64_1

# --- BS.1770-4 / EBU Tech 3341 / Tech 3342 constants ---------------------------------------

#: The -0.691 dB in BS.1770-4 eq. 2: it makes a 997 Hz (here 1 kHz) sine read its level.
LUFS_OFFSET_DB = -0.691
#: Absolute gate, BS.1770-4 eq. 5 (and EBU Tech 3342 for LRA).
ABSOLUTE_GATE_LUFS = -70.0
#: Relative gate below the absolute-gated loudness, BS.1770-4 eq. 6.
RELATIVE_GATE_LU = -10.0
#: Relative gate for the loudness range, EBU Tech 3342 section 2.
LRA_RELATIVE_GATE_LU = -20.0
#: Percentiles of the gated short-term distribution whose difference is the LRA (Tech 3342).
LRA_LOW_PERCENTILE = 0.10
LRA_HIGH_PERCENTILE = 0.95
#: Refresh interval of momentary/short-term (Tech 3341) and the step of the 75 %-overlap
#: gating blocks (BS.1770-4: 400 ms blocks, overlap 75 %).
HOP_S = 0.1
#: Window lengths in hops: 400 ms momentary / gating block, 3 s short-term.
MOMENTARY_HOPS = 4
SHORT_TERM_HOPS = 30

#: Histogram of block loudness: 0.01 LU bins from -70 to +10 LUFS.
HIST_MIN_LUFS = ABSOLUTE_GATE_LUFS
HIST_BIN_LU = 0.01
N_BINS = 8000
HIST_MAX_LUFS = HIST_MIN_LUFS + N_BINS * HIST_BIN_LU

#: Sample rates accepted (the 1682 Hz shelf needs the rate well above 3.4 kHz).
MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 384000

# --- K-weighting analogue prototypes (libebur128 ebur128_init_filter) -----------------------
_SHELF_F0_HZ = 1681.974450955533
_SHELF_GAIN_DB = 3.999843853973347
_SHELF_Q = 0.7071752369554196
_SHELF_VB_EXPONENT = 0.4996667741545416
_HIGHPASS_F0_HZ = 38.13547087602444
_HIGHPASS_Q = 0.5003270373238773

# --- layout of the scalar state array -------------------------------------------------------
#: Frames processed since reset (the absolute counter the 100 ms grid is anchored to).
IDX_FRAMES = 0
#: Hops (100 ms sub-blocks) completed since reset.
IDX_HOPS = 1
IDX_MOMENTARY_LUFS = 2
IDX_SHORT_TERM_LUFS = 3
IDX_MAX_MOMENTARY_LUFS = 4
IDX_MAX_SHORT_TERM_LUFS = 5
IDX_INTEGRATED_LUFS = 6
IDX_LRA_LU = 7
IDX_LRA_LOW_LUFS = 8
IDX_LRA_HIGH_LUFS = 9
#: Count and power sum of 400 ms blocks above the absolute gate; highest occupied bin.
IDX_I_COUNT = 10
IDX_I_POWER = 11
IDX_I_TOP_BIN = 12
#: Count and power sum of short-term values above the absolute gate; highest occupied bin.
IDX_ST_COUNT = 13
IDX_ST_POWER = 14
IDX_ST_TOP_BIN = 15
#: Ring of the last SHORT_TERM_HOPS weighted sub-block energies (sum of G_i * y^2).
IDX_RING = 16
N_STATE = IDX_RING + SHORT_TERM_HOPS

#: Columns of the per-channel state: two TDF-II states per biquad, the hop accumulator.
N_CHAN_STATE = 5
_ACC = 4

#: Rows of the histogram array.
HIST_I_COUNT = 0
HIST_I_POWER = 1
HIST_ST_COUNT = 2
HIST_ST_LUFS = 3

# Samples beyond this are not finite (float32 max); read as 0 (see the module docstring).
_FINITE_MAX = 3.5e38


def k_weighting_coefficients(sample_rate_hz: float) -> np.ndarray:
    """K-weighting for a sample rate: ``(10,)`` float64, pre-filter then RLB high-pass,
    each as normalised ``(b0, b1, b2, a1, a2)``.

    Bilinear transform with pre-warping ``K = tan(pi f0 / fs)`` of the analogue shelf and
    high-pass fitted to BS.1770-4 Tables 1 and 2 (libebur128 / De Man's derivation).
    """
    fs = float(sample_rate_hz)
    k = math.tan(math.pi * _SHELF_F0_HZ / fs)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh ** _SHELF_VB_EXPONENT
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = ((vh + vb * k / _SHELF_Q + k * k) / a0,
             2.0 * (k * k - vh) / a0,
             (vh - vb * k / _SHELF_Q + k * k) / a0,
             2.0 * (k * k - 1.0) / a0,
             (1.0 - k / _SHELF_Q + k * k) / a0)
    k = math.tan(math.pi * _HIGHPASS_F0_HZ / fs)
    a0 = 1.0 + k / _HIGHPASS_Q + k * k
    # The RLB high-pass keeps BS.1770's unnormalised numerator (1, -2, 1): its passband
    # gain is 1 only asymptotically, exactly as in Table 2.
    highpass = (1.0, -2.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HIGHPASS_Q + k * k) / a0)
    return np.array(shelf + highpass, dtype=np.float64)


class LoudnessState(NamedTuple):
    """Everything ``_loudness_process`` needs; a Numba function may take it as a tuple.

    ``coef`` (10,) K-weighting; ``weights`` (channels,) BS.1770 channel gains ``G_i``;
    ``hop_frames`` frames per 100 ms; ``state`` (N_STATE,) scalars (see ``IDX_*``);
    ``chan_state`` (channels, N_CHAN_STATE); ``hist`` (4, N_BINS).
    """

    coef: np.ndarray
    weights: np.ndarray
    hop_frames: int
    state: np.ndarray
    chan_state: np.ndarray
    hist: np.ndarray

    @classmethod
    def allocate(cls, sample_rate_hz: float, n_channels: int,
                 channel_weights=None) -> "LoudnessState":
        """Allocate and reset the arrays of one loudness meter.

        ``channel_weights`` are BS.1770-4's ``G_i`` (Table 3): 1.0 for L, R and C (the
        default for every channel), 1.41 for the surrounds, 0 to leave a channel (e.g.
        LFE) out.
        """
        fs = _check_rate(sample_rate_hz)
        n = _check_channels(n_channels)
        if channel_weights is None:
            weights = np.ones(n, dtype=np.float64)
        else:
            weights = np.array(channel_weights, dtype=np.float64).reshape(-1)
            if weights.shape != (n,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
                raise ValueError(f"channel_weights: give {n} finite weights >= 0 "
                                 "(BS.1770-4 G_i: 1.0 for L/R/C, 1.41 for surrounds)")
        ls = cls(coef=k_weighting_coefficients(fs), weights=weights,
                 hop_frames=hop_frames_for(fs), state=np.zeros(N_STATE),
                 chan_state=np.zeros((n, N_CHAN_STATE)), hist=np.zeros((4, N_BINS)))
        ls.reset()
        return ls

    def reset(self) -> None:
        """Clear the meter: no audio seen, every reading at its silent value."""
        _reset_loudness(self.state, self.chan_state, self.hist)


@kernel(inline="always")
def _loudness_views(table, s):
    """A :class:`LoudnessState` in an arena, as :func:`_loudness_process` takes it."""
    return (_f64_1(table, s, 0), _f64_1(table, s, 1), _i64_1(table, s, 2)[0],
            _f64_1(table, s, 3), _f64_2(table, s, 4), _f64_2(table, s, 5))


def hop_frames_for(sample_rate_hz: float) -> int:
    """Frames per 100 ms hop (rounded for rates that are not a multiple of 10 Hz)."""
    return int(round(float(sample_rate_hz) * HOP_S))


def _check_rate(sample_rate_hz) -> float:
    try:
        fs = float(sample_rate_hz)
    except (TypeError, ValueError):
        raise ValueError(f"sample_rate_hz = {sample_rate_hz!r}: expected a number") from None
    if not (MIN_SAMPLE_RATE_HZ <= fs <= MAX_SAMPLE_RATE_HZ):
        raise ValueError(f"sample_rate_hz = {sample_rate_hz!r} is out of range: use "
                         f"{MIN_SAMPLE_RATE_HZ} .. {MAX_SAMPLE_RATE_HZ}")
    return fs


def _check_channels(n_channels) -> int:
    if isinstance(n_channels, bool) or int(n_channels) != n_channels or n_channels < 1:
        raise ValueError(f"n_channels = {n_channels!r}: use a whole number >= 1")
    return int(n_channels)


@kernel
def _reset_loudness(state, chan_state, hist):
    """Clear a meter: no audio seen, every reading at its silent value."""
    state[:] = 0.0
    chan_state[:, :] = 0.0
    hist[:, :] = 0.0
    for i in (IDX_MOMENTARY_LUFS, IDX_SHORT_TERM_LUFS, IDX_MAX_MOMENTARY_LUFS,
              IDX_MAX_SHORT_TERM_LUFS, IDX_INTEGRATED_LUFS, IDX_LRA_LOW_LUFS,
              IDX_LRA_HIGH_LUFS):
        state[i] = -math.inf
    state[IDX_I_TOP_BIN] = -1.0
    state[IDX_ST_TOP_BIN] = -1.0


@kernel(inline="always")
def _power_to_lufs(power):
    """BS.1770-4 eq. 2 for a weighted mean square; ``-inf`` for silence (never NaN)."""
    if power > 0.0:
        return LUFS_OFFSET_DB + 10.0 * math.log10(power)
    return -math.inf


@kernel(inline="always")
def _bin_of(lufs):
    """Histogram bin of a loudness value; below-range values give -1, above clamp to top."""
    if lufs < HIST_MIN_LUFS:
        return -1
    k = int(math.floor((lufs - HIST_MIN_LUFS) / HIST_BIN_LU))
    return min(k, N_BINS - 1)


@kernel
def _update_integrated(state, hist):
    """Gated integrated loudness from the histogram (BS.1770-4 eq. 6 and 7)."""
    n_abs = state[IDX_I_COUNT]
    if n_abs <= 0.0:
        state[IDX_INTEGRATED_LUFS] = -math.inf
        return
    gate = _power_to_lufs(state[IDX_I_POWER] / n_abs) + RELATIVE_GATE_LU
    kg = _bin_of(gate)
    top = int(state[IDX_I_TOP_BIN])
    power = 0.0
    count = 0.0
    for k in range(max(kg, 0), top + 1):
        n = hist[HIST_I_COUNT, k]
        if n == 0.0:
            continue
        # Blocks in the bin holding the threshold are classified together by their mean
        # loudness; every other bin lies wholly above the gate (eq. 7: l_j > gamma_r).
        if k == kg and not _power_to_lufs(hist[HIST_I_POWER, k] / n) > gate:
            continue
        power += hist[HIST_I_POWER, k]
        count += n
    state[IDX_INTEGRATED_LUFS] = _power_to_lufs(power / count) if count > 0.0 else -math.inf


@kernel
def _update_range(state, hist):
    """Loudness range from the short-term histogram (EBU Tech 3342 section 2)."""
    n_abs = state[IDX_ST_COUNT]
    state[IDX_LRA_LU] = 0.0
    state[IDX_LRA_LOW_LUFS] = -math.inf
    state[IDX_LRA_HIGH_LUFS] = -math.inf
    if n_abs <= 0.0:
        return
    # Relative gate on the energy mean of the absolute-gated short-term values.
    gate = _power_to_lufs(state[IDX_ST_POWER] / n_abs) + LRA_RELATIVE_GATE_LU
    kg = _bin_of(gate)
    k0 = max(kg, 0)
    top = int(state[IDX_ST_TOP_BIN])
    total = 0.0
    for k in range(k0, top + 1):
        n = hist[HIST_ST_COUNT, k]
        if n == 0.0 or (k == kg and hist[HIST_ST_LUFS, k] / n < gate):
            continue
        total += n
    if total <= 0.0:
        return
    # Nearest-rank percentiles of the sorted gated values, as in Tech 3342's listing
    # (index round((n - 1) p)); each read as the mean of the bin holding that rank.
    rank_low = math.floor((total - 1.0) * LRA_LOW_PERCENTILE + 0.5)
    rank_high = math.floor((total - 1.0) * LRA_HIGH_PERCENTILE + 0.5)
    low = -math.inf
    high = -math.inf
    seen = 0.0
    for k in range(k0, top + 1):
        n = hist[HIST_ST_COUNT, k]
        if n == 0.0 or (k == kg and hist[HIST_ST_LUFS, k] / n < gate):
            continue
        if seen <= rank_low < seen + n:
            low = hist[HIST_ST_LUFS, k] / n
        if seen <= rank_high < seen + n:
            high = hist[HIST_ST_LUFS, k] / n
            break
        seen += n
    state[IDX_LRA_LOW_LUFS] = low
    state[IDX_LRA_HIGH_LUFS] = high
    state[IDX_LRA_LU] = high - low


@kernel
def _end_of_hop(weights, hop_frames, state, chan_state, hist):
    """Close one 100 ms sub-block: ring, momentary/short-term, gating histograms."""
    energy = 0.0
    for c in range(chan_state.shape[0]):
        energy += weights[c] * chan_state[c, _ACC]  # eq. 2: sum of G_i z_i
        chan_state[c, _ACC] = 0.0
    hops = int(state[IDX_HOPS])
    state[IDX_RING + hops % SHORT_TERM_HOPS] = energy
    hops += 1
    state[IDX_HOPS] = hops
    # Windows are summed afresh from the ring (newest first), never by add/subtract.
    e_m = 0.0
    for j in range(MOMENTARY_HOPS):
        e_m += state[IDX_RING + (hops - 1 - j) % SHORT_TERM_HOPS]
    e_s = e_m
    for j in range(MOMENTARY_HOPS, SHORT_TERM_HOPS):
        e_s += state[IDX_RING + (hops - 1 - j) % SHORT_TERM_HOPS]
    p_m = e_m / (MOMENTARY_HOPS * hop_frames)  # eq. 1: mean square over the window
    p_s = e_s / (SHORT_TERM_HOPS * hop_frames)
    l_m = _power_to_lufs(p_m)
    l_s = _power_to_lufs(p_s)
    state[IDX_MOMENTARY_LUFS] = l_m
    state[IDX_SHORT_TERM_LUFS] = l_s
    if l_m > state[IDX_MAX_MOMENTARY_LUFS]:
        state[IDX_MAX_MOMENTARY_LUFS] = l_m
    if l_s > state[IDX_MAX_SHORT_TERM_LUFS]:
        state[IDX_MAX_SHORT_TERM_LUFS] = l_s
    # A gating block is a full 400 ms window (eq. 3); absolute gate l_j > -70 (eq. 5).
    if hops >= MOMENTARY_HOPS and l_m > ABSOLUTE_GATE_LUFS:
        k = _bin_of(l_m)
        hist[HIST_I_COUNT, k] += 1.0
        hist[HIST_I_POWER, k] += p_m
        state[IDX_I_COUNT] += 1.0
        state[IDX_I_POWER] += p_m
        if k > state[IDX_I_TOP_BIN]:
            state[IDX_I_TOP_BIN] = k
        _update_integrated(state, hist)
    # Tech 3342: short-term values of full 3 s windows, absolute gate -70 LUFS.
    if hops >= SHORT_TERM_HOPS and l_s >= ABSOLUTE_GATE_LUFS:
        k = _bin_of(l_s)
        hist[HIST_ST_COUNT, k] += 1.0
        hist[HIST_ST_LUFS, k] += l_s
        state[IDX_ST_COUNT] += 1.0
        state[IDX_ST_POWER] += p_s
        if k > state[IDX_ST_TOP_BIN]:
            state[IDX_ST_TOP_BIN] = k
        _update_range(state, hist)


@kernel
def _loudness_process(x, coef, weights, hop_frames, state, chan_state, hist):
    """Meter one block ``x`` (channels, frames) float32; readings land in ``state``.

    Per sample: the two K-weighting biquads (TDF-II, float64) and the weighted square
    summed per channel.  At every 100 ms boundary of the absolute frame count:
    ``_end_of_hop``.  Reads ``state[IDX_MOMENTARY_LUFS]`` etc. afterwards.
    """
    n_ch = x.shape[0]
    n_frames = x.shape[1]
    b0, b1, b2, a1, a2 = coef[0], coef[1], coef[2], coef[3], coef[4]
    c0, c1, c2, d1, d2 = coef[5], coef[6], coef[7], coef[8], coef[9]
    i = 0
    while i < n_frames:
        pos = int(state[IDX_FRAMES] - state[IDX_HOPS] * hop_frames)
        take = min(n_frames - i, hop_frames - pos)
        for c in range(n_ch):
            z1 = chan_state[c, 0]
            z2 = chan_state[c, 1]
            z3 = chan_state[c, 2]
            z4 = chan_state[c, 3]
            acc = chan_state[c, _ACC]
            for k in range(i, i + take):
                v = np.float64(x[c, k])
                if not abs(v) < _FINITE_MAX:
                    v = 0.0
                y = b0 * v + z1  # pre-filter (BS.1770-4 Table 1)
                z1 = b1 * v - a1 * y + z2
                z2 = b2 * v - a2 * y
                u = c0 * y + z3  # RLB high-pass (Table 2)
                z3 = c1 * y - d1 * u + z4
                z4 = c2 * y - d2 * u
                acc += u * u
            chan_state[c, 0] = z1
            chan_state[c, 1] = z2
            chan_state[c, 2] = z3
            chan_state[c, 3] = z4
            chan_state[c, _ACC] = acc
        state[IDX_FRAMES] += take
        i += take
        if pos + take == hop_frames:
            _end_of_hop(weights, hop_frames, state, chan_state, hist)


class LoudnessMeter:
    """EBU-mode loudness meter (BS.1770-4, Tech 3341, Tech 3342) for any channel count.

    ``process`` takes ``(frames, channels)`` blocks of any length; with float32
    C-contiguous input it allocates nothing.  Readings refresh every 100 ms of audio.
    ``process`` and ``reset`` are for one thread (the audio thread); the reading
    properties may be read from any thread (each is one float64 load).
    """

    def __init__(self, sample_rate_hz: float, n_channels: int = 2, channel_weights=None):
        self._ls = LoudnessState.allocate(sample_rate_hz, n_channels, channel_weights)
        self.sample_rate_hz = float(sample_rate_hz)
        self.n_channels = int(n_channels)

    @property
    def kernel_state(self) -> LoudnessState:
        """The arrays the kernel runs on (for a fused caller that shares this meter)."""
        return self._ls

    def process(self, block) -> None:
        """Meter one block, ``(frames, channels)`` (or ``(frames,)`` for one channel)."""
        from edgemix.dsp.meters import channels_first_view
        x_cf = channels_first_view(block, self.n_channels)  # a view: no copy
        ls = self._ls
        _loudness_process(x_cf, ls.coef, ls.weights, ls.hop_frames, ls.state, ls.chan_state,
                         ls.hist)

    def reset(self) -> None:
        """Forget all audio (integrated loudness and LRA start again)."""
        self._ls.reset()

    @property
    def frames_processed(self) -> int:
        return int(self._ls.state[IDX_FRAMES])

    @property
    def momentary_lufs(self) -> float:
        """Loudness of the last 400 ms (as of the last 100 ms boundary), LUFS."""
        return float(self._ls.state[IDX_MOMENTARY_LUFS])

    @property
    def short_term_lufs(self) -> float:
        """Loudness of the last 3 s (as of the last 100 ms boundary), LUFS."""
        return float(self._ls.state[IDX_SHORT_TERM_LUFS])

    @property
    def max_momentary_lufs(self) -> float:
        return float(self._ls.state[IDX_MAX_MOMENTARY_LUFS])

    @property
    def max_short_term_lufs(self) -> float:
        return float(self._ls.state[IDX_MAX_SHORT_TERM_LUFS])

    @property
    def integrated_lufs(self) -> float:
        """Gated programme loudness since reset (BS.1770-4), LUFS; -inf until a block passes."""
        return float(self._ls.state[IDX_INTEGRATED_LUFS])

    @property
    def loudness_range_lu(self) -> float:
        """EBU Tech 3342 loudness range since reset, LU (0 until a value passes the gates)."""
        return float(self._ls.state[IDX_LRA_LU])

    @property
    def loudness_range_low_lufs(self) -> float:
        """10th percentile of the gated short-term distribution (bottom of the LRA)."""
        return float(self._ls.state[IDX_LRA_LOW_LUFS])

    @property
    def loudness_range_high_lufs(self) -> float:
        """95th percentile of the gated short-term distribution (top of the LRA)."""
        return float(self._ls.state[IDX_LRA_HIGH_LUFS])
