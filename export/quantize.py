"""int8 quantisation: calibration of activation ranges, the TFLite int8 scheme, ONNX QDQ.

The TFLite int8 scheme (the TFLite 8-bit quantisation specification):

- activations: int8, per-tensor, asymmetric: ``real = scale * (q - zero_point)``, with the
  range ``[min(lo, 0), max(hi, 0)]`` measured on representative features (so 0 is exact);
- weights: int8, per-output-channel, symmetric (zero point 0, ``scale_c = max|W_c| / 127``);
- biases: int32, zero point 0, ``scale = input_scale * weight_scale_c``;

Ranges are calibrated on the float network's own intermediates (float64 numpy), batched
over many synthetic sessions; :func:`intermediates` names them as the TFLite graph does.
"""
from __future__ import annotations

import numpy as np

from edgemix.infer.weights import WEIGHT_NAMES, Z_LIMIT


def intermediates(weights: dict, features: np.ndarray, mask: np.ndarray) -> dict:
    """Every activation of the float network for a batch ``(B, C, F)``, ``(B, C)``."""
    w = {k: np.asarray(weights[k], dtype=np.float64) for k in WEIGHT_NAMES}
    x = np.asarray(features, np.float64)
    m = np.asarray(mask, np.float64)[..., None]
    t = {}
    t["z"] = np.clip(x * w["in_scale"] + w["in_shift"], -Z_LIMIT, Z_LIMIT)
    t["h1"] = np.maximum(t["z"] @ w["enc1_w"] + w["enc1_b"], 0)
    t["h2"] = np.maximum(t["h1"] @ w["enc2_w"] + w["enc2_b"], 0)
    t["mean_w"] = m / np.maximum(m.sum(axis=1, keepdims=True), 1.0)
    t["h2_weighted"] = t["h2"] * t["mean_w"]
    t["pool_mean"] = t["h2_weighted"].sum(axis=1)
    t["h2_masked"] = t["h2"] * m
    t["pool_max"] = t["h2_masked"].max(axis=1)
    t["pool"] = np.concatenate([t["pool_mean"], t["pool_max"]], axis=-1)
    t["ctx"] = np.maximum(t["pool"] @ w["ctx_w"] + w["ctx_b"], 0)
    t["ctx_row"] = t["ctx"] @ w["mix_ctx_w"] + w["mix_b"]
    t["g_ch"] = t["h2"] @ w["mix_w"]
    t["g"] = np.maximum(t["g_ch"] + t["ctx_row"][:, None, :], 0)
    t["param_logits"] = t["g"] @ w["param_w"] + w["param_b"]
    t["role_logits"] = t["g"] @ w["role_w"] + w["role_b"]
    return t


#: Activation ranges are the 0.01 % and 99.99 % points rather than the extremes: a few
#: outliers would otherwise coarsen the step for every other value (they saturate instead).
CALIBRATION_QUANTILE = 1e-4


#: Tensors whose range is the exact min..max: the standardised input (-1..1, where the
#: network clips it: export/model.py; its rare extremes are channels that have not played
#: yet, and clipping them inside that range cost up to 7 dB of trim), and the mix context,
#: one row per session, whose extremes are the sessions of a single channel (clipping them
#: cost 1.2 dB of EQ gain).
EXACT_RANGES = ("z", "ctx")

#: A weight row whose largest magnitude is below this share of the matrix's is a dead unit.
DEAD_ROW_RATIO = 1e-6
#: The parameter head's output, quantised with one range per output (see fold_head_ranges).
HEAD = "param_logits"
#: Narrowest head range (units of u): an output the network leaves constant (the makeup
#: gain) still gets a valid int8 scale.
MIN_HEAD_WIDTH = 1e-2
#: Share of each head output's calibrated range added on either side.
HEAD_MARGIN = 0.05


