"""Numba-native inference: the student's forward pass as one @kernel, no runtime at all.

The weights are packed into one flat float32 array in the order of
:data:`edgemix.infer.weights.WEIGHT_NAMES` (each matrix ``(in, out)`` row-major) with the
layer sizes in an int64 array, and the nonzero rows of the sparse skip found once at load,
so the kernel has a short, fixed signature that another @njit function (a control-rate
loop, say) can call directly::

    _student_forward(features, mask, flat_weights, sizes, skip_rows, scratch,
                     params01, role_logits)

Layout for speed (measurements: docs/design-notes.md, "The Numba forward pass"): present
channels are first packed into consecutive scratch rows, so every per-channel layer is one
small GEMM over those rows with no mask test and no per-channel call; the GEMM is
register-blocked (:func:`_dense`); the two heads run as one GEMM whose width is a whole
number of vectors (:func:`_head_width`).  Every output is still ``bias + x[0] W[0] + x[1] W[1]
+ ...`` in input order with one FMA per term, as before: the order is fixed by the source,
not by the compiler (the kernel fast-math set leaves ``reassoc`` out).  Absent channels
are never computed and their output rows are zeroed: with the masked pool they cannot
influence present channels.
"""
from __future__ import annotations

import numpy as np

from edgemix.dsp._jit import kernel
from edgemix.infer.base import MAX_CHANNELS, Backend, check_io_shapes
from edgemix.infer.weights import WEIGHT_NAMES, Z_LIMIT, load_weights, sizes_of

#: Order of the sizes in the ``sizes`` array handed to the kernel.
SIZE_ORDER = ("F", "H1", "H2", "K", "D", "P", "R")

#: Channels per register tile of :func:`_dense` (written out 4 wide there); scratch rows
#: are padded to a multiple.
TILE_CHANNELS = 4

# Scratch planes (first index of the 3-D scratch): per-channel activations, packed by
# present channel, and the pool plane whose rows hold mean | max | ctx | ctx_row.
_Z, _H1, _H2, _G, _HEAD, _POOL = range(6)
_N_PLANES = 6


