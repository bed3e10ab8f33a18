"""The OSC surface in the X-Air dialect, in-process: values, queries, echo, meters, bad input.

The end-to-end proof with xair-api against a running ``edgemix run`` is
``tests/test_osc_run.py``."""
from __future__ import annotations

import math
import socket
import struct
import time
import types

import numpy as np
import pytest
from pythonosc.osc_message import OscMessage

from edgemix import params as P
from edgemix.rt.desk import Desk
from edgemix.rt.osc import xair as X
from edgemix.rt.osc.server import OscServer, message
from edgemix.rt.surface import Surface


class Client:
    """A bare UDP OSC client (python-osc for the encoding)."""

    def __init__(self, port):
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2.0)

    def send(self, address, *args):
        self.sock.sendto(message(address, *args), ("127.0.0.1", self.port))

    def raw(self, data: bytes):
        self.sock.sendto(data, ("127.0.0.1", self.port))

    def recv(self, timeout=2.0):
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(65536)
        m = OscMessage(data)
        return m.address, list(m.params)

    def ask(self, address, *args):
        self.send(address, *args)
        return self.recv()

    def sync(self):
        """Everything sent before has been handled (UDP from one socket, one loop)."""
        assert self.ask("/xinfo")[0] == "/xinfo"

    def drain(self, timeout=0.2):
        out = []
        try:
            while True:
                out.append(self.recv(timeout))
        except socket.timeout:
            return out


class FakeMeters:
    def __init__(self, n):
        self.frame = types.SimpleNamespace(
            channel={"peak_db": tuple(-10.0 - c for c in range(n)),
                     "rms_db": (-20.0,) * n, "gain_reduction_db": (3.0,) * n,
                     "automix_gain_db": tuple(-1.5 * c for c in range(n))},
            master={"peak_l_db": -6.0, "peak_r_db": -float("inf")})

    def read(self):
        return self.frame


@pytest.fixture()
def osc():
    d = Desk(4, names=["Kick", "Snare", "Bass", "Vox"],
             roles=["kick", "snare", "bass", "lead_vocal"])
    s = Surface(d, meters=FakeMeters(4))
    s.n_aux = 2
    server = OscServer("127.0.0.1", 0, rate_per_s=500.0, meter_interval_s=0.02)
    s.add_server(server)
    s.start()
    yield d, server, Client(server.port)
    s.stop()


def test_fader_law_is_the_xair_grid():
    grid = [k / 1023 for k in range(1024)]
    assert all(X.db_to_fader(X.fader_to_db(f)) == f for f in grid)
    assert X.fader_to_db(0.0) == -90.0 and X.fader_to_db(1.0) == 10.0
    assert X.db_to_fader(0.0) == 767 / 1023            # 0 dB sits just below 0.75
    assert X.fader_to_db(0.5) == pytest.approx(-10.0, abs=0.03)
    # the third-party client's own converter reads our grid as we do (to its 0.1 dB)
    from xair_api import util
    read = util.db_from(lambda f: f)
    assert all(read(f) == round(X.fader_to_db(f), 1) or abs(read(f) - X.fader_to_db(f)) < 0.051
               for f in grid)


@pytest.mark.parametrize("codec", [X.LinF(-100, 100, 2), X.LinF(-15, 15, 0.25),
                                   X.LogF(20, 20000, 201), X.LogF(10, 0.3, 72)])
def test_grids_round_trip(codec):
    n = codec.n if isinstance(codec, X.LinF) else codec.steps - 1
    for k in range(n + 1):
        f = k / n
        assert codec.encode(codec.decode(f, "t")) == pytest.approx(f, abs=1e-12)


def test_info_status_and_queries(osc):
    d, server, c = osc
    addr, args = c.ask("/xinfo")
    assert addr == "/xinfo" and args[2] == "XR18" and len(args) == 4
    assert c.ask("/status")[1][0] == "active"
    assert c.ask("/ch/01/config/name") == ("/ch/01/config/name", ["Kick"])
    assert c.ask("/ch/01/mix/fader") == ("/ch/01/mix/fader", [pytest.approx(767 / 1023)])
    assert c.ask("/ch/02/mix/on") == ("/ch/02/mix/on", [1])
    assert c.ask("/ch/03/mix/pan")[1] == [pytest.approx(0.5)]
    assert c.ask("/ch/04/eq/3/type")[1] == [2]                       # PEQ
    from edgemix.roles import xair_colour_of
    assert c.ask("/ch/01/config/color")[1] == [xair_colour_of("kick")]
    # every bound address answers with its type
    for tail, b in server.channel_bindings.items():
        addr, args = c.ask(f"/ch/02/{tail}")
        assert addr == f"/ch/02/{tail}" and len(args) == 1
        assert isinstance(args[0], int if b.codec.tag == "i" else float)


