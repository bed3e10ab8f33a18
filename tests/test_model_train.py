"""Training: reproducible from a seed, the loss falls, the exported weights are the network."""
import numpy as np
import pytest
import torch

from edgemix.features import FEATURE_NAMES, N_FEATURES
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


def test_standardisation_maps_each_features_limited_range_to_unit_range(tiny_data):
    from export.model import LEVEL_RANGE_DB, _matching, LEVEL_FEATURES, UNSEEN_FEATURES
    from export.model import input_limits
    net = Student(N_FEATURES, len(MODEL_OUTPUTS), len(ROLE_NAMES))
    net.fit_standardisation(tiny_data.features, tiny_data.mask)
    rows = tiny_data.features[tiny_data.mask > 0].astype(np.float64)
    lo, hi = input_limits()
    want_lo, want_hi = np.maximum(rows.min(axis=0), lo), np.minimum(rows.max(axis=0), hi)
    # the channel's own levels: one fixed range (a gain never pushes them into the clip)
    level, unseen = _matching(LEVEL_FEATURES), _matching(UNSEEN_FEATURES)
    want_lo[level], want_hi[level] = LEVEL_RANGE_DB
    z_lo = want_lo * net.in_scale.numpy() + net.in_shift.numpy()
    z_hi = want_hi * net.in_scale.numpy() + net.in_shift.numpy()
    varying = (want_hi - want_lo > 1e-6) & ~unseen
    np.testing.assert_allclose(z_lo[varying], -1.0, atol=1e-5)
    np.testing.assert_allclose(z_hi[varying], 1.0, atol=1e-5)
    # the raw mix context is not seen at all
    assert unseen.sum() == 17
    np.testing.assert_array_equal(net.in_scale.numpy()[unseen], 0.0)
    np.testing.assert_array_equal(net.in_shift.numpy()[unseen], 0.0)
    # a band level is limited (export/model.py:INPUT_LIMITS): the network sees one below
    # the limit as the limit
    band = FEATURE_NAMES.index(next(n for n in FEATURE_NAMES if n.endswith("_rel_db")))
    assert np.isfinite(lo[band])
    x = torch.from_numpy(tiny_data.features[:1].copy())
    m = torch.from_numpy(tiny_data.mask[:1])
    x[0, :, band] = float(lo[band])
    at_limit = net(x, m)
    x[0, :, band] = -1e3
    below = net(x, m)
    for a, b in zip(at_limit, below):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # absent rows (zeros) must not take part: refit with garbage in them
    f2 = tiny_data.features.copy()
    f2[tiny_data.mask == 0] = 1e6
    net2 = Student(N_FEATURES, len(MODEL_OUTPUTS), len(ROLE_NAMES))
    net2.fit_standardisation(f2, tiny_data.mask)
    np.testing.assert_array_equal(net2.in_scale.numpy(), net.in_scale.numpy())


def test_a_preamp_gain_moves_only_the_trim(tiny_data):
    """Level invariance by construction: a channel recorded g dB hotter (its four level
    features + g, within the range) gets exactly g dB less trim, and every other output and
    its role logits do not move; nor do the other channels' (no raw mix context is seen)."""
    from edgemix.features import FEATURE_INDEX
    from edgemix.params import denormalise_outputs
    from export.model import LEVEL_FEATURES
    torch.manual_seed(1)
    net = Student(N_FEATURES, len(MODEL_OUTPUTS), len(ROLE_NAMES), 16, 16, 16, 16)
    net.fit_standardisation(tiny_data.features, tiny_data.mask)
    net.fit_outputs(tiny_data.features, tiny_data.mask, tiny_data.targets01)
    with torch.no_grad():
        for layer in (net.enc1, net.enc2, net.ctx, net.mix, net.param_head, net.role_head):
            layer.weight.normal_(0.0, 0.5)
    x = torch.from_numpy(tiny_data.features[:4].copy())
    m = torch.from_numpy(tiny_data.mask[:4])
    cols = [FEATURE_INDEX[k] for k in LEVEL_FEATURES]
    x[..., cols] = torch.clamp(x[..., cols], -70.0, -20.0)
    y = x.clone()
    y[:, 0, cols] += 12.0
    y[:, 1, FEATURE_INDEX["rel_loudness_lu"]] += 9.0
    y[:, 1, [FEATURE_INDEX[k] for k in FEATURE_INDEX if k.startswith("mask")]] -= 7.0
    with torch.no_grad():
        pa, ra = net(x, m)
        pb, rb = net(y, m)
    torch.testing.assert_close(rb, ra, atol=1e-4, rtol=0)
    trim = MODEL_OUTPUTS.index("trim_db")
    others = [j for j in range(len(MODEL_OUTPUTS)) if j != trim]
    torch.testing.assert_close(pb[..., others], pa[..., others], atol=1e-5, rtol=0)
    ua, ub = denormalise_outputs(pa.numpy()), denormalise_outputs(pb.numpy())
    inside = (pa[:, 0, trim] > 0.01) & (pa[:, 0, trim] < 0.99) & (pb[:, 0, trim] > 0.01)
    np.testing.assert_allclose((ua[:, 0, trim] - ub[:, 0, trim])[inside.numpy()], 12.0,
                               atol=1e-3)


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


