"""Every inference backend against the golden I/O, a loop reference and the model's symmetries."""
import pathlib

import numba
import numpy as np
import pytest
import torch

from edgemix import infer
from edgemix.features import FEATURE_NAMES, N_FEATURES
from edgemix.infer.base import MAX_CHANNELS
from edgemix.infer.numba_backend import _student_forward
from edgemix.infer.weights import WEIGHT_NAMES, save_weights
from edgemix.params import MODEL_OUTPUTS
from edgemix.roles import ROLE_NAMES
from export import verify as V

MODELS = pathlib.Path(__file__).resolve().parents[1] / "models"
SHIPPED = [(f, b) for f, backends in V.SHIPPED.items() for b in backends]


def loop_reference(w, features, mask):
    """The network of edgemix/infer/weights.py with plain Python loops, one number at a time."""
    def dense(x, mat, bias, relu):
        out = []
        for j in range(mat.shape[1]):
            acc = float(bias[j]) if bias is not None else 0.0
            for i in range(mat.shape[0]):
                acc += float(x[i]) * float(mat[i, j])
            out.append(max(acc, 0.0) if relu else acc)
        return out

    present = [c for c in range(len(mask)) if mask[c] != 0]
    h2 = {}
    for c in present:
        z = [min(max(features[c, i] * w["in_scale"][i] + w["in_shift"][i], -1.0), 1.0)
             for i in range(len(features[c]))]
        h2[c] = dense(dense(z, w["enc1_w"], w["enc1_b"], True), w["enc2_w"], w["enc2_b"], True)
    n = max(sum(float(mask[c]) for c in range(len(mask))), 1.0)
    width = w["enc2_w"].shape[1]
    mean = [sum(mask[c] / n * h2[c][j] for c in present) for j in range(width)]
    mx = [max([0.0] + [h2[c][j] * mask[c] for c in present]) for j in range(width)]
    ctx = dense(mean + mx, w["ctx_w"], w["ctx_b"], True)
    row = dense(ctx, w["mix_ctx_w"], w["mix_b"], False)
    params, logits = {}, {}
    for c in present:
        g = [max(a + b, 0.0) for a, b in zip(dense(h2[c], w["mix_w"], None, False), row)]
        u = dense(g, w["param_w"], w["param_b"], False)
        skip = dense(features[c], w["skip_w"], w["skip_b"], False)
        params[c] = [min(max(k + float(s) * v, 0.0), 1.0)
                     for k, s, v in zip(skip, w["out_span"], u)]
        logits[c] = dense(g, w["role_w"], w["role_b"], False)
    return params, logits


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small randomly initialised student (not trained: parity does not need skill)."""
    from export.model import Student
    torch.manual_seed(3)
    net = Student(N_FEATURES, len(MODEL_OUTPUTS), len(ROLE_NAMES), h1=12, h2=10, k=9, d=11)
    with torch.no_grad():  # larger weights than the default init, so the outputs vary
        for p in net.parameters():
            p.mul_(2.5)
    rng = np.random.default_rng(0)
    net.in_scale.copy_(torch.from_numpy(rng.uniform(0.02, 0.2, N_FEATURES)).float())
    net.in_shift.copy_(torch.from_numpy(rng.normal(0.0, 1.0, N_FEATURES)).float())
    # a skip from a few features (of both signs) and spans below 1, so the tail is exercised
    skip_w = np.zeros((N_FEATURES, len(MODEL_OUTPUTS)))
    picks = rng.choice(skip_w.size, 6, replace=False)
    skip_w.flat[picks] = rng.choice([-1.0, 1.0], 6) / 80.0
    net.skip_w.copy_(torch.from_numpy(skip_w).float())
    net.skip_b.copy_(torch.from_numpy(rng.uniform(0.0, 0.6, len(MODEL_OUTPUTS))).float())
    net.out_span.copy_(torch.from_numpy(rng.uniform(0.3, 1.0, len(MODEL_OUTPUTS))).float())
    w = net.export_weights(FEATURE_NAMES, MODEL_OUTPUTS, ROLE_NAMES)
    path = tmp_path_factory.mktemp("tiny") / "tiny.npz"
    save_weights(path, w)
    return path, w, net


def random_inputs(rng, n_present):
    x = rng.normal(-20.0, 15.0, (MAX_CHANNELS, N_FEATURES)).astype(np.float32)
    m = np.zeros(MAX_CHANNELS, np.float32)
    m[rng.permutation(MAX_CHANNELS)[:n_present]] = 1.0
    return x, m


@pytest.mark.parametrize("fname,backend", SHIPPED)
def test_shipped_backends_reproduce_golden(fname, backend):
    with np.load(MODELS / "golden.npz") as z:
        golden = {k: z[k] for k in z.files}
    b = infer.load(MODELS / fname, backend)
    p, r = V.run_backend(b, golden)
    rep = V.compare(p, r, golden, int8="int8" in fname)
    present = golden["mask"] > 0
    if "int8" in fname:
        over = {name: round(err, 3) for name, err in rep["max_err_units"].items()
                if err > V.INT8_TOL_UNITS[name]}
        assert not over, f"{fname}: int8 error above the issue's tolerance (units): {over}"
        assert rep["role_agreement"] >= V.INT8_MIN_ROLE_AGREEMENT
    else:
        assert np.abs(p - golden["params01"])[present].max() <= V.FLOAT_TOL_01
        assert np.abs(r - golden["role_logits"])[present].max() <= V.FLOAT_TOL_LOGIT


def test_golden_covers_one_and_all_channels():
    with np.load(MODELS / "golden.npz") as z:
        counts = z["mask"].sum(axis=1)
    assert 1 in counts and MAX_CHANNELS in counts


@pytest.mark.parametrize("n_present", [0, 1, 5, MAX_CHANNELS])
def test_numba_and_numpy_match_loop_reference(tiny_model, n_present):
    path, w, _ = tiny_model
    rng = np.random.default_rng(n_present)
    x, m = random_inputs(rng, n_present)
    ref_p, ref_r = loop_reference({k: w[k].astype(np.float64) for k in WEIGHT_NAMES}, x, m)
    for kind in ("numba", "numpy"):
        p, r = infer.load(path, kind).predict(x, m)
        for c in ref_p:
            np.testing.assert_allclose(p[c], ref_p[c], atol=2e-6)
            np.testing.assert_allclose(r[c], ref_r[c], atol=2e-5, rtol=1e-5)
    if n_present:  # the reference is not trivially constant
        assert np.ptp(np.array(list(ref_p.values()))) > 0.05


def test_torch_training_side_matches_loop_reference(tiny_model):
    path, w, net = tiny_model
    x, m = random_inputs(np.random.default_rng(7), 9)
    with torch.no_grad():
        tp, tr = net(torch.from_numpy(x)[None], torch.from_numpy(m)[None])
    ref_p, ref_r = loop_reference({k: w[k].astype(np.float64) for k in WEIGHT_NAMES}, x, m)
    for c in ref_p:
        np.testing.assert_allclose(tp[0, c].numpy(), ref_p[c], atol=2e-6)
        np.testing.assert_allclose(tr[0, c].numpy(), ref_r[c], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("fname,backend", SHIPPED)
def test_absent_channels_never_change_present_ones(fname, backend):
    b = infer.load(MODELS / fname, backend)
    with np.load(MODELS / "golden.npz") as z:
        x, m = z["features"][3].copy(), z["mask"][3].copy()
    assert 1 < m.sum() < MAX_CHANNELS
    p0, r0 = (a.copy() for a in b.predict(x, m))
    x[m == 0] = np.random.default_rng(1).normal(0.0, 300.0, x[m == 0].shape)
    p1, r1 = b.predict(x, m)
    present = m > 0
    np.testing.assert_array_equal(p1[present], p0[present])
    np.testing.assert_array_equal(r1[present], r0[present])


@pytest.mark.parametrize("kind", ["numba", "numpy"])
def test_permuting_channels_permutes_outputs(tiny_model, kind):
    """Shared per-channel weights and a symmetric pool: the network is permutation-equivariant."""
    path, _, _ = tiny_model
    b = infer.load(path, kind)
    rng = np.random.default_rng(11)
    x, m = random_inputs(rng, 20)
    p0, r0 = (a.copy() for a in b.predict(x, m))
    perm = rng.permutation(MAX_CHANNELS)
    p1, r1 = b.predict(x[perm], m[perm])
    present = m[perm] > 0
    np.testing.assert_allclose(p1[present], p0[perm][present], atol=1e-6)
    np.testing.assert_allclose(r1[present], r0[perm][present], atol=1e-5)


def test_the_mix_context_matters(tiny_model):
    """Adding a channel changes the others' outputs: the pool is fed back to every channel."""
    path, _, _ = tiny_model
    b = infer.load(path)
    x, m = random_inputs(np.random.default_rng(5), 4)
    p0 = b.predict(x, m)[0].copy()
    m2 = m.copy()
    m2[np.flatnonzero(m == 0)[0]] = 1.0
    p1 = b.predict(x, m2)[0]
    assert np.abs(p1[m > 0] - p0[m > 0]).max() > 1e-4


