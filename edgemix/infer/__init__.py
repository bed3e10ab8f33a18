"""Inference backends for the distilled student model, behind one interface.

``load(path)`` picks the backend from the file: ``.npz`` weights run on the Numba-native
forward pass (or the numpy reference with ``backend="numpy"``), ``.onnx`` on ONNX Runtime,
``.tflite`` (float32 or int8) on LiteRT.  Every backend has ``name`` and
``predict(features, mask) -> (params01, role_logits)`` with preallocated outputs; see
:mod:`edgemix.infer.base` for the shapes.  A missing, corrupt, truncated or wrong-shape
file raises :class:`ModelLoadError` at load, never later.
"""
from __future__ import annotations

import pathlib

from edgemix.infer.base import MAX_CHANNELS, Backend, ModelLoadError

__all__ = ["load", "Backend", "ModelLoadError", "MAX_CHANNELS", "BACKENDS", "default_model_dir"]

#: Backend names accepted by :func:`load` and the file suffix each reads.
BACKENDS = {"numba": ".npz", "numpy": ".npz", "onnxruntime": ".onnx", "litert": ".tflite"}


#: ``.npz`` files a models folder holds beside the weights that are not a model: the
#: golden I/O (contract 3), the teacher's labels and the sampled-instrument sessions'
#: features and labels (the training data, never shipped to a board).
NOT_WEIGHTS = ("golden.npz", "teacher_labels.npz", "sampled_sessions.npz")


def is_weights_file(name: str) -> bool:
    """Whether a ``.npz`` file name in a models folder is a student's weights."""
    name = name.lower()
    return name.endswith(".npz") and name not in NOT_WEIGHTS and not name.startswith("golden")


def default_model_dir() -> pathlib.Path:
    """The shipped ``models/`` folder of a source checkout."""
    return pathlib.Path(__file__).resolve().parents[2] / "models"


def model_files(models_dir) -> dict:
    """The student files in a ``models/`` folder by backend name: ``numba``/``numpy`` (the
    ``.npz`` weights), ``onnxruntime`` and ``onnxruntime-int8``, ``litert-fp32`` and
    ``litert-int8``; empty when the folder is missing."""
    models_dir = pathlib.Path(models_dir) if models_dir else None
    files: dict = {}
    if models_dir is None or not models_dir.is_dir():
        return files
    for p in sorted(models_dir.glob("*.npz")):
        if is_weights_file(p.name):
            files.setdefault("numba", p)
            files.setdefault("numpy", p)
    for p in sorted(models_dir.glob("*.onnx")):
        files.setdefault("onnxruntime-int8" if "int8" in p.name else "onnxruntime", p)
    for p in sorted(models_dir.glob("*.tflite")):
        files.setdefault("litert-int8" if "int8" in p.name else "litert-fp32", p)
    return files


def load(path, backend: str | None = None) -> Backend:
    """Load a student model; ``backend`` defaults from the suffix (``.npz`` -> numba)."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if backend is None:
        backend = {".npz": "numba", ".onnx": "onnxruntime", ".tflite": "litert"}.get(suffix)
        if backend is None:
            raise ModelLoadError(f"{path}: unknown model type {suffix!r}: use a .npz, .onnx "
                                 "or .tflite file")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if BACKENDS[backend] != suffix:
        raise ModelLoadError(f"{path}: the {backend} backend reads {BACKENDS[backend]} files")
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file")
    if backend == "numba":
        from edgemix.infer.numba_backend import NumbaBackend as cls
    elif backend == "numpy":
        from edgemix.infer.numpy_backend import NumpyBackend as cls
    elif backend == "onnxruntime":
        from edgemix.infer.onnx_backend import OnnxBackend as cls
    else:
        from edgemix.infer.litert_backend import LiteRTBackend as cls
    return cls(path)
