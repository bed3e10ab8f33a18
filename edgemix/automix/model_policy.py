"""The model-based policy: a feature snapshot -> the distilled student -> parameters in units.

Same interface as the rule policy (:class:`edgemix.automix.policy.Policy`): ``propose``
takes a ``(n_channels, len(FEATURE_NAMES))`` snapshot and returns a
:class:`~edgemix.automix.policy.Proposal` for the ``params.MODEL_OUTPUTS`` columns, each
value explained with the role the model recognised and how sure it is
("fader -4.5 dB: model, role=bass (p=0.91)").  The backend is any of
:mod:`edgemix.infer` (Numba-native by default); up to ``MAX_CHANNELS`` channels, padded
and masked.

Threads: ``propose`` belongs to the control thread (it reuses preallocated inputs).
"""
from __future__ import annotations

import pathlib

import numpy as np

from edgemix import features as F
from edgemix import params as P
from edgemix.automix.explain import sentence
from edgemix.automix.policy import Policy, Proposal
from edgemix.infer import MAX_CHANNELS, Backend, default_model_dir, load
from edgemix.roles import ROLE_NAMES, role_index
from edgemix.session import DEFAULT_ROLE

#: The shipped model the policy loads when given no path.
DEFAULT_MODEL = "student.npz"


class ModelPolicy(Policy):
    """Proposals from the student model.

    ``model``: a loaded :class:`edgemix.infer.Backend`, or a path to a ``.npz``, ``.onnx``
    or ``.tflite`` student (default: ``models/student.npz``); ``backend`` picks the backend
    for a ``.npz`` (``"numba"`` or ``"numpy"``).  After ``propose``, ``roles`` and
    ``role_probabilities`` hold what the model recognised per channel.

    ``role_hints``: the session's role per channel, the person's word on what each channel
    is.  Where one is given, the pan is placed by it, not by the recognised role (a
    person's own setting wins); ``"other"``, the session's default, and ``None`` mean
    "not given": the recognised role places the channel.
    """

    outputs = P.MODEL_OUTPUTS

    def __init__(self, model: Backend | str | pathlib.Path | None = None,
                 backend: str | None = None, role_hints=None):
        self.role_hints = tuple(None if r in (None, DEFAULT_ROLE) else _checked_role(r)
                                for r in (role_hints or ()))
        if isinstance(model, Backend):
            self.backend = model
        else:
            path = pathlib.Path(model) if model is not None else default_model_dir() / DEFAULT_MODEL
            self.backend = load(path, backend)
        self._features = np.zeros((MAX_CHANNELS, F.N_FEATURES), dtype=np.float32)
        self._mask = np.zeros(MAX_CHANNELS, dtype=np.float32)
        self.roles: tuple[str, ...] = ()
        self.role_probabilities = np.zeros(0)

    def predict_units(self, features: np.ndarray):
        """``(values (n, len(MODEL_OUTPUTS)) in units, role probabilities (n, N_ROLES))``."""
        feats = np.asarray(features)
        if feats.ndim != 2 or feats.shape[1] != F.N_FEATURES:
            raise ValueError(f"features shape {feats.shape}: expected (channels, "
                             f"{F.N_FEATURES}) (one FeatureExtractor snapshot)")
        n = feats.shape[0]
        if not 1 <= n <= MAX_CHANNELS:
            raise ValueError(f"{n} channels: the model policy takes 1 .. {MAX_CHANNELS} "
                             "(use the rule policy for larger consoles)")
        if not np.all(np.isfinite(feats)):
            raise ValueError("features contain NaN or Inf: pass a FeatureExtractor snapshot")
        self._features[:n] = feats
        self._features[n:] = 0.0
        self._mask[:n] = 1.0
        self._mask[n:] = 0.0
        params01, logits = self.backend.predict(self._features, self._mask)
        values = P.denormalise_outputs(params01[:n])
        z = logits[:n].astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))  # softmax, shifted against overflow
        return values, z / z.sum(axis=1, keepdims=True)

    def propose(self, features: np.ndarray) -> Proposal:
        values, probs = self.predict_units(features)
        best = probs.argmax(axis=1)
        self.roles = tuple(ROLE_NAMES[i] for i in best)
        self.role_probabilities = probs
        n = len(self.roles)
        hints = self.role_hints or (None,) * n
        if len(hints) != n:
            raise ValueError(f"{n} channels in the snapshot but {len(hints)} role hints: "
                             "give one role per channel (or none)")
        placed_by = tuple(h or r for h, r in zip(hints, self.roles))
        pans = place_pans(placed_by, np.asarray(features, dtype=np.float64))
        values[:, _PAN] = [v for v, _ in pans]
        explanations = []
        for c, role in enumerate(self.roles):
            why = f"model, role={role} (p={probs[c, best[c]]:.2f})"
            e = {name: sentence(name, values[c, j], why)
                 for j, name in enumerate(P.MODEL_OUTPUTS)}
            where = why if hints[c] is None else f"role={hints[c]} as the session says"
            e["pan"] = sentence("pan", values[c, _PAN], f"{pans[c][1]}; {where}")
            explanations.append(e)
        return Proposal.from_model_outputs(values, explanations)


def _checked_role(name: str) -> str:
    role_index(name)  # a ValueError naming the valid roles
    return name


#: Column of the pan in the model's outputs.
_PAN = P.MODEL_OUTPUTS.index("pan")


def place_pans(roles, features: np.ndarray) -> list[tuple[float, str]]:
    """Pan per channel and why, from the roles the model recognised: the teacher's own
    placement (export/teacher.py, step 7), which the model policy uses in place of the
    network's pan output.

    Which side a channel goes to is a convention about the set of channels -- the first
    guitar of a pair left, the second right; a lone spread source to the side with fewer
    so far -- that the student cannot learn: its weights are shared across channels and it
    sees no channel order, so two guitars look alike to it and the side labels of a pair
    average out.  Measured on the 24 held-out sessions (302 playing channels): the
    network's pan is 0.25 mean abs off the teacher's and puts 137 channels left and none
    right; placed from its recognised roles, 0.024 off, 88 left and 76 right (the rest
    central; models/MODEL_CARD.md has the same comparison on its own measure).

    The method is the rule policy's, called as the teacher calls it: ``rules.py`` is one
    of the teacher's label sources (``export/dataset.py:LABEL_MODULES``), so moving it
    into a public function would invalidate the shipped labels for a refactor."""
    from edgemix.automix.rules import RulePolicy
    return RulePolicy(roles)._pans(features)
