"""Proof against a running ``edgemix run --osc --web`` (synthetic backend, paced, rule
policy; the desk and both servers in the control process): headless Chromium finds one
strip per channel; a fader set over OSC (X-Air dialect) shows in the page; a fader moved in
the page reads back over OSC; the meters move; scenes save and recall from the page; the
browser console stays clean."""
from __future__ import annotations

import math
import signal
import time

import pytest

from tests.cli_helpers import end_run, start_surface_run
from tests.test_web import js, make_browser, severe, strip_value, wait_for

SESSION = """
[session]
name = "web proof"
[backend]
kind = "synthetic"
paced = true
duration_s = 120
n_channels = 4
output = ""
[model]
policy = "rules"
hop_ms = 100
[control]
scenes_dir = "scenes"
"""


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    d = tmp_path_factory.mktemp("webrun")
    (d / "session.toml").write_text(SESSION)
    proc, found, err = start_surface_run(
        ["--config", d / "session.toml", "--osc", "0", "--web", "0", "--no-rt",
         "--duration-s", "100"], cwd=d)
    yield {"osc": found["osc"], "web": found["web"], "dir": d, "proc": proc, "stderr": err}
    end_run(proc)


@pytest.fixture(scope="module")
def page(running):
    d = make_browser()
    d.get(running["web"])
    wait_for(lambda: js(d, "return document.body.dataset.meterFrames"), 300,
             "the first meter frame")
    yield d
    d.quit()


def _osc(port):
    import socket

    from pythonosc.osc_message import OscMessage

    from edgemix.rt.osc.server import message
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5.0)

    def send(address, *args):
        s.sendto(message(address, *args), ("127.0.0.1", port))

    def ask(address, *args):
        send(address, *args)
        while True:
            m = OscMessage(s.recvfrom(65536)[0])
            if m.address in (address, "/edgemix/error"):
                return m.address, list(m.params)
    return send, ask


def test_osc_and_the_page_see_each_others_moves(running, page):
    from selenium.webdriver.common.action_chains import ActionChains

    from edgemix.rt.osc.xair import fader_to_db
    assert js(page, "return document.querySelectorAll('[data-channel]').length") == 4
    send, ask = _osc(running["osc"])
    # OSC -> page: the X-Air fader float, shown in dB
    send("/ch/02/mix/fader", 0.5)
    wait_for(lambda: strip_value(page, 2, "fader_db") == str(fader_to_db(0.5)), 20,
             "the OSC fader in the page")
    send("/ch/03/mix/on", 0)  # X-Air's "on" is the inverse of our mute
    wait_for(lambda: strip_value(page, 3, "mute_on") == "1", 20, "the OSC mute")
    # page -> OSC: a real drag, read back in units and as the X-Air float
    cap = page.find_element("css selector", '[data-channel="1"] .fader .cap')
    ActionChains(page).click_and_hold(cap).move_by_offset(0, 30).move_by_offset(0, 30) \
        .release().perform()
    wait_for(lambda: ask("/edgemix/ch/01/owner/fader_db")[1] == ["person"], 20,
             "the page's move at the desk")
    shown = wait_for(lambda: strip_value(page, 1, "fader_db"), 5, "the page's value")
    assert ask("/edgemix/ch/01/fader_db")[1][0] == pytest.approx(float(shown), abs=1e-6)
    f = ask("/ch/01/mix/fader")[1][0]
    assert fader_to_db(f) == pytest.approx(float(shown), abs=0.2)  # the 1024-step grid
    time.sleep(0.5)  # five auto-mix hops: the person's fader holds
    assert ask("/edgemix/ch/01/fader_db")[1][0] == pytest.approx(float(shown), abs=1e-6)


def test_the_meters_move_and_the_policy_explains(running, page):
    def peak():
        return js(page, "return document.querySelector('[data-channel=\"4\"] "
                        "[data-meter=\"peak_db\"]').dataset.value")
    a = peak()
    wait_for(lambda: peak() != a, 5, "the meter to move")
    assert math.isfinite(float(peak()))
    lufs = js(page, "return document.querySelector('[data-meter=\"short_term_lufs\"]')"
                    ".dataset.value")
    assert math.isfinite(float(lufs))
    why = wait_for(lambda: js(page, "return document.querySelector('[data-channel=\"4\"] "
                                    ".why').textContent"), 20, "an explanation")
    assert "fader" in why or "dB" in why


def test_scenes_save_and_recall_from_the_page(running, page):
    send, ask = _osc(running["osc"])
    send("/edgemix/ch/04/fader_db", -4.0)
    wait_for(lambda: strip_value(page, 4, "fader_db") == "-4.0" or
             strip_value(page, 4, "fader_db") == "-4", 20, "the fader before")
    page.find_element("id", "scenes-open").click()
    page.find_element("id", "scene-name").send_keys("chorus")
    page.find_element("id", "scene-save").click()
    wait_for(lambda: (running["dir"] / "scenes" / "chorus.toml").is_file(), 20,
             "the scene file")
    wait_for(lambda: js(page, "return document.querySelector('[data-scene=\"chorus\"]')"),
             10, "the scene in the list")
    send("/edgemix/ch/04/fader_db", -20.0)
    wait_for(lambda: float(strip_value(page, 4, "fader_db")) == -20.0, 20, "the move")
    page.find_element("css selector", '[data-scene="chorus"]').click()
    wait_for(lambda: float(strip_value(page, 4, "fader_db")) == -4.0, 20, "the recall")
    assert ask("/edgemix/ch/04/fader_db")[1][0] == pytest.approx(-4.0)
    page.find_element("css selector", "#scenes .sheet-head button").click()


def test_no_console_errors_and_a_clean_end(running, page):
    assert severe(page) == []
    proc = running["proc"]
    proc.send_signal(signal.SIGINT)
    proc.wait(120)
    assert proc.returncode == 0, "".join(running["stderr"])[-2000:]
    assert "Traceback" not in "".join(running["stderr"])
