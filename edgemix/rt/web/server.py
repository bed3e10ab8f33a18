"""The web control surface: aiohttp serves the page and one WebSocket per client, on the
control process's surface thread (:mod:`edgemix.rt.surface`), never in the audio process.

One port: ``GET /`` the page, ``GET /static/<file>`` its script and style (package data,
no build step, nothing from a CDN), ``GET /ws`` the WebSocket.  Who may connect:
:mod:`edgemix.rt.web.pairing` (Host and Origin checks always, a pairing token when bound to
anything but 127.0.0.1 / ::1 / localhost).

The WebSocket speaks JSON text frames.  Server to page:

* ``hello``: the schema of every parameter (names, ranges, scales, groups: the page
  restates none), the channel count, the meter rate;
* ``snapshot``: the desk's whole state (:meth:`Desk.snapshot`) and the ``seq`` it is
  current to -- on every connect and reconnect, and whenever a client fell behind;
* ``changes``: the desk's changes, to every client, gathered for 10 ms
  (:data:`COALESCE_S`): the ``seq`` range they cover (``from`` .. ``to``) and the newest
  change of each parameter in it, in ``seq`` order (the page applies those newer than its
  own ``seq`` and asks for a ``resync`` when ``from`` leaves a gap);
* ``meters``: about 30 per second (:data:`METER_HZ`), **at most one in flight per client**:
  the next goes only after the page's ``ack``, which it sends once it has drawn the frame
  (in ``requestAnimationFrame``), so a frozen or background tab is simply sent nothing
  (PiPedal's rule, MOD's credits).  A frame carries the audio side's publish time, so the
  ack gives the meter latency to the screen (:meth:`WebServer.stats`);
* ``info``: a channel's explanations and recognised role when they change;
* ``scenes``: the saved scenes; ``ok`` / ``error`` replies to requests that carry an ``id``.

Page to server: ``set`` (channel 1-based or ``"master"``, param, value), ``release``
(channel, group or param: the "auto" button), ``ack``, ``resync``, ``scene_save``,
``scene_recall`` (name, fade_s), ``scene_list``.  Every value is validated by the desk
against the schema (:class:`~edgemix.rt.desk.DeskError`: one line, sent back as ``error``
and logged); a malformed message gets an ``error`` too, never a crash.  Each client has a
token bucket (:data:`RATE_PER_S`); what exceeds it is refused with one ``error`` per second.

A slow client costs only itself: each has its own sender task and a bounded queue of
encoded messages; one that falls :data:`MAX_QUEUE` messages behind loses the queue and
gets a fresh snapshot instead, and one whose socket takes more than :data:`SEND_TIMEOUT_S`
to accept a message is closed (its page reconnects and takes a snapshot).
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import pathlib
import sys
import time
from time import perf_counter_ns

from edgemix import params as P
from edgemix.rt.surface import is_local
from edgemix.rt.web import pairing

log = logging.getLogger("edgemix.web")

STATIC = pathlib.Path(__file__).with_name("static")
#: Files the server hands out (nothing else under STATIC, nothing outside it).
FILES = {"app.js": "application/javascript", "style.css": "text/css",
         "index.html": "text/html"}
#: Meter frames per second offered to each client (each waits for the page's ack).
METER_HZ = 30.0
#: Desk changes are gathered this long and sent as one message (a flood of OSC moves
#: then costs each client ~100 messages a second, not thousands).
COALESCE_S = 0.01
#: How often explanations and recognised roles are compared and sent when they changed.
INFO_HZ = 2.0
#: Messages per second a client may send (sustained) and in a burst; acks count.
RATE_PER_S = 200.0
BURST = 400.0
#: Outgoing messages a client may fall behind by before it gets a snapshot instead.
MAX_QUEUE = 256
#: Replies kept for a client that does not read them (the oldest go first).
MAX_REPLIES = 64
#: A socket that does not take a message in this long is closed (its page reconnects).
SEND_TIMEOUT_S = 10.0
#: Clients at once (each is a socket, a task and a queue).
MAX_CLIENTS = 32
#: Largest message a client may send (bytes).
MAX_MESSAGE = 4096
#: Meter latency samples kept for :meth:`WebServer.stats`.
LATENCY_SAMPLES = 4096
#: Addresses served without a pairing token (everything else needs one).
#: The page's fader travel (position 0..1, dB) between breakpoints: the X-Air / X32 fader
#: law (Maillot, "X32/M32 OSC remote protocol": four linear-in-dB segments), so the page's
#: faders move like the ones on the apps people already use.
FADER_TAPER = ((0.0, P.OFF_DB), (0.0625, -60.0), (0.25, -30.0), (0.5, -10.0), (1.0, 10.0))


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _reject_constant(name):
    raise ValueError(f"{name} is not a number")


def schema() -> dict:
    """Every parameter as the page needs it (from :mod:`edgemix.params`)."""
    from edgemix.rt.desk import group_of

    def spec(s, group):
        return {"name": s.name, "min": s.min, "max": s.max, "default": s.default,
                "scale": s.scale, "doc": s.doc, "choices": list(s.choices), "group": group}
    return {"channel": [spec(s, group_of(s.name)) for s in P.CHANNEL_PARAMS],
            "master": [spec(s, "master") for s in P.MASTER_PARAMS],
            "off_db": P.OFF_DB, "fader_taper": FADER_TAPER}


class _Bucket:
    """Token bucket: ``rate`` per second sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.level, self.t = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.t) * self.rate)
        self.t = now
        if self.level >= 1.0:
            self.level -= 1.0
            return True
        return False