def test_trim_skip_moves_one_db_for_one_db_of_input_loudness(tiny_data):
    """The residual head: with the network's own contribution held fixed, a channel that is
    1 dB louder at the input gets exactly 1 dB less trim (the gain-staging answer, carried
    by the skip), and the spans keep every output inside 0..1."""
    from edgemix.automix.rules import TRIM_TARGET_LUFS
    from edgemix.features import FEATURE_INDEX
    from edgemix.params import denormalise_outputs
    net = Student(N_FEATURES, len(MODEL_OUTPUTS), len(ROLE_NAMES), 8, 8, 8, 8)
    net.fit_standardisation(tiny_data.features, tiny_data.mask)
    net.fit_outputs(tiny_data.features, tiny_data.mask, tiny_data.targets01)
    assert np.all(net.out_span.numpy() > 0) and np.all(net.out_span.numpy() <= 1.0 + 1e-6)
    x = torch.from_numpy(tiny_data.features[:8].copy())
    m = torch.from_numpy(tiny_data.mask[:8])
    u = torch.full((8, x.shape[1], len(MODEL_OUTPUTS)), 0.5)
    with torch.no_grad():
        p = net.head(u, x).numpy()
    lact = x[..., FEATURE_INDEX["loudness_active_lufs"]].numpy()
    trim = denormalise_outputs(p)[..., MODEL_OUTPUTS.index("trim_db")]
    inside = (m.numpy() > 0) & (np.abs(TRIM_TARGET_LUFS - lact) < 30.0)
    offset = trim[inside] - (TRIM_TARGET_LUFS - lact[inside])
    assert inside.sum() > 20
    np.testing.assert_allclose(offset, offset[0], atol=1e-3)   # dB for dB, one offset
    # the other outputs have no skip: they do not move with the input at all
    others = [j for j in range(len(MODEL_OUTPUTS)) if j != MODEL_OUTPUTS.index("trim_db")]
    flat = p[m.numpy() > 0][:, others]
    np.testing.assert_array_equal(flat, np.broadcast_to(flat[:1], flat.shape))


def test_quantisation_aware_training_ships_int8_grid_weights(tiny_data):
    """The QAT phase: reproducible (its noise comes from the seeded generator), and the
    weights it returns are on their int8 grid, so the int8 file's weights are the float
    model's; the model it returns is those weights."""
    from export.quantize import FC_MATRICES, HEAD, round_weights
    cfg = TrainConfig(**{**TINY.__dict__, "epochs": 3, "qat_epochs": 2,
                         "qat_noise_weight": 1.0})
    a, b = train(tiny_data, cfg), train(tiny_data, cfg)
    for k in WEIGHT_NAMES:
        np.testing.assert_array_equal(a.weights[k], b.weights[k])
    assert len(a.losses) == 5 and all(np.isfinite(a.losses))
    r = round_weights(a.weights)
    for names in FC_MATRICES:
        for n in names:
            np.testing.assert_array_equal(r[n], a.weights[n])
    assert set(a.ranges) >= {"z", "h1", "h2", "ctx", "g", HEAD}
    p, _ = predict_torch(a.model, tiny_data.features[:3], tiny_data.mask[:3])
    for i in range(3):
        rp, _ = forward_reference(a.weights, tiny_data.features[i], tiny_data.mask[i])
        present = tiny_data.mask[i] > 0
        np.testing.assert_allclose(rp[present], p[i][present], atol=2e-6)
