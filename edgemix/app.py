"""The one composition root: a session in, a ready mixer out.

Every front end builds what it runs here -- ``edgemix mix``, ``demo``, ``run``,
``profile``, ``board warmup`` and ``board armcheck`` -- so the console, the backend, the
control side (the control loop in its own process for a live backend with a policy, or
stepped in-process for offline work), the recorder and the policy are put together in one
place and cannot drift apart.  It sits above ``edgemix/rt/`` and below ``edgemix/cli/``
(``docs/architecture.md``).
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time

import numpy as np

from edgemix import params as P
from edgemix.errors import UserError
from edgemix.roles import colour_of
from edgemix.session import DEFAULT_ROLE, Session, SessionError, with_channel_count


def load_policy(session: Session, kind: str | None = None):
    """The session's auto-mix policy (``model.policy``, or ``kind``) from
    :func:`edgemix.automix.make_policy`, or None for ``policy = "none"``."""
    from edgemix.automix import make_policy
    return make_policy(kind or session.model.policy, [c.role for c in session.channels],
                       session.model, loudness_target_lufs=session.loudness_target_lufs,
                       person_master=tuple(session.master), where=str(session.path))


def make_backend(session: Session, server: str | None = None):
    """The audio backend the session names (``[backend] kind``), not yet opened; and the
    session with its channel count filled in from the stems for an offline backend."""
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
    return backend, session


def build_runner(session: Session, *, record_dir=None, server: str | None = None,
                 rt_priority: bool = True, policy=None, features=None,
                 max_retries: int | None = None, control=None, backend=None, cpu=None):
    """A Runner for ``session``: console with every manual setting staged, the backend,
    the policy (``policy`` overrides the session's), the recorder when ``record_dir``.
    ``control``: a :class:`~edgemix.session.ControlConfig` overriding the session's
    ``[control]``; with a server asked for, the control path runs in its own process with
    the desk and the surface (:mod:`edgemix.rt.surface`), whatever the backend.
    ``backend``: an audio backend built elsewhere (the profiler's paced stand-in), used
    instead of the session's; a live one gets the control process like JACK's.
    Returns ``(runner, session)``."""
    if backend is None:
        backend, session = make_backend(session, server)
    fs = session.sample_rate_hz
    live = not backend.drives_control
    from edgemix.rt.runner import Runner
    console = session.build_console()
    recipe = None
    from edgemix.rt.surface import surface_recipe
    surface = surface_recipe(session, control)
    if policy is None:
        policy = load_policy(session)  # here too: a bad model is a one-line error now
        if session.model.align:  # live alignment rides on the control loop's hops
            from edgemix.automix.prep.live import AlignedPolicy
            policy = AlignedPolicy.for_channels(policy, session.n_channels, fs,
                                                [c.name for c in session.channels])
        if (policy is not None and live) or surface:
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
            if hasattr(policy, "feeding"):  # the aligner hears the input too
                features = policy.feeding(features)
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
                  max_retries=max_retries, control_recipe=recipe, cpu=cpu), session




def session_for_target(prof, models_dir=None) -> tuple[Session, list[dict]]:
    """The session a board bundle for profile ``prof`` runs (its ``session.toml``, the
    profile's settings and backend), with the model file the bundle would ship from
    ``models_dir`` (the profile's format, else its fallback) when one loads here, else the
    rule policy; and what could not be used, as ``[{"what", "why"}]``."""
    import dataclasses
    import tomllib
    from pathlib import Path
    from edgemix import infer
    from edgemix.boardtools.bundle import (MODEL_ARTIFACTS, SESSION_MODEL_BACKEND,
                                           model_files_of, session_toml)
    from edgemix.session import parse_session
    models_dir = Path(models_dir) if models_dir else infer.default_model_dir()
    skipped, chosen = [], None
    for fmt in (prof.model_format, prof.model_fallback):
        if not fmt:
            continue
        pattern = MODEL_ARTIFACTS[fmt][0]
        found = model_files_of(models_dir, fmt)
        if not found:
            skipped.append({"what": f"model {fmt}", "why": f"no {pattern} for it in {models_dir}"})
            continue
        try:
            infer.load(found[0])
        except (ImportError, OSError, ValueError) as e:
            skipped.append({"what": f"model {fmt}", "why": str(e).splitlines()[0]})
            continue
        chosen = (fmt, found[0])
        break
    text = session_toml(prof, chosen[1].name if chosen else None)
    if chosen and chosen[0] != prof.model_format:  # the fallback: its own backend name
        text = text.replace(f'backend = "{SESSION_MODEL_BACKEND[prof.model_format]}"',
                            f'backend = "{SESSION_MODEL_BACKEND[chosen[0]]}"')
    session = parse_session(tomllib.loads(text), path=f"<{prof.name} bundle session>")
    if chosen:
        session = dataclasses.replace(session, model=dataclasses.replace(
            session.model, path=str(chosen[1])))
    return session, skipped


def warm(session: Session) -> list[tuple[str, float]]:
    """Compile (or load from the cache) everything ``edgemix run`` runs for ``session``
    and load its model, before a show: the runner's warm-up (console, rings, meters,
    recorder) and its control path -- for a live backend the control process, which loads
    the policy's model with the session's ``model.backend`` and compiles the features.
    Nothing is opened (no audio device, no server).  ``[(what, seconds), ...]``; a model
    that does not load is a one-line error (SessionError/RuntimeError)."""
    import time
    runner, session = build_runner(session, rt_priority=False)
    t = time.perf_counter()
    runner.console.warmup()
    out = [("console", time.perf_counter() - t)]
    t = time.perf_counter()
    try:
        runner.warmup()
    finally:
        if runner.control is not None:
            runner.control.stop()
    m = session.model
    what = "features" if m.policy == "none" else (
        f"features, model {m.backend} ({m.path or 'the shipped model'})" if m.policy == "model"
        else f"features, {m.policy} policy")
    where = "control process" if hasattr(runner.control, "recipe") else "control loop"
    out.append((f"{where}: {what}" if runner.control is not None else "features",
                time.perf_counter() - t))
    return out


# ---- offline mixing: edgemix mix, edgemix demo, edgemix.mix_stems ----------------------
#: Parameters the report shows per channel, in console order.
REPORT_PARAMS = ("trim_db", "polarity_invert", "hpf_hz", "eq1_gain_db", "eq2_hz", "eq2_gain_db",
                 "eq3_hz", "eq3_gain_db", "eq4_gain_db", "comp_threshold_db", "comp_ratio",
                 "comp_attack_ms", "comp_release_ms", "comp_makeup_db", "automix_on",
                 "fader_db", "pan", "aux1_send_db")



def resolve_policy(kind: str) -> str:
    """``auto`` is the shipped model where its files are present, else the rule policy."""
    if kind != "auto":
        return kind
    from edgemix.automix.model_policy import DEFAULT_MODEL, default_model_dir
    return "model" if (default_model_dir() / DEFAULT_MODEL).is_file() else "rules"


@dataclasses.dataclass
class MixResult:
    session: object
    stats: dict
    channel_params: np.ndarray
    explanations: list
    meters: object
    seconds: float
    policy: str
    #: per channel, what the policy recognised (``ModelPolicy.recognition()``), or None
    recognition: list | None = None
    #: the master parameters' sentences (the loudness target's move)
    master_explanations: dict = dataclasses.field(default_factory=dict)
    master_params: np.ndarray | None = None

    def report(self) -> dict:
        """Everything, JSON-friendly.  Per channel: ``role`` is the session's (the
        person's word; "other" when not given), ``recognised_role``/``role_probability``
        what the policy heard (None / null for a policy that does not listen),
        ``mixed_as`` the role the policy mixed it as (the session's when given) and
        ``role_source`` where that came from ("session", "heard", "none")."""
        chans = []
        for i, ch in enumerate(self.session.channels):
            rec = (self.recognition[i] if self.recognition and i < len(self.recognition)
                   else None)
            if rec is not None:
                heard = {"recognised_role": rec["recognised_role"],
                         "role_probability": float(rec["role_probability"]),
                         "mixed_as": rec["role"], "role_source": rec["role_source"]}
            else:
                given = ch.role != DEFAULT_ROLE
                heard = {"recognised_role": None, "role_probability": None,
                         "mixed_as": ch.role, "role_source": "session" if given else "none"}
            row = {"name": ch.name, "input": ch.input, "role": ch.role, **heard,
                   "colour": ch.colour, "automation": ch.automation,
                   "manual": {k: float(v) for k, v in ch.manual.items()},
                   "params": {n: float(self.channel_params[i, getattr(P.CH, n)])
                              for n in REPORT_PARAMS},
                   "why": dict(self.explanations[i]) if i < len(self.explanations) else {}}
            chans.append(row)
        m = self.meters
        return {
            "policy": self.policy,
            "sample_rate_hz": self.session.sample_rate_hz,
            "block_size": self.session.block_size,
            "seconds": self.seconds,
            "master": {"integrated_lufs": m.integrated_lufs, "true_peak_dbtp": m.true_peak_dbtp,
                       "loudness_range_lu": m.loudness_range_lu,
                       "max_short_term_lufs": m.short_term_lufs,
                       "loudness_target_lufs": getattr(self.session, "loudness_target_lufs",
                                                       None),
                       "master_fader_db": (float(self.master_params[P.MS.master_fader_db])
                                           if self.master_params is not None else None),
                       "why": dict(self.master_explanations)},
            "channels": chans,
            "run": {k: v for k, v in self.stats.items() if _jsonable(v)},
        }


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def mix_session(session, *, policy: str = "auto", progress: bool = True) -> MixResult:
    """Run ``session`` (an offline or synthetic backend) through the runner; block until the
    source ends.  Raises ``UserError`` for anything the user can fix."""
    from edgemix.rt.backend import DeviceError
    from edgemix.session import SessionError

    kind = resolve_policy(policy)
    session = dataclasses.replace(session, model=dataclasses.replace(session.model, policy=kind))
    try:
        runner, session = build_runner(session, rt_priority=False)
    except (SessionError, DeviceError, ValueError) as e:
        raise UserError(str(e)) from None
    total = getattr(getattr(runner.backend, "source", None), "total_frames", None)
    result: dict = {}

    def work():
        try:
            result["stats"] = runner.run()
        except BaseException as e:  # handed to the caller's thread
            result["error"] = e

    t0 = time.monotonic()
    worker = threading.Thread(target=work, name="edgemix-mix")
    worker.start()
    if progress and total:
        from tqdm import tqdm
        # disable=None: a bar on a terminal, nothing in a log or a pipe
        with tqdm(total=total, unit="frame", unit_scale=True, desc="mixing", leave=False,
                  disable=None) as bar:
            while worker.is_alive():
                worker.join(0.1)
                bar.update(min(runner.frames, total) - bar.n)
    worker.join()
    if "error" in result:
        e = result["error"]
        if isinstance(e, (SessionError, DeviceError, ValueError)):
            raise UserError(str(e)) from None
        raise e
    control = getattr(runner, "control", None)
    expl = getattr(control, "last_explanations", None) or [{} for _ in session.channels]
    return MixResult(session=session, stats=result["stats"],
                     channel_params=runner.console.channel_params, explanations=expl,
                     meters=runner.console.meters, seconds=time.monotonic() - t0, policy=kind,
                     recognition=getattr(control, "last_recognition", None),
                     master_explanations=getattr(control, "last_master_explanations", {}) or {},
                     master_params=np.array(runner.console.master_params))


def session_from_stems(session: Session, stems) -> Session:
    """``session`` with one channel per stem of ``stems`` (a folder or a file), named and
    role-guessed from the file names (:func:`edgemix.session.guess_role`): a mix without a
    session file."""
    from edgemix.rt.offline import StemError, expand_inputs, probe_stems
    from edgemix.session import ChannelConfig, guess_role
    try:
        paths = expand_inputs([stems])
        _, _, chans = probe_stems(paths)
    except StemError as e:
        raise UserError(str(e)) from None
    channels, k = [], 1
    for p, n in zip(paths, chans):
        for j in range(n):
            name = p.stem if n == 1 else f"{p.stem}.{j + 1}"
            role = guess_role(p.stem)
            channels.append(ChannelConfig(name=name, input=k, role=role, colour=colour_of(role)))
            k += 1
    return dataclasses.replace(session, channels=tuple(channels), channels_given=True)


def mix_stems(stems, output="mix.wav", *, params=None, policy: str = "auto",
              stems_out=None, progress: bool = False) -> MixResult:
    """Mix a folder of WAV stems (one file per input) offline, as ``edgemix mix`` does.

    ``output``: the stereo mix (WAV).  ``params``: a session TOML file (channel names,
    roles, automation levels, manual settings), or None to name the channels and guess
    their roles from the file names.  ``policy``: ``auto`` (the shipped model when its files
    are here, else the rules), ``model``, ``rules`` or ``none``.  ``stems_out``: a folder
    for each channel's processed stem.  Returns the :class:`MixResult` (``report()``
    gives every setting and why); a mistake the user can fix is a one-line
    :class:`~edgemix.errors.UserError`."""
    from pathlib import Path
    from edgemix.session import default_session, load_session
    try:
        session = load_session(params) if params else default_session(0)
    except SessionError as e:
        raise UserError(str(e)) from None
    b = dataclasses.replace(session.backend, kind="offline", inputs=(str(stems),),
                            output=str(Path(output)), paced=False,
                            stems_dir=str(stems_out) if stems_out else session.backend.stems_dir)
    session = dataclasses.replace(session, backend=b)
    if not params:
        session = session_from_stems(session, stems)
    return mix_session(session, policy=policy, progress=progress)