@numba.njit
def _caller(features, mask, flat, sizes, skip_rows, scratch, p, r, repeats):
    for _ in range(repeats):
        _student_forward(features, mask, flat, sizes, skip_rows, scratch, p, r)
    return p[0, 0]


def test_kernel_callable_from_another_njit_function(tiny_model):
    path, _, _ = tiny_model
    b = infer.load(path)
    x, m = random_inputs(np.random.default_rng(2), 6)
    want = b.predict(x, m)[0].copy()
    p = np.zeros_like(b.params01)
    r = np.zeros_like(b.role_logits)
    _caller(x, m, b.flat_weights, b.sizes, b.skip_rows, b.scratch.copy(), p, r, 3)
    np.testing.assert_array_equal(p, want)


@pytest.mark.parametrize("kind", ["numba", "numpy"])
def test_bad_inputs_are_a_clear_value_error(tiny_model, kind):
    b = infer.load(tiny_model[0], kind)
    with pytest.raises(ValueError, match="features must have shape"):
        b.predict(np.zeros((8, N_FEATURES), np.float32), np.ones(8, np.float32))
    with pytest.raises(ValueError, match="mask must have shape"):
        b.predict(np.zeros((MAX_CHANNELS, N_FEATURES), np.float32), np.ones(8, np.float32))


