"""Live equals offline, proven on a real JACK server (DESIGN.md contract 4).

A dummy JACK server is started; ``edgemix run`` runs in a subprocess on it (the JACK backend,
then the rtmixer/PortAudio backend on PortAudio's JACK host API) with the recorder on; a
separate JACK client plays a known 12-channel session into edgemix's inputs and another
records its outputs for 20 s.  Then:

* edgemix's recorded inputs are exactly the session, after a silent lead-in of L frames;
* the offline render (a fresh ``Console`` from the same session file, fed the same input in
  64-frame blocks) equals edgemix's recorded mix and the external recording, aligned by
  nothing but JACK frame times and the latency edgemix reports (exactly equal in practice:
  JACK moves float32 untouched; the bound asserted is 1e-4);
* the run was ended by SIGTERM mid-stream and the recorder's WAVs hold every processed block.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf

from cli_helpers import edgemix_env, edgemix_exe
from jack_helpers import Catcher, Player, connect, have_jackd, jack_server, wait_for_ports

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not have_jackd(), reason="jackd not installed "
                                 "(scripts/apt-test.txt: jackd2)")]

FS = 48000
BLOCK = 64
N_CH = 12
SECONDS = 20.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SESSION_TOML = """
[session]
sample_rate_hz = 48000
block_size = 64

[backend]
kind = "{kind}"
device = "{device}"
ring_blocks = 16

[master]
master_fader_db = -3.0

[[buses]]
name = "verb"
kind = "reverb"