@kernel(inline="always")
def _head_width(p, r):
    """Columns of the fused head: P + R rounded up to whole 8-float vectors, so its GEMM
    runs with no scalar remainder (two narrow heads of 16 and 11 measured 2x slower)."""
    return -(-(p + r) // 8) * 8


def pack_weights(weights: dict) -> tuple[np.ndarray, np.ndarray]:
    """(flat float32 weights, int64 sizes in SIZE_ORDER).

    The flat array holds the weights in WEIGHT_NAMES order, then the fused head derived
    from them: ``[param_w | role_w | 0]`` ``(D, _head_width)`` and ``[param_b | role_b | 0]``.
    """
    s = sizes_of(weights)
    d, p, r = s["D"], s["P"], s["R"]
    hw = _head_width(p, r)
    head_w = np.zeros((d, hw), dtype=np.float32)
    head_w[:, :p] = weights["param_w"]
    head_w[:, p:p + r] = weights["role_w"]
    head_b = np.zeros(hw, dtype=np.float32)
    head_b[:p] = weights["param_b"]
    head_b[p:p + r] = weights["role_b"]
    flat = np.concatenate([np.asarray(weights[k], dtype=np.float32).ravel()
                           for k in WEIGHT_NAMES] + [head_w.ravel(), head_b])
    return np.ascontiguousarray(flat), np.array([s[k] for k in SIZE_ORDER], dtype=np.int64)


def skip_rows_of(weights: dict) -> np.ndarray:
    """int64 indices of the features with a nonzero skip weight (the skip is sparse: one
    feature feeds the trim), so the kernel visits only those rows."""
    skip = np.asarray(weights["skip_w"], dtype=np.float32)
    return np.flatnonzero(np.any(skip != 0.0, axis=1)).astype(np.int64)


def scratch_shape(sizes: np.ndarray, n_channels: int = MAX_CHANNELS) -> tuple[int, int, int]:
    """Shape of the float32 scratch the kernel needs: one plane per activation (z, h1, h2,
    g, fused head outputs) with a row per channel padded to whole register tiles, and the
    pool plane (4 rows: mean, max, ctx, ctx_row)."""
    f, h1, h2, k, d, p, r = (int(v) for v in sizes)
    rows = max(-(-n_channels // TILE_CHANNELS) * TILE_CHANNELS, 4)
    return _N_PLANES, rows, max(f, h1, h2, k, d, _head_width(p, r))


@kernel
def _dense(src, n_in, w, w_off, bias, n_out, dst, n_rows, relu):
    """dst[c, :n_out] = act(src[c, :n_in] @ W + bias) for c < n_rows (a multiple of 4).

    W is ``(n_in, n_out)`` row-major at ``w[w_off]``, n_in >= 2; ``bias`` is any
    ``(n_out,)`` row (a bias vector, or the mix-context row).  A register tile of 4
    channels x 2 inputs: the inner loop runs over contiguous output units (it vectorises),
    loads 2 weight rows once for 4 channels and adds both inputs' terms in input order (one
    FMA each) before storing, so an output is loaded and stored once per 2 inputs and each
    weight once per 4 channels.  Tiles of 4x1, 4x3, 4x4, 2x2, 2x4, 2x8, 8x1 and 8x2
    measured equal or slower on this machine (4x4 and wider spill the broadcast inputs).
    """
    n_in_full = n_in - n_in % 2
    for c in range(0, n_rows, 4):
        s0 = src[c]
        s1 = src[c + 1]
        s2 = src[c + 2]
        s3 = src[c + 3]
        d0 = dst[c, :n_out]
        d1 = dst[c + 1, :n_out]
        d2 = dst[c + 2, :n_out]
        d3 = dst[c + 3, :n_out]
        # the first input pair starts from the bias (n_in >= 2 for every layer)
        wa = w[w_off:w_off + n_out]
        wb = w[w_off + n_out:w_off + 2 * n_out]
        x0a, x0b, x1a, x1b = s0[0], s0[1], s1[0], s1[1]
        x2a, x2b, x3a, x3b = s2[0], s2[1], s3[0], s3[1]
        for j in range(n_out):
            bj, ua, ub = bias[j], wa[j], wb[j]
            d0[j] = bj + x0a * ua + x0b * ub
            d1[j] = bj + x1a * ua + x1b * ub
            d2[j] = bj + x2a * ua + x2b * ub
            d3[j] = bj + x3a * ua + x3b * ub
        for i in range(2, n_in_full, 2):
            o = w_off + i * n_out
            wa = w[o:o + n_out]
            wb = w[o + n_out:o + 2 * n_out]
            x0a, x0b = s0[i], s0[i + 1]
            x1a, x1b = s1[i], s1[i + 1]
            x2a, x2b = s2[i], s2[i + 1]
            x3a, x3b = s3[i], s3[i + 1]
            for j in range(n_out):
                ua, ub = wa[j], wb[j]
                d0[j] = d0[j] + x0a * ua + x0b * ub
                d1[j] = d1[j] + x1a * ua + x1b * ub
                d2[j] = d2[j] + x2a * ua + x2b * ub
                d3[j] = d3[j] + x3a * ua + x3b * ub
        for i in range(n_in_full, n_in):
            wr = w[w_off + i * n_out:w_off + (i + 1) * n_out]
            x0, x1, x2, x3 = s0[i], s1[i], s2[i], s3[i]
            for j in range(n_out):
                wj = wr[j]
                d0[j] += x0 * wj
                d1[j] += x1 * wj
                d2[j] += x2 * wj
                d3[j] += x3 * wj
        if relu:
            for j in range(n_out):
                d0[j] = max(d0[j], 0.0)
                d1[j] = max(d1[j], 0.0)
                d2[j] = max(d2[j], 0.0)
                d3[j] = max(d3[j], 0.0)


@kernel
def _accumulate_row(x, n_in, w, w_off, n_out, out):
    """out[:n_out] += x[:n_in] @ W, W ``(n_in, n_out)`` row-major at ``w[w_off]``; one row
    (the pooled mix context), so the inner loop runs over contiguous output units."""
    for i in range(n_in):
        xi = x[i]
        wr = w[w_off + i * n_out:w_off + (i + 1) * n_out]
        for j in range(n_out):
            out[j] += xi * wr[j]


@kernel
def _student_forward(features, mask, flat_weights, sizes, skip_rows, scratch, params01,
                     role_logits):
    """One decision.  features (C, F) f32, mask (C,) f32, flat_weights f32 (WEIGHT_NAMES
    order), sizes i64 (7,) in SIZE_ORDER, skip_rows i64 (:func:`skip_rows_of`), scratch f32
    ``scratch_shape(sizes, C)``, outputs params01 (C, P) f32 and role_logits (C, R) f32
    (rows of absent channels set to 0)."""
    n_ch = features.shape[0]
    f, h1n, h2n, k, d, p, r = sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6]
    # offsets of each array in flat_weights (WEIGHT_NAMES order, then the fused head)
    o_scale = 0
    o_shift = o_scale + f
    o_w1 = o_shift + f
    o_b1 = o_w1 + f * h1n
    o_w2 = o_b1 + h1n
    o_b2 = o_w2 + h1n * h2n
    o_wc = o_b2 + h2n
    o_bc = o_wc + 2 * h2n * k
    o_wm = o_bc + k
    o_wmc = o_wm + h2n * d
    o_bm = o_wmc + k * d
    o_wp = o_bm + d
    o_bp = o_wp + d * p
    o_wr = o_bp + p
    o_br = o_wr + d * r
    o_skw = o_br + r
    o_skb = o_skw + f * p
    o_span = o_skb + p
    hw = _head_width(p, r)
    o_hw = o_span + p
    o_hb = o_hw + d * hw
    w = flat_weights
    z, h1, h2, g = scratch[_Z], scratch[_H1], scratch[_H2], scratch[_G]
    head, pool = scratch[_HEAD], scratch[_POOL]

    # pack the present channels into rows 0..n-1 of z, standardised and clipped
    scale = w[o_scale:o_scale + f]
    shift = w[o_shift:o_shift + f]
    z_lo = np.float32(-Z_LIMIT)  # float32, so the clip stays in float32 and vectorises
    z_hi = np.float32(Z_LIMIT)
    n_present = 0.0
    n = 0
    for c in range(n_ch):
        n_present += mask[c]
        if mask[c] != 0.0:
            x = features[c]
            zr = z[n]
            for i in range(f):
                v = x[i] * scale[i] + shift[i]
                zr[i] = z_lo if v < z_lo else (z_hi if v > z_hi else v)
            n += 1
    inv_n = 1.0 / max(n_present, 1.0)
    # pad to whole tiles with zero rows (finite, and never read back)
    n_rows = -(-n // TILE_CHANNELS) * TILE_CHANNELS
    for c in range(n, n_rows):
        z[c, :f] = 0.0

    # per-channel encoder, weights shared by every channel
    _dense(z, f, w, o_w1, w[o_b1:o_b1 + h1n], h1n, h1, n_rows, True)
    _dense(h1, h1n, w, o_w2, w[o_b2:o_b2 + h2n], h2n, h2, n_rows, True)

    # masked mean and max over present channels (h2 >= 0, so a max starting at 0 is exact)
    pmean, pmax, ctx, row = pool[0], pool[1], pool[2], pool[3]
    pmean[:h2n] = 0.0
    pmax[:h2n] = 0.0
    kk = 0
    for c in range(n_ch):
        if mask[c] == 0.0:
            continue
        mc = mask[c]
        wc = mc * inv_n
        h = h2[kk]
        kk += 1
        for j in range(h2n):
            pmean[j] += wc * h[j]
            pmax[j] = max(pmax[j], h[j] * mc)

    # mix context -> one row added to every channel (mix_b rides along as its bias);
    # the ctx layer's input is [mean, max], summed in that order
    ctx[:k] = w[o_bc:o_bc + k]
    _accumulate_row(pmean, h2n, w, o_wc, k, ctx)
    _accumulate_row(pmax, h2n, w, o_wc + h2n * k, k, ctx)
    for j in range(k):
        ctx[j] = max(ctx[j], 0.0)
    row[:d] = w[o_bm:o_bm + d]
    _accumulate_row(ctx, k, w, o_wmc, d, row)

    # g = relu(h2 @ mix_w + ctx_row): a layer whose bias is the context row
    _dense(h2, h2n, w, o_wm, row, d, g, n_rows, True)
    # both heads as one GEMM: columns [param logits | role logits | padding]
    _dense(g, d, w, o_hw, w[o_hb:o_hb + hw], hw, head, n_rows, False)

    # unpack; the skip from the raw features goes straight into params01
    skb = w[o_skb:o_skb + p]
    span = w[o_span:o_span + p]
    kk = 0
    for c in range(n_ch):
        out = params01[c]
        lo = role_logits[c]
        if mask[c] == 0.0:
            out[:] = 0.0
            lo[:] = 0.0
            continue
        u = head[kk]
        kk += 1
        for j in range(r):
            lo[j] = u[p + j]
        for j in range(p):
            out[j] = skb[j] + span[j] * u[j]
        for q in range(skip_rows.shape[0]):
            i = skip_rows[q]
            xi = features[c, i]
            wr = w[o_skw + i * p:o_skw + (i + 1) * p]
            for j in range(p):
                out[j] += xi * wr[j]
        for j in range(p):
            out[j] = min(max(out[j], 0.0), 1.0)


class NumbaBackend(Backend):
    """The forward pass compiled by Numba from a weights ``.npz``; no runtime needed."""

    name = "numba"

    def __init__(self, path):
        super().__init__(path)
        weights = load_weights(path)
        s = sizes_of(weights)
        check_io_shapes(path, {"features": (MAX_CHANNELS, s["F"])},
                        {"params": (MAX_CHANNELS, s["P"]), "role_logits": (MAX_CHANNELS, s["R"])})
        self.flat_weights, self.sizes = pack_weights(weights)
        self.skip_rows = skip_rows_of(weights)
        self.scratch = np.zeros(scratch_shape(self.sizes), dtype=np.float32)
        self._features = np.zeros((MAX_CHANNELS, s["F"]), dtype=np.float32)
        self._mask = np.zeros(MAX_CHANNELS, dtype=np.float32)
        # compile (or load from the cache) now, never on the first live decision
        self.predict(self._features, self._mask)

    def predict(self, features, mask):
        features, mask = self.check_inputs(features, mask)
        _student_forward(features, mask, self.flat_weights, self.sizes, self.skip_rows,
                         self.scratch, self.params01, self.role_logits)
        return self.params01, self.role_logits
