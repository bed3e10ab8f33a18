"""The exporters: valid ONNX at the pinned opset, TFLite with only the small op set, the int8
scheme as specified, deterministic bytes, and the shipped models/ with their checksums."""
import pathlib

import numpy as np
import onnx
import pytest
import tflite
import torch

from edgemix import infer
from edgemix.features import FEATURE_NAMES, N_FEATURES
from edgemix.params import MODEL_OUTPUTS
from edgemix.roles import ROLE_NAMES
from export import verify as V
from export.dataset import interim_dataset
from export.model import Student
from export.onnx_export import OPSET, build_onnx
from export.quantize import (activation_qparams, calibrate, quantise_bias,
                             quantise_weights_per_channel)
from export.tflite_export import build_tflite

MODELS = pathlib.Path(__file__).resolve().parents[1] / "models"
ALLOWED_OPS = {"FULLY_CONNECTED", "ADD", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SUM",
               "REDUCE_MAX", "CONCATENATION", "RESHAPE", "TILE", "QUANTIZE", "DEQUANTIZE"}
OP_NAME = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
TYPE_NAME = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}


@pytest.fixture(scope="module")
def weights():
    torch.manual_seed(1)
    net = Student(N_FEATURES, len(MODEL_OUTPUTS), len(ROLE_NAMES), 10, 9, 8, 7)
    return net.export_weights(FEATURE_NAMES, MODEL_OUTPUTS, ROLE_NAMES)


@pytest.fixture(scope="module")
def calib():
    d = interim_dataset(24, seed=9)
    return d.features, d.mask


def _read_tflite(data: bytes):
    model = tflite.Model.GetRootAsModel(data, 0)
    g = model.Subgraphs(0)
    ops = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        ops.append((OP_NAME[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())],
                    [op.Inputs(j) for j in range(op.InputsLength())],
                    [op.Outputs(j) for j in range(op.OutputsLength())]))
    tensors = []
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        q = t.Quantization()
        scale = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else None
        zp = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else None
        tensors.append({"name": t.Name().decode(), "type": TYPE_NAME[t.Type()],
                        "shape": list(t.ShapeAsNumpy()), "scale": scale, "zp": zp,
                        "qdim": q.QuantizedDimension() if q is not None else None})
    return model, g, ops, tensors


def test_onnx_passes_the_checker_at_the_pinned_opset(weights):
    m = build_onnx(weights)
    onnx.checker.check_model(m, full_check=True)
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    ins = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
    assert ins == {"features": [32, N_FEATURES], "mask": [32]}


def test_exports_are_byte_deterministic(weights, calib, tmp_path):
    from edgemix.infer.weights import save_weights
    assert build_onnx(weights).SerializeToString() == build_onnx(weights).SerializeToString()
    assert build_tflite(weights) == build_tflite(weights)
    r = calibrate(weights, *calib)
    assert build_tflite(weights, r) == build_tflite(weights, r)
    save_weights(tmp_path / "a.npz", weights)
    save_weights(tmp_path / "b.npz", weights)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_float_tflite_uses_only_the_small_op_set(weights):
    _, g, ops, tensors = _read_tflite(build_tflite(weights))
    names = {o[0] for o in ops}
    assert names <= ALLOWED_OPS and "QUANTIZE" not in names
    assert all(t["type"] == "FLOAT32" or t["type"] == "INT32" for t in tensors)
    io = [tensors[g.Inputs(i)]["name"] for i in range(g.InputsLength())] + \
         [tensors[g.Outputs(i)]["name"] for i in range(g.OutputsLength())]
    assert io == ["features", "mask", "params", "role_logits"]


