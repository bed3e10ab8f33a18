"""Missing, corrupt, truncated and wrong-shape model files: a one-line ModelLoadError at load."""
import numpy as np
import pytest
import torch

import edgemix.infer.weights as weights_mod
from edgemix import infer
from edgemix.features import FEATURE_NAMES
from edgemix.infer import ModelLoadError
from edgemix.infer.weights import save_weights
from edgemix.params import MODEL_OUTPUTS
from edgemix.roles import ROLE_NAMES
from export.onnx_export import write_onnx
from export.quantize import calibrate
from export.tflite_export import write_tflite

KINDS = [("npz", "numba"), ("npz", "numpy"), ("onnx", "onnxruntime"),
         ("tflite", "litert"), ("int8.tflite", "litert")]


def _student_weights(n_features):
    from export.model import Student
    torch.manual_seed(0)
    net = Student(n_features, len(MODEL_OUTPUTS), len(ROLE_NAMES), h1=6, h2=5, k=4, d=6)
    names = list(FEATURE_NAMES[:n_features]) + [f"extra{i}" for i in range(n_features
                                                                            - len(FEATURE_NAMES))]
    return net.export_weights(names, MODEL_OUTPUTS, ROLE_NAMES)


def _write_all(d, w, stem):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(4, 32, w["enc1_w"].shape[0])).astype(np.float32)
    m = np.ones((4, 32), np.float32)
    paths = {"npz": d / f"{stem}.npz", "onnx": d / f"{stem}.onnx",
             "tflite": d / f"{stem}.tflite", "int8.tflite": d / f"{stem}_int8.tflite"}
    save_weights(paths["npz"], w)
    write_onnx(paths["onnx"], w)
    write_tflite(paths["tflite"], w)
    write_tflite(paths["int8.tflite"], w, calibrate(w, f, m))
    return paths


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    good = _write_all(d, _student_weights(len(FEATURE_NAMES)), "good")
    # a model for a different feature set: export it as if the runtime had 7 features
    short = _student_weights(7)
    mp = pytest.MonkeyPatch()
    mp.setattr(weights_mod, "model_io",
               lambda: (tuple(short["feature_names"]), tuple(MODEL_OUTPUTS), tuple(ROLE_NAMES)))
    try:
        wrong = _write_all(d, short, "wrong")
    finally:
        mp.undo()
    return d, good, wrong


def _assert_one_line(exc_info, path):
    msg = str(exc_info.value)
    assert "\n" not in msg and str(path) in msg


@pytest.mark.parametrize("kind,backend", KINDS)
def test_good_file_loads(files, kind, backend):
    _, good, _ = files
    b = infer.load(good[kind], backend)
    p, r = b.predict(np.zeros((32, len(FEATURE_NAMES)), np.float32), np.ones(32, np.float32))
    assert p.shape == (32, len(MODEL_OUTPUTS)) and r.shape == (32, len(ROLE_NAMES))
    assert np.all((p >= 0) & (p <= 1))


@pytest.mark.parametrize("kind,backend", KINDS)
def test_truncated_file(files, kind, backend):
    d, good, _ = files
    data = good[kind].read_bytes()
    for frac in (0.0, 0.1, 0.5, 0.97):
        bad = d / f"trunc_{int(frac * 100)}_{good[kind].name}"
        bad.write_bytes(data[:int(len(data) * frac)])
        with pytest.raises(ModelLoadError) as e:
            infer.load(bad, backend)
        _assert_one_line(e, bad)


@pytest.mark.parametrize("kind,backend", KINDS)
def test_corrupt_file(files, kind, backend):
    d, good, _ = files
    data = bytearray(good[kind].read_bytes())
    rng = np.random.default_rng(1)
    garbage = d / f"garbage_{good[kind].name}"
    garbage.write_bytes(rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
    with pytest.raises(ModelLoadError) as e:
        infer.load(garbage, backend)
    _assert_one_line(e, garbage)


@pytest.mark.parametrize("kind,backend", KINDS)
def test_wrong_shape_file(files, kind, backend):
    _, _, wrong = files
    with pytest.raises(ModelLoadError, match="rebuild") as e:
        infer.load(wrong[kind], backend)
    _assert_one_line(e, wrong[kind])


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model file"):
        infer.load(tmp_path / "nope.onnx")
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="unknown model type"):
        infer.load(tmp_path / "m.bin")
    with pytest.raises(ModelLoadError, match="reads .npz"):
        infer.load(tmp_path / "m.bin", "numba")
    with pytest.raises(ValueError, match="unknown backend"):
        infer.load(tmp_path / "m.bin", "tensorflow")


def test_nan_weights_rejected(files, tmp_path):
    _, good, _ = files
    with np.load(good["npz"]) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["enc2_w"] = arrays["enc2_w"].copy()
    arrays["enc2_w"][0, 0] = np.nan
    weights_mod.write_npz(tmp_path / "nan.npz", arrays)
    with pytest.raises(ModelLoadError, match="NaN"):
        infer.load(tmp_path / "nan.npz")


def test_weights_with_a_missing_array_rejected(files, tmp_path):
    _, good, _ = files
    with np.load(good["npz"]) as z:
        arrays = {k: z[k] for k in z.files if k != "role_w"}
    weights_mod.write_npz(tmp_path / "short.npz", arrays)
    with pytest.raises(ModelLoadError, match="missing arrays role_w"):
        infer.load(tmp_path / "short.npz", "numpy")
