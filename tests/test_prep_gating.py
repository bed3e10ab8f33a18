"""Live silences (edgemix.automix.prep.gating): the policy closes a resting channel's gate,
explained, with hysteresis; the console then keeps its noise and bleed out while the
phrases pass untouched; a person's setting wins."""
from __future__ import annotations

import numpy as np

from edgemix import features as F
from edgemix import params as P
from edgemix.automix import make_policy
from edgemix.automix.policy import Automation, Policy, Proposal
from edgemix.automix.prep.gating import GatingPolicy, gate_proposals
from edgemix.console import Console

SR = 48000
BLOCK = 4800          # one control hop (100 ms) per block


def _voice_with_rests(seconds=24.0, seed=0):
    """Channel 0: a vocal that sings 1 s of every 4 over bleed 35 dB down; channel 1: a
    pad that plays all the time."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    sing = (t % 4.0) < 1.0
    voice = 0.1 * np.sin(2 * np.pi * 220 * t) * sing + 0.1 * 10 ** (-35 / 20) * rng.normal(size=n)
    pad = 0.05 * np.sin(2 * np.pi * 110 * t) + 0.05 * np.sin(2 * np.pi * 165 * t)
    return np.stack([voice, pad], axis=1).astype(np.float32), sing


def _voice_alone(x, params):
    """The console's output with only the voice up (the pad muted)."""
    c = Console(SR, BLOCK, 2, 1)
    p = params.copy()
    p[1, P.CH.mute_on] = 1.0
    c.stage(p)
    return np.concatenate([c.process(x[k:k + BLOCK]) for k in range(0, len(x), BLOCK)])


def test_resting_channel_gated_through_the_console():
    """Hop by hop through the features, the policy and the automation: the resting vocal
    gets its gate, the pad does not; through the console the vocal's rests (noise and
    bleed) come down by more than 20 dB while its phrases pass within 0.5 dB."""
    x, sing = _voice_with_rests()
    policy = make_policy("rules", ["lead_vocal", "pad"])
    assert isinstance(policy, GatingPolicy)
    fx = F.FeatureExtractor(SR, 2)
    auto = Automation(2)
    why = None
    for k in range(0, len(x), BLOCK):
        fx.process(x[k:k + BLOCK])
        prop = policy.propose(fx.snapshot())
        auto.step(prop)
        why = prop.explanations
    t = auto.targets
    assert t[0, P.CH.gate_on] == 1.0 and t[1, P.CH.gate_on] == 0.0
    assert "rests" in why[0]["gate_on"] and "holds 300 ms" in why[0]["gate_on"]
    assert "plays" in why[1]["gate_on"]
    assert why[0]["gate_threshold_db"].startswith("gate opens at")
    ungated = t.copy()
    ungated[:, P.CH.gate_on] = 0.0
    gated_out, ref = _voice_alone(x, t), _voice_alone(x, ungated)
    c = np.concatenate([[0], np.cumsum(sing)])                         # phrases +- 0.5 s
    idx = np.arange(len(sing))
    phrase_and_tail = c[np.minimum(idx + SR // 2, len(sing))] - c[np.maximum(idx - SR // 2, 0)] > 0
    rest = ~phrase_and_tail
    db = lambda v: 10 * np.log10(np.mean(v.astype(float) ** 2) + 1e-30)
    assert db(gated_out[rest]) - db(ref[rest]) < -20.0
    assert abs(db(gated_out[sing]) - db(ref[sing])) < 0.5


def test_hysteresis_and_no_opinion_before_playing():
    feats = np.tile(F.silence_row(), (3, 1)).astype(np.float64)
    act, lact = F.FEATURE_INDEX["activity_ratio"], F.FEATURE_INDEX["loudness_active_lufs"]
    feats[:, lact] = -20.0
    feats[2, lact] = F.FLOOR_DB          # never played
    resting = np.zeros(3, bool)
    for a, want in ((0.3, True), (0.65, True), (0.9, False), (0.65, False), (0.4, True)):
        feats[0, act] = a
        _, values, _ = gate_proposals(feats, np.full(3, np.nan), resting)
        assert resting[0] == want and values[0]["gate_on"] == float(want)
    assert values[2] == {}
    # thresholds follow the trim (the gate is after it in the strip)
    feats[1, act] = 0.1
    _, v0, _ = gate_proposals(feats, np.array([0.0, 0.0, 0.0]), np.zeros(3, bool))
    _, v6, _ = gate_proposals(feats, np.array([0.0, 6.0, 0.0]), np.zeros(3, bool))
    assert v6[1]["gate_threshold_db"] - v0[1]["gate_threshold_db"] == 6.0


def test_a_persons_gate_setting_wins_and_meters_give_no_opinion():
    x, _ = _voice_with_rests(12.0)
    policy = make_policy("rules", ["lead_vocal", "pad"])
    fx = F.FeatureExtractor(SR, 2)
    auto = Automation(2)
    auto.set_manual(0, "gate_on", 0.0)          # the engineer switched it out
    for k in range(0, len(x), BLOCK):
        fx.process(x[k:k + BLOCK])
        auto.step(policy.propose(fx.snapshot()))
    assert auto.targets[0, P.CH.gate_on] == 0.0
    assert policy.roles == policy.inner.roles            # the inner policy shows through

    class Quiet(Policy):
        def propose(self, features):
            return Proposal.empty(len(features))
    prop = GatingPolicy(Quiet()).propose(np.full((2, 2), -60.0, np.float32))
    assert not np.isfinite(prop.values).any()             # meters only: no gate opinion
