"""Live timing on a real JACK dummy server: 48 kHz / 64 frames, 16 channels, 60 s per backend.

Not pass/fail on speed (the numbers depend on the machine): it prints, per backend, the
xruns, the late blocks, p50/p99/max block time as a share of the 1.333 ms deadline and the
latency each backend adds, and records them as pytest properties.  Run it with
``scripts/bench.sh`` or ``pytest benchmarks/bench_jack.py -s``.

An xrun is the server's verdict on a whole cycle, and on a shared or virtual machine the
machine itself stalls real-time threads now and then.  So beside edgemix's server, a
*reference* dummy server with the same settings runs over the same seconds with one C client
(``jack_simple_client``, no Python at all): its xruns are the machine's floor at that
moment.  The player feeding edgemix is compiled as well (``jack_helpers.LoopPlayer``), and
the JACK backend's own callback is machine code, so edgemix's share is what it counts
itself: blocks its DSP worker did not have ready when due (``ours``); ``xruns`` is the
server's count plus ours.  ``EDGEMIX_BENCH_RING_BLOCKS`` overrides each backend's ring.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import uuid

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from cli_helpers import edgemix_env, edgemix_exe  # noqa: E402
from jack_helpers import (LoopPlayer, connect, have_jackd, jack_server,  # noqa: E402
                          jackd_command, stop_process, wait_for_ports)

ROOT = pathlib.Path(__file__).resolve().parents[1]
FS, BLOCK, N_CH = 48000, 64, 16
SECONDS = float(os.environ.get("EDGEMIX_BENCH_JACK_S", "60"))


@contextlib.contextmanager
def reference_server():
    """A second dummy server like edgemix's with one C client; yields a function returning
    the xruns it has logged so far (0 where ``jack_simple_client`` is missing, said so)."""
    if shutil.which("jack_simple_client") is None:
        print("\nno jack_simple_client (Debian: jackd2 ships it): no reference server")
        yield lambda: 0
        return
    name = f"edgemix-ref-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1", JACK_DEFAULT_SERVER=name)
    server = subprocess.Popen(jackd_command(name, FS, BLOCK, N_CH, 2),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    xruns = []

    def read():  # jackd's dummy driver logs each xrun as "JackTimedDriver::Process XRun"
        for line in server.stdout:
            if b"XRun" in line:
                xruns.append(line)
    threading.Thread(target=read, daemon=True).start()
    time.sleep(1.0)
    client = subprocess.Popen(["jack_simple_client"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        yield lambda: len(xruns)
    finally:
        for proc in (client, server):
            stop_process(proc)


@pytest.mark.jack
@pytest.mark.skipif(not have_jackd(), reason="jackd not installed (scripts/apt-test.txt)")
@pytest.mark.parametrize("kind, device, ports, policy", [
    ("jack", "", "edgemix:in_", "none"), ("jack", "", "edgemix:in_", "rules"),
    ("jack", "", "edgemix:in_", "model"),
    ("portaudio", "system", "PortAudio.*:in_", "model")])
def test_bench_jack_live(tmp_path, record_property, kind, device, ports, policy):
    """With a policy, the live control path runs in its own process (control_process)."""
    from edgemix.rt.synthetic import render_synthetic
    chans = "".join(f"[[channels]]\ninput = {i + 1}\nfader_db = -6\ncomp_ratio = 3\n"
                    f"hpf_hz = 60\neq2_gain_db = 3\npan = {(i % 5) / 2.5 - 0.8:.2f}\n"
                    for i in range(N_CH))
    cfg = tmp_path / "bench.toml"
    model = (f'path = "{ROOT / "models" / "student_float32.tflite"}"\nbackend = "tflite"\n'
             if policy == "model" else "")
    ring = os.environ.get("EDGEMIX_BENCH_RING_BLOCKS")  # default: each backend's own
    cfg.write_text(f'[backend]\nkind = "{kind}"\ndevice = "{device}"\n'
                   + (f"ring_blocks = {int(ring)}\n" if ring else "")
                   + f'\n[model]\npolicy = "{policy}"\n{model}\n{chans}')
    audio, _ = render_synthetic(N_CH, FS, 8.0, seed=11)
    # the reference server first, so its start-up is not inside the measured seconds
    with reference_server() as ref_xruns, \
            jack_server(rate=FS, period=BLOCK, capture=N_CH, playback=2) as server:
        env = edgemix_env(JACK_DEFAULT_SERVER=server)
        p = subprocess.Popen(edgemix_exe() + ["run", "--config", str(cfg),
                              "--json", "--duration-s", str(SECONDS + 3), "--server", server],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        player = None
        try:
            ins = sorted(wait_for_ports(server, ports, N_CH, proc=p, timeout_s=300),
                         key=lambda n: int(n.rsplit("_", 1)[1]))
            player = LoopPlayer(server, audio)
            for i, port in enumerate(ins):
                for other in player.client.get_all_connections(port):
                    player.client.disconnect(other, port)
                connect(player.client, player.ports[i], port)
            player.start()
            ref0 = ref_xruns()
            out, err = p.communicate(timeout=SECONDS + 60)
            reference = ref_xruns() - ref0
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
            if player is not None:
                player.close()
    assert p.returncode == 0, err.decode()[-2000:]
    st = json.loads(out.decode().strip().splitlines()[-1])
    s = st["block_time_share"]
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    cyc = (f" = server {st['backend_server_xruns']} + ours {st['backend_missed']} (blocks not "
           f"ready when due; stale {st['backend_stale']}, overflows "
           f"{st['backend_overflows']}), compiled callback p99 "
           f"{100 * st['backend_cycle_share']['p99']:.1f} % max "
           f"{100 * st['backend_cycle_share']['max']:.1f} % of the period"
           ) if kind == "jack" else ""
    ctl = st.get("control") or {}
    ctl_line = (f", control: {ctl.get('hops')} hops, {ctl.get('applied', ctl.get('updates'))} "
                f"updates applied, {ctl.get('errors')} errors" if ctl else "")
    line = (f"{kind:9s} policy {policy}, {N_CH} ch {FS} Hz/{BLOCK}, {SECONDS:g} s, load {load}: "
            f"{st['blocks']} blocks, xruns {st['xruns']}{cyc} (reference C-only server, same "
            f"seconds: {reference}), late {st['late_blocks']}, block time p50 {100 * s['p50']:.1f} % "
            f"p99 {100 * s['p99']:.1f} % max {100 * s['max']:.1f} % of "
            f"{st['deadline_ms']:.3f} ms; latency: backend {st['backend_latency_frames']} + "
            f"console {st['console_latency_frames']} + device API "
            f"{st['device_latency_frames']} frames{ctl_line}")
    print("\n" + line)
    record_property("reference_xruns", reference)
    for k in ("xruns", "backend_server_xruns", "backend_missed", "late_blocks",
              "backend_latency_frames", "console_latency_frames", "device_latency_frames",
              "blocks"):
        if k in st:
            record_property(k, st[k])
    for k, v in s.items():
        record_property(f"block_time_{k}", v)
    assert st["blocks"] > 0.9 * SECONDS * FS / BLOCK