class _Client:
    """One WebSocket: its queue, its meter credit, its rate limit."""

    def __init__(self, ws, peer: str, number: int, max_queue: int = MAX_QUEUE):
        self.ws, self.peer, self.number = ws, peer, number
        self.max_queue = max_queue
        self.out: collections.deque[str] = collections.deque()
        #: replies to this client's requests (ok, error): never given up for a snapshot
        self.replies: collections.deque[str] = collections.deque(maxlen=MAX_REPLIES)
        #: the newest meter frame not yet sent (latest wins): (text, number, published_ns)
        self.meter: tuple[str, int, int] | None = None
        self.credit = True             # may be sent a meter frame (the last one was acked)
        self.in_flight: tuple[int, int] | None = None  # (frame number, published_ns)
        self.resync = True             # send a snapshot next (first thing after hello)
        self.wake = asyncio.Event()
        self.bucket = _Bucket(RATE_PER_S, BURST)
        self.last_refusal = 0.0
        self.closed = False
        self.transport = None          # the TCP connection under the WebSocket
        self.received = 0
        self.refused = 0
        self.snapshots = 0

    def reply(self, text: str) -> None:
        self.replies.append(text)
        self.wake.set()

    def push(self, text: str) -> None:
        """A state message (changes, info, scenes): queued, or covered by the snapshot the
        client is owed once it fell :data:`MAX_QUEUE` behind."""
        if self.resync:
            return  # the coming snapshot covers it
        if len(self.out) >= self.max_queue:
            self.out.clear()
            self.resync = True
        else:
            self.out.append(text)
        self.wake.set()