def test_sets_go_through_the_desk_as_the_persons(osc):
    d, server, c = osc
    c.send("/ch/01/mix/fader", 0.6)
    c.send("/ch/02/mix/on", 0)
    c.send("/ch/03/mix/pan", 0.25)
    c.send("/ch/04/config/name", "Lead")
    c.send("/ch/01/preamp/hpf", 0.5)
    c.send("/ch/01/dyn/ratio", 6)
    c.send("/ch/01/gate/mode", 3)
    c.send("/headamp/02/gain", 0.5)
    c.send("/lr/mix/fader", 0.5)
    c.send("/ch/01/mix/07/level", 0.75)
    c.send("/ch/01/automix/group", 1)
    c.send("/ch/01/config/color", 12)
    assert c.ask("/ch/01/mix/fader")[1] == [pytest.approx(614 / 1023)]
    assert d.get(1, "fader_db") == pytest.approx(X.fader_to_db(0.6))
    assert d.owner(1, "fader_db") == "person"
    assert d.get(2, "mute_on") == 1.0
    assert d.get(3, "pan") == pytest.approx(-0.5)
    assert d.get(4, "name") == "Lead"
    assert d.get(1, "hpf_hz") == pytest.approx(20 * math.sqrt(20))
    assert d.get(1, "comp_ratio") == 4.0 and d.get(1, "gate_ratio") == 100.0
    assert d.get(2, "trim_db") == 24.0
    assert d.get("master", "master_fader_db") == pytest.approx(X.fader_to_db(0.5))
    assert d.get(1, "aux1_send_db") == pytest.approx(X.fader_to_db(0.75))
    assert d.get(1, "automix_on") == 1.0
    assert c.ask("/ch/01/config/color")[1] == [12]
    # units under /edgemix, and the owner
    assert c.ask("/edgemix/ch/03/pan")[1] == [pytest.approx(-0.5)]
    c.send("/edgemix/ch/03/hpf_hz", 123.0)
    c.sync()
    assert d.get(3, "hpf_hz") == 123.0
    assert c.ask("/edgemix/ch/03/owner/hpf_hz")[1] == ["person"]
    c.send("/edgemix/ch/03/auto", "hpf")
    c.sync()
    assert c.ask("/edgemix/ch/03/owner/hpf_hz")[1] == ["auto"]
    assert c.ask("/edgemix/ch/03/auto/hpf")[1] == [1]
    assert c.ask("/edgemix/master/owner/master_fader_db")[1] == ["person"]
    c.send("/edgemix/master/auto", "all")
    assert c.ask("/edgemix/master/owner/master_fader_db")[1] == ["auto"]


def test_a_value_beyond_our_console_is_clamped_and_the_sender_told(osc):
    d, server, c = osc
    c.send("/ch/01/eq/1/f", 1.0)                                      # 20 kHz on a low shelf
    addr, args = c.recv()
    assert addr == "/ch/01/eq/1/f" and args[0] < 1.0
    assert d.get(1, "eq1_hz") == P.CHANNEL_SPECS["eq1_hz"].max


def test_gain_sharing_controls(osc):
    d, server, c = osc
    c.send("/edgemix/ch/02/automix/mode", "auto")
    c.sync()
    assert c.ask("/edgemix/ch/02/automix/mode")[1] == ["auto"]
    assert d.get(2, "automix_on") == 1.0
    c.send("/edgemix/ch/02/automix/mode", "mute")
    assert c.ask("/edgemix/ch/02/automix/mode")[1] == ["mute"] and d.get(2, "mute_on") == 1.0
    c.send("/edgemix/ch/02/automix/mode", 1)
    assert c.ask("/edgemix/ch/02/automix/mode")[1] == ["manual"]
    c.send("/edgemix/ch/02/automix/weight_db", 6.0)
    c.send("/edgemix/automix/nom", 2)
    c.send("/edgemix/automix/last_hold", 0)
    c.sync()
    assert c.ask("/edgemix/automix/nom")[1] == [2]
    assert d.get("master", "automix_last_hold_on") == 0.0
    assert d.get(2, "automix_weight_db") == 6.0
    addr, gains = c.ask("/edgemix/meters/automix")
    assert gains == [pytest.approx(-1.5 * k) for k in range(4)]


def test_xremote_echo_reaches_the_others_not_the_sender(osc):
    d, server, c = osc
    other = Client(server.port)
    other.send("/xremote")
    c.send("/xremote")
    time.sleep(0.1)
    c.send("/ch/02/mix/fader", 0.5)
    got = other.drain()
    assert ("/ch/02/mix/fader", [pytest.approx(512 / 1023)]) in got
    assert not [m for m in c.drain() if m[0] == "/ch/02/mix/fader"]
    d.set(1, "pan", 0.5, source="web")                              # another surface
    assert ("/ch/01/mix/pan", [pytest.approx(0.75)]) in other.drain()
    units = Client(server.port)
    units.send("/edgemix/xremote")
    units.sync()
    d.set(2, "hpf_hz", 99.0, source="web")
    got = units.drain()
    assert ("/edgemix/ch/02/hpf_hz", [pytest.approx(99.0)]) in got
    assert ("/edgemix/ch/02/owner/hpf_hz", ["person"]) in got
    assert got[-1] == ("/edgemix/seq", [d.seq]) and units.ask("/edgemix/seq")[1] == [d.seq]