[[buses]]
name = "mon"
kind = "monitor"
"""

# manual settings that make every strip stage do real work (all from the schema's ranges)
CHANNELS = [
    dict(fader_db=-3.0, pan=-0.4, hpf_hz=40.0, comp_ratio=4.0, comp_threshold_db=-30.0),
    dict(fader_db=-6.0, pan=0.2, eq2_gain_db=4.0, eq2_hz=900.0),
    dict(fader_db=-10.0, pan=0.7, hpf_hz=300.0, eq4_gain_db=3.0),
    dict(fader_db=-2.0, pan=0.0, eq1_gain_db=3.0, comp_ratio=3.0, comp_threshold_db=-24.0),
    dict(fader_db=-8.0, pan=-0.6, eq3_gain_db=-4.0),
    dict(fader_db=-12.0, pan=0.6, gate_on=True, gate_threshold_db=-50.0),
    dict(fader_db=0.0, pan=0.1, comp_ratio=2.5, comp_threshold_db=-20.0, aux1_send_db=-12.0),
    dict(fader_db=-4.0, pan=-0.1, polarity_invert=True),
]


def write_session(path, kind, device=""):
    text = SESSION_TOML.format(kind=kind, device=device)
    roles = ["kick", "snare", "hats_overheads", "bass", "keys_piano", "pad", "lead_vocal",
             "speech"]
    for i in range(N_CH):
        text += f'\n[[channels]]\nname = "ch{i + 1}"\ninput = {i + 1}\nrole = "{roles[i % 8]}"\n'
        for k, v in CHANNELS[i % len(CHANNELS)].items():
            text += f"{k} = {str(v).lower() if isinstance(v, bool) else v}\n"
    path.write_text(text)
    return path


def session_audio():
    from edgemix.rt.synthetic import render_synthetic
    x, _ = render_synthetic(N_CH, FS, SECONDS, seed=7)
    return x


def offline_render(session_path, x):
    from edgemix.session import load_session
    c = load_session(session_path).build_console()
    c.warmup()
    out = np.zeros((x.shape[0], 2), np.float32)
    for s in range(0, x.shape[0], BLOCK):
        c.process(np.ascontiguousarray(x[s:s + BLOCK]), out=out[s:s + BLOCK])
    return out


@pytest.fixture(scope="module")
def server():
    with jack_server(rate=FS, period=BLOCK, capture=16, playback=2) as name:
        yield name


def run_live(server, tmp_path, kind, device, in_pattern, out_pattern):
    """Play the session through edgemix on ``server``; return everything a test checks."""
    cfg = write_session(tmp_path / "session.toml", kind, device)
    rec = tmp_path / "rec"
    audio = session_audio()
    env = edgemix_env(JACK_DEFAULT_SERVER=server, JACK_NO_AUDIO_RESERVATION="1")
    proc = subprocess.Popen(edgemix_exe() + ["run", "--config", str(cfg),
                             "--record", str(rec), "--json", "--server", server],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    player = catcher = None
    try:
        # generous: on a cold Numba cache the subprocess compiles every kernel first
        ins = sorted(wait_for_ports(server, in_pattern, N_CH, proc=proc, timeout_s=300),
                     key=lambda n: int(n.rsplit("_", 1)[1]))[:N_CH]
        outs = sorted(wait_for_ports(server, out_pattern, 2, proc=proc))[:2]
        player = Player(server, audio)
        catcher = Catcher(server, 2, SECONDS + 3.0, rate=FS)
        c = player.client
        for i, port in enumerate(ins):
            for other in c.get_all_connections(port):  # PortAudio connects system:capture_*
                c.disconnect(other, port)
            connect(c, player.ports[i], port)
        for port, mine in zip(outs, catcher.ports):
            connect(c, port, mine)
        time.sleep(0.3)
        catcher.start()
        time.sleep(0.1)
        player.start()
        t_end = time.monotonic() + SECONDS + 10.0
        while not player.done and time.monotonic() < t_end:
            time.sleep(0.1)
        assert player.done, "the player did not finish in time"
        time.sleep(0.6)  # let the latency and a few blocks of tail through, mid-stream
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for cl in (player, catcher):
            if cl is not None:
                cl.close()
    assert proc.returncode == 0, stderr.decode(errors="replace")[-2000:]
    stats = json.loads(stdout.decode().strip().splitlines()[-1])
    times, caught = catcher.timeline()
    return dict(cfg=cfg, rec=rec, audio=audio, stats=stats, p0=player.start_frame_time,
                times=times, caught=caught, stderr=stderr.decode(errors="replace"))


def check_live(r):
    stats, audio = r["stats"], r["audio"]
    share = stats["block_time_share"]
    print(f"\n{stats['backend']}: xruns {stats['xruns']}, late blocks {stats['late_blocks']} "
          f"of {stats['blocks']}; block time p50 {100 * share['p50']:.1f} % "
          f"p99 {100 * share['p99']:.1f} % max {100 * share['max']:.1f} % of "
          f"{stats['deadline_ms']:.3f} ms; latency {stats['latency_frames']} frames; "
          f"stop: {stats['stop_reason']}")
    assert stats["stop_reason"] == "SIGTERM"
    assert stats["audio_errors"] == 0

    # the recorder: valid WAVs holding every processed block, nothing dropped
    rs = stats["recorder"]
    assert rs["dropped_frames"] == 0 and rs["error"] is None
    inputs, fs_i = sf.read(r["rec"] / "inputs.wav", dtype="float32", always_2d=True)
    mix, fs_m = sf.read(r["rec"] / "mix.wav", dtype="float32", always_2d=True)
    assert fs_i == fs_m == FS
    assert inputs.shape == (stats["frames"], N_CH) and mix.shape == (stats["frames"], 2)
    assert stats["frames"] == stats["blocks"] * BLOCK

    # what edgemix received: silence, then exactly the session (JACK moves float32 unchanged)
    nz = np.flatnonzero(np.any(inputs != 0, axis=1))
    lead = int(nz[0]) - int(np.flatnonzero(np.any(audio != 0, axis=1))[0])
    n = audio.shape[0]
    assert lead >= 0 and inputs.shape[0] >= lead + n, "the session did not reach edgemix whole"
    assert not inputs[:lead].any()
    np.testing.assert_array_equal(inputs[lead:lead + n], audio)
    assert not inputs[lead + n:].any()

    # the offline render of the same input, same session file, 64-frame blocks
    ref = offline_render(r["cfg"], inputs)
    np.testing.assert_allclose(mix, ref, rtol=0, atol=1e-6)
    assert np.abs(ref[lead:lead + n]).max() > 0.05, "the mix is (near) silent: a vacuous test"

    # the external recording, aligned by JACK frame times and the reported latency only:
    # the player's first frame went out at JACK frame p0 and reached edgemix as its input
    # frame ``lead``; edgemix's output frame j leaves its buffers ``latency_frames`` (its
    # own rings + what the audio API reports) after input frame j went in.  The console's
    # lookahead is not added: it is inside both renders alike (output frame j of the live
    # mix and of the offline render hold the same, delayed, audio).  Frame times are taken
    # per catcher cycle, so a cycle the catcher itself missed cannot shift the rest.
    lat = stats["backend_latency_frames"] + stats["device_latency_frames"]
    times, caught = r["times"], r["caught"]
    jumps = int(np.count_nonzero(np.diff(times) % (1 << 32) != BLOCK))
    cycle_t = (times - r["p0"] + (1 << 31)) % (1 << 32) - (1 << 31)  # signed, wrap-safe
    j = (np.repeat(cycle_t, BLOCK) + np.tile(np.arange(BLOCK), times.size)
         + lead - lat)                                                # edgemix frame index
    # frames still in edgemix's output ring when SIGTERM stopped it were never played
    ok = (j >= 0) & (j < ref.shape[0] - stats["backend_latency_frames"])
    covered = (j[ok] >= lead) & (j[ok] < lead + n)
    assert covered.sum() >= SECONDS * FS - BLOCK, "the recording does not cover the session"
    err = np.abs(caught[ok] - ref[j[ok]]).max()
    print(f"{stats['backend']}: external recording vs offline render: max |diff| = {err:.3g} "
          f"over {ok.sum()} frames, lead-in {lead} frames, frame-time gaps {jumps}")
    if err > 1e-4:  # say where the recording does line up, to tell a latency error apart
        best = [d for d in range(-8 * BLOCK, 8 * BLOCK + 1, BLOCK)
                if np.abs(caught[ok][BLOCK * 16:] - ref[np.clip(j[ok] - d, 0, ref.shape[0] - 1)]
                          [BLOCK * 16:]).max() <= 1e-4]
        pytest.fail(f"live != offline (max |diff| {err:.3g}); it matches when shifted by "
                    f"{best} frames beyond the reported {lat}")


def test_jack_backend_live_equals_offline(server, tmp_path):
    r = run_live(server, tmp_path, "jack", "", "edgemix:in_", "edgemix:out_")
    st = r["stats"]
    assert st["backend_latency_frames"] == 16 * BLOCK  # the session's ring_blocks periods
    assert st["total_latency_frames"] == 16 * BLOCK + st["console_latency_frames"]
    # nothing lost on the way: every period played the block due, none came late
    assert st["backend_missed"] == st["backend_overflows"] == st["backend_stale"] == 0
    assert st["backend_cycles"] >= st["blocks"] > SECONDS * FS / BLOCK
    check_live(r)


def test_portaudio_rtmixer_on_jack_host_api(server, tmp_path):
    r = run_live(server, tmp_path, "portaudio", "system", "PortAudio.*:in_",
                 "PortAudio.*:out_")
    st = r["stats"]
    assert st["backend_hostapi"] == "JACK Audio Connection Kit"
    assert st["backend_latency_frames"] == 16 * BLOCK  # the prefilled output ring
    assert st["device_latency_frames"] == 0  # PortAudio on JACK's own period adds none
    assert st["total_latency_frames"] == 16 * BLOCK + st["console_latency_frames"]
    assert st["backend_resyncs"] == 0, "a ring ran dry: the latency is no longer fixed"
    check_live(r)


def test_devices_lists_the_running_jack_server(server):
    from click.testing import CliRunner
    from edgemix.cli import cli
    res = CliRunner().invoke(cli, ["devices", "--json", "--server", server])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["jack"]["sample_rate_hz"] == FS and out["jack"]["block_size"] == BLOCK
    assert len(out["jack"]["capture"]) == 16 and len(out["jack"]["playback"]) == 2
    res = CliRunner().invoke(cli, ["devices", "--server", server])
    assert res.exit_code == 0, res.output
    assert f"JACK: {FS} Hz, {BLOCK} frames; 16 capture and 2 playback ports" in res.stdout


@pytest.mark.parametrize("device, n, words", [
    ("system", 20, ["has 16 inputs", "needs 20"]),
    ("no-such-card", 2, ["unknown audio device", "no-such-card", "edgemix devices"]),
])
def test_portaudio_device_errors_are_one_line(server, tmp_path, device, n, words):
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[backend]\nkind = "portaudio"\ndevice = "{device}"\nn_channels = {n}\n')
    env = edgemix_env(JACK_DEFAULT_SERVER=server)
    p = subprocess.run(edgemix_exe() + ["run", "--config", str(cfg)],
                       cwd=ROOT, env=env, capture_output=True, timeout=60)
    err = p.stderr.decode().strip()
    assert p.returncode == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


def _wait(cond, timeout_s, what):
    t_end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > t_end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_jack_server_lost_mid_run_is_said_and_retried_until_it_returns(caplog):
    """The server dies under a running session: one clear warning, re-opens every retry_s
    until a server of the same name is back, then the stream goes on (a new worker, the
    same runner); the run ends normally."""
    import logging
    import threading
    import uuid
    from edgemix.console import Console
    from edgemix.rt.jack_backend import JackBackend
    from edgemix.rt.runner import Runner
    from jack_helpers import jack_server
    caplog.set_level(logging.WARNING, logger="edgemix.rt")
    name = f"edgemix-test-{uuid.uuid4().hex[:8]}"
    b = JackBackend(2, FS, BLOCK, server=name, client_name="edgemix-lost-test")
    r = Runner(Console(FS, BLOCK, 2, 1), b, rt_priority=False, retry_s=0.2)
    result = {}
    with jack_server(rate=FS, period=BLOCK, capture=2, playback=2, name=name):
        t = threading.Thread(target=lambda: result.update(r.run()), daemon=True)
        t.start()
        _wait(lambda: r.frames > 0.5 * FS, 30, "the first stream")
    # the server is gone: the runner says so and keeps trying
    _wait(lambda: r.retries >= 2, 30, "re-open attempts")
    before = r.frames
    with jack_server(rate=FS, period=BLOCK, capture=2, playback=2, name=name):
        _wait(lambda: r.frames > before + 0.5 * FS, 30, "the stream after the server came back")
        r.request_stop("test done")
        t.join(30)
    assert not t.is_alive() and result["stop_reason"] == "test done"
    said = [rec.getMessage() for rec in caplog.records]
    assert any("audio device lost (JACK server shut down" in m for m in said), said
    assert any("cannot reach server" in m and "retrying in 0.2 s" in m for m in said), said
    assert all("\n" not in m for m in said)
    assert result["retries"] >= 2 and result["audio_errors"] == 0


def test_a_failing_audio_thread_is_said_and_the_stream_reopened(caplog):
    """A bug that raises in the DSP worker (here: on its 300th block) must not leave a dead
    thread behind a stream that plays silence: one line says so and the backend re-opens."""
    import logging
    from edgemix.console import Console
    from edgemix.rt.jack_backend import JackBackend
    from edgemix.rt.runner import Runner
    from jack_helpers import jack_server
    caplog.set_level(logging.WARNING, logger="edgemix.rt")
    with jack_server(rate=FS, period=BLOCK, capture=2, playback=2) as name:
        b = JackBackend(2, FS, BLOCK, server=name, client_name="edgemix-bug-test")
        r = Runner(Console(FS, BLOCK, 2, 1), b, rt_priority=False, retry_s=0.1)
        process, calls = r.process, [0]

        def buggy(x, out):
            calls[0] += 1
            if calls[0] == 300:
                raise RuntimeError("boom")
            process(x, out)
        r.process = buggy
        st = r.run(duration_s=2.0)
    said = [rec.getMessage() for rec in caplog.records]
    assert any("audio device lost (the jack audio thread stopped (RuntimeError: boom))" in m
               for m in said), said
    # the re-opened stream went on: most of the 2 s were processed
    assert st["blocks"] > 0.6 * 2.0 * FS / BLOCK and calls[0] > 600
