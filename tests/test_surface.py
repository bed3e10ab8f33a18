"""The surface thread: servers start on one loop, desk changes reach them there."""
from __future__ import annotations

import threading

import pytest

from edgemix.rt.desk import Desk
from edgemix.rt.surface import Surface, SurfaceError, is_local, parse_listen
from edgemix.session import SessionError, parse_session


class Toy:
    name = "toy"

    def __init__(self, fail=False):
        self.fail, self.got, self.threads = fail, [], set()
        self.done = threading.Event()

    async def start(self, surface):
        if self.fail:
            raise OSError("address already in use")
        surface.listen(self.on_change)
        return "toy://here"

    def on_change(self, change):
        self.threads.add(threading.current_thread().name)
        self.got.append(change.seq)
        if len(self.got) == 3:
            self.done.set()

    async def stop(self):
        self.stopped = True


def test_servers_start_on_the_surface_thread_and_hear_the_desk():
    d = Desk(2)
    s = Surface(d)
    toy = Toy()
    s.add_server(toy)
    assert s.start() == ["toy://here"]
    try:
        for k in range(3):
            d.set(1, "fader_db", -float(k + 1))
        assert toy.done.wait(5)
    finally:
        s.stop()
    assert toy.got == [1, 2, 3] and toy.threads == {"edgemix-surface"} and toy.stopped
    d.set(1, "fader_db", -9.0)            # no listener left behind
    assert toy.got == [1, 2, 3]


def test_a_server_that_cannot_start_is_one_line():
    s = Surface(Desk(1))
    s.add_server(Toy(fail=True))
    with pytest.raises(SurfaceError, match="address already in use"):
        s.start()


@pytest.mark.parametrize("text, want", [
    ("10024", ("127.0.0.1", 10024)), (9000, ("127.0.0.1", 9000)),
    ("0.0.0.0:10024", ("0.0.0.0", 10024)), (":5000", ("127.0.0.1", 5000)),
    ("[::1]:7000", ("::1", 7000)), ("192.168.1.2", ("192.168.1.2", 10024)),
])
def test_listen_addresses(text, want):
    assert parse_listen(text, 10024) == want


@pytest.mark.parametrize("text", ["70000", "host.example:1", "1.2.3.4:x", True])
def test_bad_listen_addresses(text):
    with pytest.raises(ValueError):
        parse_listen(text, 10024)


def test_control_section():
    s = parse_session({"control": {"osc": 10024, "web": "0.0.0.0:8081",
                                   "osc_allow": ["192.168.1.0/24"]}})
    assert s.control.osc == ("127.0.0.1", 10024) and s.control.web == ("0.0.0.0", 8081)
    assert parse_session({}).control.enabled is False
    for bad in ({"osc": "nowhere:1"}, {"osc_allow": ["x"]}, {"oscc": 1}, {"osc": 1.5}):
        with pytest.raises(SessionError) as e:
            parse_session({"control": bad}, "s.toml")
        assert str(e.value).startswith("s.toml: control.")
    assert is_local("127.0.0.1") and is_local("::1") and is_local("localhost")
    assert not is_local("0.0.0.0") and not is_local("127.0.0.2")  # the tests' stand-in LAN address