def calibrate(weights: dict, features: np.ndarray, mask: np.ndarray) -> dict:
    """name -> (lo, hi) over present channels (per-channel tensors) or all sessions.

    ``ranges[HEAD]`` is a pair of arrays, one (lo, hi) per output: the outputs' spans of
    ``u`` differed by up to 3x (measured on the shipped model: aux1 send -2.36..0.95, the
    EQ gains about 0..1.2), and one shared per-tensor scale gave every output the send's
    step (1.2 dB of send, 0.6 dB of trim per int8 step).  Each output's range is the exact
    min..max over present channels (a saturated head output is an error of its own size),
    cut where the tail's clamp to 0..1 makes further values equal (outputs whose skip is a
    constant: all but the trim, whose skip follows the loudness feature).
    """
    t = intermediates(weights, features, mask)
    present = np.asarray(mask) > 0
    ranges = {}
    for name, v in t.items():
        if v.ndim == 3 and v.shape[1] == present.shape[1]:
            v = v[present]  # absent rows are never read, do not let them widen a range
        if name == HEAD:
            continue
        q = 0.0 if name in EXACT_RANGES else CALIBRATION_QUANTILE
        lo, hi = np.quantile(v, [q, 1.0 - q])
        ranges[name] = (float(min(lo, 0.0)), float(max(hi, 0.0)))
    u = t[HEAD][present]
    lo, hi = u.min(axis=0), u.max(axis=0)
    span = np.asarray(weights["out_span"], np.float64)
    skip_b = np.asarray(weights["skip_b"], np.float64)
    const = ~np.asarray(weights["skip_w"]).any(axis=0)
    # a margin for channels beyond the calibration set (held-out channels that had not
    # played came out up to 4 dB of send above it), then the cut at the clamp
    margin = HEAD_MARGIN * (hi - lo)
    lo, hi = lo - margin, hi + margin
    edge_lo = np.where(const, -skip_b / span, -np.inf)
    edge_hi = np.where(const, (1.0 - skip_b) / span, np.inf)
    # (an output whose every value is beyond one clamp edge gets a range at that edge)
    lo, hi = (np.clip(lo, edge_lo, edge_hi), np.clip(hi, edge_lo, edge_hi))
    mid = 0.5 * (lo + hi)
    half = np.maximum(0.5 * (hi - lo), 0.5 * MIN_HEAD_WIDTH)
    ranges[HEAD] = (mid - half, mid + half)
    # the pool concatenates mean and max: one scale for all three (mean <= max, both >= 0)
    # so Concatenation needs no rescaling; h2 * mask has exactly h2's range
    # ... and the int8 graph concatenates h2 with the tiled context (export/tflite_export.py):
    # one scale for both as well
    hi = max(ranges["h2"][1], ranges["ctx"][1])
    ranges["h2"] = ranges["ctx"] = (0.0, hi)
    ranges["pool_mean"] = ranges["pool_max"] = ranges["pool"] = ranges["h2_masked"] = ranges["h2"]
    # the head's ranges above are not cut to the fitted span 0..1 (export/model.py): a
    # channel that has not played yet has a skip far from its label and a trim u outside
    # 0..1 to cancel it; clipping u there cost up to 68 dB of trim
    ranges["mask"] = (0.0, 1.0)
    ranges["mean_w"] = (0.0, 1.0)
    return ranges


