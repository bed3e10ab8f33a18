"""The one composition root: a session in, a ready mixer out.

Every front end builds what it runs here -- ``edgemix mix``, ``demo``, ``run``,
``profile``, ``board warmup`` and ``board armcheck`` -- so the console, the backend, the
control side (the control loop in its own process for a live backend with a policy, or
stepped in-process for offline work), the recorder and the policy are put together in one
place and cannot drift apart.  It sits above ``edgemix/rt/`` and below ``edgemix/cli/``
(``docs/architecture.md``).
"""
from __future__ import annotations

from edgemix.session import Session, SessionError, with_channel_count


def load_policy(session: Session):
    """The session's auto-mix policy (``model.policy``) from
    :func:`edgemix.automix.make_policy`, or None for ``policy = "none"``."""
    from edgemix.automix import make_policy
    return make_policy(session.model.policy, session)


def build_runner(session: Session, *, record_dir=None, server: str | None = None,
                 rt_priority: bool = True, policy=None, features=None,
                 max_retries: int | None = None, control=None):
    """A Runner for ``session``: console with every manual setting staged, the backend,
    the policy (``policy`` overrides the session's), the recorder when ``record_dir``.
    ``control``: a :class:`~edgemix.session.ControlConfig` overriding the session's
    ``[control]``; with a server asked for, the control path runs in its own process with
    the desk and the surface (:mod:`edgemix.rt.surface`), whatever the backend."""
    b = session.backend
    fs, bs = session.sample_rate_hz, session.block_size
    if b.kind == "offline":
        from edgemix.rt.offline import OfflineBackend, StemSource, expand_inputs
        source = StemSource(expand_inputs(b.inputs))
        session = with_channel_count(session, source.n_channels)
        backend = OfflineBackend(source, fs, bs, output=b.output, paced=b.paced,
                                 input_map=[c.input for c in session.channels],
                                 stems_dir=b.stems_dir or None,
                                 stem_names=[c.name for c in session.channels])
    elif b.kind == "synthetic":
        from edgemix.rt.offline import OfflineBackend
        from edgemix.rt.synthetic import SyntheticSource
        n_src = max(c.input for c in session.channels)
        source = SyntheticSource(n_src, fs, b.duration_s, seed=b.seed)
        backend = OfflineBackend(source, fs, bs, output=b.output, paced=b.paced,
                                 input_map=[c.input for c in session.channels],
                                 stems_dir=b.stems_dir or None,
                                 stem_names=[c.name for c in session.channels])
    elif b.kind == "jack":
        from edgemix.rt.jack_backend import JackBackend
        backend = JackBackend(session.n_channels, fs, bs, client_name=b.client_name,
                              server=server or b.device or None, auto_connect=b.auto_connect,
                              input_map=[c.input for c in session.channels],
                              **({"ring_blocks": b.ring_blocks} if b.ring_blocks else {}))
    elif b.kind == "portaudio":
        from edgemix.rt.portaudio_backend import RtmixerBackend
        backend = RtmixerBackend(session.n_channels, fs, bs, device=b.device,
                                 **({"ring_blocks": b.ring_blocks} if b.ring_blocks else {}),
                                 input_map=[c.input for c in session.channels])
    else:  # parse_session only lets the names above through
        raise SessionError(f"{session.path}: backend.kind = {b.kind!r}: unknown backend")

    from edgemix.rt.runner import Runner
    console = session.build_console()
    recipe = None
    from edgemix.rt.surface import surface_recipe
    surface = surface_recipe(session, control)
    if policy is None:
        policy = load_policy(session)  # here too: a bad model is a one-line error now
        if (policy is not None and b.kind in ("jack", "portaudio")) or surface:
            from edgemix.rt.control_process import control_recipe
            # live, or a control surface: the control path in its own process
            recipe = control_recipe(session, surface=surface)
            if surface:  # a paced stem/synthetic run steps it on the wall clock too
                backend.drives_control = False
    # the features run where the control loop runs: here, or in the control process
    if policy is not None and features is None and recipe is None:
        try:
            from edgemix.features import FeatureExtractor
            features = FeatureExtractor(fs, session.n_channels, hop_ms=session.model.hop_ms)
        except ImportError:
            features = None  # the control loop falls back to the console's meters
    recorder = None
    if record_dir:
        from edgemix.rt.recorder import Recorder
        recorder = Recorder(record_dir, session.n_channels, fs)
    return Runner(console, backend, policy=policy, features=features, recorder=recorder,
                  base_params=session.channel_params(), automation=session.automation(),
                  locked=session.locked(), master_params=session.master_params(),
                  hop_s=session.model.hop_ms / 1000.0, rt_priority=rt_priority,
                  max_retries=max_retries, control_recipe=recipe), session


