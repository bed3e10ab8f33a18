"""Proof: a real third-party X-Air client (xair-api from PyPI) drives a running
``edgemix run`` (synthetic backend, paced, rule policy) over OSC; bad input and floods get
error replies and leave the mix unchanged and finite; a scene recalls over OSC."""
from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from pythonosc.osc_message import OscMessage

from edgemix import params as P
from edgemix.rt.osc.server import message
from tests.cli_helpers import start_surface_run

xair_api = pytest.importorskip("xair_api")

SESSION = """
[session]
name = "osc proof"
[backend]
kind = "synthetic"
paced = true
duration_s = 120
n_channels = 4
output = "mix.wav"
[model]
policy = "rules"
hop_ms = 100
[control]
scenes_dir = "scenes"
osc_rate_per_s = 1000
"""


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    d = tmp_path_factory.mktemp("oscrun")
    (d / "session.toml").write_text(SESSION)
    proc, found, err = start_surface_run(
        ["--config", d / "session.toml", "--osc", "0", "--no-rt", "--json",
         "--duration-s", "100"], cwd=d, want=("osc",))
    port = found["osc"]
    _responsive(port)
    yield {"port": port, "proc": proc, "dir": d, "stderr": err}
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _responsive(port, within_s=60.0):
    """Wait until the run answers promptly (its first seconds compile and fill rings)."""
    s = _client()
    s.settimeout(0.1)
    quick = 0
    t_end = time.monotonic() + within_s
    while quick < 5 and time.monotonic() < t_end:
        t0 = time.monotonic()
        s.sendto(message("/xinfo"), ("127.0.0.1", port))
        try:
            s.recvfrom(65536)
            quick = quick + 1 if time.monotonic() - t0 < 0.05 else 0
        except socket.timeout:
            quick = 0
        time.sleep(0.05)


def _client():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5.0)
    return s


def _ask(sock, port, address, *args):
    sock.sendto(message(address, *args), ("127.0.0.1", port))
    while True:
        m = OscMessage(sock.recvfrom(65536)[0])
        if m.address == address or m.address == "/edgemix/error":
            return m.address, list(m.params)


def _read(get, want, tries=4):
    """``get()`` until it gives ``want``: xair-api answers a query with whatever message
    arrived last after sleeping ``delay`` seconds, so on a loaded machine a slow reply reads
    as the one before it (a string, or the previous value)."""
    got = None
    for _ in range(tries):
        try:
            got = get()
        except (TypeError, IndexError):
            continue
        if got == want:
            return got
    return got


def test_xair_api_sets_and_reads_back_and_the_fader_holds(running):
    port = running["port"]
    with xair_api.connect("XR18", ip="127.0.0.1", port=port, delay=0.2) as mixer:
        assert mixer.info_response[2] == "XR18"
        strip = mixer.strip
        strip[0].mix.fader = -6.0
        assert _read(lambda: strip[0].mix.fader, -6.0) == -6.0
        strip[1].mute = True
        assert _read(lambda: strip[1].mute, True) is True
        mixer.send("/ch/03/mix/pan", 0.25)                  # xair-api has no pan property
        assert _read(lambda: mixer.query("/ch/03/mix/pan")[0], 0.25) == 0.25
        strip[3].config.name = "Lead"
        assert _read(lambda: strip[3].config.name, "Lead") == "Lead"
        assert _read(lambda: mixer.query("/edgemix/ch/01/owner/fader_db")[0],
                     "person") == "person"
        time.sleep(1.0)                                        # ten auto-mix hops
        assert _read(lambda: strip[0].mix.fader, -6.0) == -6.0
        assert _read(lambda: strip[1].mute, True) is True
        assert _read(lambda: mixer.query("/ch/03/mix/pan")[0], 0.25) == 0.25
        fader_db = _read(lambda: round(mixer.query("/edgemix/ch/01/fader_db")[0], 3), -5.992)
        assert fader_db == -5.992                              # the X-Air grid's -6 dB


def _everything(sock, port):
    """Every channel and master parameter in units, over OSC."""
    out = {}
    for ch in range(1, 5):
        for s in P.CHANNEL_PARAMS:
            out[ch, s.name] = _ask(sock, port, f"/edgemix/ch/{ch:02d}/{s.name}")[1][0]
    for s in P.MASTER_PARAMS:
        out["master", s.name] = _ask(sock, port, f"/edgemix/master/{s.name}")[1][0]
    return out


