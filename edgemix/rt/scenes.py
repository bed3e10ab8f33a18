"""Scenes: the whole desk saved as a session TOML file, recalled with an optional crossfade.

A scene file is a valid session file (:mod:`edgemix.session`): ``[session]`` (its name is
the scene's title), every master value under ``[master]``, the ``[[buses]]``, and per
channel its name, input, role, colour, automation level and *every* parameter value.  So a
scene can also start a run (``edgemix run --config scene.toml``), and it is validated by
the one session parser on recall.

A recalled scene is ordinary person-owned settings (issue 12): every value it sets is the
person's until handed back ("auto", or automation level 1).  With ``crossfade_s`` the
continuous parameters move from where they are to the scene along each parameter's own
scale (dB and pan linearly, Hz/ms/Q logarithmically: the schema's ``to_norm``), in steps of
:data:`STEP_S` that the audio side smooths as any target; switches, names and levels change
at the start; the last step sets the scene's values exactly.  A parameter someone moves
during the fade drops out of it (the later move wins).

Threads: any; a crossfade runs on a thread of its own (a new recall cancels it).
"""
from __future__ import annotations

import logging
import pathlib
import re
import threading
import time

from edgemix import params as P
from edgemix.rt.desk import DeskError

log = logging.getLogger("edgemix.scenes")

#: Crossfade step (the audio side smooths gains over 20 ms, filters over 50 ms).
STEP_S = 0.04
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


class SceneError(DeskError):
    """A scene that cannot be saved or recalled: one line naming the fix."""


def scene_document(desk, *, title: str, sample_rate_hz: int = 48000, block_size: int = 64,
                   inputs=None, buses=(("reverb", "reverb"), ("monitor", "monitor"))) -> dict:
    """The desk as a session document (a dict for a TOML writer)."""
    snap = desk.snapshot()
    inputs = list(inputs) if inputs is not None else list(range(1, desk.n_channels + 1))

    def value(spec, v):
        return bool(v >= 0.5) if spec.scale == "bool" else float(v)

    channels = []
    for c, ch in enumerate(snap["channels"]):
        row = {"name": ch["name"], "input": int(inputs[c]), "role": ch["role"],
               "colour": ch["colour"], "automation": float(ch["automation"])}
        row.update({s.name: value(s, ch["params"][s.name]) for s in P.CHANNEL_PARAMS})
        channels.append(row)
    master = {s.name: value(s, snap["master"]["params"][s.name]) for s in P.MASTER_PARAMS}
    return {"session": {"name": title, "sample_rate_hz": int(sample_rate_hz),
                        "block_size": int(block_size)},
            "master": master,
            "buses": [{"name": n, "kind": k} for n, k in buses],
            "channels": channels}


def scene_moves(session, n_channels: int) -> list[tuple]:
    """The ``(channel, param, value)`` moves that recall ``session`` (a parsed scene) on
    a desk of ``n_channels``: levels first (a level of 1 hands a channel back, and the
    scene's values then take it again), then text, then every parameter."""
    if session.n_channels != n_channels:
        raise SceneError(f"{session.path}: the scene has {session.n_channels} channels, "
                         f"this console {n_channels}: recall a scene of this console")
    cp, mp = session.channel_params(), session.master_params()
    moves = [(c + 1, "automation", float(ch.automation))
             for c, ch in enumerate(session.channels)]
    for c, ch in enumerate(session.channels):
        moves += [(c + 1, "name", ch.name), (c + 1, "colour", ch.colour.lower()),
                  (c + 1, "role", ch.role)]
    for c in range(n_channels):
        moves += [(c + 1, s.name, float(cp[c, j])) for j, s in enumerate(P.CHANNEL_PARAMS)]
    moves += [("master", s.name, float(mp[j])) for j, s in enumerate(P.MASTER_PARAMS)]
    return moves


