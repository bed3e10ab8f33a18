"""Auto-mix policies (rules, model), automation levels and explanations.

:func:`make_policy` is the one place a policy is built from its name; the CLI, the runner
and the offline mix commands all call it.
"""
from __future__ import annotations

#: Policy names a session (``model.policy``) may give.
POLICY_KINDS = ("none", "rules", "model")

#: ``session.model.backend`` -> the :func:`edgemix.infer.load` backend of that name.
_INFER_BACKENDS = {"numpy": "numpy", "numba": "numba", "onnx": "onnxruntime",
                   "tflite": "litert"}


def make_policy(kind: str, roles=(), model=None, *, loudness_target_lufs=None,
                person_master=(), where: str = "session"):
    """The policy ``kind`` for channels of ``roles`` (one role name per channel).

    ``"rules"``: :class:`~edgemix.automix.rules.RulePolicy` keyed on the roles;
    ``"model"``: :class:`~edgemix.automix.model_policy.ModelPolicy` loading ``model.path``
    (the shipped model when empty) with ``model.backend`` (``model``: the session's
    :class:`~edgemix.session.ModelConfig`, or anything with ``path`` and ``backend``), the
    roles as its role hints; ``"none"``: None (a manual mix).  Either policy carries
    ``master_target``: the master fader toward ``loudness_target_lufs`` (default: the
    session default) unless the person set it (``person_master``: the master parameter
    names the session sets; :mod:`edgemix.automix.master`), and is wrapped in
    :class:`~edgemix.automix.prep.gating.GatingPolicy` (a resting channel's gate is
    proposed too).  ``where`` names the source in
    messages (the session file).  Anything the user can fix (an unknown name, missing model
    files, a part of edgemix this install lacks) is a one-line
    :class:`~edgemix.session.SessionError`.
    """
    from edgemix.session import SessionError
    roles = list(roles)
    where = f"{where}: model.policy = {kind!r}"
    if kind == "none":
        return None
    if kind == "rules":
        from edgemix.automix.rules import RulePolicy
        return _gated(_with_master_target(RulePolicy(roles), loudness_target_lufs,
                                          person_master))
    if kind != "model":
        raise SessionError(f"{where}: unknown policy, use one of {', '.join(POLICY_KINDS)}")
    try:  # lazily: the model policy pulls in the inference backends
        from edgemix.automix.model_policy import ModelPolicy
    except ImportError as e:
        raise SessionError(f"{where} needs a part of edgemix this install lacks ({e}): "
                           "use policy = \"rules\"") from None
    path = (getattr(model, "path", "") or None) if model is not None else None
    model_backend = getattr(model, "backend", "numpy") if model is not None else "numpy"
    backend = _INFER_BACKENDS.get(model_backend)
    if path is not None and backend is not None and model_backend == "numpy":
        # "numpy" is the session default: let the file's suffix pick for .onnx/.tflite
        from edgemix.infer import BACKENDS
        if BACKENDS[backend] != str(path).lower()[-len(BACKENDS[backend]):]:
            backend = None
    try:
        policy = ModelPolicy(path, backend=backend, role_hints=roles)
    except (OSError, ValueError, ImportError) as e:  # ModelLoadError is a ValueError
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise SessionError(f"{where}: cannot load the model ({msg}): build it with "
                           "`python -m export.build_models` or use policy = \"rules\"") from None
    return _gated(_with_master_target(policy, loudness_target_lufs, person_master))


def _with_master_target(policy, loudness_target_lufs, person_master):
    """Give ``policy`` the session's master loudness target (``policy.master_target``, a
    :class:`~edgemix.automix.master.MasterLoudness` the control loop asks every hop): the
    master fader toward ``loudness_target_lufs``, unless the person set it."""
    from edgemix.automix.master import MasterLoudness
    from edgemix.session import DEFAULT_LOUDNESS_TARGET_LUFS
    target = DEFAULT_LOUDNESS_TARGET_LUFS if loudness_target_lufs is None \
        else loudness_target_lufs
    policy.master_target = MasterLoudness(target, person=tuple(person_master))
    return policy


def _gated(policy):
    """``policy`` with the live gate of resting channels added (prep's silences, live:
    :class:`edgemix.automix.prep.gating.GatingPolicy`)."""
    from edgemix.automix.prep.gating import GatingPolicy
    return GatingPolicy(policy)
