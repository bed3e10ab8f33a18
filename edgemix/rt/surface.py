"""The control surface: one asyncio event loop on one thread of the control process.

Every network server of a live run -- the OSC server (:mod:`edgemix.rt.osc`, X-Air dialect,
UDP) and the web server (:mod:`edgemix.rt.web`, HTTP + WebSocket on one port) -- runs on
this one loop, on the thread ``edgemix-surface`` of the *control process*, never in the
audio process (DESIGN.md, "The person in the loop").  They share the :class:`~edgemix.rt.
desk.Desk` (thread-safe; the control loop's hop writes it from its own thread), the scene
store and the meter reader.

How a server registers (the web server does exactly this)::

    class WebServer:
        name = "web"
        async def start(self, surface) -> str:     # on the loop; raise SurfaceError
            ...                                     # bind, e.g. aiohttp's TCPSite
            surface.listen(self.on_changes, batch=True)   # desk changes, on the loop
            return "http://127.0.0.1:8080/"         # the address printed at start
        async def stop(self) -> None: ...

    surface = Surface(desk, scenes=scenes, meters=meters, config=control_config)
    surface.add_server(WebServer(...))
    addresses = surface.start()      # runs every start() on the loop; one-line errors
    ...
    surface.stop()

:func:`build_surface` builds the servers a :class:`~edgemix.session.ControlConfig` asks
for: the OSC server for ``osc``, and for ``web`` the object
``edgemix.rt.web.make_server(surface, host, port)`` returns (the web helper's module).

A server's callbacks run on the loop; anything slow (a scene file write) goes to
``loop.run_in_executor``.  Desk listeners registered with :meth:`Surface.listen` are
called on the loop via ``call_soon_threadsafe``, so a policy hop only queues them.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Callable

from edgemix.session import LOCALHOST, OSC_PORT, WEB_PORT, parse_listen  # noqa: F401 (re-exported)

log = logging.getLogger("edgemix.surface")

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


class SurfaceError(RuntimeError):
    """A server cannot start (address in use, not permitted...): one line naming the fix."""


#: The binds that serve only this machine's own clients: no pairing token on the web
#: surface, no allow-list warning for OSC.  Every other address, other loopback addresses
#: such as 127.0.0.2 included, is treated as a LAN address (the tests use 127.0.0.2 for one).
LOCAL_BINDS = ("127.0.0.1", "::1", "localhost")


def is_local(host: str) -> bool:
    """True for the default local binds (:data:`LOCAL_BINDS`): one rule for both servers."""
    return host in LOCAL_BINDS


class Surface:
    """The surface thread and its event loop, with the servers registered on it.

    ``desk``: the :class:`~edgemix.rt.desk.Desk`; ``scenes``: the
    :class:`~edgemix.rt.scenes.SceneStore` (or None); ``meters``: an object with
    ``read()`` returning the current meters (or None); ``config``: the session's
    :class:`~edgemix.session.ControlConfig` (or None).

    Threads: :meth:`add_server`, :meth:`start`, :meth:`stop` on the owner's thread;
    :meth:`call` and :meth:`listen` from any thread; servers' code on the loop.
    """

    def __init__(self, desk, *, scenes=None, meters=None, config=None):
        self.desk = desk
        self.scenes = scenes
        self.meters = meters
        self.config = config
        self.servers: list = []
        self.addresses: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable] = []

    def add_server(self, server) -> None:
        """Register a server (``name``, ``async start(surface) -> str``, ``async stop()``)
        to be started by :meth:`start`."""
        if self._thread is not None:
            raise RuntimeError("add servers before the surface starts")
        self.servers.append(server)

    # ---- any thread -----------------------------------------------------------------------
    def call(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` on the loop, soon (thread-safe; dropped once stopped)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def listen(self, fn: Callable, batch: bool = False) -> Callable:
        """Desk changes to ``fn`` on the loop: ``fn(change)`` per change, or with
        ``batch`` ``fn(changes)`` per desk operation.  Returns the desk listener."""
        def hand_on(item):
            self.call(fn, item)
        self.desk.add_listener(hand_on, batch=batch)
        self._listeners.append(hand_on)
        return hand_on

    def stats(self) -> dict:
        """Each server's ``stats()`` (those that keep counters), by name."""
        return {getattr(s, "name", str(i)): s.stats() for i, s in enumerate(self.servers)
                if callable(getattr(s, "stats", None))}

    # ---- owner thread -------------------------------------------------------------------
    def start(self, timeout_s: float = START_TIMEOUT_S) -> list[str]:
        """Start the thread and every server on it; return their addresses.  SurfaceError
        (the servers started so far are stopped again) when one cannot start."""
        if self._thread is not None:
            return self.addresses
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, args=(ready,),
                                        name="edgemix-surface", daemon=True)
        self._thread.start()
        try:
            self.addresses = ready.result(timeout_s)
        except concurrent.futures.TimeoutError:
            self.stop()
            raise SurfaceError("the control surface did not start in time") from None
        except SurfaceError:
            self.stop()
            raise
        return self.addresses

    def stop(self) -> None:
        """Stop every server and the loop; join the thread."""
        for fn in self._listeners:
            self.desk.remove_listener(fn)
        self._listeners = []
        loop, thread = self.loop, self._thread
        if loop is not None and not loop.is_closed() and thread is not None \
                and thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self._stop_servers(), loop)
            try:
                fut.result(STOP_TIMEOUT_S)
            except Exception as e:
                log.warning("stopping the control surface: %s", e)
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(STOP_TIMEOUT_S)
        self._thread = None

    # ---- the surface thread ---------------------------------------------------------------
    def _main(self, ready: concurrent.futures.Future) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            addresses = loop.run_until_complete(self._start_servers())
        except Exception as e:
            loop.run_until_complete(self._stop_servers())
            loop.close()
            msg = str(e) if isinstance(e, SurfaceError) else \
                f"the control surface cannot start ({e.__class__.__name__}: {e})"
            ready.set_exception(SurfaceError(msg))
            return
        ready.set_result(addresses)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _start_servers(self) -> list[str]:
        out = []
        self._started = []
        for server in self.servers:
            out.append(await server.start(self))
            self._started.append(server)
        return out

    async def _stop_servers(self) -> None:
        for server in reversed(getattr(self, "_started", [])):
            try:
                await server.stop()
            except Exception as e:  # the others still stop
                log.warning("stopping %s: %s", getattr(server, "name", server), e)
        self._started = []


