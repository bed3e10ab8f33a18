"""``edgemix run`` / ``edgemix devices`` from the outside: one-line errors, SIGTERM mid-stream."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from cli_helpers import edgemix_env, edgemix_exe
from edgemix.cli import cli

FS = 48000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(args):
    res = CliRunner().invoke(cli, ["run", *args])
    return res.exit_code, res.stderr.strip(), res


def assert_one_line_error(code, err, *words):
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("edgemix: error: ")
    for w in words:
        assert w in err, (w, err)


def offline_cfg(tmp_path, inputs, channels=""):
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[backend]\nkind = "offline"\ninputs = {json.dumps(inputs)}\n'
                   f'output = "mix.wav"\n{channels}')
    return cfg


def tone(n=4800, ch=1):
    t = np.arange(n) / FS
    return np.stack([0.1 * np.sin(2 * np.pi * 440 * (k + 1) * t) for k in range(ch)], 1)


def test_missing_stem(tmp_path):
    sf.write(tmp_path / "a.wav", tone(), FS)
    code, err, _ = run_cli(["--config", str(offline_cfg(tmp_path, ["a.wav", "b.wav"]))])
    assert_one_line_error(code, err, "b.wav", "no such file")


def test_corrupt_stem(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk" + os.urandom(64))
    code, err, _ = run_cli(["--config", str(offline_cfg(tmp_path, ["a.wav"]))])
    assert_one_line_error(code, err, "a.wav", "not a readable audio file")


def test_zero_length_stem(tmp_path):
    sf.write(tmp_path / "a.wav", tone(), FS)
    sf.write(tmp_path / "b.wav", np.zeros((0, 1)), FS)
    code, err, _ = run_cli(["--config", str(offline_cfg(tmp_path, ["a.wav", "b.wav"]))])
    assert_one_line_error(code, err, "b.wav", "no audio frames")


def test_mixed_sample_rates(tmp_path):
    sf.write(tmp_path / "a.wav", tone(), FS)
    sf.write(tmp_path / "b.wav", tone(), 44100)
    code, err, _ = run_cli(["--config", str(offline_cfg(tmp_path, ["a.wav", "b.wav"]))])
    assert_one_line_error(code, err, "44100 Hz", "48000 Hz", "resample")


def test_mono_and_stereo_together(tmp_path):
    sf.write(tmp_path / "a.wav", tone(), FS)
    sf.write(tmp_path / "b.wav", tone(ch=2), FS)
    code, err, _ = run_cli(["--config", str(offline_cfg(tmp_path, ["a.wav", "b.wav"]))])
    assert_one_line_error(code, err, "b.wav", "mono and stereo")


def test_session_rate_differs_from_stems(tmp_path):
    sf.write(tmp_path / "a.wav", tone(), 44100)
    cfg = offline_cfg(tmp_path, ["a.wav"])
    code, err, _ = run_cli(["--config", str(cfg)])
    assert_one_line_error(code, err, "44100", "session.sample_rate_hz")


def test_more_channels_than_the_source_has(tmp_path):
    sf.write(tmp_path / "a.wav", tone(), FS)
    sf.write(tmp_path / "b.wav", tone(), FS)
    chans = "".join(f"[[channels]]\ninput = {i}\n" for i in (1, 2, 3))
    code, err, _ = run_cli(["--config", str(offline_cfg(tmp_path, ["a.wav", "b.wav"], chans))])
    assert_one_line_error(code, err, "input 3", "2 inputs")


def test_bad_session_value(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text("[[channels]]\ninput = 1\n[[channels]]\ninput = 2\nfader_db = 30\n")
    code, err, _ = run_cli(["--config", str(cfg)])
    assert_one_line_error(code, err, "channels[1].fader_db = 30: out of range")


def test_missing_config(tmp_path):
    code, err, _ = run_cli(["--config", str(tmp_path / "nope.toml")])
    assert_one_line_error(code, err, "nope.toml", "no such file")


def test_jack_server_not_running(tmp_path):
    pytest.importorskip("jack")
    cfg = tmp_path / "s.toml"
    cfg.write_text('[backend]\nkind = "jack"\nn_channels = 2\n')
    code, err, _ = run_cli(["--config", str(cfg), "--server", "edgemix-no-such-server"])
    assert_one_line_error(code, err, "edgemix-no-such-server", "jackd")


def test_offline_stems_run_and_json(tmp_path):
    for i in range(3):
        sf.write(tmp_path / f"{i}.wav", tone(9600) * (i + 1) / 4, FS)
    code, err, res = run_cli(["--config", str(offline_cfg(tmp_path, ["."])), "--json"])
    assert code == 0, err
    st = json.loads(res.stdout.strip().splitlines()[-1])
    assert st["n_channels"] == 3 and st["frames"] == 9600 and st["xruns"] == 0
    mix, fs = sf.read(tmp_path / "mix.wav")
    assert mix.shape == (9600, 2) and fs == FS and np.abs(mix).max() > 0.01


def test_devices_without_a_server_says_so_in_one_line_each():
    """No sound card and no JACK server here: each API gets one line, and libjack's own
    multi-line complaints ("Cannot connect to server socket ...", written to fd 2 by C
    code, out of click's reach) do not reach the user."""
    env = edgemix_env(JACK_DEFAULT_SERVER="edgemix-no-such-server")
    p = subprocess.run(edgemix_exe() + ["devices"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    # (what else a sound system may print on some machine -- ALSA's own complaints without
    # a card -- is not edgemix's to silence; libjack's, and any traceback, are)
    libjack = ("Cannot connect to server", "jack server is not running", "JackShm",
               "Traceback")
    assert p.returncode == 0, p.stderr
    assert not any(w in p.stderr for w in libjack), p.stderr
    assert p.stdout.splitlines()[-1] == "JACK: no server running"
    p = subprocess.run(edgemix_exe() + ["devices", "--json"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not any(w in p.stderr for w in libjack), p.stderr
    assert json.loads(p.stdout)["jack"] is None


def test_sigterm_mid_stream_leaves_valid_recordings(tmp_path):
    """Paced synthetic session in a subprocess, SIGTERM after ~1.5 s of audio: the recorder's
    WAVs are valid and hold exactly the blocks the runner processed."""
    cfg = tmp_path / "s.toml"
    cfg.write_text('[backend]\nkind = "synthetic"\npaced = true\nduration_s = 60\n'
                   'output = ""\nn_channels = 6\n')
    rec = tmp_path / "rec"
    env = edgemix_env()
    p = subprocess.Popen(edgemix_exe() + ["run", "--config", str(cfg),
                          "--record", str(rec), "--json", "--no-rt"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        t_end = time.monotonic() + 60
        while not (rec / "mix.wav").exists() and time.monotonic() < t_end:
            assert p.poll() is None, p.stderr.read().decode()
            time.sleep(0.05)
        time.sleep(1.5)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err.decode()
    st = json.loads(out.decode().strip().splitlines()[-1])
    assert st["stop_reason"] == "SIGTERM"
    assert 0.5 * FS < st["frames"] < 30 * FS  # stopped mid-stream, not at the end
    assert st["frames"] == 64 * st["blocks"]
    assert st["recorder"]["dropped_frames"] == 0
    inputs, fs1 = sf.read(rec / "inputs.wav", dtype="float32")
    mix, fs2 = sf.read(rec / "mix.wav", dtype="float32")
    assert fs1 == fs2 == FS
    assert inputs.shape == (st["frames"], 6) and mix.shape == (st["frames"], 2)
    from edgemix.rt.synthetic import SyntheticSource
    src = SyntheticSource(6, FS, 60, seed=1)
    want = np.zeros((st["frames"], 6), np.float32)
    src.read(want)
    np.testing.assert_array_equal(inputs, want)  # every block, in order, none missing