class SceneStore:
    """Scenes of one desk in ``directory`` (``NAME.toml``).

    ``session``: the running :class:`~edgemix.session.Session` (its rate, block size,
    inputs and buses go into every scene), or None for the defaults.
    """

    def __init__(self, desk, directory, session=None):
        self.desk = desk
        self.directory = pathlib.Path(directory)
        self.session = session
        self._fade: threading.Thread | None = None
        self._cancel = threading.Event()
        self.fades = 0

    def path(self, name: str) -> pathlib.Path:
        if not isinstance(name, str) or not _NAME.match(name):
            raise SceneError(f"scene name {name!r}: use letters, digits, space, '_', '-' "
                             "or '.', at most 64, starting with a letter or digit")
        return self.directory / f"{name}.toml"

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.toml"))

    def title(self, name: str) -> str | None:
        """The scene's title (its ``[session] name``), None when there is no such scene."""
        import tomllib
        p = self.path(name)
        try:
            return str(tomllib.loads(p.read_text("utf-8")).get("session", {}).get("name", name))
        except (OSError, ValueError):
            return None

    def save(self, name: str, title: str | None = None) -> pathlib.Path:
        """Write the whole desk to ``NAME.toml`` (atomically: a crash leaves the old file)."""
        import tomli_w
        p = self.path(name)
        s = self.session
        kw = {}
        if s is not None:
            kw = dict(sample_rate_hz=s.sample_rate_hz, block_size=s.block_size,
                      inputs=[c.input for c in s.channels],
                      buses=[(b.name, b.kind) for b in s.buses])
        doc = scene_document(self.desk, title=title or name, **kw)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".toml.tmp")
            tmp.write_text(f"# edgemix scene {name!r}, saved {time.strftime('%Y-%m-%d %H:%M:%S')}"
                           "\n" + tomli_w.dumps(doc), "utf-8")
            tmp.replace(p)
        except OSError as e:
            raise SceneError(f"cannot save scene {name!r} to {p} ({e.strerror or e}): check "
                             "control.scenes_dir and its permissions") from None
        log.info("scene %r saved to %s", name, p)
        return p

    def delete(self, name: str) -> None:
        p = self.path(name)
        try:
            p.unlink()
        except FileNotFoundError:
            raise SceneError(f"no scene {name!r} in {self.directory}") from None

    def load(self, name: str):
        """The scene as a validated :class:`~edgemix.session.Session`."""
        from edgemix.session import SessionError, load_session
        p = self.path(name)
        if not p.is_file():
            have = ", ".join(self.names()) or "none yet"
            raise SceneError(f"no scene {name!r} in {self.directory} (saved: {have})")
        try:
            return load_session(p)
        except SessionError as e:
            raise SceneError(str(e)) from None

    def recall(self, name: str, crossfade_s: float = 0.0) -> None:
        """Set the scene's values as the person's: at once, or over ``crossfade_s``."""
        moves = scene_moves(self.load(name), self.desk.n_channels)
        self.cancel()
        if not crossfade_s > 0:
            self.desk.set_many(moves, source="scene")
            log.info("scene %r recalled", name)
            return
        for ch, param, value in moves:  # all checked before anything moves
            self.desk._validated(ch, param, value)
        self._cancel = threading.Event()
        self._fade = threading.Thread(target=self._crossfade,
                                      args=(name, moves, float(crossfade_s), self._cancel),
                                      name="edgemix-scene-fade", daemon=True)
        self.fades += 1
        self._fade.start()

    def cancel(self) -> None:
        """Stop a running crossfade where it is."""
        if self._fade is not None:
            self._cancel.set()
            self._fade.join()
            self._fade = None

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for a running crossfade to end; True when none runs."""
        if self._fade is not None:
            self._fade.join(timeout_s)
            return not self._fade.is_alive()
        return True

    def _crossfade(self, name, moves, duration_s, cancel) -> None:
        d = self.desk
        jumps, fades = [], []
        for ch, param, value in moves:
            spec = P.CHANNEL_SPECS.get(param) if ch != "master" else P.MASTER_SPECS.get(param)
            if spec is None or spec.scale in ("bool", "choice"):
                jumps.append((ch, param, value))
            else:
                fades.append((ch, param, spec, float(spec.to_norm(d.get(ch, param))),
                              float(spec.to_norm(value)), value))
        try:
            d.set_many(jumps, source="scene")
            last = {}
            t0 = time.monotonic()
            while fades and not cancel.wait(STEP_S):
                u = min(1.0, (time.monotonic() - t0) / duration_s)
                if u >= 1.0:
                    break
                step, keep = [], []
                for f in fades:
                    ch, param, spec, a, b, end = f
                    if (ch, param) in last and d.get(ch, param) != last[ch, param]:
                        continue  # someone moved it meanwhile: theirs wins
                    v = float(spec.from_norm(a + (b - a) * u))
                    step.append((ch, param, v))
                    last[ch, param] = v
                    keep.append(f)
                fades = keep
                d.set_many(step, source="scene")
            if not cancel.is_set():
                d.set_many([(ch, param, end) for ch, param, _, _, _, end in fades
                            if (ch, param) not in last or d.get(ch, param) == last[ch, param]],
                           source="scene")
                log.info("scene %r recalled over %g s", name, duration_s)
        except DeskError as e:
            log.warning("scene %r: crossfade stopped: %s", name, e)

