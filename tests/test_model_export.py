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
    # the calibration features' ranges onto the input's -1..1 (clipped beyond: unfitted,
    # every feature in dB would sit at the clip)
    d = interim_dataset(24, seed=9)
    net.fit_standardisation(d.features, d.mask)
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
    """The model and its companions (what a board gets); the training data beside them
    (teacher labels, sampled-instrument sessions' features) is not the model."""
    training_data = ("teacher_labels.npz", "sampled_sessions.npz")
    total = sum(p.stat().st_size for p in MODELS.iterdir()
                if p.is_file() and p.name not in training_data)
    assert total < 1_000_000
    assert (MODELS / "sampled_sessions.npz").stat().st_size < 8_000_000


def _forward_batch(w, features, mask):
    from edgemix.infer.weights import forward_reference
    out = [forward_reference(w, f, m) for f, m in zip(features, mask)]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def test_equalise_keeps_the_function_and_fills_each_units_range(weights, calib):
    from export.quantize import (CALIBRATION_QUANTILE, EQUALISE_MAX_GAIN, equalise,
                                 intermediates)
    f, m = calib
    eq = equalise(weights, f, m)
    present = m > 0
    p0, r0 = _forward_batch(weights, f, m)
    p1, r1 = _forward_batch(eq, f, m)
    # the same function up to the float32 rounding of the rescaled weights (measured 8e-6)
    np.testing.assert_allclose(p1[present], p0[present], atol=3e-5)
    np.testing.assert_allclose(r1[present], r0[present], atol=1e-4, rtol=1e-5)
    # every live unit of g now reaches min(its tensor's top, gain cap x its old top)
    before, after = intermediates(weights, f, m), intermediates(eq, f, m)
    for name in ("h1", "g"):
        top0 = np.quantile(before[name][present], 1 - CALIBRATION_QUANTILE, axis=0)
        top1 = np.quantile(after[name][present], 1 - CALIBRATION_QUANTILE, axis=0)
        live = top0 > 1e-6 * top0.max()
        want = np.minimum(top0.max(), EQUALISE_MAX_GAIN * top0)
        np.testing.assert_allclose(top1[live], want[live], rtol=1e-4)
    # the input is the standardisation's (export/model.py), left alone
    for k in ("in_scale", "in_shift"):
        np.testing.assert_array_equal(eq[k], weights[k])


def test_rounded_weights_are_the_int8_files_weights(weights):
    from export.quantize import FC_MATRICES, round_weights
    r = round_weights(weights)
    for names in FC_MATRICES:
        w = np.concatenate([np.asarray(r[n], np.float64) for n in names], axis=0)
        q, s = quantise_weights_per_channel(w.T)
        np.testing.assert_array_equal((q * s[:, None]).T.astype(np.float32),
                                      w.astype(np.float32))
        orig = np.concatenate([np.asarray(weights[n], np.float64) for n in names], axis=0)
        step = np.abs(orig).max(axis=0) / 127.0
        assert np.all(np.abs(w - orig) <= step / 2 + 1e-7) and not np.array_equal(w, orig)
    assert round_weights(r)["enc1_w"].tobytes() == r["enc1_w"].tobytes()


def test_head_ranges_cover_the_outputs_and_fold_exactly(weights, calib):
    from edgemix.features import FEATURE_INDEX
    from export.quantize import HEAD, fold_head_ranges, intermediates
    f, m = calib
    # a skip that follows a feature on the first output (like the trim's) and spans below 1
    weights = dict(weights)
    weights["skip_w"] = np.zeros_like(weights["skip_w"])
    weights["skip_w"][FEATURE_INDEX["loudness_active_lufs"], 0] = -1.0 / 80.0
    weights["skip_b"] = np.full_like(weights["skip_b"], 0.3)
    weights["out_span"] = np.full_like(weights["out_span"], 0.02)
    # ... and a head whose u runs far past the clamp (the random one's spans about 0.1)
    weights["param_w"] = weights["param_w"] * np.float32(1e4)
    ranges = calibrate(weights, f, m)
    lo, hi = (np.asarray(a) for a in ranges[HEAD])
    assert lo.shape == hi.shape == (len(MODEL_OUTPUTS),) and np.all(hi > lo)
    u = intermediates(weights, f, m)[HEAD][m > 0]
    span, skip_b = weights["out_span"], weights["skip_b"]
    const = ~np.asarray(weights["skip_w"]).any(axis=0)
    # an output whose skip follows the features keeps all of its u; the others are cut
    # at the clamp (checked below: saturating there changes nothing)
    assert np.all(((lo <= u.min(axis=0)) & (hi >= u.max(axis=0))) | const)
    assert not const[0] and const[1:].all()
    # the random head's u runs far past the clamp: the cut ranges are narrower than u's
    assert np.all((hi - lo)[1:] < np.ptp(u, axis=0)[1:])
    folded = fold_head_ranges(weights, lo, hi)
    p0, _ = _forward_batch(weights, f, m)
    p1, _ = _forward_batch(folded, f, m)
    np.testing.assert_allclose(p1[m > 0], p0[m > 0], atol=2e-6)
    # saturating the folded head at its int8 range 0..1 changes no output
    x = f[m > 0].astype(np.float64)
    u01 = np.clip(intermediates(folded, f, m)[HEAD][m > 0], 0.0, 1.0)
    sat = np.clip(x @ folded["skip_w"] + folded["skip_b"] + folded["out_span"] * u01, 0, 1)
    np.testing.assert_allclose(sat, p0[m > 0], atol=2e-6)
