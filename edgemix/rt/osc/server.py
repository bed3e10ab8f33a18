"""The OSC server: the X-Air dialect over UDP on the surface loop (:mod:`edgemix.rt.surface`).

What a client may send (replies go to the sender's address and port, as on an X-Air):

* ``/xinfo``, ``/info``, ``/status``: who we are (an XR18 to X-Air apps);
* ``/xremote``: this client hears every change for 10 s (renew it, as X-Air apps do);
  ``/edgemix/xremote`` also the ``/edgemix/...`` echo in units and the owner changes,
  each batch closed by ``/edgemix/seq ,i N`` (the desk's change number: a client that
  sees a gap missed a datagram and can query again);
* an X-Air parameter address (:mod:`edgemix.rt.osc.xair`) with a value: set it (the
  person's move, through the desk); without a value: the reply is the current value;
* ``/meters ,si <id> [channel]``: meter blobs to ``<id>`` every 50 ms for 10 s, in the
  X-Air format (int32 count, then int16 values of 1/256 dB, little-endian): ``/meters/0``
  one channel (pre-fader, gate and compressor reduction, post-fader...), ``/meters/1``
  all channels (40 values), ``/meters/7`` the gain-sharing gains (16 values);
* ``/-snap/save ,i N``, ``/-snap/load ,i N``, ``/-snap/name ,s``: scenes by number;
* ``/edgemix/...``: what X-Air lacks, in the schema's units (``docs/osc.md`` lists it).

Bad input -- a malformed packet, an unknown address, a wrong type, NaN, out of range -- is
answered with ``/edgemix/error ,ss <address> <message>`` and logged (at most one log line
per client per second); nothing changes.  Each client (address and port) has a token
bucket of ``rate_per_s`` messages per second (a burst of as many); beyond it, messages are
dropped unread and the client hears one error a second.  With an allow-list, packets from
any other address are dropped unanswered (an answer would make us a reflector).
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
import socket
import struct
import time
from collections import OrderedDict

from pythonosc.osc_packet import OscPacket
from pythonosc.parsing import osc_types as T

from edgemix import params as P
from edgemix.rt.desk import GROUPS, DeskError
from edgemix.rt.osc import xair as X
from edgemix.rt.surface import SurfaceError

log = logging.getLogger("edgemix.osc")

#: How long /xremote and /meters subscriptions last (X-Air: 10 s).
SUBSCRIPTION_S = 10.0
#: Meter blobs are sent this often (X-Air: about every 50 ms).
METER_INTERVAL_S = 0.05
#: Most clients remembered (rate buckets); the least recently heard is forgotten first.
MAX_CLIENTS = 256
#: The receive buffer asked for (X-Air apps query hundreds of parameters on connect).
RECEIVE_BUFFER_BYTES = 1 << 20
#: Gain-sharing modes per channel, in the vocabulary of Dugan and console automixers.
AUTOMIX_MODES = ("auto", "manual", "mute")
_CH = re.compile(r"^/ch/(\d\d)/(.+)$")
_HEADAMP = re.compile(r"^/headamp/(\d\d)/gain$")
_SNAP = re.compile(r"^/-?snap/(\d\d)/name$")


_NO_DATA_TAGS = frozenset("TFNI")


def _arg(tag: str, value) -> bytes:
    """One argument's bytes for its type tag (python-osc's writers)."""
    if tag == "i":
        return T.write_int(value)
    if tag == "f":
        return T.write_float(value)
    if tag == "s":
        return T.write_string(value)
    if tag == "b":
        return T.write_blob(bytes(value))
    if tag == "d":
        return T.write_double(value)
    if tag == "h":
        return T.write_int64(value)
    if tag in _NO_DATA_TAGS:
        return b""
    raise ValueError(f"OSC type tag {tag!r} is not used here")


def message(address: str, *args) -> bytes:
    """One OSC message: ints as 'i', floats 'f', text 's', bytes 'b'.  Written with
    python-osc's type writers directly: its message builder parses every datagram it
    builds again, which doubled the cost of an echo."""
    tags = ""
    for a in args:
        tags += "i" if isinstance(a, int) and not isinstance(a, bool) else \
            "f" if isinstance(a, float) else "s" if isinstance(a, str) else \
            "b" if isinstance(a, (bytes, bytearray)) else "?"
    return T.write_string(address) + T.write_string("," + tags) + b"".join(
        _arg(tag, a) for tag, a in zip(tags, args))


def complete(msg) -> bool:
    """True when re-encoding the parsed message gives back its exact bytes: python-osc
    reads a float whose bytes are missing as 0.0, which must not reach a fader."""
    dg = msg.dgram
    try:
        _, i = T.get_string(dg, 0)
        tags, _ = T.get_string(dg, i)
        params = list(msg.params)
        if not tags.startswith(",") or len(tags) - 1 != len(params):
            return False
        body = b"".join(_arg(tag, v) for tag, v in zip(tags[1:], params))
        return T.write_string(msg.address) + T.write_string(tags) + body == dg
    except Exception:
        return False


class _Bucket:
    """A token bucket: ``rate`` messages per second, a burst of ``rate``."""

    __slots__ = ("rate", "tokens", "t", "dropped", "told", "logged", "errors_logged")

    def __init__(self, rate: float):
        self.rate, self.tokens, self.t = rate, rate, time.monotonic()
        self.dropped, self.told, self.logged, self.errors_logged = 0, 0.0, 0.0, 0.0

    def take(self, n: int, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server):
        self.server = server

    def connection_made(self, transport):
        self.server.transport = transport

    def datagram_received(self, data, addr):
        self.server.datagram(data, addr)

    def error_received(self, exc):  # e.g. ICMP port unreachable from a gone client
        pass


class OscServer:
    """The X-Air-dialect OSC server of a :class:`~edgemix.rt.surface.Surface`.

    ``host``/``port``: where to listen (port 0: any free port); ``allow``: addresses or
    networks taken from (empty: anyone who reaches the port); ``rate_per_s``: per client.
    Counters (``received``, ``errors``, ``dropped``, ``refused``) for tests and stats.
    """

    name = "osc"

    def __init__(self, host: str = "127.0.0.1", port: int = 10024, *, allow=(),
                 rate_per_s: float = 2000.0, subscription_s: float = SUBSCRIPTION_S,
                 meter_interval_s: float = METER_INTERVAL_S):
        self.host, self.port = host, int(port)
        self.allow = tuple(ipaddress.ip_network(a, strict=False) for a in allow)
        self.rate_per_s = float(rate_per_s)
        self.subscription_s = float(subscription_s)
        self.meter_interval_s = float(meter_interval_s)
        self.transport = None
        self.received = self.errors = self.dropped = self.refused = 0
        self._clients: OrderedDict = OrderedDict()
        self._xremote: dict = {}            # addr -> (expiry, with /edgemix echo)
        self._meters: dict = {}             # (addr, id) -> (expiry, meter no., arg)
        self._refused_logged: set = set()
        self._colour: dict = {}             # channel -> (X-Air index, hex) last set
        self._snap_name = ""
        self._meter_task = None

    # ---- surface --------------------------------------------------------------------------
    async def start(self, surface) -> str:
        self.surface = surface
        self.desk = surface.desk
        n_aux = getattr(surface, "n_aux", 2)
        self.n_aux = n_aux
        self.channel_bindings = X.channel_bindings(n_aux)
        # the reverse maps, for the echo: schema name -> X-Air address tails
        self._ch_addr: dict[str, list] = {}
        for tail, b in self.channel_bindings.items():
            if b.param is not None:
                self._ch_addr.setdefault(b.param, []).append(tail)
        self._ms_addr: dict[str, list] = {}
        for address, b in X.MASTER_BINDINGS.items():
            if b.param is not None:
                self._ms_addr.setdefault(b.param, []).append(address)
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: _Protocol(self),
                                                local_addr=(self.host, self.port))
        except OSError as e:
            raise SurfaceError(f"OSC: cannot listen on {self.host}:{self.port} "
                               f"({e.strerror or e}): choose another port with "
                               "--osc [ADDR:]PORT") from None
        self.port = self.transport.get_extra_info("sockname")[1]
        sock = self.transport.get_extra_info("socket")
        try:  # room for an app's burst of queries on connect (the kernel may cap it)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        except (OSError, AttributeError):
            pass
        surface.listen(self._on_changes, batch=True)
        self._meter_task = loop.create_task(self._meter_loop())
        from edgemix.rt.surface import is_local
        if not is_local(self.host) and not self.allow:
            log.warning("OSC on %s takes every write from anyone who reaches port %d (X-Air "
                        "apps send no token): limit it with [control] osc_allow = "
                        "[\"192.168.1.0/24\"]", self.host, self.port)
        return f"osc://{self.host}:{self.port} (UDP, Behringer X-Air dialect)"

    def stats(self) -> dict:
        """Counters: messages handled, error replies, dropped by the rate limit, refused by
        the allow-list; clients heard."""
        return {"received": self.received, "errors": self.errors, "dropped": self.dropped,
                "refused": self.refused, "clients": len(self._clients)}

    async def stop(self) -> None:
        if self._meter_task is not None:
            self._meter_task.cancel()
        if self.transport is not None:
            self.transport.close()

    # ---- receiving -------------------------------------------------------------------------
    def datagram(self, data: bytes, addr) -> None:
        addr = addr[:2]
        if self.allow and not self._allowed(addr[0]):
            self.refused += 1
            if addr[0] not in self._refused_logged and len(self._refused_logged) < 1024:
                self._refused_logged.add(addr[0])
                log.warning("OSC from %s refused: not in control.osc_allow", addr[0])
            return
        now = time.monotonic()
        bucket = self._bucket(addr)
        if not bucket.take(1, now):
            self.dropped += 1
            bucket.dropped += 1
            if now - bucket.told >= 1.0:
                bucket.told = now
                self._send(addr, message("/edgemix/error", "", (
                    f"rate limit: more than {self.rate_per_s:g} messages/s from this "
                    f"client, {bucket.dropped} dropped so far")))
            if now - bucket.logged >= 10.0:
                bucket.logged = now
                log.warning("OSC client %s:%d over the rate limit (%g/s): %d dropped",
                            addr[0], addr[1], self.rate_per_s, bucket.dropped)
            return
        self.received += 1
        try:
            messages = [m.message for m in OscPacket(data).messages]
            for m in messages:
                if not complete(m):
                    raise ValueError(f"{m.address}: its arguments are cut short or "
                                     "do not match its type tags")
        except Exception as e:  # python-osc's ParseError, or worse on garbage
            self._error(addr, "", f"malformed OSC packet ({e.__class__.__name__}: "
                                  f"{str(e)[:80]})", bucket)
            return
        for msg in messages:
            try:
                self._handle(msg.address, list(msg.params), addr)
            except (X.XAirError, DeskError, ValueError) as e:
                self._error(addr, msg.address, str(e), bucket)
            except Exception as e:  # never let a client take the server down
                log.exception("OSC %s from %s failed", msg.address, addr)
                self._error(addr, msg.address, f"internal error ({e.__class__.__name__})",
                            bucket)

    def _allowed(self, ip: str) -> bool:
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(a in net for net in self.allow)

    def _bucket(self, addr) -> _Bucket:
        b = self._clients.get(addr)
        if b is None:
            b = self._clients[addr] = _Bucket(self.rate_per_s)
            if len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(addr)
        return b

    def _error(self, addr, address: str, text: str, bucket=None) -> None:
        self.errors += 1
        self._send(addr, message("/edgemix/error", address, text))
        now = time.monotonic()
        if bucket is None or now - bucket.errors_logged >= 1.0:
            if bucket is not None:
                bucket.errors_logged = now
            log.warning("OSC %s from %s:%d: %s", address or "(packet)", addr[0], addr[1], text)

    def _send(self, addr, dgram: bytes) -> None:
        if self.transport is not None:
            self.transport.sendto(dgram, addr)

    # ---- dispatch --------------------------------------------------------------------------
    def _handle(self, address: str, args: list, addr) -> None:
        if len(args) > 1 and not address.startswith(("/meters", "/edgemix/scene")):
            raise X.XAirError(f"{address}: send one value (or none to ask for it)")
        arg = args[0] if args else None
        source = f"osc:{addr[0]}:{addr[1]}"
        if address in ("/xinfo", "/info", "/status"):
            return self._info(address, addr)
        if address == "/xremote":
            self._xremote[addr] = (time.monotonic() + self.subscription_s, False)
            return
        if address == "/meters":
            return self._subscribe_meters(args, addr)
        m = _CH.match(address)
        if m:
            return self._channel(int(m.group(1)), m.group(2), address, args, arg, addr, source)
        m = _HEADAMP.match(address)
        if m:
            binding = X.Binding("trim_db", X.LinF(-12.0, 60.0, 0.5))
            return self._bound(int(m.group(1)), binding, address, args, arg, addr, source)
        if address in X.MASTER_BINDINGS:
            return self._bound("master", X.MASTER_BINDINGS[address], address, args, arg,
                               addr, source)
        if address == "/lr/config/name":
            if args:
                raise X.XAirError(f"{address}: the main mix is called LR here")
            return self._send(addr, message(address, "LR"))
        if address.startswith(("/-snap/", "/snap/")):
            return self._snapshot(address, args, arg, addr)
        if address.startswith("/edgemix/"):
            return self._edgemix(address, args, arg, addr, source)
        raise X.XAirError(f"{address}: unknown address (see docs/osc.md for what this "
                          "console answers)")

    def _info(self, address: str, addr) -> None:
        host = self.transport.get_extra_info("sockname")[0] if self.transport else self.host
        if host in ("0.0.0.0", "::"):
            host = addr[0]
        name = "edgemix"
        if address == "/xinfo":
            self._send(addr, message("/xinfo", host, name, X.MODEL, X.FIRMWARE))
        elif address == "/info":
            self._send(addr, message("/info", X.SERVER_VERSION, name, X.MODEL, X.FIRMWARE))
        else:
            self._send(addr, message("/status", "active", host, name))

    def _channel(self, ch: int, tail: str, address, args, arg, addr, source) -> None:
        if not 1 <= ch <= self.desk.n_channels:
            raise X.XAirError(f"{address}: this console has channels 01 .. "
                              f"{self.desk.n_channels:02d}")
        if tail == "config/name":
            if not args:
                return self._send(addr, message(address, self.desk.get(ch, "name")))
            if not isinstance(arg, str):
                raise X.XAirError(f"{address}: expected a string")
            self.desk.set(ch, "name", arg, source=source)
            return
        if tail == "config/color":
            if not args:
                return self._send(addr, message(address, self._colour_index(ch)))
            i = X.Enum(tuple(range(16))).decode(arg, address)
            hex_ = X.xair_to_hex(int(i))
            self._colour[ch] = (int(i), hex_)
            self.desk.set(ch, "colour", hex_, source=source)
            return
        binding = self.channel_bindings.get(tail)
        if binding is None:
            raise X.XAirError(f"{address}: unknown address (see docs/osc.md for what this "
                              "console answers)")
        self._bound(ch, binding, address, args, arg, addr, source)

    def _colour_index(self, ch: int) -> int:
        hex_ = self.desk.get(ch, "colour")
        last = self._colour.get(ch)
        if last is not None and last[1] == hex_:
            return last[0]
        return X.hex_to_xair(hex_, self.desk.get(ch, "role"))

    def _bound(self, ch, binding: X.Binding, address, args, arg, addr, source) -> None:
        if ch != "master" and not 1 <= ch <= self.desk.n_channels:
            raise X.XAirError(f"{address}: this console has channels 01 .. "
                              f"{self.desk.n_channels:02d}")
        if not args:
            value = None if binding.param is None else self.desk.get(ch, binding.param)
            return self._send(addr, message(address, binding.to_wire(value)))
        value = binding.to_desk(arg, address)
        if value is None:
            return
        self.desk.set(ch, binding.param, value, source=source)
        # a value our console cannot reach was clamped: tell the sender where it landed
        sent = binding.codec.encode(binding.codec.decode(arg, address))
        now = binding.to_wire(self.desk.get(ch, binding.param))
        if now != sent:
            self._send(addr, message(address, now))

    # ---- /edgemix ------------------------------------------------------------------------
    def _edgemix(self, address: str, args, arg, addr, source) -> None:
        parts = address.split("/")[2:]
        d = self.desk
        if parts == ["xremote"]:
            self._xremote[addr] = (time.monotonic() + self.subscription_s, True)
            return
        if parts == ["seq"]:
            if args:
                raise X.XAirError(f"{address}: read-only (the desk's last change number)")
            return self._send(addr, message(address, int(d.seq)))
        if parts[0] == "scene":
            return self._scene(parts[1:], address, args, addr)
        if parts[0] == "automix" and len(parts) == 2:
            names = {"nom": "automix_max_open", "last_hold": "automix_last_hold_on",
                     "detector_ms": "automix_detector_ms"}
            if parts[1] not in names:
                raise X.XAirError(f"{address}: use /edgemix/automix/nom, last_hold or "
                                  "detector_ms")
            return self._units(address, "master", names[parts[1]], args, arg, addr, source,
                               integer=parts[1] != "detector_ms")
        if parts == ["master", "auto"]:
            if not args:
                mine = [s.name for s in P.MASTER_PARAMS if d.owner("master", s.name) == "person"]
                return self._send(addr, message(address, ",".join(mine)))
            what = self._text(arg, address)
            d.release("master", None if what == "all" else what, source=source)
            return
        if parts[0] == "master" and len(parts) == 3 and parts[1] == "owner":
            if args:
                raise X.XAirError(f"{address}: the owner is read-only")
            return self._send(addr, message(address, d.owner("master", parts[2])))
        if parts[0] == "master" and len(parts) == 2:
            return self._units(address, "master", parts[1], args, arg, addr, source)
        if parts[0] == "meters" and parts[1:] == ["automix"]:
            frame = self._meter_frame()
            gains = frame.channel["automix_gain_db"] if frame else (0.0,) * d.n_channels
            return self._send(addr, message(address, *[float(g) for g in gains]))
        if parts[0] == "ch" and len(parts) >= 3 and parts[1].isdigit():
            ch = int(parts[1])
            d._channel(ch)  # DeskError for a channel that is not there
            rest = parts[2:]
            if len(rest) == 1 and rest[0] == "auto":
                if not args:
                    mine = [s.name for s in P.CHANNEL_PARAMS if d.owner(ch, s.name) == "person"]
                    return self._send(addr, message(address, ",".join(mine)))
                what = self._text(arg, address)
                d.release(ch, None if what == "all" else what, source=source)
                return
            if len(rest) == 2 and rest[0] == "auto":
                if rest[1] not in GROUPS:
                    raise X.XAirError(f"{address}: no group {rest[1]!r}; use one of "
                                      + ", ".join(GROUPS))
                if not args:
                    auto = all(d.owner(ch, n) == "auto" for n in GROUPS[rest[1]])
                    return self._send(addr, message(address, int(auto)))
                d.release(ch, rest[1], source=source)
                return
            if len(rest) == 2 and rest[0] == "owner":
                if args:
                    raise X.XAirError(f"{address}: the owner is read-only (set the value, "
                                      "or hand it back with /edgemix/ch/NN/auto)")
                return self._send(addr, message(address, d.owner(ch, rest[1])))
            if len(rest) == 2 and rest[0] == "explain":
                if args:
                    raise X.XAirError(f"{address}: explanations are read-only")
                d._channel_index(rest[1])
                return self._send(addr, message(address, self._explain(ch, rest[1])))
            if rest == ["recognised_role"]:
                if args:
                    raise X.XAirError(f"{address}: read-only (set /edgemix/ch/NN/role)")
                rec = d.snapshot()["channels"][ch - 1]
                return self._send(addr, message(address, rec["recognised_role"] or "",
                                                float(rec["role_probability"] or 0.0)))
            if rest == ["automix", "mode"]:
                return self._automix_mode(ch, address, args, arg, addr, source)
            if rest == ["automix", "weight_db"]:
                return self._units(address, ch, "automix_weight_db", args, arg, addr, source)
            if len(rest) == 1:
                return self._units(address, ch, rest[0], args, arg, addr, source)
        raise X.XAirError(f"{address}: unknown address (see docs/osc.md for /edgemix/...)")

    def _explain(self, ch: int, param: str) -> str:
        """The policy's sentence for the parameter's last automatic move (the desk keeps
        them per hop), else who holds it."""
        why = self.desk.snapshot()["channels"][ch - 1]["explanations"].get(param)
        if why:
            return why
        owner = self.desk.owner(ch, param)
        return "set by a person" if owner == "person" else "not moved by the automation"

    @staticmethod
    def _text(arg, address) -> str:
        if not isinstance(arg, str):
            raise X.XAirError(f"{address}: expected a string")
        return arg

    def _units(self, address, ch, param, args, arg, addr, source, integer=False) -> None:
        d = self.desk
        if not args:
            v = d.get(ch, param)
            if isinstance(v, str):
                return self._send(addr, message(address, v))
            return self._send(addr, message(address, int(v) if integer else float(v)))
        d.set(ch, param, arg, source=source)

    def _automix_mode(self, ch, address, args, arg, addr, source) -> None:
        d = self.desk
        if not args:
            mode = "mute" if d.get(ch, "mute_on") >= 0.5 else \
                "auto" if d.get(ch, "automix_on") >= 0.5 else "manual"
            return self._send(addr, message(address, mode))
        if isinstance(arg, int) and not isinstance(arg, bool) and 0 <= arg < 3:
            arg = AUTOMIX_MODES[arg]
        if arg not in AUTOMIX_MODES:
            raise X.XAirError(f"{address}: {arg!r}: use auto, manual or mute (or 0, 1, 2)")
        if arg == "mute":
            d.set(ch, "mute_on", 1.0, source=source)
        else:
            d.set_many([(ch, "automix_on", 1.0 if arg == "auto" else 0.0),
                        (ch, "mute_on", 0.0)], source=source)

    # ---- scenes ----------------------------------------------------------------------------
    def _scene(self, what, address, args, addr) -> None:
        store = self.surface.scenes
        if store is None:
            raise X.XAirError(f"{address}: scenes are not available in this run")
        if what == ["list"]:
            return self._send(addr, message(address, *store.names()))
        if what == ["save"] and len(args) == 1:
            path = store.save(self._text(args[0], address))
            return self._send(addr, message(address, args[0], str(path)))
        if what == ["recall"] and len(args) in (1, 2):
            fade = args[1] if len(args) == 2 else 0.0
            if isinstance(fade, bool) or not isinstance(fade, (int, float)) \
                    or not math.isfinite(fade) or not 0.0 <= fade <= 600.0:
                raise X.XAirError(f"{address}: crossfade {fade!r}: use 0 .. 600 seconds")
            store.recall(self._text(args[0], address), crossfade_s=float(fade))
            return self._send(addr, message(address, args[0], float(fade)))
        raise X.XAirError(f"{address}: use /edgemix/scene/save ,s NAME, "
                          "/edgemix/scene/recall ,s[f] NAME [CROSSFADE_S] or "
                          "/edgemix/scene/list")

    def _snapshot(self, address, args, arg, addr) -> None:
        """X-Air's snapshots 1..64 as scenes named ``01`` .. ``64``."""
        store = self.surface.scenes
        if store is None:
            raise X.XAirError(f"{address}: scenes are not available in this run")
        tail = address.split("/", 2)[2]
        if tail == "name":
            if not args:
                return self._send(addr, message(address, self._snap_name))
            self._snap_name = self._text(arg, address)[:31]
            return
        if tail in ("load", "save", "delete"):
            n = X.Enum(tuple(range(65))).decode(arg, address) if args else None
            if n is None or n < 1:
                raise X.XAirError(f"{address}: give the snapshot number 1 .. 64")
            name = f"{int(n):02d}"
            if tail == "save":
                store.save(name, title=self._snap_name or f"snapshot {name}")
            elif tail == "load":
                store.recall(name)
            else:
                store.delete(name)
            return
        m = _SNAP.match(address)
        if m and not args:
            return self._send(addr, message(address, store.title(m.group(1)) or ""))
        raise X.XAirError(f"{address}: use /-snap/save, /-snap/load, /-snap/delete ,i N "
                          "or /-snap/name ,s NAME")

    # ---- the echo ----------------------------------------------------------------------------
    def _on_changes(self, changes) -> None:
        """Desk changes (on the loop): to every /xremote client still subscribed, except
        the client that made the change."""
        if not self._xremote:
            return
        now = time.monotonic()
        for a in [a for a, (t, _) in self._xremote.items() if t < now]:
            del self._xremote[a]
        if not self._xremote:
            return
        want_units = any(u for _, u in self._xremote.values())
        xair, units = [], []
        seq = message("/edgemix/seq", int(changes[-1].seq))  # the batch's last change
        for c in changes:
            xair.extend((c.source, dg) for dg in self._xair_echo(c))
            if want_units:
                units.append((c.source, self._units_echo(c)))
        for client, (_, with_units) in self._xremote.items():
            me = f"osc:{client[0]}:{client[1]}"
            for src, dg in xair:
                if src != me:
                    self._send(client, dg)
            if with_units:
                for src, dgs in units:
                    for dg in dgs:
                        self._send(client, dg)
                self._send(client, seq)

    def _xair_echo(self, c) -> list[bytes]:
        if c.channel == "master":
            return [message(a, X.MASTER_BINDINGS[a].to_wire(c.value))
                    for a in self._ms_addr.get(c.param, ())]
        ch = f"/ch/{c.channel:02d}/"
        if c.param == "name":
            return [message(ch + "config/name", c.value)]
        if c.param == "colour":
            return [message(ch + "config/color", self._colour_index(c.channel))]
        if c.param not in self._ch_addr:
            return []
        out = [message(ch + tail, self.channel_bindings[tail].to_wire(c.value))
               for tail in self._ch_addr[c.param]]
        if c.param == "trim_db":
            out.append(message(f"/headamp/{c.channel:02d}/gain",
                               X.LinF(-12.0, 60.0, 0.5).encode(c.value)))
        return out

    @staticmethod
    def _units_echo(c) -> list[bytes]:
        base = "/edgemix/master/" if c.channel == "master" else f"/edgemix/ch/{c.channel:02d}/"
        v = c.value if isinstance(c.value, str) else float(c.value)
        out = [message(base + c.param, v)]
        if c.channel != "master" and c.param in P.CHANNEL_SPECS:
            out.append(message(base + "owner/" + c.param, c.owner))
        return out

    # ---- meters ----------------------------------------------------------------------------
    def _subscribe_meters(self, args, addr) -> None:
        if not args or not isinstance(args[0], str):
            raise X.XAirError("/meters: send ,si \"/meters/N\" [channel]")
        ident = args[0]
        m = re.fullmatch(r"/meters/(\d+)", ident)
        if not m or int(m.group(1)) not in (0, 1, 7):
            raise X.XAirError(f"/meters: {ident!r}: this console meters /meters/0 (one "
                              "channel), /meters/1 (all channels) and /meters/7 (gain sharing)")
        extra = args[1] if len(args) > 1 else 0
        if int(m.group(1)) == 0:
            if isinstance(extra, bool) or not isinstance(extra, int) or \
                    not 0 <= extra < self.desk.n_channels:
                raise X.XAirError(f"/meters/0: give a channel 0 .. {self.desk.n_channels - 1}")
        self._meters[(addr, ident)] = (time.monotonic() + self.subscription_s,
                                       int(m.group(1)), extra)

    def _meter_frame(self):
        meters = getattr(self.surface, "meters", None)
        if meters is None:
            return None
        try:
            return meters.read()
        except Exception:
            return None

    async def _meter_loop(self) -> None:
        while True:
            await asyncio.sleep(self.meter_interval_s)
            if not self._meters:
                continue
            now = time.monotonic()
            for k in [k for k, (t, _, _) in self._meters.items() if t < now]:
                del self._meters[k]
            frame = self._meter_frame()
            if frame is None:
                continue
            for (addr, ident), (_, no, extra) in list(self._meters.items()):
                self._send(addr, message(ident, meter_blob(self.meter_values(frame, no, extra))))

    def meter_values(self, frame, no: int, extra: int = 0) -> list[float]:
        """The dB values of X-Air meter ``no`` from a :class:`~edgemix.rt.meter_shm.
        MeterFrame` (silence where this console has no such meter)."""
        ch = frame.channel
        n = self.desk.n_channels
        off = -math.inf
        cp, _ = self.desk.targets()
        post = [ch["peak_db"][c] + ch["automix_gain_db"][c] + cp[c, P.CH.fader_db]
                if cp[c, P.CH.mute_on] < 0.5 and cp[c, P.CH.fader_db] > P.OFF_DB else off
                for c in range(n)]
        if no == 0:
            c = extra
            # pre-fader L/R, gate and compressor reduction, post-fader L/R, gate/comp key
            gr = -ch["gain_reduction_db"][c]
            return [ch["peak_db"][c], ch["peak_db"][c], 0.0, gr, post[c], post[c],
                    ch["peak_db"][c], ch["peak_db"][c]]
        if no == 7:
            return [ch["automix_gain_db"][c] if c < n else off for c in range(16)]
        # /meters/1: 16 channels (pre-fader), 5 x 2 returns, 6 buses, 4 FX sends, main L/R
        # (post), 2 monitor
        vals = [ch["peak_db"][c] if c < n else off for c in range(16)]
        vals += [off] * (10 + 6 + 4)
        vals += [frame.master["peak_l_db"], frame.master["peak_r_db"]]
        vals += [off, off]
        return vals


def meter_blob(values_db) -> bytes:
    """An X-Air meter blob: int32 count, then int16 values in 1/256 dB, little-endian."""
    vals = [X.meter_value(v) for v in values_db]
    return struct.pack(f"<i{len(vals)}h", len(vals), *vals)
