"""Write the student to ONNX from its weight dict (opset pinned), graph built node by node.

The graph is the network of :mod:`edgemix.infer.weights` with fixed shapes
``features (32, F)``, ``mask (32,)`` -> ``params (32, P)``, ``role_logits (32, R)``.
Building it from the weights (rather than tracing PyTorch) keeps the file byte-for-byte
deterministic and independent of the exporter's version.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgemix.infer.base import MAX_CHANNELS
from edgemix.infer.weights import Z_LIMIT, sizes_of, validate

#: ONNX opset the file declares (ReduceMax takes ``axes`` as an attribute up to 17).
OPSET = 17
#: Nodes that stay float32 in the int8 model: the input standardisation (features of
#: different units cannot share one int8 scale before it) and the mask arithmetic.
FLOAT_FRONT_NODES = ("z_scaled", "z_unclipped", "z", "mask_sum", "mask_den", "mean_w",
                     "mean_w_row", "mask_col", "skip", "params_spanned", "params_sum", "params")
#: IR version pinned so older ONNX Runtime builds on boards accept the file.
IR_VERSION = 8


def build_onnx(weights: dict, doc: str = "edgemix student") -> onnx.ModelProto:
    """The ONNX model for a weight dict; ``onnx.checker.check_model`` passes on it."""
    validate(weights)
    s = sizes_of(weights)
    c = MAX_CHANNELS
    inits = []

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    for k in ("in_scale", "in_shift", "enc1_w", "enc1_b", "enc2_w", "enc2_b", "ctx_w",
              "ctx_b", "mix_w", "mix_ctx_w", "mix_b", "param_w", "param_b", "role_w", "role_b",
              "skip_w", "skip_b", "out_span"):
        const(k, weights[k])
    const("z_lo", -Z_LIMIT)
    const("z_hi", Z_LIMIT)
    const("zero_s", 0.0)
    const("one_s", 1.0)
    const("one", [1.0])
    const("axis0", [0], np.int64)
    const("shape_row", [1, c], np.int64)
    const("shape_col", [c, 1], np.int64)

    def n(op, ins, outs, **attrs):
        # nodes are named after their output so tools (and the int8 quantiser) can name them
        return helper.make_node(op, ins, outs, name=outs[0], **attrs)

    nodes = [
        n("Mul", ["features", "in_scale"], ["z_scaled"]),
        n("Add", ["z_scaled", "in_shift"], ["z_unclipped"]),
        n("Clip", ["z_unclipped", "z_lo", "z_hi"], ["z"]),
        n("Gemm", ["z", "enc1_w", "enc1_b"], ["h1_lin"]),
        n("Relu", ["h1_lin"], ["h1"]),
        n("Gemm", ["h1", "enc2_w", "enc2_b"], ["h2_lin"]),
        n("Relu", ["h2_lin"], ["h2"]),
        # masked mean weights w = mask / max(sum(mask), 1)
        n("ReduceSum", ["mask", "axis0"], ["mask_sum"], keepdims=1),
        n("Max", ["mask_sum", "one"], ["mask_den"]),
        n("Div", ["mask", "mask_den"], ["mean_w"]),
        n("Reshape", ["mean_w", "shape_row"], ["mean_w_row"]),
        n("MatMul", ["mean_w_row", "h2"], ["pool_mean"]),
        # masked max: h2 >= 0, so zeroing absent rows leaves the max over present ones
        n("Reshape", ["mask", "shape_col"], ["mask_col"]),
        n("Mul", ["h2", "mask_col"], ["h2_masked"]),
        n("ReduceMax", ["h2_masked"], ["pool_max"], axes=[0], keepdims=1),
        n("Concat", ["pool_mean", "pool_max"], ["pool"], axis=1),
        n("Gemm", ["pool", "ctx_w", "ctx_b"], ["ctx_lin"]),
        n("Relu", ["ctx_lin"], ["ctx"]),
        n("Gemm", ["ctx", "mix_ctx_w", "mix_b"], ["ctx_row"]),
        n("MatMul", ["h2", "mix_w"], ["g_ch"]),
        n("Add", ["g_ch", "ctx_row"], ["g_lin"]),
        n("Relu", ["g_lin"], ["g"]),
        n("Gemm", ["g", "param_w", "param_b"], ["param_logits"]),
        # the skip from the raw features (see edgemix/infer/weights.py), then 0..1
        n("Gemm", ["features", "skip_w", "skip_b"], ["skip"]),
        n("Mul", ["param_logits", "out_span"], ["params_spanned"]),
        n("Add", ["params_spanned", "skip"], ["params_sum"]),
        n("Clip", ["params_sum", "zero_s", "one_s"], ["params"]),
        n("Gemm", ["g", "role_w", "role_b"], ["role_logits"]),
    ]
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "edgemix_student",
        inputs=[helper.make_tensor_value_info("features", f32, [c, s["F"]]),
                helper.make_tensor_value_info("mask", f32, [c])],
        outputs=[helper.make_tensor_value_info("params", f32, [c, s["P"]]),
                 helper.make_tensor_value_info("role_logits", f32, [c, s["R"]])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="edgemix.export", producer_version="1",
                              doc_string=doc)
    model.ir_version = IR_VERSION
    for key, names in (("feature_names", weights["feature_names"]),
                       ("output_names", weights["output_names"]),
                       ("role_names", weights["role_names"])):
        helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                       key: ",".join(str(x) for x in names)})
    onnx.checker.check_model(model, full_check=True)
    return model


def write_onnx(path, weights: dict) -> None:
    """Build, check and save."""
    onnx.save_model(build_onnx(weights), str(path))
