"""The model policy: snapshot -> backend -> units via the schema -> a Proposal with reasons."""
import pathlib

import numpy as np
import pytest

from edgemix import params as P
from edgemix.automix.model_policy import ModelPolicy
from edgemix.automix.policy import Automation, Policy
from edgemix.features import N_FEATURES
from edgemix.infer import MAX_CHANNELS, load
from edgemix.roles import ROLE_NAMES

MODELS = pathlib.Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="module")
def snapshot():
    with np.load(MODELS / "golden.npz") as z:
        i = int(np.argsort(z["mask"].sum(axis=1))[3])
        n = int(z["mask"][i].sum())
        return z["features"][i][:n].copy()


def test_is_a_policy_over_the_model_outputs():
    pol = ModelPolicy()
    assert isinstance(pol, Policy)
    assert pol.outputs == P.MODEL_OUTPUTS


def test_proposal_is_the_backend_output_in_units(snapshot):
    pol = ModelPolicy()
    prop = pol.propose(snapshot)
    n = snapshot.shape[0]
    x = np.zeros((MAX_CHANNELS, N_FEATURES), np.float32)
    x[:n] = snapshot
    m = np.zeros(MAX_CHANNELS, np.float32)
    m[:n] = 1
    p01, logits = load(MODELS / "student.npz", "numpy").predict(x, m)
    want = np.stack([s.from_norm(p01[:n, j]) for j, s in enumerate(P.MODEL_OUTPUT_SPECS)], -1)
    np.testing.assert_allclose(prop.model_outputs(), want, rtol=1e-5, atol=1e-4)
    # only the model's columns are proposed, each within its range
    assert np.array_equal(np.flatnonzero(prop.proposed[0]), np.sort(P.MODEL_OUTPUT_COLUMNS))
    for j, s in enumerate(P.MODEL_OUTPUT_SPECS):
        assert np.all((prop.model_outputs()[:, j] >= s.min) & (prop.model_outputs()[:, j] <= s.max))
    assert pol.roles == tuple(ROLE_NAMES[i] for i in logits[:n].argmax(axis=1))
    np.testing.assert_allclose(pol.role_probabilities.sum(axis=1), 1.0, atol=1e-9)


def test_explanations_name_parameter_value_role_and_confidence(snapshot):
    pol = ModelPolicy()
    prop = pol.propose(snapshot)
    for c in range(snapshot.shape[0]):
        assert set(prop.explanations[c]) == set(P.MODEL_OUTPUTS)
        text = prop.explanations[c]["fader_db"]
        p = pol.role_probabilities[c].max()
        assert text.startswith("fader ")
        assert f"{prop.value(c, 'fader_db'):+.1f} dB" in text
        assert f"role={pol.roles[c]} (p={p:.2f})" in text
        assert prop.explanations[c]["hpf_hz"].startswith("HPF ")


@pytest.mark.parametrize("fname", ["student.onnx", "student_float32.tflite"])
def test_every_float_backend_gives_the_same_proposal(snapshot, fname):
    a = ModelPolicy().propose(snapshot).model_outputs()
    b = ModelPolicy(MODELS / fname).propose(snapshot).model_outputs()
    np.testing.assert_allclose(P.normalise_outputs(b), P.normalise_outputs(a), atol=1e-4)


def test_drives_automation_levels(snapshot):
    pol = ModelPolicy()
    prop = pol.propose(snapshot)
    n = snapshot.shape[0]
    manual = Automation(n, level=0.0)
    np.testing.assert_array_equal(manual.step(prop, jump=True), P.channel_defaults(n))
    full = Automation(n, level=1.0)
    out = full.step(prop, jump=True)
    np.testing.assert_allclose(out[:, P.MODEL_OUTPUT_COLUMNS], prop.model_outputs())


def test_bad_snapshots_are_clear_value_errors(snapshot):
    pol = ModelPolicy()
    with pytest.raises(ValueError, match="expected"):
        pol.propose(snapshot[:, :5])
    with pytest.raises(ValueError, match="1 .. 32"):
        pol.propose(np.zeros((MAX_CHANNELS + 1, N_FEATURES), np.float32))
    bad = snapshot.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pol.propose(bad)


def test_padding_does_not_leak_between_calls(snapshot):
    pol = ModelPolicy()
    first = pol.propose(snapshot).model_outputs()
    pol.propose(np.full((MAX_CHANNELS, N_FEATURES), 5.0, np.float32))
    again = pol.propose(snapshot).model_outputs()
    np.testing.assert_array_equal(first, again)
