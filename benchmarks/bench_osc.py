"""The OSC surface on a real JACK dummy server (48 kHz / 64 frames): control latency and
an OSC flood.

* **Control latency**: from an OSC fader message (``/ch/01/mix/fader``, -40 dB -> 0 dB)
  to the change heard at edgemix's output.  A 1 kHz tone plays into channel 1; a JACK
  client records edgemix's outputs with each cycle's frame time; the sender notes JACK's
  frame clock (``Client.frame_time``) as it sends.  The latency is the first output sample
  2 dB above the level before the move, minus the send time: UDP, the surface loop, the
  desk, the mailbox, the audio side's next block, the backend's ring, and the first
  millisecond of the 20 ms gain ramp (it moves 2 dB/ms here; a sample peak of the tone
  shows within half a period, 0.5 ms).  A device adds its own playback latency.
* **Flood**: 16 channels, the rule policy, an OSC client sending >= 5,000 fader moves a
  second for 20 s (a rate limit high enough that every one reaches the desk) while a
  second client is subscribed with ``/xremote``.  Reported: blocks the DSP worker did not
  have ready when due (``ours``), the server's xruns, and a reference C-only server's
  xruns over the same seconds (the machine's floor; ``bench_jack.py``).

Numbers, not pass/fail: run ``pytest benchmarks/bench_osc.py -s``.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from cli_helpers import edgemix_env, edgemix_exe  # noqa: E402
from jack_helpers import (Catcher, LoopPlayer, connect, have_jackd, jack_server,  # noqa: E402
                          wait_for_ports)

ROOT = pathlib.Path(__file__).resolve().parents[1]
FS, BLOCK = 48000, 64
FLOOD_S = float(os.environ.get("EDGEMIX_BENCH_FLOOD_S", "20"))
FLOOD_RATE = 5000.0
N_MOVES = int(os.environ.get("EDGEMIX_BENCH_LATENCY_MOVES", "60"))


def _message(address, *args):
    from edgemix.rt.osc.server import message
    return message(address, *args)


def _start(cfg: pathlib.Path, server: str, seconds: float, n_ports: int):
    """``edgemix run`` on ``server`` with ``--osc 0``; returns (process, OSC port, stderr)."""
    env = edgemix_env(JACK_DEFAULT_SERVER=server)
    p = subprocess.Popen(edgemix_exe() + ["run", "--config", str(cfg), "--json",
                                          "--duration-s", str(seconds), "--server", server,
                                          "--osc", "0"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    err: list[str] = []
    port = []

    def read():
        for line in p.stderr:
            err.append(line)
            m = re.search(r"control surface: osc://127\.0\.0\.1:(\d+)", line)
            if m:
                port.append(int(m.group(1)))
    threading.Thread(target=read, daemon=True).start()
    ins = sorted(wait_for_ports(server, "edgemix:in_", n_ports, proc=p, timeout_s=300),
                 key=lambda n: int(n.rsplit("_", 1)[1]))
    t_end = time.monotonic() + 60
    while not port and time.monotonic() < t_end:
        time.sleep(0.05)
    assert port, "".join(err)[-2000:]
    return p, port[0], err, ins


def _finish(p, err, timeout_s):
    out, _ = p.communicate(timeout=timeout_s)
    assert p.returncode == 0, "".join(err)[-2000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.jack
@pytest.mark.skipif(not have_jackd(), reason="jackd not installed (scripts/apt-test.txt)")
def test_bench_osc_fader_to_output_latency(tmp_path, record_property):
    cfg = tmp_path / "latency.toml"
    cfg.write_text('[backend]\nkind = "jack"\n\n[model]\npolicy = "none"\n\n'
                   '[[channels]]\ninput = 1\nfader_db = -40\nhpf_on = false\n'
                   'comp_on = false\n[[channels]]\ninput = 2\nfader_db = -90\n')
    t = np.arange(FS * 2) / FS
    audio = np.zeros((len(t), 2), np.float32)
    audio[:, 0] = 0.1 * np.sin(2 * np.pi * 1000.0 * t)              # -20 dBFS, 1 kHz
    seconds = 10.0 + N_MOVES * 0.4
    with jack_server(rate=FS, period=BLOCK, capture=2, playback=2) as server:
        p, port, err, ins = _start(cfg, server, seconds, 2)
        player = LoopPlayer(server, audio)
        catcher = Catcher(server, 2, seconds, FS)
        try:
            for i, name in enumerate(ins):
                for other in player.client.get_all_connections(name):
                    player.client.disconnect(other, name)
                connect(player.client, player.ports[i], name)
            for i in (1, 2):
                connect(catcher.client, f"edgemix:out_{i}", catcher.ports[i - 1].name)
            player.start()
            time.sleep(2.0)
            catcher.start()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            from edgemix.rt.osc.xair import db_to_fader
            on = _message("/ch/01/mix/fader", db_to_fader(0.0))
            off = _message("/ch/01/mix/fader", db_to_fader(-40.0))
            sock.sendto(off, ("127.0.0.1", port))
            sent = []
            for _ in range(N_MOVES):
                time.sleep(0.2)
                sent.append(catcher.client.frame_time)
                sock.sendto(on, ("127.0.0.1", port))
                time.sleep(0.2)
                sock.sendto(off, ("127.0.0.1", port))
            time.sleep(0.3)
            times, data = catcher.timeline()
        finally:
            catcher.close()
            player.close()
        st = _finish(p, err, seconds + 120)
    # the frame time of every recorded sample
    k = min(len(times), len(data) // BLOCK)  # read while recording: one may be a cycle ahead
    frame_at = (times[:k, None] + np.arange(BLOCK)[None, :]).reshape(-1)
    data = data[:k * BLOCK]
    peak = np.abs(data).max(axis=1)
    res = {}
    lat_ms = []
    for f0 in sent:
        before = peak[(frame_at >= f0 - 0.02 * FS) & (frame_at < f0)]
        if not before.size:
            continue
        level = before.max() * 10 ** (2 / 20)
        after = np.flatnonzero((peak > level) & (frame_at >= f0) & (frame_at < f0 + 0.2 * FS))
        if after.size:
            lat_ms.append(1000.0 * (frame_at[after[0]] - f0) / FS)
    res["+2 dB"] = np.array(lat_ms)
    line = "OSC fader -> output: " + "; ".join(
        f"{len(lat)}/{len(sent)} moves heard, p50 {np.percentile(lat, 50):.2f} ms, p99 "
        f"{np.percentile(lat, 99):.2f} ms, max {lat.max():.2f} ms" for label, lat in res.items()
    ) + (f" (block {1000 * BLOCK / FS:.2f} ms, backend ring {st['backend_latency_frames']} "
         f"frames); missed blocks {st.get('backend_missed')}")
    print("\n" + line)
    lat = res["+2 dB"]
    record_property("latency_p50_ms", float(np.percentile(lat, 50)))
    record_property("latency_p99_ms", float(np.percentile(lat, 99)))
    assert len(lat) >= 0.9 * len(sent)


def _flood(port: int, seconds: float, rate: float, n_channels: int, result: dict):
    """Fader moves on every channel at ``rate`` messages/s (run in a thread of its own)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    msgs = [_message(f"/ch/{c:02d}/mix/fader", v / 1023)
            for c in range(1, n_channels + 1) for v in (600, 650, 700, 767)]
    sent, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        for _ in range(25):
            sock.sendto(msgs[sent % len(msgs)], ("127.0.0.1", port))
            sent += 1
        delay = t0 + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    result["sent"] = sent
    result["rate"] = sent / (time.monotonic() - t0)


