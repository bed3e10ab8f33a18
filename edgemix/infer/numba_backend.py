"""Numba-native inference: the student's forward pass as one @kernel, no runtime at all.

The weights are packed into one flat float32 array in the order of
:data:`edgemix.infer.weights.WEIGHT_NAMES` (each matrix ``(in, out)`` row-major) with the
layer sizes in an int64 array, so the kernel has a short, fixed signature that another
@njit function (a control-rate loop, say) can call directly::

    _student_forward(features, mask, flat_weights, sizes, scratch, params01, role_logits)

Dense layers loop ``for i in inputs: out[:] += x[i] * W[i, :]`` so the inner loop runs
over contiguous output units and vectorises without reassociation (the kernel fast-math
set leaves ``reassoc`` out).  Absent channels are skipped and their output rows zeroed:
with the masked pool they cannot influence present channels.
"""
from __future__ import annotations

import numpy as np

from edgemix.dsp._jit import kernel
from edgemix.infer.base import MAX_CHANNELS, Backend, check_io_shapes
from edgemix.infer.weights import WEIGHT_NAMES, load_weights, sizes_of

#: Row mask for the single pool row (a global array is a compile-time constant to Numba).
_ONE_ROW = np.ones(1, dtype=np.float32)

#: Order of the sizes in the ``sizes`` array handed to the kernel.
SIZE_ORDER = ("F", "H1", "H2", "K", "D", "P", "R")


def pack_weights(weights: dict) -> tuple[np.ndarray, np.ndarray]:
    """(flat float32 weights in WEIGHT_NAMES order, int64 sizes in SIZE_ORDER)."""
    flat = np.concatenate([np.asarray(weights[k], dtype=np.float32).ravel()
                           for k in WEIGHT_NAMES])
    s = sizes_of(weights)
    return np.ascontiguousarray(flat), np.array([s[k] for k in SIZE_ORDER], dtype=np.int64)


def scratch_shape(sizes: np.ndarray, n_channels: int = MAX_CHANNELS) -> tuple[int, int]:
    """Shape of the float32 scratch the kernel needs: a row per channel plus the pool row,
    columns for z, h1, h2, g and the parameter logits side by side."""
    f, h1, h2, k, d, p, r = (int(v) for v in sizes)
    return n_channels + 1, max(f + h1 + h2 + d + p, 2 * h2 + k + d)


@kernel
def _layer(src, src_col, n_in, w, w_off, bias, n_out, dst, dst_col, mask, relu):
    """dst[c, dst_col:+n_out] = act(src[c, src_col:+n_in] @ W + bias) for rows with mask != 0.

    W is ``(n_in, n_out)`` row-major at ``w[w_off]``; ``bias`` is any ``(n_out,)`` row (a
    bias vector from the weights, or the mix-context row); ``mask`` has one entry per row
    to compute.  The loops run over 1-D row views: with a column offset
    inside a 2-D index LLVM does not vectorise the inner loop (measured 5x slower).
    """
    for c in range(mask.shape[0]):
        if mask[c] == 0.0:
            continue
        x = src[c, src_col:src_col + n_in]
        out = dst[c, dst_col:dst_col + n_out]
        for j in range(n_out):
            out[j] = bias[j]
        for i in range(n_in):
            # no skip of zero inputs: a branch here costs more than it saves, and a
            # data-independent cost keeps the decision time steady
            xi = x[i]
            wr = w[w_off + i * n_out:w_off + (i + 1) * n_out]
            for j in range(n_out):
                out[j] += xi * wr[j]
        if relu:
            for j in range(n_out):
                if out[j] < 0.0:
                    out[j] = 0.0


