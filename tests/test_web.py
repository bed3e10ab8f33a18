"""The web control surface in a real headless browser (Debian's chromium through
selenium and chromium-driver) against the real server (issue 12, items 3 and 6): one strip
per channel, changes both ways, meters moving, reconnection with a full snapshot and no
change lost, a frozen client that slows nobody, the pairing token, Host and Origin checks,
validation and rate limits.  The desk is the live one; OSC end to end is in
tests/test_web_osc.py."""
from __future__ import annotations

import asyncio
import json
import math
import os
import time
import urllib.error
import urllib.request

import pytest

from tests.web_rig import Rig

CHROMEDRIVER = "/usr/bin/chromedriver"
N = 4


def wait_for(pred, timeout_s=8.0, what="condition"):
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def rig():
    r = Rig(N).start()
    yield r
    r.stop()


def make_browser(width=400, height=800):
    if not os.path.exists(CHROMEDRIVER):
        pytest.skip("chromium-driver is not installed (Debian: apt-get install chromium "
                    "chromium-driver; scripts/apt-test.txt)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-extensions", "--no-first-run", "--hide-scrollbars",
              f"--window-size={width},{height}"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1,
                       "mobile": True})
    return d


@pytest.fixture(scope="module")
def browser():
    d = make_browser()
    yield d
    d.quit()


@pytest.fixture(scope="module")
def page(rig, browser):
    browser.get(rig.url)
    wait_for(lambda: browser.execute_script(
        "return document.body.dataset.snapshots && document.body.dataset.meterFrames"),
        what="the first snapshot and meter frame")
    return browser


def js(d, script, *args):
    return d.execute_script(script, *args)


def severe(d):
    return [e for e in d.get_log("browser") if e["level"] == "SEVERE"]


def strip_value(d, channel, param):
    return js(d, f'return document.querySelector(\'[data-channel="{channel}"] '
                 f'[data-param="{param}"]\').getAttribute("value")')


def test_one_strip_per_channel_with_every_hook(page, rig):
    strips = js(page, "return Array.from(document.querySelectorAll('[data-channel]'))"
                      ".map(e => e.dataset.channel)")
    assert strips == [str(i) for i in range(1, N + 1)]
    for ch in range(1, N + 1):
        for param in ("fader_db", "mute_on", "pan", "automation"):
            assert strip_value(page, ch, param) is not None, (ch, param)
        for meter in ("peak_db", "rms_db", "gain_reduction_db"):
            assert js(page, f'return document.querySelector(\'[data-channel="{ch}"] '
                            f'[data-meter="{meter}"]\') !== null'), (ch, meter)
    names = js(page, "return Array.from(document.querySelectorAll('.strip .name'))"
                     ".map(e => e.textContent)")
    assert names == [c["name"] for c in rig.desk.snapshot()["channels"]]
    assert js(page, "return document.querySelector('[data-channel=\"3\"] .role-name')"
                    ".textContent") == "bass"
    # touch targets: every button and slider of a strip is at least 48 px in both senses
    small = js(page, """return Array.from(document.querySelectorAll(
        '.strip button.mute, .strip input[type=range], #top button, .strip .fader'))
        .map(e => [e.className, e.getBoundingClientRect()])
        .filter(([k, r]) => r.height < 48 || r.width < 48).map(([k, r]) =>
        k + " " + r.width + "x" + r.height)""")
    assert small == []


def test_a_desk_change_shows_in_the_page(page, rig):
    rig.desk.set(2, "fader_db", -12.5, source="osc")
    rig.desk.set(2, "mute_on", 1.0, source="osc")
    rig.desk.set(3, "pan", -0.4, source="osc")
    wait_for(lambda: strip_value(page, 2, "fader_db") == "-12.5", what="the fader")
    wait_for(lambda: strip_value(page, 2, "mute_on") == "1", what="the mute")
    wait_for(lambda: strip_value(page, 3, "pan") == "-0.4", what="the pan")
    assert js(page, "return document.querySelector('[data-channel=\"2\"] .db').textContent"
              ) == "\u221212.5"
    assert int(js(page, "return document.body.dataset.seq")) == rig.desk.seq


