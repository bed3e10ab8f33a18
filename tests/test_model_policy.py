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
    """A golden session of several channels with both playing and silent ones (as the
    policy's staging tells them apart)."""
    pol = ModelPolicy()
    with np.load(MODELS / "golden.npz") as z:
        for i in np.argsort(z["mask"].sum(axis=1), kind="stable")[3:]:
            n = int(z["mask"][i].sum())
            f = z["features"][i][:n].astype(np.float64)
            active = pol.staging(f)[2]
            if active.any() and not active.all():
                return z["features"][i][:n].copy()
        # none has a silent channel: one added (a mic that has not played yet)
        from edgemix.features import silence_row
        i = int(np.argsort(z["mask"].sum(axis=1))[3])
        n = int(z["mask"][i].sum())
        return np.vstack([z["features"][i][:n], silence_row()[None]]).astype(np.float32)
        i = int(np.argsort(z["mask"].sum(axis=1))[3])
        n = int(z["mask"][i].sum())
        return z["features"][i][:n].copy()


def test_is_a_policy_over_the_model_outputs():
    pol = ModelPolicy()
    assert isinstance(pol, Policy)
    # the network's outputs, the shelf corners it moves and gain sharing (issue 10)
    assert pol.outputs == P.MODEL_OUTPUTS + ("eq1_hz", "eq4_hz", "automix_on",
                                             "automix_weight_db")


def test_proposal_is_the_backend_output_in_units(snapshot):
    """The network hears the staged channel (issue 10): its EQ, compression and send are
    the backend's answer to the snapshot after each channel's staging trim; the trim is the
    staging trim itself and the fader the measured balance; roles are its argmax."""
    from edgemix import features as F
    from edgemix.automix.rules import is_high_source, staging_trim
    from edgemix.automix.staging import staged_features
    pol = ModelPolicy()
    prop = pol.propose(snapshot)
    n = snapshot.shape[0]
    f = snapshot.astype(np.float64)
    trims, _, active = pol.staging(f)
    assert active.any() and not active.all()              # the golden case has both kinds
    x = np.zeros((MAX_CHANNELS, N_FEATURES), np.float32)
    x[:n] = staged_features(f, trims)
    m = np.zeros(MAX_CHANNELS, np.float32)
    m[:n] = 1
    p01, logits = load(MODELS / "student.npz", "numpy").predict(x, m)
    want = np.stack([s.from_norm(p01[:n, j]) for j, s in enumerate(P.MODEL_OUTPUT_SPECS)], -1)
    net = [j for j, name in enumerate(P.MODEL_OUTPUTS)
           if name not in ("pan", "trim_db", "fader_db", "eq1_gain_db")]
    on = np.flatnonzero(active)
    got = prop.model_outputs()
    np.testing.assert_allclose(got[np.ix_(on, net)], want[np.ix_(on, net)], rtol=1e-5, atol=1e-4)
    low = P.MODEL_OUTPUTS.index("eq1_gain_db")
    for c in on:
        expect = staging_trim(max(f[c, F.F_LACT], f[c, F.F_LST]), f[c, F.F_PEAK])[0]
        assert got[c, 0] == pytest.approx(expect)
        high = is_high_source(f[c, F.F_BAND:F.F_BAND + F.N_BANDS])
        assert got[c, low] == pytest.approx(min(want[c, low], 0.0) if high else want[c, low],
                                            abs=1e-4)
    # proposed only where measured, each within its range
    for j, s in enumerate(P.MODEL_OUTPUT_SPECS):
        col = got[on, j]
        assert np.all((col >= s.min) & (col <= s.max))
    heard = [c for c in range(n) if pol.recognition()[c]["recognised_role"] is not None]
    assert heard and all(pol.roles[c] == ROLE_NAMES[int(logits[c].argmax())] for c in heard)
    np.testing.assert_allclose(pol.role_probabilities[heard].sum(axis=1), 1.0, atol=1e-9)


def test_explanations_name_parameter_value_and_the_role_as_one_reason(snapshot):
    """Every proposed parameter has its sentence ("fader -7.9 dB: ..."); the role is in the
    placement's and the send's reasons as what was heard and how sure, not the reason of
    every move (issue 10; tests/test_model_reasons.py checks measurements and targets)."""
    pol = ModelPolicy()
    prop = pol.propose(snapshot)
    for c, rec in enumerate(pol.recognition()):
        names = {s.name for j, s in enumerate(P.CHANNEL_PARAMS) if prop.proposed[c, j]}
        assert set(prop.explanations[c]) == names
        if "fader_db" in names:
            text = prop.explanations[c]["fader_db"]
            assert text.startswith(f"fader {prop.value(c, 'fader_db'):+.1f} dB: ")
            assert "role=" not in text
            heard = f"heard as {rec['role'].replace('_', ' ')}" if rec["role_source"] == "heard" \
                else None
            if heard and rec["role"] not in ("hats_overheads", "keys_piano", "other"):
                assert f"{heard} (p {rec['role_probability']:.2f})" in prop.explanations[c]["pan"]
            assert prop.explanations[c]["hpf_hz"].startswith("HPF ")
    assert pol.last_explanations == prop.explanations


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
    have = prop.proposed
    np.testing.assert_allclose(out[have], prop.values[have])


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


