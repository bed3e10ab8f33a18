"""Training: reproducible from a seed, the loss falls, the exported weights are the network."""
import numpy as np
import pytest
import torch

from edgemix.features import N_FEATURES
from edgemix.infer.base import MAX_CHANNELS
from edgemix.infer.weights import WEIGHT_NAMES, forward_reference, n_parameters, sizes_of
from edgemix.params import MODEL_OUTPUTS
from edgemix.roles import ROLE_NAMES
from export.dataset import interim_dataset
from export.model import DEFAULT_SIZES, Student
from export.train import TrainConfig, predict_torch, train

TINY = TrainConfig(seed=5, epochs=15, batch_sessions=16, lr=1e-2,
                   sizes={"H1": 16, "H2": 16, "K": 12, "D": 16})


@pytest.fixture(scope="module")
def tiny_data():
    return interim_dataset(96, seed=2)


def test_interim_dataset_is_deterministic_and_well_formed(tiny_data):
    again = interim_dataset(96, seed=2)
    other = interim_dataset(96, seed=3)
    np.testing.assert_array_equal(tiny_data.features, again.features)
    np.testing.assert_array_equal(tiny_data.targets01, again.targets01)
    assert not np.array_equal(tiny_data.features, other.features)
    d = tiny_data
    assert d.features.shape == (96, MAX_CHANNELS, N_FEATURES)
    assert d.targets01.shape == (96, MAX_CHANNELS, len(MODEL_OUTPUTS))
    present = d.mask > 0
    assert np.all(np.isfinite(d.features))
    assert np.all((d.targets01 >= 0) & (d.targets01 <= 1))
    assert np.all((d.roles[present] >= 0) & (d.roles[present] < len(ROLE_NAMES)))
    assert np.all(d.roles[~present] == -1)
    counts = d.mask.sum(axis=1)
    assert counts.min() >= 1 and counts.max() <= MAX_CHANNELS
    # masks are prefix masks here: channel counts, not holes
    assert np.all(np.diff(d.mask, axis=1) <= 0)


def test_training_is_reproducible_and_the_loss_falls(tiny_data):
    a = train(tiny_data, TINY)
    b = train(tiny_data, TINY)
    for k in WEIGHT_NAMES:
        np.testing.assert_array_equal(a.weights[k], b.weights[k])
    assert a.losses == b.losses
    assert a.losses[-1] < 0.7 * a.losses[0]
    c = train(tiny_data, TrainConfig(**{**TINY.__dict__, "seed": 6}))
    assert not np.array_equal(a.weights["enc1_w"], c.weights["enc1_w"])


def test_exported_weights_reproduce_the_torch_model(tiny_data):
    res = train(tiny_data, TrainConfig(**{**TINY.__dict__, "epochs": 1}))
    p, r = predict_torch(res.model, tiny_data.features[:5], tiny_data.mask[:5])
    for i in range(5):
        rp, rr = forward_reference(res.weights, tiny_data.features[i], tiny_data.mask[i])
        present = tiny_data.mask[i] > 0
        np.testing.assert_allclose(rp[present], p[i][present], atol=2e-6)
        np.testing.assert_allclose(rr[present], r[i][present], atol=2e-5, rtol=1e-5)


def test_standardisation_maps_the_central_99_percent_to_unit_range(tiny_data):
    net = Student(N_FEATURES, len(MODEL_OUTPUTS), len(ROLE_NAMES))
    net.fit_standardisation(tiny_data.features, tiny_data.mask)
    rows = tiny_data.features[tiny_data.mask > 0].astype(np.float64)
    z = rows * net.in_scale.numpy() + net.in_shift.numpy()
    varying = rows.std(axis=0) > 1e-6
    np.testing.assert_allclose(np.quantile(z, 0.005, axis=0)[varying], -1.0, atol=1e-4)
    np.testing.assert_allclose(np.quantile(z, 0.995, axis=0)[varying], 1.0, atol=1e-4)
    # absent rows (zeros) must not take part: refit with garbage in them
    f2 = tiny_data.features.copy()
    f2[tiny_data.mask == 0] = 1e6
    net2 = Student(N_FEATURES, len(MODEL_OUTPUTS), len(ROLE_NAMES))
    net2.fit_standardisation(f2, tiny_data.mask)
    np.testing.assert_array_equal(net2.in_scale.numpy(), net.in_scale.numpy())


def test_default_student_is_under_the_parameter_budget():
    net = Student(N_FEATURES, len(MODEL_OUTPUTS), len(ROLE_NAMES))
    w = net.export_weights([f"f{i}" for i in range(N_FEATURES)], MODEL_OUTPUTS, ROLE_NAMES)
    n = n_parameters(w)
    assert n == sum(p.numel() for p in net.parameters())
    assert n < 50_000
    s = sizes_of(w)
    assert (s["H1"], s["H2"], s["K"], s["D"]) == tuple(DEFAULT_SIZES[k]
                                                       for k in ("H1", "H2", "K", "D"))


def test_masked_loss_ignores_absent_channels(tiny_data):
    from export.train import masked_loss
    torch.manual_seed(0)
    net = Student(N_FEATURES, len(MODEL_OUTPUTS), len(ROLE_NAMES), 8, 8, 8, 8)
    x = torch.from_numpy(tiny_data.features[:4])
    m = torch.from_numpy(tiny_data.mask[:4])
    y = torch.from_numpy(tiny_data.targets01[:4]).clone()
    r = torch.from_numpy(tiny_data.roles[:4])
    base = [float(v.detach()) for v in masked_loss(net, x, m, y, r, 0.05)]
    y[m == 0] = 1.0  # change only absent targets
    assert [float(v.detach()) for v in masked_loss(net, x, m, y, r, 0.05)] == base
