"""Rule policy, automation levels, locks, hysteresis and explanations."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgemix import features as F
from edgemix import params as P
from edgemix.automix.policy import (LIMITS, SWITCH_HOLD_HOPS, Automation, Proposal, blend,
                                    limit_step)
from edgemix.automix.rules import (HEADROOM_PEAK_DBFS, LEAD_OVER_REST_LU,
                                   LEAD_OVER_REST_RANGE_LU, ROLE_TARGETS, TRIM_TARGET_LUFS,
                                   RulePolicy)
from edgemix.features import FeatureExtractor

SR = 48000
CONT = [j for j, s in enumerate(P.CHANNEL_PARAMS) if s.scale in ("lin", "log")]


def _random_params(rng, n):
    out = np.empty((n, P.N_CH))
    for j, s in enumerate(P.CHANNEL_PARAMS):
        if s.scale == "log":
            out[:, j] = np.exp(rng.uniform(math.log(s.min), math.log(s.max), n))
        elif s.scale == "lin":
            out[:, j] = rng.uniform(s.min, s.max, n)
        elif s.scale == "bool":
            out[:, j] = rng.integers(0, 2, n)
        else:
            out[:, j] = rng.choice(s.choices, n)
    return out


def test_blend_levels_on_the_schema_scale():
    rng = np.random.default_rng(0)
    manual, prop = _random_params(rng, 6), _random_params(rng, 6)
    np.testing.assert_array_equal(blend(manual, prop, 0.0), manual)
    np.testing.assert_array_equal(blend(manual, prop, 1.0), prop)
    half = blend(manual, prop, 0.5)
    for j in CONT:
        s = P.CHANNEL_PARAMS[j]
        if s.scale == "log":      # halfway on a log scale is the geometric mean
            np.testing.assert_allclose(half[:, j], np.sqrt(manual[:, j] * prop[:, j]),
                                       rtol=1e-12, err_msg=s.name)
        else:
            np.testing.assert_allclose(half[:, j], 0.5 * (manual[:, j] + prop[:, j]),
                                       rtol=1e-12, atol=1e-12, err_msg=s.name)
    # NaN = no proposal: manual; per-channel levels; out-of-range levels refused
    prop[:, P.CH.pan] = np.nan
    per_ch = blend(manual, prop, np.array([[0.0]] * 3 + [[1.0]] * 3))
    np.testing.assert_array_equal(per_ch[:, P.CH.pan], manual[:, P.CH.pan])
    np.testing.assert_array_equal(per_ch[:3], manual[:3])
    with pytest.raises(ValueError, match="0 \\(manual\\) .. 1"):
        blend(manual, prop, 1.5)


def test_locked_parameter_never_moves():
    rng = np.random.default_rng(1)
    auto = Automation(4)
    auto.set_manual(2, "fader_db", -7.5)
    auto.set_manual(0, "hpf_hz", 120.0)
    for _ in range(50):
        prop = Proposal.empty(4)
        prop.values[:] = _random_params(rng, 4)
        out = auto.step(prop, jump=bool(rng.integers(2)))
        assert out[2, P.CH.fader_db] == -7.5 and out[0, P.CH.hpf_hz] == 120.0
    with pytest.raises(ValueError, match="out of range"):
        auto.set_manual(1, "pan", 3.0)


def test_slew_and_dead_band_stated_in_units():
    prev = P.channel_defaults(1)
    want = prev.copy()
    want[0, P.CH.trim_db] = 20.0
    want[0, P.CH.hpf_hz] = 200.0          # from 20 Hz: 3.3 octaves
    want[0, P.CH.pan] = 0.03              # inside the pan dead band
    out = limit_step(prev, want)
    assert out[0, P.CH.trim_db] == pytest.approx(LIMITS["trim_db"].max_step)
    assert out[0, P.CH.hpf_hz] == pytest.approx(20.0 * LIMITS["hpf_hz"].max_step)
    assert out[0, P.CH.pan] == 0.0


def test_hysteresis_stops_chatter_on_steady_input():
    """A steady source whose features jitter hop to hop (as measured features do) must
    settle and then hold still, switches included."""
    rng = np.random.default_rng(2)
    roles = ("lead_vocal", "guitar", "speech")
    policy = RulePolicy(roles)
    base = np.tile(F.silence_row(), (3, 1)).astype(np.float64)
    base[:, F.F_LACT] = [-40.0, -30.0, -35.0]
    base[:, F.F_PEAK] = [-25.0, -15.0, -20.0]
    base[:, F.F_ACT] = 1.0
    base[:, F.F_LF] = 0.02
    base[:, F.F_BAND:F.F_BAND + F.N_BANDS] = -12.0
    base[:, F.F_BAND] = -40.0
    auto = Automation(3)
    history = []
    for hop in range(120):
        f = base.copy()
        f[:, F.F_LACT] += rng.uniform(-0.4, 0.4, 3)
        band = base[:, F.F_BAND:F.F_BAND + F.N_BANDS] + rng.uniform(-0.5, 0.5, (3, F.N_BANDS))
        share = 10 ** (band / 10)                     # shares of one total: they sum to 1
        f[:, F.F_BAND:F.F_BAND + F.N_BANDS] = 10 * np.log10(share / share.sum(1, keepdims=True))
        prop = policy.propose(f)
        if hop % 2:                                  # a flapping switch proposal
            prop.values[0, P.CH.automix_on] = 1.0
        history.append(auto.step(prop))
    h = np.array(history)
    moves = np.abs(np.diff(h, axis=0)) > 0
    assert moves[:40].any()                          # it did converge from the defaults
    assert not moves[-60:].any(), np.argwhere(moves[-60:])
    # the trim settled within the dead band of the rule's target
    target = TRIM_TARGET_LUFS - base[:, F.F_LACT]
    assert np.all(np.abs(h[-1, :, P.CH.trim_db] - target) <= LIMITS["trim_db"].dead_band + 0.4)
    # speech went into gain sharing only after the hold; the flapping switch never flipped
    on = h[:, 2, P.CH.automix_on]
    assert on[SWITCH_HOLD_HOPS - 2] == 0.0 and on[-1] == 1.0
    assert np.all(h[:, 0, P.CH.automix_on] == 0.0)


@pytest.fixture(scope="module")
def measured():
    """Features of real synthesised sources after 6 s."""
    from export.synth import synth_session
    roles = ("kick", "bass", "lead_vocal", "guitar", "guitar", "speech")
    s = synth_session(4, roles=roles, seconds=6.0)
    fe = FeatureExtractor(SR, len(roles))
    fe.process(s.stems)
    return roles, fe.snapshot()


def test_rules_on_measured_features(measured):
    roles, feats = measured
    prop = RulePolicy(roles).propose(feats)
    trim = prop.values[:, P.CH.trim_db]
    expect = np.minimum(TRIM_TARGET_LUFS - feats[:, F.F_LACT],
                        HEADROOM_PEAK_DBFS - feats[:, F.F_PEAK])
    np.testing.assert_allclose(trim, np.clip(expect, -40, 40), atol=1e-6)
    hpf = prop.values[:, P.CH.hpf_hz]
    for c, r in enumerate(roles):
        lo, hi = ROLE_TARGETS[r].hpf_range_hz
        assert lo <= hpf[c] <= hi
    # faders follow the measured levels after trim: every other role at its balance from
    # the lead vocal plus one common move, which puts the lead LEAD_OVER_REST_LU over the
    # activity-weighted sum of the rest (issue 10: not the bare role targets any more)
    lead = roles.index("lead_vocal")
    level = feats[:, F.F_LACT] + trim + prop.values[:, P.CH.fader_db]
    rest = [c for c in range(len(roles)) if c != lead]
    moves = [level[c] - level[lead] - ROLE_TARGETS[roles[c]].balance_lu for c in rest]
    np.testing.assert_allclose(moves, moves[0], atol=1e-6)
    p_rest = np.sum(feats[rest, F.F_ACT] * 10 ** (level[rest] / 10))
    margin = level[lead] - 10 * np.log10(p_rest)
    assert LEAD_OVER_REST_LU - 1e-6 <= margin <= LEAD_OVER_REST_RANGE_LU[1] + 1e-6
    assert "after trim" in prop.explanations[0]["fader_db"]
    assert hpf[1] <= 40.0 and hpf[2] >= 70.0                 # bass rumble only; vocal HPF
    pan = prop.values[:, P.CH.pan]
    assert pan[0] == pan[1] == pan[2] == 0.0 and pan[3] * pan[4] < 0
    assert prop.values[5, P.CH.automix_on] == 1.0
    assert prop.values[2, P.CH.automix_on] == 0.0


def test_explanations_name_parameter_and_reason(measured):
    roles, feats = measured
    prop = RulePolicy(roles).propose(feats)
    for c in range(len(roles)):
        names = [s.name for s in P.CHANNEL_PARAMS if np.isfinite(prop.values[c, getattr(P.CH, s.name)])]
        assert set(names) == set(prop.explanations[c])
        for name in names:
            text = prop.explanations[c][name]
            head, _, reason = text.partition(": ")
            assert reason, text
            from edgemix.automix.explain import format_value, label
            assert head == f"{label(name)} {format_value(name, prop.values[c, getattr(P.CH, name)])}"
    vocal = prop.explanations[2]["hpf_hz"]
    assert vocal.startswith("HPF ") and "% of this channel's energy lies above" in vocal


def test_no_signal_no_level_opinion():
    prop = RulePolicy(("kick", "pad")).propose(np.tile(F.silence_row(), (2, 1)))
    assert np.isnan(prop.values[:, P.CH.trim_db]).all()
    assert np.isnan(prop.values[:, P.CH.hpf_hz]).all()
    with pytest.raises(ValueError, match="features shape"):
        RulePolicy(("kick",)).propose(np.zeros((2, F.N_FEATURES)))


def test_model_outputs_round_trip():
    rng = np.random.default_rng(3)
    vals = _random_params(rng, 3)[:, P.MODEL_OUTPUT_COLUMNS]
    prop = Proposal.from_model_outputs(vals)
    np.testing.assert_array_equal(prop.model_outputs(), vals)
    assert np.isnan(prop.values[:, P.CH.gate_on]).all()