def test_pans_are_placed_by_the_recognised_roles(snapshot):
    """Centre roles in the centre; a spread role at its width, to one side or the other."""
    from edgemix.automix.rules import ROLE_TARGETS
    pol = ModelPolicy()
    pans = pol.propose(snapshot).values[:, P.CH.pan]
    for c, role in enumerate(pol.roles):
        if np.isnan(pans[c]):              # never heard (and not named): no placement yet
            assert pol.recognition()[c]["role_source"] == "none"
            continue
        assert abs(pans[c]) in (0.0, ROLE_TARGETS[role].pan_width), (role, pans[c])
        if ROLE_TARGETS[role].pan_width == 0.0:
            assert pans[c] == 0.0, role


@pytest.fixture(scope="module")
def band():
    """The demo's band (kick, snare, two overheads, bass, two guitars, keys): its roles and
    a feature snapshot of its 20 s."""
    from edgemix.features import FeatureExtractor
    from export.synth import synth_session
    syn = synth_session(1, seconds=20, n_channels=8, kind="band")
    fx = FeatureExtractor(syn.sample_rate_hz, syn.stems.shape[1])
    fx.process(syn.stems)
    return syn, fx.snapshot()


def test_a_pair_of_one_role_is_spread_to_both_sides(band):
    """The network alone put every spread channel left (a per-channel model sees no channel
    order, so the side labels of a pair average out); placed by role, each pair takes both
    sides, first left, and says so."""
    syn, snap = band
    pol = ModelPolicy()
    prop = pol.propose(snap)
    pans = prop.values[:, P.CH.pan]
    for role in ("hats_overheads", "guitar"):
        pair = [c for c, r in enumerate(pol.roles) if r == role]
        assert len(pair) == 2 and pair == [c for c, r in enumerate(syn.roles) if r == role]
        assert pans[pair[0]] < 0.0 < pans[pair[1]]
        assert "spread left by role (1 of 2)" in prop.explanations[pair[0]]["pan"]
        assert "spread right by role (2 of 2)" in prop.explanations[pair[1]]["pan"]
        assert "heard as " in prop.explanations[pair[0]]["pan"]
    pairs = [c for c, r in enumerate(pol.roles) if r in ("hats_overheads", "guitar")]
    assert np.isclose(pans[pairs].sum(), 0.0)  # as much to the left as to the right


def test_the_sessions_role_places_the_channel(band):
    """A role the person gave wins over the recognised one for the placement; "other" (the
    session's default) and None leave the channel to the model."""
    from edgemix.automix.rules import ROLE_TARGETS
    syn, snap = band
    pol = ModelPolicy()
    pol.propose(snap)
    # the keys (channel 8), whatever the network heard them as; the person says they are
    # a pad (a guitar if the network heard a pad): that role's width
    heard = pol.roles[7]
    said = "pad" if heard != "pad" else "guitar"
    hinted = ModelPolicy(role_hints=["other"] * 7 + [said])
    prop = hinted.propose(snap)
    assert hinted.roles == pol.roles                          # recognition is unchanged
    assert abs(prop.values[7, P.CH.pan]) == ROLE_TARGETS[said].pan_width
    assert f"{said} as the session says" in prop.explanations[7]["pan"]
    rec = hinted.recognition()[7]
    assert (rec["role"], rec["role_source"], rec["recognised_role"]) == \
        (said, "session", heard)
    same = ModelPolicy(role_hints=[None] * 7 + ["other"]).propose(snap)
    np.testing.assert_array_equal(same.values, pol.propose(snap).values)
    with pytest.raises(ValueError, match="unknown role 'kazoo'"):
        ModelPolicy(role_hints=["kazoo"])
    with pytest.raises(ValueError, match="8 channels in the snapshot but 2 role hints"):
        ModelPolicy(role_hints=["kick", "snare"]).propose(snap)


def test_make_policy_hands_the_sessions_roles_to_the_model():
    import dataclasses
    from edgemix.automix import make_policy
    from edgemix.session import ChannelConfig, default_session
    session = dataclasses.replace(
        default_session(0), channels_given=True,
        channels=(ChannelConfig(name="gtr", input=1, role="guitar"),
                  ChannelConfig(name="x", input=2)))
    pol = make_policy("model", [c.role for c in session.channels], session.model)
    assert pol.role_hints == ("guitar", None)