def test_a_fader_moved_in_the_page_arrives_at_the_desk(page, rig):
    from selenium.webdriver.common.action_chains import ActionChains
    before = rig.desk.get(1, "fader_db")
    cap = page.find_element("css selector", '[data-channel="1"] .fader .cap')
    ActionChains(page).click_and_hold(cap).move_by_offset(0, 40).move_by_offset(0, 20) \
        .release().perform()
    moved = wait_for(lambda: rig.desk.get(1, "fader_db") < before - 1.0 and
                     rig.desk.get(1, "fader_db"), what="the desk to see the move")
    assert rig.desk.owner(1, "fader_db") == "person"
    wait_for(lambda: float(strip_value(page, 1, "fader_db")) == moved, what="the echo")
    # mute and the automation level, by touch
    page.find_element("css selector", '[data-channel="4"] [data-param="mute_on"]').click()
    wait_for(lambda: rig.desk.get(4, "mute_on") == 1.0, what="the mute")
    # the readout hands the fader back to the automation
    page.find_element("css selector", '[data-channel="1"] .readout').click()
    wait_for(lambda: rig.desk.owner(1, "fader_db") == "auto", what="the release")


def test_the_meters_move(page, rig):
    def reading():
        return js(page, """return [document.querySelector(
            '[data-channel="1"] [data-meter="peak_db"]').dataset.value,
            document.querySelector('[data-meter="momentary_lufs"]').dataset.value,
            +document.body.dataset.meterFrames]""")
    a = reading()
    time.sleep(1.0)
    b = reading()
    assert a[0] != b[0] and math.isfinite(float(b[0])) and -60 < float(b[0]) < 0
    assert math.isfinite(float(b[1]))
    assert b[2] - a[2] >= 10  # frames drawn per second (nominal 30)


def test_a_killed_websocket_comes_back_with_a_full_snapshot_and_no_change_lost(page, rig):
    snaps = int(js(page, "return document.body.dataset.snapshots"))
    conns = rig.server.counts["connections"]

    def kill():  # the TCP connection dies under the page (a network drop)
        for c in list(rig.server.clients):
            c.transport.abort()
    rig.call(kill)
    for k in range(20):  # changes while the page is away
        rig.desk.set(1 + k % N, "fader_db", -20.0 - k, source="osc")
    wait_for(lambda: rig.server.counts["connections"] > conns, what="the reconnect")
    wait_for(lambda: int(js(page, "return document.body.dataset.seq")) == rig.desk.seq,
             what="the page to catch up")
    assert int(js(page, "return document.body.dataset.snapshots")) == snaps + 1
    for ch in range(1, N + 1):
        assert float(strip_value(page, ch, "fader_db")) == rig.desk.get(ch, "fader_db")
    # and a burst of changes while connected: every one applied, in order, none skipped
    for k in range(300):
        rig.desk.set(1 + k % N, "pan", round(-1 + (k % 200) / 100, 2), source="osc")
    wait_for(lambda: int(js(page, "return document.body.dataset.seq")) == rig.desk.seq,
             what="the burst")
    assert int(js(page, "return document.body.dataset.snapshots")) == snaps + 1
    for ch in range(1, N + 1):
        assert float(strip_value(page, ch, "pan")) == rig.desk.get(ch, "pan")


