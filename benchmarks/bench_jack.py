"""Live timing on a real JACK dummy server: 48 kHz / 64 frames, 16 channels, 60 s per backend.

Not pass/fail on speed (the numbers depend on the machine): it prints, per backend, the
xruns, the late blocks, p50/p99/max block time as a share of the 1.333 ms deadline and the
latency each backend adds, and records them as pytest properties.  Run it with
``scripts/bench.sh`` or ``pytest benchmarks/bench_jack.py -s``.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from jack_helpers import Player, have_jackd, jack_server, wait_for_ports  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
FS, BLOCK, N_CH = 48000, 64, 16
SECONDS = float(os.environ.get("EDGEMIX_BENCH_JACK_S", "60"))


@pytest.mark.jack
@pytest.mark.skipif(not have_jackd(), reason="jackd not installed (scripts/apt-test.txt)")
@pytest.mark.parametrize("kind, device, ports", [
    ("jack", "", "edgemix:in_"), ("portaudio", "system", "PortAudio.*:in_")])
def test_bench_jack_live(tmp_path, record_property, kind, device, ports):
    from edgemix.rt.synthetic import render_synthetic
    chans = "".join(f"[[channels]]\ninput = {i + 1}\nfader_db = -6\ncomp_ratio = 3\n"
                    f"hpf_hz = 60\neq2_gain_db = 3\npan = {(i % 5) / 2.5 - 0.8:.2f}\n"
                    for i in range(N_CH))
    cfg = tmp_path / "bench.toml"
    cfg.write_text(f'[backend]\nkind = "{kind}"\ndevice = "{device}"\n\n{chans}')
    audio, _ = render_synthetic(N_CH, FS, 8.0, seed=11)
    with jack_server(rate=FS, period=BLOCK, capture=N_CH, playback=2) as server:
        env = dict(os.environ, JACK_DEFAULT_SERVER=server,
                   NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache")))
        p = subprocess.Popen([sys.executable, "-m", "edgemix.rt", "run", "--config", str(cfg),
                              "--json", "--duration-s", str(SECONDS + 3), "--server", server],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        player = None
        try:
            ins = sorted(wait_for_ports(server, ports, N_CH, proc=p, timeout_s=300),
                         key=lambda n: int(n.rsplit("_", 1)[1]))
            player = Player(server, audio, loop=True)
            for i, port in enumerate(ins):
                for other in player.client.get_all_connections(port):
                    player.client.disconnect(other, port)
                player.client.connect(player.ports[i], port)
            player.start()
            out, err = p.communicate(timeout=SECONDS + 60)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
            if player is not None:
                player.close()
    assert p.returncode == 0, err.decode()[-2000:]
    st = json.loads(out.decode().strip().splitlines()[-1])
    s = st["block_time_share"]
    line = (f"{kind:9s} {N_CH} ch {FS} Hz/{BLOCK}: {st['blocks']} blocks, xruns {st['xruns']}, "
            f"late {st['late_blocks']}, block time p50 {100 * s['p50']:.1f} % "
            f"p99 {100 * s['p99']:.1f} % max {100 * s['max']:.1f} % of "
            f"{st['deadline_ms']:.3f} ms; latency: backend {st['backend_latency_frames']} + "
            f"console {st['console_latency_frames']} + device API "
            f"{st['device_latency_frames']} frames")
    print("\n" + line)
    for k in ("xruns", "late_blocks", "backend_latency_frames", "console_latency_frames",
              "device_latency_frames", "blocks"):
        record_property(k, st[k])
    for k, v in s.items():
        record_property(f"block_time_{k}", v)
    assert st["blocks"] > 0.9 * SECONDS * FS / BLOCK
