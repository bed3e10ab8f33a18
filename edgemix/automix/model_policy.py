"""The model-based policy: a feature snapshot -> the distilled student -> parameters in units,
each move explained from what was measured and the target it aims for.

Same interface as the rule policy (:class:`edgemix.automix.policy.Policy`): ``propose``
takes a ``(n_channels, len(FEATURE_NAMES))`` snapshot and returns a
:class:`~edgemix.automix.policy.Proposal`.  What comes from where (issue 10):

* **Trim** follows the measured loudness: ``rules.staging_trim`` (gain staging to
  ``TRIM_TARGET_LUFS`` with peak headroom), not the network's trim, so the trim always
  undoes the input gain exactly.
* **The network hears the staged channel** (:func:`edgemix.automix.staging.staged_features`:
  the snapshot as it would read after that trim), so its roles, EQ, compression and send do
  not depend on the input gains either.
* **Roles** are the network's probabilities held over time (:mod:`edgemix.automix.recognition`:
  evidence only while a channel plays, smoothing, hysteresis); a role the session gives
  wins.
* **Faders** follow the measured balance: ``rules.balance_faders`` (each role at its
  balance from the lead element, the lead ``LEAD_OVER_REST_LU`` over the rest), from the
  staged levels; **pans** the teacher's placement by role (:func:`place_pans`).
* **Gain sharing** is offered to the channels whose role is speech (recognised or given).
* **EQ, compression, send**: the network's, except that a channel whose energy lies above
  2 kHz gets no low-shelf boost (``rules.is_high_source``), and the shelves sit at the tilt
  correction's corners (``rules.TILT_*_SHELF_HZ``) as in the teacher.

Every sentence names what was measured and the target (:mod:`edgemix.automix.reasons`).
A channel that has not played yet (and has no role from the session) gets no proposal.

For the live desk and the report: :meth:`ModelPolicy.recognition` (each channel's
recognised role and probability, the role in use and where it came from) and
:attr:`ModelPolicy.last_explanations` (per channel, per parameter, the last hop's sentence).

Threads: ``propose`` belongs to the control thread (it reuses preallocated inputs).
"""
from __future__ import annotations

import pathlib
import time

import numpy as np

from edgemix import features as F
from edgemix import params as P
from edgemix.automix import reasons as R
from edgemix.automix.explain import sentence
from edgemix.automix.policy import Policy, Proposal
from edgemix.automix.recognition import RoleTracker, listening, measured
from edgemix.automix.rules import (TILT_HIGH_SHELF_HZ, TILT_LOW_SHELF_HZ,
                                   balance_faders, staging_trim)
from edgemix.automix.staging import staged_features
from edgemix.infer import MAX_CHANNELS, Backend, default_model_dir, load
from edgemix.roles import role_index
from edgemix.session import DEFAULT_ROLE

#: The shipped model the policy loads when given no path.
DEFAULT_MODEL = "student.npz"