class WebServer:
    """The web surface on ``host:port`` (port 0: a free one), registered on a
    :class:`~edgemix.rt.surface.Surface` (``start``/``stop`` run on its loop).

    ``token``: the pairing token; by default a fresh one when ``host`` is not one of
    :data:`edgemix.rt.surface.LOCAL_BINDS`, and none on them (``False``: never one, for tests of the checks
    that come before it)."""

    name = "web"

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, *, token=None,
                 meter_hz: float = METER_HZ):
        self.host, self.port = host, int(port)
        if token is None:
            token = None if is_local(host) else pairing.new_token()
        self.token = token or None
        self.meter_hz = float(meter_hz)
        #: messages a client may fall behind by before it is owed a snapshot instead
        self.max_queue = MAX_QUEUE
        self.url = ""
        self.surface = None
        self.clients: set[_Client] = set()
        self._runner = None
        self._tasks: list[asyncio.Task] = []
        self._numbers = 0
        self._meter_n = 0
        self._info_sent: dict[int, str] = {}
        self._batch: dict[tuple, dict] = {}
        self._batch_from: int | None = None
        self._batch_to = 0
        self._latency_ns: collections.deque[int] = collections.deque(maxlen=LATENCY_SAMPLES)
        self.counts = collections.Counter()

    # ---- lifecycle (surface loop) -------------------------------------------------------
    async def start(self, surface) -> str:
        from aiohttp import web
        from edgemix.rt.surface import SurfaceError
        self.surface = surface
        app = web.Application(client_max_size=MAX_MESSAGE)
        app.on_response_prepare.append(lambda request, response: self._prepared(response))
        app.add_routes([web.get("/", self._page), web.get("/static/{name}", self._static),
                        web.get("/ws", self._socket), web.get("/stats", self._stats)])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            raise SurfaceError(f"web: cannot listen on {self.host}:{self.port} "
                               f"({e.strerror or e}): pick another with --web ADDR:PORT") from None
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 (port 0)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}/"
        if self.token:
            self.url += f"?{pairing.QUERY}={self.token}"
        surface.listen(self._on_changes, batch=True)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._meter_ticker()),
                       loop.create_task(self._info_ticker())]
        if self.token:
            # the person at the board needs the token: the address (with it) goes back to
            # the caller, which prints it; the QR code of the same address goes to the
            # terminal here, for a phone's camera
            qr = pairing.qr_text(self.url)
            if qr:
                sys.stderr.write(f"web surface pairing code ({self.url}):\n{qr}")
                sys.stderr.flush()
        return self.url

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._tasks = []
        for c in list(self.clients):
            c.closed = True
            c.wake.set()
            try:
                await c.ws.close()
            except Exception:
                pass
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def stats(self) -> dict:
        """Counters and the meter latency to the page (publish on the audio side to the
        page's ack after drawing it: p50/p99/max in ms over the last samples)."""
        lat = sorted(self._latency_ns)

        def q(p):
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] / 1e6, 2) if lat else None
        return {"clients": len(self.clients), "meter_latency_ms": {
            "p50": q(0.5), "p99": q(0.99), "max": round(lat[-1] / 1e6, 2) if lat else None,
            "samples": len(lat)}, **self.counts}

    # ---- HTTP ---------------------------------------------------------------------------
    @staticmethod
    def _refuse(text: str, status: int = 403):
        from aiohttp import web
        return web.Response(status=status, text=text + "\n")

    @property
    def _pair_hint(self) -> str:
        return ("pairing token required: open the address edgemix printed at start "
                f"(http://{self.host}:{self.port}/?token=...)")

    def _allowed(self, request) -> str | None:
        """Why ``request`` is refused, or None."""
        if not pairing.host_ok(request.headers.get("Host")):
            return "this server answers only to its own address (Host header)"
        given = request.query.get(pairing.QUERY) or request.cookies.get(pairing.COOKIE)
        if not pairing.token_ok(self.token, given):
            return self._pair_hint
        return None

    @staticmethod
    async def _prepared(response) -> None:
        """Every response: no caching (a new version is picked up at once), no framing, no
        sniffing, no referrer (the first address carries the token), nothing loaded from
        elsewhere."""
        h = response.headers
        h.setdefault("Cache-Control", "no-store")
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Content-Security-Policy",
                     "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                     "frame-ancestors 'none'")

    async def _page(self, request):
        from aiohttp import web
        why = self._allowed(request)
        if why:
            self.counts["refused_http"] += 1
            log.info("web: refused %s: %s", request.remote, why)
            return self._refuse(why)
        response = web.FileResponse(STATIC / "index.html")
        if self.token and request.query.get(pairing.QUERY):
            response.set_cookie(pairing.COOKIE, self.token, httponly=True,
                                samesite="Strict", path="/")
        return response

    async def _stats(self, request):
        """``GET /stats``: :meth:`stats` as JSON (for monitoring and the benchmarks)."""
        from aiohttp import web
        why = self._allowed(request)
        if why:
            return self._refuse(why)
        return web.json_response(self.stats())

    async def _static(self, request):
        from aiohttp import web
        name = request.match_info["name"]
        why = self._allowed(request)
        if why:
            self.counts["refused_http"] += 1
            return self._refuse(why)
        if name not in FILES:
            return self._refuse(f"no file {name!r} here", 404)
        return web.FileResponse(STATIC / name, headers={"Content-Type": FILES[name]})

    # ---- WebSocket ------------------------------------------------------------------------
    async def _socket(self, request):
        from aiohttp import WSMsgType, web
        why = self._allowed(request)
        if why is None and not pairing.origin_ok(request.headers.get("Origin"),
                                                 request.headers.get("Host")):
            why = "WebSocket from another site's page (Origin) refused"
        if why:
            self.counts["refused_ws"] += 1
            log.info("web: refused a WebSocket from %s: %s", request.remote, why)
            return self._refuse(why)
        if len(self.clients) >= MAX_CLIENTS:
            return self._refuse(f"{MAX_CLIENTS} clients already: close one", 503)
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_MESSAGE, compress=False)
        await ws.prepare(request)
        self._numbers += 1
        c = _Client(ws, str(request.remote), self._numbers, self.max_queue)
        c.transport = request.transport
        self.clients.add(c)
        self.counts["connections"] += 1
        c.out.append(_dumps({"type": "hello", "n_channels": self.surface.desk.n_channels,
                             "schema": schema(), "meter_hz": self.meter_hz,
                             "client": c.number}))
        c.wake.set()
        sender = asyncio.get_running_loop().create_task(self._send_loop(c))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._receive(c, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self._error(c, None, "send JSON text messages, not binary")
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            c.closed = True
            c.wake.set()
            self.clients.discard(c)
            sender.cancel()
        return ws

    async def _send_loop(self, c: _Client) -> None:
        """The client's one writer: snapshot when due, queued messages, the meter frame."""
        ws = c.ws
        try:
            while not c.closed:
                await c.wake.wait()
                c.wake.clear()
                while not c.closed:
                    if c.out and c.out[0].startswith('{"type":"hello"'):
                        text = c.out.popleft()
                    elif c.resync:
                        c.resync = False
                        c.out.clear()
                        text = _dumps({"type": "snapshot", "state": self.surface.desk.snapshot()})
                        self.counts["snapshots"] += 1
                        c.snapshots += 1
                    elif c.replies:
                        text = c.replies.popleft()
                    elif c.out:
                        text = c.out.popleft()
                    elif c.meter is not None and c.credit:
                        text, n, published_ns = c.meter
                        c.meter = None
                        c.credit = False
                        c.in_flight = (n, published_ns)
                        self.counts["meter_frames"] += 1
                    else:
                        break
                    await asyncio.wait_for(ws.send_str(text), SEND_TIMEOUT_S)
                    self.counts["sent"] += 1
        except asyncio.CancelledError:
            pass
        except (asyncio.TimeoutError, ConnectionError, RuntimeError) as e:
            log.info("web: client %d (%s) dropped: %s", c.number, c.peer,
                     e.__class__.__name__)
            self.counts["dropped_slow"] += 1
            c.closed = True
            try:
                await ws.close()
            except Exception:
                pass

    # ---- what a client sends --------------------------------------------------------------
    def _error(self, c: _Client, rid, message: str) -> None:
        self.counts["errors"] += 1
        log.info("web: client %d: %s", c.number, message)
        c.reply(_dumps({"type": "error", "id": rid, "message": message}))

    def _receive(self, c: _Client, text: str) -> None:
        c.received += 1
        if not c.bucket.take():
            c.refused += 1
            self.counts["rate_limited"] += 1
            now = time.monotonic()
            if now - c.last_refusal >= 1.0:
                c.last_refusal = now
                self._error(c, None, f"too many messages: at most {RATE_PER_S:g} per second")
            return
        try:
            msg = json.loads(text, parse_constant=_reject_constant)
        except ValueError as e:
            return self._error(c, None, f"not a JSON message ({e})")
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            return self._error(c, None, 'a message is a JSON object with a "type"')
        rid = msg.get("id")
        if rid is not None and not (isinstance(rid, (int, str)) and len(str(rid)) <= 32):
            return self._error(c, None, "id: use a short number or text")
        kind = msg["type"]
        handler = self._handlers.get(kind)
        if handler is None:
            return self._error(c, rid, f"unknown message type {kind!r}: use "
                               + ", ".join(sorted(self._handlers)))
        try:
            reply = handler(self, c, msg)
        except Exception as e:
            return self._failed(c, rid, kind, e)
        if asyncio.iscoroutine(reply):
            asyncio.get_running_loop().create_task(self._finish(c, rid, kind, reply))
        elif rid is not None:
            c.reply(_dumps({"type": "ok", "id": rid, **(reply or {})}))

    async def _finish(self, c: _Client, rid, kind: str, pending) -> None:
        """A request that waits (a scene written to disk): reply when it is done."""
        try:
            reply = await pending
        except Exception as e:
            return self._failed(c, rid, kind, e)
        if rid is not None:
            c.reply(_dumps({"type": "ok", "id": rid, **(reply or {})}))

    def _failed(self, c: _Client, rid, kind: str, e: Exception) -> None:
        """A request the desk or the message's shape refused: an error reply, one log line
        (anything else is a bug of ours: logged with its traceback, the client told)."""
        from edgemix.rt.desk import DeskError
        if isinstance(e, DeskError):
            return self._error(c, rid, str(e))
        if isinstance(e, KeyError):
            return self._error(c, rid, f"{kind}: missing {e.args[0]!r}")
        if isinstance(e, (TypeError, ValueError, OSError)):
            return self._error(c, rid, f"{kind}: {e}")
        log.exception("web: %s from client %d failed", kind, c.number)
        self._error(c, rid, f"{kind} failed on the server ({e.__class__.__name__})")

    def _ack(self, c: _Client, msg):
        n = msg.get("n")
        if c.in_flight is not None and n == c.in_flight[0]:
            self._latency_ns.append(perf_counter_ns() - c.in_flight[1])
            c.in_flight = None
        c.credit = True
        if c.meter is not None:
            c.wake.set()

    def _set(self, c: _Client, msg):
        ch = self.surface.desk.set(msg["channel"], msg["param"], msg["value"],
                                   source=f"web:{c.number}")
        return {"seq": ch.seq if ch is not None else self.surface.desk.seq}

    def _release(self, c: _Client, msg):
        changes = self.surface.desk.release(msg["channel"], msg.get("what"),
                                            source=f"web:{c.number}")
        return {"seq": changes[-1].seq if changes else self.surface.desk.seq}

    def _resync(self, c: _Client, msg):
        c.resync = True
        c.wake.set()

    def _scenes(self):
        store = self.surface.scenes
        if store is None:
            raise ValueError("scenes are not available in this run")
        return store

    def _scene_list(self, c: _Client, msg):
        return {"scenes": self._scenes().names()}

    async def _scene_save(self, c: _Client, msg):
        name = msg["name"]
        if not isinstance(name, str):
            raise ValueError("name: use text")
        store = self._scenes()
        # a file write: off the loop, so no other client waits for the disk
        await asyncio.get_running_loop().run_in_executor(None, store.save, name)
        names = store.names()
        self._broadcast({"type": "scenes", "scenes": names})
        return {"scenes": names}

    def _scene_recall(self, c: _Client, msg):
        fade = msg.get("fade_s", 0.0)
        if isinstance(fade, bool) or not isinstance(fade, (int, float)) \
                or not math.isfinite(fade) or not 0.0 <= fade <= 60.0:
            raise ValueError(f"fade_s = {fade!r}: use 0 .. 60 seconds")
        if not isinstance(msg["name"], str):
            raise ValueError("name: use text")
        self._scenes().recall(msg["name"], crossfade_s=float(fade))

    _handlers = {"ack": _ack, "set": _set, "release": _release, "resync": _resync,
                 "scene_list": _scene_list, "scene_save": _scene_save,
                 "scene_recall": _scene_recall}

    # ---- to every client ------------------------------------------------------------------
    def _broadcast(self, obj) -> None:
        text = _dumps(obj)
        for c in self.clients:
            c.push(text)

    def _on_changes(self, changes) -> None:
        """Desk listener (on the loop): gather changes for :data:`COALESCE_S`, then send
        them to every client as one message (see :meth:`_flush_changes`)."""
        if not self.clients or not changes:
            return
        if self._batch_from is None:
            self._batch_from = changes[0].seq
            asyncio.get_running_loop().call_later(COALESCE_S, self._flush_changes)
        for ch in changes:
            key = (ch.channel, ch.param)
            self._batch.pop(key, None)  # keep seq order: the newest goes last
            self._batch[key] = ch.to_dict()
        self._batch_to = changes[-1].seq

    def _flush_changes(self) -> None:
        """One ``changes`` message for every change since the last: the sequence numbers
        it covers (``from`` .. ``to``) and the newest change of each parameter among them.
        A flood of moves (thousands a second over OSC) becomes ~100 messages a second,
        each encoded once; the page still sees every seq accounted for, in order."""
        batch, first, last = self._batch, self._batch_from, self._batch_to
        self._batch, self._batch_from = {}, None
        if batch and self.clients:
            self._broadcast({"type": "changes", "from": first, "to": last,
                             "changes": list(batch.values())})

    async def _meter_ticker(self) -> None:
        """Read the meters ~30 times a second; offer the newest frame to every client with
        credit (one encoding for all)."""
        period = 1.0 / self.meter_hz
        last_seq = None
        while True:
            await asyncio.sleep(period)
            meters = self.surface.meters
            if meters is None or not self.clients:
                continue
            try:
                frame = meters.read()
            except Exception as e:  # the audio side went away: keep serving the rest
                log.warning("web: meters unreadable: %s", e)
                continue
            if frame is None or frame.seq == last_seq:
                continue
            last_seq = frame.seq
            self._meter_n += 1
            text = _dumps({"type": "meters", "n": self._meter_n, **frame.to_json()})
            item = (text, self._meter_n, frame.published_ns)
            for c in self.clients:
                c.meter = item
                if c.credit:
                    c.wake.set()

    async def _info_ticker(self) -> None:
        """Explanations and recognised roles change with the policy's hops, not as desk
        changes: compare them a few times a second and send what changed."""
        while True:
            await asyncio.sleep(1.0 / INFO_HZ)
            desk = self.surface.desk
            if not self.clients:
                self._info_sent.clear()
                continue
            for i in range(desk.n_channels):
                rec = desk.recognised[i]
                info = {"type": "info", "channel": i + 1,
                        "explanations": dict(desk.explanations[i]),
                        "recognised_role": rec[0] if rec else None,
                        "role_probability": round(rec[1], 3) if rec else None}
                text = _dumps(info)
                if self._info_sent.get(i) != text:
                    self._info_sent[i] = text
                    for c in self.clients:
                        c.push(text)


def make_server(surface, host: str, port: int) -> WebServer:
    """The web server :func:`edgemix.rt.surface.build_surface` registers."""
    return WebServer(host, port)