@pytest.mark.jack
@pytest.mark.skipif(not have_jackd(), reason="jackd not installed (scripts/apt-test.txt)")
def test_bench_osc_flood_missed_blocks(tmp_path, record_property):
    from bench_jack import reference_server
    from edgemix.rt.synthetic import render_synthetic
    n = 16
    chans = "".join(f"[[channels]]\ninput = {i + 1}\n" for i in range(n))
    cfg = tmp_path / "flood.toml"
    cfg.write_text('[backend]\nkind = "jack"\n\n[model]\npolicy = "rules"\n\n'
                   f'[control]\nosc_rate_per_s = 100000\n\n{chans}')
    audio, _ = render_synthetic(n, FS, 8.0, seed=11)
    seconds = FLOOD_S + 8.0
    with reference_server() as ref_xruns, \
            jack_server(rate=FS, period=BLOCK, capture=n, playback=2) as server:
        p, port, err, ins = _start(cfg, server, seconds, n)
        player = LoopPlayer(server, audio)
        try:
            for i, name in enumerate(ins):
                for other in player.client.get_all_connections(name):
                    player.client.disconnect(other, name)
                connect(player.client, player.ports[i], name)
            player.start()
            listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            listener.sendto(_message("/xremote"), ("127.0.0.1", port))
            time.sleep(1.0)
            result: dict = {}
            ref0 = ref_xruns()
            flood = threading.Thread(target=_flood, args=(port, FLOOD_S, FLOOD_RATE, n, result))
            flood.start()
            renew = time.monotonic()
            while flood.is_alive():
                flood.join(0.5)
                if time.monotonic() - renew > 5.0:
                    listener.sendto(_message("/xremote"), ("127.0.0.1", port))
                    renew = time.monotonic()
            reference = ref_xruns() - ref0
        finally:
            player.close()
        st = _finish(p, err, seconds + 120)
    osc = st["control"].get("surface_stats", {}).get("osc", {})
    line = (f"OSC flood {result['rate']:.0f} msg/s for {FLOOD_S:g} s ({result['sent']} sent, "
            f"{osc.get('received')} handled, {osc.get('dropped')} rate-limited), 16 ch, rule "
            f"policy: missed blocks (ours) {st.get('backend_missed')}, server xruns "
            f"{st.get('backend_server_xruns')} (reference C-only server: {reference}), late "
            f"{st['late_blocks']}, block time p99 {100 * st['block_time_share']['p99']:.1f} %")
    print("\n" + line)
    record_property("flood_rate", result["rate"])
    record_property("missed_blocks", st.get("backend_missed"))
    record_property("reference_xruns", reference)
    assert result["rate"] >= 0.95 * FLOOD_RATE
