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
    benchmark(_student_forward, x, m, b.flat_weights, b.sizes, b.skip_rows, b.scratch,
              b.params01, b.role_logits)
    assert np.all(np.isfinite(b.params01))


def test_feature_extraction_32ch_per_64_frame_block(benchmark):
    """The control path's feature cost (on the control thread or process, not the audio
    thread): 32 channels fed one 64-frame block at a time, averaged over one whole hop
    (75 blocks at 48 kHz and the default 100 ms hop), so the hop's snapshot work is in."""
    from edgemix.features import FeatureExtractor
    fe = FeatureExtractor(48000.0, 32)
    rng = np.random.default_rng(0)
    blocks = (rng.standard_normal((fe.hop_frames // 64, 64, 32)) * 0.1).astype(np.float32)

    def one_hop():
        for b in blocks:
            fe.process(b)
        return fe.snapshot()

    benchmark.group = "features, 32 channels"
    snap = benchmark.pedantic(one_hop, rounds=30, warmup_rounds=3)
    per_block = benchmark.stats.stats.min / blocks.shape[0]
    benchmark.extra_info.update(us_per_block=per_block * 1e6, blocks_per_hop=blocks.shape[0])
    print(f"\nfeatures, 32 ch: {per_block * 1e6:.1f} us per 64-frame block (one hop of "
          f"{blocks.shape[0]} blocks: {benchmark.stats.stats.min * 1e3:.2f} ms)")
    assert np.all(np.isfinite(snap))