def test_outputs_are_preallocated(tiny_model):
    b = infer.load(tiny_model[0])
    x, m = random_inputs(np.random.default_rng(4), 3)
    p1, r1 = b.predict(x, m)
    p2, r2 = b.predict(x, m)
    assert p1 is p2 and r1 is r2 and p1 is b.params01


def test_kernel_allocates_nothing_per_decision(tiny_model):
    """The kernel runs on the control thread every hop: no heap allocation inside it (the
    skip rows are found at load).  Counted by Numba's runtime: one call and six calls from
    an @njit loop must allocate the same (the boxing of the arguments only)."""
    from numba.core.runtime import _nrt_python, rtsys
    b = infer.load(tiny_model[0])
    x, m = random_inputs(np.random.default_rng(8), 7)
    args = (x, m, b.flat_weights, b.sizes, b.skip_rows, b.scratch, b.params01, b.role_logits)
    _caller(*args, 1)  # compiled before counting
    _nrt_python.memsys_enable_stats()
    try:
        counts = []
        for repeats in (1, 6):
            before = rtsys.get_allocation_stats().alloc
            _caller(*args, repeats)
            counts.append(rtsys.get_allocation_stats().alloc - before)
    finally:
        _nrt_python.memsys_disable_stats()
    assert counts[0] == counts[1], f"allocations per call: {counts[1] - counts[0]} / 5"