def _frozen_client(url):
    """A WebSocket client that shakes hands and then never reads, with a small receive
    buffer (a tab frozen by the browser, a phone whose Wi-Fi stalled)."""
    import base64
    import socket
    from urllib.parse import urlsplit
    u = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((u.hostname, u.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


def test_a_frozen_client_slows_nobody(page, rig):
    """A client that never reads: once its socket is full its queue stays bounded (it is
    owed a snapshot instead of what it missed), and the page still gets every change and
    its meters at the usual rate.  (The queue's limit is lowered for the test so it fills
    in a second or two of changes gathered 100 times a second.)"""
    from edgemix import params as P
    rig.server.max_queue = 8
    sock = _frozen_client(rig.url)
    try:
        wait_for(lambda: len(rig.server.clients) == 2, what="the frozen client")
        stuck = max(rig.server.clients, key=lambda c: c.number)
        frames0 = int(js(page, "return document.body.dataset.meterFrames"))
        t0 = time.monotonic()
        names = [s.name for s in P.CHANNEL_PARAMS if s.scale in ("lin", "log")][:24]

        def blocked():  # its socket takes nothing more, and it fell behind
            return stuck.transport.get_write_buffer_size() > 0 and stuck.resync
        k = 0
        while not blocked() and time.monotonic() - t0 < 60:
            # many parameters per operation: large batches fill its socket quickly
            rig.desk.set_many([(ch, name, P.CHANNEL_SPECS[name].from_norm((k % 97) / 97))
                               for ch in range(1, N + 1) for name in names], source="osc")
            k += 1
            assert len(stuck.out) <= stuck.max_queue
            time.sleep(0.002)
        assert blocked(), k
        for j in range(200):  # owed a snapshot: nothing more is kept for it
            rig.desk.set(1 + j % N, "pan", (j % 100) / 100, source="osc")
        time.sleep(0.1)
        assert len(stuck.out) == 0
        wait_for(lambda: int(js(page, "return document.body.dataset.seq")) == rig.desk.seq,
                 what="the page")
        rate = (int(js(page, "return document.body.dataset.meterFrames")) - frames0) / (
            time.monotonic() - t0)
        assert rate >= 10, rate
        assert not stuck.credit  # one meter frame went out, none since: it sent no ack
        for ch in range(1, N + 1):
            assert float(strip_value(page, ch, "pan")) == rig.desk.get(ch, "pan")
    finally:
        sock.close()
        rig.server.max_queue = 256


def _ws_session(url, *, origin=None, host=None):
    """Open a WebSocket with aiohttp; (status, messages) or raise."""
    import aiohttp

    async def go():
        headers = {}
        if origin:
            headers["Origin"] = origin
        if host:
            headers["Host"] = host
        async with aiohttp.ClientSession() as s:
            try:
                async with s.ws_connect(url, headers=headers) as ws:
                    return 101, ws
            except aiohttp.WSServerHandshakeError as e:
                return e.status, None
    return asyncio.run(go())[0]


def test_host_and_origin_are_checked(rig):
    ws_url = rig.url + "ws"
    port = rig.server.port
    assert _ws_session(ws_url, origin=f"http://127.0.0.1:{port}") == 101
    assert _ws_session(ws_url, origin="http://evil.example") == 403
    assert _ws_session(ws_url, origin=f"http://evil.example:{port}",
                       host=f"evil.example:{port}") == 403  # DNS rebinding
    req = urllib.request.Request(rig.url, headers={"Host": f"evil.example:{port}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 403


def _exchange(url, messages, *, raw=False, read_s=1.0):
    """Send ``messages`` over one WebSocket, collect replies for ``read_s``."""
    import aiohttp

    async def go():
        out = []
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(url) as ws:
                for m in messages:
                    if isinstance(m, bytes):
                        await ws.send_bytes(m)
                    else:
                        await ws.send_str(m if raw or isinstance(m, str) else json.dumps(m))
                t_end = time.monotonic() + read_s
                while time.monotonic() < t_end:
                    try:
                        msg = await ws.receive(timeout=max(0.01, t_end - time.monotonic()))
                    except asyncio.TimeoutError:
                        break
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    out.append(json.loads(msg.data))
        return out
    return asyncio.run(go())


def test_every_value_is_validated_and_answered(rig):
    before = rig.desk.snapshot()["channels"][0]["params"]
    bad = [
        '{"type":"set","id":1,"channel":1,"param":"fader_db","value":NaN}',
        {"type": "set", "id": 2, "channel": 1, "param": "fader_db", "value": 20},
        {"type": "set", "id": 3, "channel": 1, "param": "fadr_db", "value": -3},
        {"type": "set", "id": 4, "channel": 99, "param": "fader_db", "value": -3},
        {"type": "set", "id": 5, "channel": 1, "param": "fader_db", "value": "loud"},
        {"type": "set", "id": 6, "channel": 1, "param": "fader_db"},
        {"type": "launch", "id": 7},
        "{not json",
        b"\x00\x01",
        {"type": "set", "id": 8, "channel": 1, "param": "pan", "value": 1e309},
    ]
    replies = _exchange(rig.url + "ws", bad)
    errors = {m.get("id"): m["message"] for m in replies if m["type"] == "error"}
    anonymous = [m["message"] for m in replies if m["type"] == "error" and m["id"] is None]
    assert any("NaN is not a number" in m for m in anonymous), anonymous  # never parsed
    assert "-90 .. 10" in errors[2]
    assert "did you mean fader_db" in errors[3]
    assert "channels 1 .. 4" in errors[4]
    assert "number" in errors[5]
    assert "value" in errors[6]
    assert "unknown message type" in errors[7]
    assert any("not a JSON message" in m for m in anonymous)
    assert any("binary" in m for m in anonymous)
    assert "Infinity is not a number" in " ".join(anonymous) or 8 in errors
    after = rig.desk.snapshot()["channels"][0]["params"]
    assert after == before
    cp, mp = rig.desk.targets()
    assert all(map(math.isfinite, cp.ravel())) and all(map(math.isfinite, mp))
    # a good one is answered with ok and the seq it made
    ok = _exchange(rig.url + "ws", [{"type": "set", "id": "a", "channel": 2,
                                     "param": "fader_db", "value": -7.5}])
    assert any(m["type"] == "ok" and m["id"] == "a" for m in ok)
    assert rig.desk.get(2, "fader_db") == -7.5


def test_a_flood_is_rate_limited(rig):
    from edgemix.rt.web.server import BURST
    flood = [{"type": "set", "channel": 3, "param": "fader_db", "value": -10.0 - (k % 50) / 10}
             for k in range(int(BURST) + 1000)]
    replies = _exchange(rig.url + "ws", flood, read_s=1.5)
    limited = [m for m in replies if m["type"] == "error" and "too many" in m["message"]]
    assert 1 <= len(limited) <= 3  # refused, and told so about once a second
    assert rig.server.counts["rate_limited"] >= 100  # 600 over the burst, less the refill
    assert math.isfinite(rig.desk.get(3, "fader_db"))


def test_the_page_fader_travel_is_the_x_air_law():
    """The page's taper (sent in hello) and the OSC dialect's fader law agree at every
    breakpoint, up to the 1024-step grid the law rounds to."""
    from edgemix.rt.osc.xair import db_to_fader, fader_to_db
    from edgemix.rt.web.server import FADER_TAPER, schema
    assert [list(p) for p in schema()["fader_taper"]] == [list(p) for p in FADER_TAPER]
    for f, db in FADER_TAPER:
        assert fader_to_db(f) == pytest.approx(db, abs=0.5)
        assert db_to_fader(db) == pytest.approx(f, abs=1 / 1023)


def test_no_console_errors(page):
    assert severe(page) == []


def test_a_lan_bound_server_needs_the_pairing_token(browser):
    """127.0.0.2 stands in for a LAN address (only 127.0.0.1, ::1 and localhost are served
    without a token): the page, its files and the WebSocket are refused without the token;
    the printed address (with it) works, and its cookie carries the page's WebSocket."""
    r = Rig(2, "127.0.0.2").start()
    try:
        token = r.server.token
        assert token and r.url.endswith(f"/?token={token}")
        base = r.url.split("?")[0]
        for path in ("", "static/app.js", f"?token={token}x"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path, timeout=5)
            assert e.value.code == 403
            assert "pairing token" in e.value.read().decode()
        assert _ws_session(base + "ws") == 403
        assert _ws_session(base + "ws?token=wrong") == 403
        assert _ws_session(base + f"ws?token={token}") == 101
        # the browser without the token: no page, no strips, nothing written
        browser.get(base)
        assert "pairing token" in browser.find_element("tag name", "body").text
        assert js(browser, "return document.querySelectorAll('[data-channel]').length") == 0
        browser.get_log("browser")  # the refused page's 403 is expected there
        # with the printed address
        browser.get(r.url)
        wait_for(lambda: js(browser, "return document.body.dataset.snapshots"),
                 what="the paired page")
        browser.find_element("css selector", '[data-channel="2"] [data-param="mute_on"]').click()
        wait_for(lambda: r.desk.get(2, "mute_on") == 1.0, what="a paired write")
        assert severe(browser) == []
    finally:
        r.stop()