def test_bad_input_and_floods_leave_the_mix_unchanged_and_finite(running):
    port = running["port"]
    sock = _client()
    sock.sendto(message("/ch/01/mix/fader", 614 / 1023), ("127.0.0.1", port))  # -6 dB
    _ask(sock, port, "/xinfo")
    bad = [message("/ch/01/mix/fader", 1.5), message("/ch/01/mix/fader", float("nan")),
           message("/ch/01/mix/fader", "loud"), message("/ch/02/mix/on", 7),
           message("/ch/09/mix/fader", 0.5), message("/ch/01/nothing", 0.5),
           message("/edgemix/ch/01/fader_db", float("inf")),
           message("/edgemix/master/master_fader_db", 99.0),
           b"\xff\xfe not osc", b"/ch/01/mix/fader\x00\x00\x00\x00,f\x00\x00\x00"]
    for packet in bad:
        sock.sendto(packet, ("127.0.0.1", port))
        m = OscMessage(sock.recvfrom(65536)[0])
        assert m.address == "/edgemix/error" and m.params[1]
    flood = _client()
    # the person's own fader value again and again: no change, so no echo and no reply
    # but the rate limit's (NaN floods answered per message are tests/test_osc.py's)
    payload = message("/ch/01/mix/fader", 614 / 1023)
    t0 = time.monotonic()
    for k in range(1, 7501):                                   # 5,000 a second for 1.5 s
        flood.sendto(payload, ("127.0.0.1", port))
        if k % 50 == 0:
            time.sleep(max(0.0, t0 + k / 5000 - time.monotonic()))
    rate = 7500 / (time.monotonic() - t0)
    time.sleep(0.5)
    flood.settimeout(0.5)
    got = []
    try:
        while True:
            got.append(OscMessage(flood.recvfrom(65536)[0]))
    except socket.timeout:
        pass
    assert rate > 4500
    assert got and all(m.address == "/edgemix/error" for m in got)
    assert any("rate limit" in m.params[1] for m in got)
    values = _everything(sock, port)
    assert all(math.isfinite(v) for v in values.values())
    assert values[1, "fader_db"] == pytest.approx(-5.992, abs=0.001)
    assert values[2, "mute_on"] == 1.0 and values[3, "pan"] == pytest.approx(-0.5)
    assert _ask(sock, port, "/ch/04/config/name")[1] == ["Lead"]


def test_a_scene_saves_and_recalls_over_osc(running):
    port = running["port"]
    sock = _client()
    assert _ask(sock, port, "/edgemix/scene/save", "verse")[0] == "/edgemix/scene/save"
    assert (running["dir"] / "scenes" / "verse.toml").is_file()
    sock.sendto(message("/ch/01/mix/fader", 0.25), ("127.0.0.1", port))   # -30 dB
    assert _ask(sock, port, "/edgemix/ch/01/fader_db")[1][0] == pytest.approx(-30.0, abs=0.1)
    assert _ask(sock, port, "/edgemix/scene/recall", "verse", 0.3)[0] == "/edgemix/scene/recall"
    t_end = time.monotonic() + 10.0                  # the fade's thread, on a loaded machine
    while time.monotonic() < t_end:
        now = _ask(sock, port, "/edgemix/ch/01/fader_db")[1][0]
        if now == pytest.approx(-5.992, abs=0.001):
            break
        time.sleep(0.1)
    assert now == pytest.approx(-5.992, abs=0.001)
    assert "verse" in _ask(sock, port, "/edgemix/scene/list")[1]


def test_meters_come_from_the_audio_side(running):
    import struct
    port = running["port"]
    sock = _client()
    sock.sendto(message("/meters", "/meters/1"), ("127.0.0.1", port))
    blobs = []
    while len(blobs) < 5:
        m = OscMessage(sock.recvfrom(65536)[0])
        if m.address == "/meters/1":
            blobs.append(m.params[0])
    frames = [struct.unpack(f"<{struct.unpack('<i', b[:4])[0]}h", b[4:]) for b in blobs]
    assert all(len(f) == 40 for f in frames)
    # the synthetic session plays on every channel: live pre-fader peaks, not silence,
    # and a channel beyond the console's four is silent
    assert all(-90 * 256 < f[c] < 6 * 256 for f in frames for c in range(4))
    assert all(f[5] == -32768 for f in frames)
    assert len({f[:4] for f in frames}) > 1                    # they move


def test_scene_commands_talk_to_the_running_mixer(running):
    from click.testing import CliRunner
    from edgemix.cli import cli
    port = str(running["port"])
    r = CliRunner().invoke(cli, ["scene", "save", "chorus", "--osc", port])
    assert r.exit_code == 0 and "saved" in r.output
    r = CliRunner().invoke(cli, ["scene", "list", "--osc", port])
    assert r.exit_code == 0 and "chorus" in r.output.split()
    r = CliRunner().invoke(cli, ["scene", "recall", "chorus", "--crossfade-s", "0.2",
                                 "--osc", port])
    assert r.exit_code == 0 and "recalled" in r.output
    r = CliRunner().invoke(cli, ["scene", "recall", "nope", "--osc", port])
    assert r.exit_code == 2 and "no scene 'nope'" in r.output


def test_the_run_ends_cleanly_with_a_finite_mix(running):
    import soundfile as sf
    proc = running["proc"]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, "".join(running["stderr"])[-2000:]
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["control"]["hops"] >= 10 and stats["control"]["errors"] == 0
    assert stats["audio_errors"] == 0
    assert stats["control"]["surface"]
    mix, _ = sf.read(running["dir"] / "mix.wav")
    assert len(mix) > 0 and np.isfinite(mix).all()
    assert "Traceback" not in "".join(running["stderr"])


def test_a_port_in_use_is_one_line(tmp_path):
    (tmp_path / "s.toml").write_text(SESSION.replace("duration_s = 120", "duration_s = 2"))
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    r = subprocess.run([sys.executable, "-m", "edgemix", "run", "--config",
                        str(tmp_path / "s.toml"), "--no-rt", "--osc",
                        str(taken.getsockname()[1])],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"edgemix: error: OSC: cannot listen on 127.0.0.1:{taken.getsockname()[1]} "
        "(Address already in use): choose another port with --osc [ADDR:]PORT"]
