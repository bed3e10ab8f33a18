"""Inference time per decision (32 channels present) for every backend of the shipped model.

Run: ``scripts/bench.sh benchmarks/bench_infer.py`` (pytest-benchmark; numbers, not
pass/fail).  The target is the fastest backend under 20 us per decision on the board.
"""
import pathlib

import numpy as np
import pytest

from edgemix import infer
from edgemix.infer.base import MAX_CHANNELS
from edgemix.infer.numba_backend import _student_forward

MODELS = pathlib.Path(__file__).resolve().parents[1] / "models"
CASES = [("student.npz", "numba"), ("student.npz", "numpy"), ("student.onnx", "onnxruntime"),
         ("student_float32.tflite", "litert"),
         ("student_int8.tflite", "litert")]


def _inputs():
    with np.load(MODELS / "golden.npz") as z:
        i = int(np.argmax(z["mask"].sum(axis=1)))  # the session with all 32 channels
        x, m = z["features"][i].copy(), z["mask"][i].copy()
    assert m.sum() == MAX_CHANNELS
    return x, m


@pytest.mark.parametrize("fname,backend", CASES, ids=[f"{f}:{b}" for f, b in CASES])
def test_decision_32ch(benchmark, fname, backend):
    b = infer.load(MODELS / fname, backend)
    x, m = _inputs()
    benchmark.group = "inference, 32 channels, one decision"
    p, r = benchmark(b.predict, x, m)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(r))


def test_decision_32ch_numba_kernel_only(benchmark):
    """The kernel called directly (what an @njit control loop pays, without the wrapper)."""
    b = infer.load(MODELS / "student.npz")
    x, m = _inputs()
    benchmark.group = "inference, 32 channels, one decision"
    benchmark(_student_forward, x, m, b.flat_weights, b.sizes, b.scratch, b.params01,
              b.role_logits)
    assert np.all(np.isfinite(b.params01))
