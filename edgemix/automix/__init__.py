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


def make_policy(kind: str, session):
    """The policy ``kind`` for ``session`` (an :class:`edgemix.session.Session`).

    ``"rules"``: :class:`~edgemix.automix.rules.RulePolicy` keyed on the roles of the
    session's channels; ``"model"``: :class:`~edgemix.automix.model_policy.ModelPolicy`
    loading ``session.model.path`` (the shipped model when empty) with
    ``session.model.backend``, the channels' roles as its role hints; ``"none"``: None
    (a manual mix).  Either policy carries ``master_target``: the master fader toward the
    session's ``loudness_target_lufs`` (:mod:`edgemix.automix.master`).  Anything the user can fix (an unknown name, missing model files, a
    part of edgemix this install lacks) is a one-line :class:`~edgemix.session.SessionError`.
    """
    from edgemix.session import SessionError
    where = f"{getattr(session, 'path', 'session')}: model.policy = {kind!r}"
    if kind == "none":
        return None
    if kind == "rules":
        from edgemix.automix.rules import RulePolicy
        return _with_master_target(RulePolicy([c.role for c in session.channels]), session)
    if kind != "model":
        raise SessionError(f"{where}: unknown policy, use one of {', '.join(POLICY_KINDS)}")
    try:  # lazily: the model policy pulls in the inference backends
        from edgemix.automix.model_policy import ModelPolicy
    except ImportError as e:
        raise SessionError(f"{where} needs a part of edgemix this install lacks ({e}): "
                           "use policy = \"rules\"") from None
    path = session.model.path or None
    backend = _INFER_BACKENDS.get(session.model.backend)
    if path is not None and backend is not None and session.model.backend == "numpy":
        # "numpy" is the session default: let the file's suffix pick for .onnx/.tflite
        from edgemix.infer import BACKENDS
        if BACKENDS[backend] != str(path).lower()[-len(BACKENDS[backend]):]:
            backend = None
    try:
        policy = ModelPolicy(path, backend=backend,
                             role_hints=[c.role for c in session.channels])
    except (OSError, ValueError, ImportError) as e:  # ModelLoadError is a ValueError
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise SessionError(f"{where}: cannot load the model ({msg}): build it with "
                           "`python -m export.build_models` or use policy = \"rules\"") from None
    return _with_master_target(policy, session)


def _with_master_target(policy, session):
    """Give ``policy`` the session's master loudness target (``policy.master_target``, a
    :class:`~edgemix.automix.master.MasterLoudness` the control loop asks every hop): the
    master fader toward ``session.loudness_target_lufs``, unless the session sets it."""
    from edgemix.automix.master import MasterLoudness
    from edgemix.session import DEFAULT_LOUDNESS_TARGET_LUFS
    target = getattr(session, "loudness_target_lufs", DEFAULT_LOUDNESS_TARGET_LUFS)
    policy.master_target = MasterLoudness(target, person=tuple(getattr(session, "master", ())))
    return policy