@kernel
def _student_forward(features, mask, flat_weights, sizes, scratch, params01, role_logits):
    """One decision.  features (C, F) f32, mask (C,) f32, flat_weights f32 (WEIGHT_NAMES
    order), sizes i64 (7,) in SIZE_ORDER, scratch f32 ``scratch_shape(sizes, C)``, outputs
    params01 (C, P) f32 and role_logits (C, R) f32 (rows of absent channels set to 0)."""
    n_ch = features.shape[0]
    f, h1n, h2n, k, d, p, r = sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6]
    # offsets of each array in flat_weights (WEIGHT_NAMES order)
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
    # scratch columns: z | h1 | h2 | g per channel row; the pool row (index n_ch) holds
    # pool | ctx | ctx_row
    c_z, c_h1, c_h2, c_g = 0, f, f + h1n, f + h1n + h2n
    c_pl = c_g + d
    c_pool, c_ctx, c_row = 0, 2 * h2n, 2 * h2n + k
    w = flat_weights

    scale = w[o_scale:o_scale + f]
    shift = w[o_shift:o_shift + f]
    n_present = 0.0
    for c in range(n_ch):
        n_present += mask[c]
        if mask[c] != 0.0:
            x = features[c]
            z = scratch[c, c_z:c_z + f]
            for i in range(f):
                z[i] = x[i] * scale[i] + shift[i]
    inv_n = 1.0 / max(n_present, 1.0)

    # per-channel encoder, weights shared by every channel
    _layer(scratch, c_z, f, w, o_w1, w[o_b1:o_b1 + h1n], h1n, scratch, c_h1, mask, True)
    _layer(scratch, c_h1, h1n, w, o_w2, w[o_b2:o_b2 + h2n], h2n, scratch, c_h2, mask, True)

    # masked mean and max over present channels (h2 >= 0, so a max starting at 0 is exact)
    pr = n_ch
    pmean = scratch[pr, c_pool:c_pool + h2n]
    pmax = scratch[pr, c_pool + h2n:c_pool + 2 * h2n]
    pmean[:] = 0.0
    pmax[:] = 0.0
    for c in range(n_ch):
        if mask[c] == 0.0:
            continue
        mc = mask[c]
        wc = mc * inv_n
        h = scratch[c, c_h2:c_h2 + h2n]
        for j in range(h2n):
            pmean[j] += wc * h[j]
            pmax[j] = max(pmax[j], h[j] * mc)

    # mix context -> one row added to every channel (mix_b rides along as its bias)
    _layer(scratch[pr:], c_pool, 2 * h2n, w, o_wc, w[o_bc:o_bc + k], k, scratch[pr:], c_ctx,
           _ONE_ROW, True)
    _layer(scratch[pr:], c_ctx, k, w, o_wmc, w[o_bm:o_bm + d], d, scratch[pr:], c_row,
           _ONE_ROW, False)

    # g = relu(h2 @ mix_w + ctx_row): a layer whose bias is the context row
    _layer(scratch, c_h2, h2n, w, o_wm, scratch[pr, c_row:c_row + d], d, scratch, c_g, mask,
           True)

    # heads; the skip from the raw features goes straight into params01
    _layer(scratch, c_g, d, w, o_wp, w[o_bp:o_bp + p], p, scratch, c_pl, mask, False)
    _layer(scratch, c_g, d, w, o_wr, w[o_br:o_br + r], r, role_logits, 0, mask, False)
    # the skip is sparse (one feature feeds the trim): only its nonzero rows are visited
    skw = w[o_skw:o_skw + f * p]
    rows = np.empty(f, np.int64)
    n_rows = 0
    for i in range(f):
        for j in range(p):
            if skw[i * p + j] != 0.0:
                rows[n_rows] = i
                n_rows += 1
                break
    skb = w[o_skb:o_skb + p]
    span = w[o_span:o_span + p]
    for c in range(n_ch):
        out = params01[c]
        if mask[c] == 0.0:
            for j in range(p):
                out[j] = 0.0
            for j in range(r):
                role_logits[c, j] = 0.0
            continue
        for j in range(p):
            out[j] = skb[j] + span[j] * scratch[c, c_pl + j]
        for k in range(n_rows):
            xi = features[c, rows[k]]
            wr = skw[rows[k] * p:(rows[k] + 1) * p]
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
        self.scratch = np.zeros(scratch_shape(self.sizes), dtype=np.float32)
        self._features = np.zeros((MAX_CHANNELS, s["F"]), dtype=np.float32)
        self._mask = np.zeros(MAX_CHANNELS, dtype=np.float32)
        # compile (or load from the cache) now, never on the first live decision
        self.predict(self._features, self._mask)

    def predict(self, features, mask):
        features, mask = self.check_inputs(features, mask)
        _student_forward(features, mask, self.flat_weights, self.sizes, self.scratch,
                         self.params01, self.role_logits)
        return self.params01, self.role_logits
