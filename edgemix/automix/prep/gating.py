"""Live silences: the channel gate driven by the policy, so a resting channel's noise and
bleed stay out of the mix.

:class:`GatingPolicy` wraps any policy (:func:`edgemix.automix.make_policy` puts it around
the rule and the model policies) and adds ``gate_*`` proposals, ordinary automated
parameters like any other: the automation level blends them, a person's setting locks
them, the switch waits out the automation's hold before it follows, and each one is
explained.

From the streaming features (``edgemix.features``) of each channel:

* it **rests** when it was active (BS.1770 / EBU 3342 gating, ``activity_ratio``) in at
  most ``REST_ACTIVITY`` of the last 10 s, and **plays** again from ``PLAY_ACTIVITY`` on
  (hysteresis: between the two it keeps its last state);
* a resting channel gets the gate in circuit, opening ``RANGE_DB - HYSTERESIS_DB`` under
  its playing peak level (the active loudness plus its crest factor: the gate's detector
  is a peak envelope) and closing ``HYSTERESIS_DB`` further down -- the same
  thresholds as the offline silences (:mod:`.silences`) -- held ``POST_PAD_MS`` for tails
  and closing by ``gate_range_db`` (the schema's default);
* a playing channel gets the gate out of circuit; a channel in gain sharing
  (``automix_on`` proposed) is left alone: the automixer already closes the unused mics.

The gate sits after the trim in the strip, so its thresholds include the trim proposed in
the same hop (0 dB where the policy proposes none).
"""
from __future__ import annotations

import math

import numpy as np

from edgemix import features as F
from edgemix import params as P
from edgemix.automix.explain import percent
from edgemix.automix.policy import Policy, Proposal, as_proposal
from edgemix.automix.prep.silences import HYSTERESIS_DB, POST_PAD_MS, RANGE_DB

REST_ACTIVITY = 0.5
PLAY_ACTIVITY = 0.8
#: Crest factor assumed between a channel's loudness and its peaks, limited to the range
#: of real sources (a sine 3 dB, speech and drums 12 - 20 dB).
CREST_RANGE_DB = (6.0, 20.0)
#: Below this active loudness a channel has not played yet: no opinion.
NEVER_PLAYED_LUFS = -70.0

_ACT = F.FEATURE_INDEX["activity_ratio"]
_LACT = F.FEATURE_INDEX["loudness_active_lufs"]
_CREST = F.FEATURE_INDEX["crest_db"]


def gate_proposals(features: np.ndarray, trims_db: np.ndarray, resting: np.ndarray
                   ) -> tuple[np.ndarray, list[dict[str, float]], list[str]]:
    """For each channel: ``(state, values, why)``.  ``resting`` (bool per channel, the
    state so far) is updated in place with the hysteresis; ``values[c]`` maps gate
    parameters to their proposed values ({} for no opinion)."""
    feats = np.asarray(features, dtype=np.float64)
    n = feats.shape[0]
    values: list[dict[str, float]] = []
    why: list[str] = []
    for c in range(n):
        act, lact = float(feats[c, _ACT]), float(feats[c, _LACT])
        if lact <= NEVER_PLAYED_LUFS:
            values.append({})
            why.append("")
            continue
        if act <= REST_ACTIVITY:
            resting[c] = True
        elif act >= PLAY_ACTIVITY:
            resting[c] = False
        if not resting[c]:
            values.append({"gate_on": 0.0})
            why.append(f"plays {percent(act)} of the last 10 s: nothing to gate")
            continue
        crest = min(max(float(feats[c, _CREST]), CREST_RANGE_DB[0]), CREST_RANGE_DB[1])
        trim = float(trims_db[c]) if math.isfinite(trims_db[c]) else 0.0
        opens = lact + crest - RANGE_DB + HYSTERESIS_DB + trim
        spec = P.CHANNEL_SPECS["gate_threshold_db"]
        values.append({"gate_on": 1.0, "gate_threshold_db": float(spec.clip(opens)),
                       "gate_hysteresis_db": HYSTERESIS_DB, "gate_hold_ms": POST_PAD_MS})
        why.append(f"rests {percent(1.0 - act)} of the last 10 s (noise and bleed between "
                   f"its phrases): opens {RANGE_DB - HYSTERESIS_DB:.0f} dB under its playing "
                   f"peaks, holds {POST_PAD_MS:.0f} ms for tails")
    return resting, values, why


class GatingPolicy(Policy):
    """``inner``'s proposals plus the gate of each resting channel (module docstring).
    Everything else (``roles``, ``role_hints``, ...) is the inner policy's."""

    def __init__(self, inner: Policy):
        self.inner = inner
        self.outputs = tuple(getattr(inner, "outputs", ())) + (
            "gate_on", "gate_threshold_db", "gate_hysteresis_db", "gate_hold_ms")
        self._resting = np.zeros(0, dtype=bool)

    def __getattr__(self, name):
        if name == "inner":                  # not yet set (copy / unpickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def propose(self, features: np.ndarray) -> Proposal:
        feats = np.asarray(features)
        prop = self.inner.propose(features)
        if feats.ndim != 2 or feats.shape[1] != F.N_FEATURES:
            return prop                       # meters only (no feature extractor): no opinion
        n = feats.shape[0]
        prop = as_proposal(prop, n)
        if len(self._resting) != n:
            self._resting = np.zeros(n, dtype=bool)
        trims = prop.values[:, P.CH.trim_db]
        shared = np.isfinite(prop.values[:, P.CH.automix_on]) & \
            (prop.values[:, P.CH.automix_on] >= 0.5)
        _, values, why = gate_proposals(feats, trims, self._resting)
        for c in range(n):
            if shared[c]:
                continue
            for name, v in values[c].items():
                text = f"gate {'on' if values[c]['gate_on'] >= 0.5 else 'off'}: {why[c]}"
                if name == "gate_threshold_db":
                    text = f"gate opens at {v:.1f} dBFS: {why[c]}"
                prop.set(c, name, v, text)
        return prop