def fold_head_ranges(weights: dict, lo: np.ndarray, hi: np.ndarray) -> dict:
    """The same network with the head's output ``u`` rescaled to ``u01`` = 0..1 over each
    output's range ``lo..hi``: TFLite has no per-channel activation quantisation, so the
    rescaling goes into the head's weights and the float tail (exact in float):

        u01 = g @ (param_w / w) + (param_b - lo) / w,      w = hi - lo
        params01 = clip(skip + (skip_b + span * lo) + (span * w) * u01, 0, 1)

    One per-tensor 0..1 int8 range on ``u01`` is then each output's own range; the int8
    weights are unchanged (per-output-channel scales follow the row scaling)."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    w = hi - lo
    out = dict(weights)
    out["param_w"] = np.asarray(weights["param_w"], np.float64) / w
    out["param_b"] = (np.asarray(weights["param_b"], np.float64) - lo) / w
    span = np.asarray(weights["out_span"], np.float64)
    out["skip_b"] = np.asarray(weights["skip_b"], np.float64) + span * lo
    out["out_span"] = span * w
    return out


#: Largest factor :func:`equalise` scales a unit by (a unit that almost never fires would
#: otherwise get a weight column too small for its per-channel int8 grid).
EQUALISE_MAX_GAIN = 16.0


def equalise(weights: dict, features: np.ndarray, mask: np.ndarray) -> dict:
    """The same network with every hidden unit rescaled to use its tensor's whole int8 range.

    A per-tensor int8 scale is set by the tensor's widest unit: measured on the shipped
    model, the median unit of ``g`` spanned 18 % of it (so about 46 of the 256 steps) and
    of ``h1`` 54 %.  ReLU is positively homogeneous, so unit ``i`` of a layer scaled by
    ``s_i`` (its weight column and bias times ``s_i``) and the next layer's weight row
    ``i`` divided by ``s_i`` is the same function (cross-layer equalisation, Nagel et al.
    2019, "Data-free quantization through weight equalization and bias correction", sec.
    4.1; here the activation side only: the weights the int8 file uses are the float
    model's own, :func:`round_weights`).  ``s_i`` = the tensor's calibrated top / the
    unit's, at most :data:`EQUALISE_MAX_GAIN`; dead units are left alone.  The input is
    already equalised: every feature spans -1..1 (export/model.py).  ``h2`` and the
    context share one target (they share one scale in the int8 graph); the pooled mean and
    max of ``h2`` scale with it.
    """
    w = {k: (np.asarray(v, np.float64) if k in WEIGHT_NAMES else v) for k, v in weights.items()}
    t = intermediates(w, features, mask)
    present = np.asarray(mask) > 0

    def tops(name):
        v = t[name][present] if t[name].ndim == 3 else t[name]
        return np.quantile(v, 1.0 - CALIBRATION_QUANTILE, axis=0)

    def gains(top, target):
        live = top > DEAD_ROW_RATIO * max(float(top.max()), 1e-30)
        return np.where(live, np.clip(target / np.where(live, top, 1.0), 1.0,
                                      EQUALISE_MAX_GAIN), 1.0)

    # (the input needs nothing: the standardisation maps each feature's whole range onto
    # the clip's -1..1, export/model.py:Student.fit_standardisation)
    top_h1, top_h2, top_ctx, top_g = tops("h1"), tops("h2"), tops("ctx"), tops("g")
    s1 = gains(top_h1, top_h1.max())
    s2 = gains(top_h2, max(top_h2.max(), top_ctx.max()))
    sc = gains(top_ctx, max(top_h2.max(), top_ctx.max()))
    sg = gains(top_g, top_g.max())
    w["enc1_w"] = w["enc1_w"] * s1
    w["enc1_b"] = w["enc1_b"] * s1
    w["enc2_w"] = w["enc2_w"] / s1[:, None] * s2
    w["enc2_b"] = w["enc2_b"] * s2
    w["ctx_w"] = w["ctx_w"] / np.concatenate([s2, s2])[:, None] * sc
    w["ctx_b"] = w["ctx_b"] * sc
    w["mix_w"] = w["mix_w"] / s2[:, None] * sg
    w["mix_ctx_w"] = w["mix_ctx_w"] / sc[:, None] * sg
    w["mix_b"] = w["mix_b"] * sg
    w["param_w"] = w["param_w"] / sg[:, None]
    w["role_w"] = w["role_w"] / sg[:, None]
    return {k: (v.astype(np.float32) if k in WEIGHT_NAMES else v) for k, v in w.items()}


#: Weight matrices of the int8 graph's FullyConnected layers; the int8 graph fuses the
#: mix layer's two blocks into one matrix (export/tflite_export.py), one scale per output.
FC_MATRICES = (("enc1_w",), ("enc2_w",), ("ctx_w",), ("mix_w", "mix_ctx_w"), ("param_w",),
               ("role_w",))


def round_weights(weights: dict) -> dict:
    """Every weight matrix on its own int8 grid (per output unit, symmetric, as the int8
    file stores it): a float model with these weights and the int8 file differ only by
    the activations' rounding."""
    out = dict(weights)
    for names in FC_MATRICES:
        w = np.concatenate([np.asarray(weights[n], np.float64) for n in names], axis=0)
        q, s = quantise_weights_per_channel(w.T)
        r = (q * s[:, None]).T.astype(np.float32)
        rows = np.cumsum([0] + [weights[n].shape[0] for n in names])
        for n, a, b in zip(names, rows[:-1], rows[1:]):
            out[n] = np.ascontiguousarray(r[a:b])
    return out


def activation_qparams(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero_point) of an asymmetric int8 tensor covering [lo, hi] (0 exact)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-8:
        hi = lo + 1e-8
    scale = (hi - lo) / 255.0
    zero_point = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return float(scale), zero_point


def quantise_weights_per_channel(w_out_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weights, float scales per output row) for a ``(out, in)`` matrix.

    A row of a dead unit (weight decay leaves it at ~1e-38) is quantised to zeros with a
    normal scale: a denormal scale is refused by runtimes (XNNPACK) and means nothing.
    """
    w = np.asarray(w_out_in, np.float64)
    peak = np.abs(w).max(axis=1)
    dead = peak <= DEAD_ROW_RATIO * max(float(peak.max()), 1e-30)
    scale = np.where(dead, max(float(peak.max()), 1e-30) / 127.0, peak / 127.0)
    q = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
    q[dead] = 0
    return q, scale


def quantise_bias(b: np.ndarray, input_scale: float, weight_scales: np.ndarray):
    """(int32 bias, its per-channel scales = input_scale * weight_scale_c)."""
    scale = input_scale * np.asarray(weight_scales, np.float64)
    q = np.clip(np.round(np.asarray(b, np.float64) / scale), -2**31, 2**31 - 1)
    return q.astype(np.int32), scale


def quantize_onnx_int8(float_path, out_path, features: np.ndarray, mask: np.ndarray) -> None:
    """ONNX int8 (QDQ, per-channel weights) through ``onnxruntime.quantization``.

    The calibration reader feeds the same representative sessions as the TFLite path.
    """
    from export.onnx_export import FLOAT_FRONT_NODES
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                          QuantFormat, QuantType, quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"features": f.astype(np.float32), "mask": m.astype(np.float32)}
                               for f, m in zip(features, mask)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(float_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=True, calibrate_method=CalibrationMethod.MinMax,
                    op_types_to_quantize=["Gemm", "MatMul", "Relu", "Add", "Mul", "Sigmoid",
                                          "Concat", "ReduceMax"],
                    nodes_to_exclude=list(FLOAT_FRONT_NODES),
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