def test_meter_blobs_in_the_xair_format(osc):
    d, server, c = osc
    c.send("/meters", "/meters/1")
    addr, (blob,) = c.recv()
    assert addr == "/meters/1"
    n = struct.unpack("<i", blob[:4])[0]
    vals = struct.unpack(f"<{n}h", blob[4:])
    assert n == 40 and vals[0] == -10 * 256 and vals[3] == -13 * 256 and vals[4] == -32768
    assert vals[36] == -6 * 256 and vals[37] == -32768
    c.send("/meters", "/meters/7")
    seven = [m for m in (c.recv() for _ in range(20)) if m[0] == "/meters/7"]
    n7 = struct.unpack("<i", seven[0][1][0][:4])[0]
    assert n7 == 16 and struct.unpack("<2h", seven[0][1][0][4:8]) == (0, -384)


@pytest.mark.parametrize("packet", [
    message("/ch/01/mix/fader", 1.5), message("/ch/01/mix/fader", float("nan")),
    message("/ch/01/mix/fader", "loud"), message("/ch/01/mix/on", 2),
    message("/ch/09/mix/fader", 0.5), message("/ch/01/mix/fadr", 0.5),
    message("/nowhere"), message("/ch/01/gate/mode", 4), message("/ch/01/eq/2/type", 1),
    message("/edgemix/ch/01/fader_db", 30.0), message("/edgemix/ch/01/fader_db", "x"),
    message("/edgemix/ch/01/pan", float("inf")), message("/lr/mix/on", 0),
    message("/ch/01/mix/fader", 0.5, 0.6), message("/edgemix/ch/01/automix/mode", "loud"),
    message("/meters", "/meters/4"), message("/edgemix/scene/recall", "x"),
    b"\x00\x01garbage", b"/ch/01/mix/fader\x00\x00\x00\x00,f\x00", b"#bundle\x00\x00",
    b"/ch/01/mix/fader\x00\x00\x00\x00,f\x00\x00\x00",                # the float cut off
    b"/ch/01/mix/fader\x00\x00\x00\x00,ff\x00?\x00\x00\x00",
])
def test_bad_input_gets_an_error_reply_and_changes_nothing(osc, packet):
    d, server, c = osc
    before = d.snapshot()
    c.raw(packet)
    addr, args = c.recv()
    assert addr == "/edgemix/error" and len(args) == 2 and args[1]
    assert d.snapshot() == before
    cp, mp = d.targets()
    assert np.isfinite(cp).all() and np.isfinite(mp).all()
    assert c.ask("/xinfo")[0] == "/xinfo"                            # still serving


def test_a_flood_is_rate_limited_and_the_server_keeps_serving():
    d = Desk(2)
    s = Surface(d)
    server = OscServer("127.0.0.1", 0, rate_per_s=50.0)
    s.add_server(server)
    s.start()
    try:
        c = Client(server.port)
        before = d.snapshot()
        for _ in range(3000):
            c.send("/ch/01/mix/fader", float("nan"))
        got = c.drain(0.5)
        assert any(a == "/edgemix/error" and "rate limit" in args[1] for a, args in got)
        assert server.dropped > 0 and server.errors <= 200
        assert d.snapshot() == before
        other = Client(server.port)                                   # others unaffected
        assert other.ask("/xinfo")[0] == "/xinfo"
    finally:
        s.stop()


def test_allow_list_refuses_other_clients():
    d = Desk(1)
    s = Surface(d)
    server = OscServer("127.0.0.1", 0, allow=["10.1.2.0/24"])
    s.add_server(server)
    s.start()
    try:
        c = Client(server.port)
        c.send("/xinfo")
        with pytest.raises(socket.timeout):
            c.recv(0.3)
        assert server.refused == 1
    finally:
        s.stop()


def test_a_bundle_is_handled_message_by_message(osc):
    from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
    from pythonosc.osc_message_builder import OscMessageBuilder
    d, server, c = osc
    b = OscBundleBuilder(IMMEDIATELY)
    for address, value in (("/ch/01/mix/fader", 0.5), ("/ch/02/mix/on", 0)):
        m = OscMessageBuilder(address=address)
        m.add_arg(value)
        b.add_content(m.build())
    c.raw(b.build().dgram)
    c.sync()
    assert d.get(1, "fader_db") == pytest.approx(X.fader_to_db(0.5))
    assert d.get(2, "mute_on") == 1.0