class ModelPolicy(Policy):
    """Proposals from the student model (module docstring).

    ``model``: a loaded :class:`edgemix.infer.Backend`, or a path to a ``.npz``, ``.onnx``
    or ``.tflite`` student (default: ``models/student.npz``); ``backend`` picks the backend
    for a ``.npz`` (``"numba"`` or ``"numpy"``).

    ``role_hints``: the session's role per channel, the person's word on what each channel
    is: it wins over the recognised role everywhere (balance, pan, gain sharing, the
    sentences); ``"other"``, the session's default, and ``None`` mean "not given".

    After ``propose``: ``roles`` (the recognised role per channel, held; ``"other"`` before
    a channel has played), ``role_probabilities`` ``(n, N_ROLES)`` (the held evidence),
    :meth:`recognition` and :attr:`last_explanations`.
    """

    outputs = P.MODEL_OUTPUTS + ("eq1_hz", "eq4_hz", "automix_on", "automix_weight_db")

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
        #: how long the last ``backend.predict`` took, ns (the control loop's ``inference``)
        self.inference_ns = 0
        self.tracker: RoleTracker | None = None
        #: per channel, per parameter: the last hop's sentence (what the desk shows)
        self.last_explanations: tuple[dict[str, str], ...] = ()

    def reset(self) -> None:
        """Forget the role evidence (a new show)."""
        if self.tracker is not None:
            self.tracker.reset()

    def recognition(self) -> list[dict]:
        """Per channel, as of the last ``propose``: ``{"recognised_role", "role_probability",
        "session_role", "role", "role_source"}`` (:class:`~edgemix.automix.recognition.
        Recognition`; ``role`` is the one the mix uses, ``role_source`` "session", "heard"
        or "none").  Empty before the first ``propose``.  The live desk and the mix report
        read it; the sentences of each move are in :attr:`last_explanations`."""
        if self.tracker is None:
            return []
        return [r.to_dict() for r in self.tracker.recognitions()]

    def predict_units(self, features: np.ndarray):
        """``(values (n, len(MODEL_OUTPUTS)) in units, role probabilities (n, N_ROLES))``:
        the network's answer to ``features`` as given (no staging)."""
        feats = _checked(features)
        n = feats.shape[0]
        self._features[:n] = feats
        self._features[n:] = 0.0
        self._mask[:n] = 1.0
        self._mask[n:] = 0.0
        t0 = time.perf_counter_ns()
        params01, logits = self.backend.predict(self._features, self._mask)
        self.inference_ns = time.perf_counter_ns() - t0
        values = P.denormalise_outputs(params01[:n])
        z = logits[:n].astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))  # softmax, shifted against overflow
        return values, z / z.sum(axis=1, keepdims=True)

    def staging(self, features: np.ndarray):
        """``(trims_db, why, active)``: each measured channel's staging trim and its
        sentence (NaN / "" where the channel has not played).

        The playing level is the when-it-plays loudness, or the short-term (3 s) loudness
        when that is higher: the former remembers the last 3 s of *active* hops, so a mic
        that carried only bleed until its own source came in would otherwise stay trimmed
        for the bleed for seconds; the short-term loudness of a playing source is never
        above its playing level, so it only ever corrects that lag."""
        f = np.asarray(features, dtype=np.float64)
        # from its first active hop (the rule policy waits for MIN_ACTIVITY, five hops):
        # a source that comes in plays at its raw level until it is staged, and the mix of
        # two copies of a show that differ in input gains differs for exactly that long
        active = (f[:, F.F_ACT] > 0.0) & (f[:, F.F_LACT] > F.ABS_GATE_LUFS)
        trims = np.full(f.shape[0], np.nan)
        why = [""] * f.shape[0]
        for c in np.flatnonzero(active):
            trims[c], why[c] = staging_trim(max(f[c, F.F_LACT], f[c, F.F_LST]), f[c, F.F_PEAK])
        return trims, why, active

    def propose(self, features: np.ndarray) -> Proposal:
        f = _checked(features).astype(np.float64)
        n = f.shape[0]
        if self.role_hints and len(self.role_hints) != n:
            raise ValueError(f"{n} channels in the snapshot but {len(self.role_hints)} role "
                             "hints: give one role per channel (or none)")
        trims, trim_why, active = self.staging(f)
        staged = staged_features(f, trims)
        values, probs = self.predict_units(staged)
        if self.tracker is None or self.tracker.n_channels != n:
            self.tracker = RoleTracker(n, self.role_hints or None)
        recs = self.tracker.update(probs, listening(f), measured(f))
        self.roles = tuple(r.recognised_role or DEFAULT_ROLE for r in recs)
        self.role_probabilities = self.tracker.evidence
        use = [r.role for r in recs]
        known = np.array([r.role_source != "none" for r in recs])
        trim_col, fader_col = _COL["trim_db"], _COL["fader_db"]
        values[:, trim_col] = trims
        # activity in quarters: which melodic channel leads (the one that plays most) must
        # not flip between two that play about as much
        level = np.where(active & known, staged[:, F.F_LACT], np.nan)   # NaN: not measured
        faders = balance_faders(use, level, np.ceil(f[:, F.F_ACT] * 4.0) / 4.0)
        values[:, fader_col] = [np.nan if fw is None else fw[0] for fw in faders]
        pans = place_pans(use, f)
        values[:, _COL["pan"]] = [v for v, _ in pans]
        mix = R.MixPicture(staged, values[:, fader_col])
        explanations = []
        speech = [c for c, r in enumerate(use) if r == "speech" and known[c]]
        for c, rec in enumerate(recs):
            e: dict[str, str] = {}
            bands = f[c, F.F_BAND:F.F_BAND + F.N_BANDS]
            role = use[c]
            if not known[c]:
                values[c, :] = np.nan            # never heard, not named: no opinion yet
                explanations.append(e)
                continue
            phrase = rec.phrase()
            e["pan"] = sentence("pan", values[c, _COL["pan"]],
                                R.pan(pans[c][1], f[c], role, phrase))
            if not active[c]:
                # named by the session but not playing yet: placement only
                keep = values[c, _COL["pan"]]
                values[c, :] = np.nan
                values[c, _COL["pan"]] = keep
                explanations.append(e)
                continue
            v = values[c]
            e["trim_db"] = sentence("trim_db", v[trim_col], trim_why[c])
            why = faders[c][1]
            if "target" not in why:        # a lead with nothing else playing yet
                why += "; target: the lead on top of the mix"
            e["fader_db"] = sentence("fader_db", v[fader_col], why)
            e["hpf_hz"] = sentence("hpf_hz", v[_COL["hpf_hz"]], R.hpf(v[_COL["hpf_hz"]], bands, role))
            low = _COL["eq1_gain_db"]
            if v[low] > 0.0 and mix.high_source[c]:
                v[low] = 0.0
                e["eq1_gain_db"] = sentence("eq1_gain_db", 0.0, R.no_low_boost(c, mix))
            else:
                e["eq1_gain_db"] = sentence("eq1_gain_db", v[low], R.shelf("eq1", v[low], c, mix))
            high = _COL["eq4_gain_db"]
            e["eq4_gain_db"] = sentence("eq4_gain_db", v[high], R.shelf("eq4", v[high], c, mix))
            for slot in ("eq2", "eq3"):
                g, hz = v[_COL[f"{slot}_gain_db"]], v[_COL[f"{slot}_hz"]]
                why = R.peaking(slot, g, hz, c, mix)
                e[f"{slot}_hz"] = sentence(f"{slot}_hz", hz, why)
                e[f"{slot}_gain_db"] = sentence(f"{slot}_gain_db", g, why)
            for name in ("comp_threshold_db", "comp_ratio", "comp_attack_ms", "comp_release_ms",
                         "comp_makeup_db"):
                e[name] = sentence(name, v[_COL[name]], R.compressor(name, v[_COL[name]], staged[c], role))
            e["aux1_send_db"] = sentence("aux1_send_db", v[_COL["aux1_send_db"]],
                                         R.send(v[_COL["aux1_send_db"]], staged[c], role, phrase))
            explanations.append(e)
        prop = Proposal.from_model_outputs(values, explanations)
        for c, e in enumerate(explanations):
            if not e or not active[c] or not known[c]:
                continue
            prop.set(c, "eq1_hz", TILT_LOW_SHELF_HZ, sentence(
                "eq1_hz", TILT_LOW_SHELF_HZ, R.shelf_corner("eq1", c, mix)))
            prop.set(c, "eq4_hz", TILT_HIGH_SHELF_HZ, sentence(
                "eq4_hz", TILT_HIGH_SHELF_HZ, R.shelf_corner("eq4", c, mix)))
        if speech:
            for c in range(n):
                if not known[c]:
                    continue
                on = c in speech
                prop.set(c, "automix_on", float(on), sentence(
                    "automix_on", float(on),
                    R.gain_sharing(on, f[c], use[c], recs[c].phrase(), len(speech))))
                if on:
                    prop.set(c, "automix_weight_db", 0.0, sentence(
                        "automix_weight_db", 0.0, R.gain_sharing_weight(f[c])))
        self.last_explanations = tuple(dict(e) for e in prop.explanations)
        return prop


def _checked(features) -> np.ndarray:
    """The snapshot as an array, or a ValueError that says what a snapshot is."""
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
    return feats


def _checked_role(name: str) -> str:
    role_index(name)  # a ValueError naming the valid roles
    return name


#: Column of each parameter in the model's outputs.
_COL = {name: j for j, name in enumerate(P.MODEL_OUTPUTS)}


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