def test_int8_tflite_follows_the_int8_scheme(weights, calib):
    ranges = calibrate(weights, *calib)
    model, g, ops, tensors = _read_tflite(build_tflite(weights, ranges))
    assert {o[0] for o in ops} <= ALLOWED_OPS
    for name, ins, outs in ops:
        if name == "FULLY_CONNECTED" and tensors[ins[0]]["name"] == "features":
            continue  # the float skip, checked below
        if name == "FULLY_CONNECTED":
            x, w, b = (tensors[i] if i >= 0 else None for i in ins)
            y = tensors[outs[0]]
            assert x["type"] == w["type"] == y["type"] == "INT8"
            # per-channel symmetric weights along the output dimension
            assert w["qdim"] == 0 and len(w["scale"]) == w["shape"][0] and not w["zp"].any()
            if b is not None:
                assert b["type"] == "INT32" and not b["zp"].any()
                np.testing.assert_allclose(b["scale"], x["scale"][0] * w["scale"], rtol=1e-6)
        if name in ("ADD", "MUL", "SUM", "REDUCE_MAX", "CONCATENATION"):
            types = {tensors[i]["type"] for i in ins + outs if tensors[i]["shape"] != [1]}
            assert types in ({"INT8"}, {"FLOAT32"}), (name, types)
    # float only in front of QUANTIZE (the standardisation and the mask arithmetic) and in
    # the output tail: the one float FULLY_CONNECTED is the skip, reading the raw features
    float_fc = [tensors[ins[0]]["name"] for n, ins, outs in ops
                if n in ("FULLY_CONNECTED", "CONCATENATION", "REDUCE_MAX")
                and tensors[outs[0]]["type"] == "FLOAT32"]
    assert float_fc == ["features"]
    types = {tensors[g.Inputs(i)]["type"] for i in range(g.InputsLength())}
    assert types == {"FLOAT32"}


def test_activation_qparams_cover_the_range_with_zero_exact():
    for lo, hi in [(0.0, 6.0), (-3.0, 5.0), (-8.0, -1.0), (0.5, 2.0)]:
        s, zp = activation_qparams(lo, hi)
        lo_, hi_ = min(lo, 0.0), max(hi, 0.0)
        assert -128 <= zp <= 127
        assert s * (-128 - zp) <= lo_ + s and s * (127 - zp) >= hi_ - s
        assert s == pytest.approx((hi_ - lo_) / 255)
        assert s * (zp - zp) == 0.0  # real 0 <-> q = zero point


def test_weight_and_bias_quantisation_errors_are_half_a_step():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 11))
    q, s = quantise_weights_per_channel(w)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    assert np.all(np.abs(q * s[:, None] - w) <= s[:, None] / 2 + 1e-12)
    b = rng.normal(size=6)
    # a dead unit's row (weight decay leaves ~1e-38) is zeros with a normal scale
    w2 = w.copy()
    w2[2] = 1e-38
    q2, s2 = quantise_weights_per_channel(w2)
    assert not q2[2].any() and s2[2] > 1e-6 and np.array_equal(q2[[0, 1, 3]], q[[0, 1, 3]])
    bq, bs = quantise_bias(b, 0.02, s)
    assert bq.dtype == np.int32
    assert np.all(np.abs(bq * bs - b) <= bs / 2 + 1e-12)


def test_onnx_and_litert_load_the_exports(weights, calib, tmp_path):
    from edgemix.infer.weights import save_weights
    from export.onnx_export import write_onnx
    from export.tflite_export import write_tflite
    save_weights(tmp_path / "s.npz", weights)
    write_onnx(tmp_path / "s.onnx", weights)
    write_tflite(tmp_path / "s.tflite", weights)
    ref = infer.load(tmp_path / "s.npz", "numpy")
    x, m = calib[0][3], calib[1][3]
    want = [a.copy() for a in ref.predict(x, m)]
    for f in ("s.onnx", "s.tflite"):
        p, r = infer.load(tmp_path / f).predict(x, m)
        present = m > 0
        np.testing.assert_allclose(p[present], want[0][present], atol=V.FLOAT_TOL_01)
        np.testing.assert_allclose(r[present], want[1][present], atol=V.FLOAT_TOL_LOGIT)


def test_shipped_models_match_their_checksums():
    assert V.check_sums(MODELS) == []
    listed = {line.split()[1] for line in (MODELS / "SHA256SUMS").read_text().splitlines()}
    assert set(V.SHIPPED) | {"golden.npz", "MODEL_CARD.md"} <= listed


def test_shipped_model_is_small():
    total = sum(p.stat().st_size for p in MODELS.iterdir() if p.is_file())
    assert total < 1_000_000