def control_from_cli(session, osc=None, web=None):
    """The session's :class:`~edgemix.session.ControlConfig` with ``--osc``/``--web``
    (``[ADDR:]PORT`` strings, None = as the session says); ValueError naming the fix."""
    import dataclasses
    config = session.control
    if osc is not None:
        config = dataclasses.replace(config, osc=parse_listen(osc, OSC_PORT, "--osc"))
    if web is not None:
        config = dataclasses.replace(config, web=parse_listen(web, WEB_PORT, "--web"))
    return config


def announce(addresses, echo=None) -> None:
    """Print where the control surface listens (stderr; stdout stays for ``--json``),
    with what to fix on a LAN bind."""
    import sys
    out = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    for a in addresses:
        out(f"edgemix: control surface: {a}")


def write_live_session(path, channels, stems_dir, policy: str):
    """A session file that plays ``stems_dir`` in real time with the control surface on
    (what ``edgemix demo`` leaves behind to try it: ``edgemix run --config PATH``)."""
    import os
    import pathlib
    import tomli_w
    path = pathlib.Path(path)
    stems = os.path.relpath(pathlib.Path(stems_dir).resolve(), path.parent.resolve())
    doc = {"session": {"name": "live demo"},
           "backend": {"kind": "offline", "inputs": [stems], "paced": True,
                       "output": "live_mix.wav"},
           "model": {"policy": policy if policy in ("none", "rules", "model") else "rules"},
           "control": {"osc": OSC_PORT, "web": WEB_PORT},
           "channels": [{"name": c.name, "input": c.input, "role": c.role,
                         "colour": c.colour} for c in channels]}
    path.write_text(tomli_w.dumps(doc), "utf-8")
    return path


def surface_recipe(session, config=None) -> dict | None:
    """What the control process needs to run ``session``'s control surface, as plain
    picklable values (``config``: a :class:`~edgemix.session.ControlConfig` overriding the
    session's ``[control]``, e.g. from ``--osc``/``--web``); None when no server is asked
    for."""
    config = config if config is not None else session.control
    if not config.enabled:
        return None
    return {"config": config, "names": [c.name for c in session.channels],
            "colours": [c.colour for c in session.channels],
            "roles": [c.role for c in session.channels],
            "inputs": [c.input for c in session.channels],
            "buses": [(b.name, b.kind) for b in session.buses],
            "master_person": list(session.master), "session_name": session.name,
            "sample_rate_hz": session.sample_rate_hz, "block_size": session.block_size}


def start_control_surface(recipe: dict, loop, stage, meters=None):
    """In the control process: the :class:`~edgemix.rt.desk.Desk` on ``loop`` (a
    :class:`~edgemix.rt.control.ControlLoop`), its scenes, and the surface with the servers
    of ``recipe`` (:func:`surface_recipe`), started.  ``stage(cp, mp)``: the mailbox.
    Returns the running :class:`Surface` (SurfaceError when a server cannot start)."""
    import types
    from edgemix.rt.desk import Desk
    from edgemix.rt.scenes import SceneStore
    config = recipe["config"]
    desk = Desk(loop.automation.n_channels, automation=loop.automation,
                master_params=loop.master, stage=stage, names=recipe["names"],
                colours=recipe["colours"], roles=recipe["roles"],
                master_person=recipe["master_person"])
    loop.attach_desk(desk)
    info = types.SimpleNamespace(
        sample_rate_hz=recipe["sample_rate_hz"], block_size=recipe["block_size"],
        channels=[types.SimpleNamespace(input=i) for i in recipe["inputs"]],
        buses=[types.SimpleNamespace(name=n, kind=k) for n, k in recipe["buses"]])
    scenes = SceneStore(desk, config.scenes_dir, info)
    surface = build_surface(desk, config, scenes=scenes, meters=meters)
    surface.n_aux = len(recipe["buses"])
    surface.start()
    return surface


def build_surface(desk, config, *, scenes=None, meters=None) -> Surface:
    """A :class:`Surface` with the servers ``config`` (a
    :class:`~edgemix.session.ControlConfig`) asks for: OSC when ``config.osc``, the web
    page when ``config.web``."""
    surface = Surface(desk, scenes=scenes, meters=meters, config=config)
    if config.osc is not None:
        from edgemix.rt.osc.server import OscServer
        host, port = config.osc
        surface.add_server(OscServer(host, port, allow=config.osc_allow,
                                     rate_per_s=config.osc_rate_per_s))
    if config.web is not None:
        try:
            from edgemix.rt.web import make_server
        except ImportError as e:
            raise SurfaceError(f"the web surface is not part of this install ({e}): "
                               "leave out --web") from None
        host, port = config.web
        surface.add_server(make_server(surface, host, port))
    return surface
