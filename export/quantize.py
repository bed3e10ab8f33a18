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

from edgemix.infer.weights import WEIGHT_NAMES


def intermediates(weights: dict, features: np.ndarray, mask: np.ndarray) -> dict:
    """Every activation of the float network for a batch ``(B, C, F)``, ``(B, C)``."""
    w = {k: np.asarray(weights[k], dtype=np.float64) for k in WEIGHT_NAMES}
    x = np.asarray(features, np.float64)
    m = np.asarray(mask, np.float64)[..., None]
    t = {}
    t["z"] = x * w["in_scale"] + w["in_shift"]
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


#: A weight row whose largest magnitude is below this share of the matrix's is a dead unit.
DEAD_ROW_RATIO = 1e-6
def calibrate(weights: dict, features: np.ndarray, mask: np.ndarray) -> dict:
    """name -> (lo, hi) over present channels (per-channel tensors) or all sessions."""
    t = intermediates(weights, features, mask)
    present = np.asarray(mask) > 0
    ranges = {}
    for name, v in t.items():
        if v.ndim == 3 and v.shape[1] == present.shape[1]:
            v = v[present]  # absent rows are never read, do not let them widen a range
        lo, hi = np.quantile(v, [CALIBRATION_QUANTILE, 1.0 - CALIBRATION_QUANTILE])
        ranges[name] = (float(min(lo, 0.0)), float(max(hi, 0.0)))
    # the pool concatenates mean and max: one scale for all three (mean <= max, both >= 0)
    # so Concatenation needs no rescaling; h2 * mask has exactly h2's range
    # ... and the int8 graph concatenates h2 with the tiled context (export/tflite_export.py):
    # one scale for both as well
    hi = max(ranges["h2"][1], ranges["ctx"][1])
    ranges["h2"] = ranges["ctx"] = (0.0, hi)
    ranges["pool_mean"] = ranges["pool_max"] = ranges["pool"] = ranges["h2_masked"] = ranges["h2"]
    # the parameter head's output u keeps its calibrated range: 0..1 is the fitted span
    # (export/model.py), but a channel that has not played yet has a skip far from its
    # label and a u far outside 0..1 to cancel it; clipping u there cost up to 68 dB of trim
    ranges["mask"] = (0.0, 1.0)
    ranges["mean_w"] = (0.0, 1.0)
    return ranges


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
