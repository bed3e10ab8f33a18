"""``edgemix profile``: runs the engine at a target's settings, writes JSON, a summary and
real plots; the numbers are consistent with each other and with the pacing."""
import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgemix import latency_profile as P
from edgemix.cli import cli
from edgemix.boardtools import profiles


def tiny_random_model(folder: Path) -> Path:
    """A real student weights file in the shipped format, with small random weights: enough
    to time the numba and numpy backends on (its outputs mean nothing)."""
    from edgemix.infer.base import model_io
    from edgemix.infer.weights import LAYOUT, save_weights
    feats, outs, roles = model_io()
    sizes = {"F": len(feats), "H1": 16, "H2": 16, "K": 8, "D": 16, "P": len(outs),
             "R": len(roles)}
    sizes["2H2"] = 2 * sizes["H2"]
    rng = np.random.default_rng(7)
    w = {k: (0.1 * rng.standard_normal([sizes[d] for d in dims])).astype(np.float32)
         for k, dims in LAYOUT.items()}
    w["in_scale"] = np.full(sizes["F"], 0.01, np.float32)
    w["in_shift"] = np.zeros(sizes["F"], np.float32)
    w["feature_names"], w["output_names"], w["role_names"] = feats, outs, roles
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny-random-test-model.npz"
    save_weights(path, w)
    return path


def _png_ok(path: Path, colour_hex: str | None = None):
    import matplotlib.image as mpimg
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] >= 200 and img.shape[1] >= 300
    rgb = (img[..., :3] * 255).round().astype(np.int32)
    flat = rgb.reshape(-1, 3)
    # non-blank: most of a plot is white background, but plenty of pixels are drawn
    not_white = np.any(flat < 240, axis=1).mean()
    assert 0.02 < not_white < 0.9, not_white
    assert len(np.unique(flat, axis=0)) > 20
    if colour_hex:
        # A thin antialiased line rarely covers a whole pixel (it depends on where the data
        # puts it), so "drawn" means: pixels that are this colour blended over the white
        # background with at least half coverage, the same coverage in every channel.
        want = np.array([int(colour_hex[i:i + 2], 16) for i in (1, 3, 5)])
        coverage = (255 - flat) / np.maximum(255 - want, 1)
        strong = 255 - want > 40  # channels where the colour differs from white
        cov = coverage[:, strong]
        blended = (cov.min(axis=1) >= 0.5) & (cov.max(axis=1) - cov.min(axis=1) <= 0.1)
        assert blended.sum() >= 20, f"{colour_hex} not drawn"


def test_profile_x86_laptop_3_seconds(tmp_path):
    """``--paced``: no audio server, a stand-in device thread on the deadline grid; the
    control path is the control process, as in every profile."""
    models = tmp_path / "models"
    tiny_random_model(models)
    out = tmp_path / "prof"
    t0 = time.perf_counter()
    r = CliRunner().invoke(cli, ["profile", "--target", "x86-laptop", "--seconds", "3", "-o",
                                 str(out), "--models", str(models), "--paced"])
    wall = time.perf_counter() - t0
    assert r.exit_code == 0, r.output
    assert wall >= 3.0  # paced: three seconds of audio take at least three seconds

    prof = profiles.load("x86-laptop")
    rep = json.loads((out / "profile.json").read_text())
    assert rep["target"] == "x86-laptop" and rep["mode"] == "paced"
    assert rep["n_blocks"] == int(3 * prof.sample_rate_hz) // prof.block_size
    assert rep["deadline_ms"] == pytest.approx(1000 * prof.block_size / prof.sample_rate_hz)
    assert rep["settings"]["n_channels"] == prof.n_channels
    assert set(rep["stages"]) == {"dsp", "block", "response"}
    for stage in ("dsp", "block", "response"):
        st = rep["stages"][stage]
        seq = [st["p50_ms"], st["p95_ms"], st["p99_ms"], st["p99.9_ms"], st["max_ms"]]
        assert st["n"] == rep["n_blocks"]
        assert all(a <= b for a, b in zip(seq, seq[1:])), (stage, seq)
        assert seq[0] > 0
    # the runner's block contains the console; the response adds the wake-up
    assert rep["stages"]["block"]["mean_ms"] >= rep["stages"]["dsp"]["mean_ms"]
    assert rep["stages"]["response"]["mean_ms"] >= rep["stages"]["block"]["mean_ms"]
    assert rep["runner"]["blocks"] == rep["n_blocks"] and rep["backend"]["backend"] == "paced"
    # a deadline miss is a block whose response exceeded the deadline, so:
    assert (rep["deadline_misses"] > 0) == (rep["stages"]["response"]["max_ms"]
                                            > rep["deadline_ms"])
    assert rep["xruns"] >= rep["deadline_misses"]
    load = rep["cpu"]["audio_thread_load_percent"]
    assert load == pytest.approx(100 * rep["stages"]["block"]["mean_ms"] / rep["deadline_ms"],
                                 rel=1e-6)

    # the runner's control loop ran at the hop (of the input's clock) with the model policy
    # on the numba backend (the profile's fallback: there is no .onnx here)
    ctl = rep["control"]
    assert ctl["backend"] == "numba" and ctl["policy_class"] == "ModelPolicy"
    assert ctl["errors"] == 0
    assert 0.7 * 3000 / prof.hop_ms <= ctl["hops"] <= 3000 / prof.hop_ms + 1
    assert ctl["inference"]["n"] == ctl["hops"] and ctl["features"]["n"] >= ctl["hops"]
    assert 0 < ctl["inference"]["p50_ms"] <= ctl["control"]["max_ms"]
    assert ctl["control"]["mean_ms"] == pytest.approx(
        ctl["inference"]["mean_ms"] + ctl["policy"]["mean_ms"])
    assert {"numba", "numpy"} <= set(rep["inference"])
    skipped = {s["what"] for s in rep["skipped"]}
    assert "inference onnxruntime" in skipped and "inference litert-int8" in skipped

    md = (out / "summary.md").read_text()
    assert md.startswith("# edgemix latency profile: x86-laptop")
    for word in ("| dsp |", "| features |", "| block |", "| inference |", "p99.9", "| numba |",
                 "inference onnxruntime"):
        assert word in md
    _png_ok(out / "latency_histogram.png", "#d62728")   # the deadline line
    _png_ok(out / "timeline.png", "#1f77b4")
    _png_ok(out / "stages.png", "#2ca02c")


def test_blocks_are_released_on_the_deadline_grid():
    r = P.run_profile("rpi4", 0.5, models_dir="/nonexistent", rt=False, paced=True)
    prof = profiles.load("rpi4")
    period_ns = 1e9 * prof.block_size / prof.sample_rate_hz
    rel = r["_raw"]["release"]
    k = np.arange(rel.size)
    assert np.abs(rel - k * period_ns).max() <= 1.0
    t = r["_raw"]["times"]
    # response (release to end) >= the runner's block >= the console's part of it
    assert np.all(t[:, 2] >= t[:, 1]) and np.all(t[:, 1] >= t[:, 0])
    assert r["deadline_misses"] == int(np.sum(t[:, 2] > period_ns))
    # without a model the board runs the rule policy (the bundle's session does): its
    # features and steps ran in the control process, no inference to time
    assert r["control"]["policy_class"] == "RulePolicy" and r["control"]["features"]["n"] > 0
    assert r["control"]["process"] and r["control"]["inference"]["max_ms"] == 0.0
    whats = {s["what"] for s in r["skipped"]}
    assert "inference" in whats and "model policy (inference in the control process)" in whats


def test_stats_against_a_closed_form():
    ns = np.arange(1, 100001, dtype=np.int64)          # 1 .. 100000 ns, uniform
    s = P.stats_ms(ns)
    # linear-interpolated percentiles of 1..N: 1 + q (N - 1)
    for q in (50.0, 95.0, 99.0, 99.9):
        assert s[f"p{q:g}_ms"] == pytest.approx((1 + q / 100 * 99999) / 1e6)
    assert s["max_ms"] == pytest.approx(0.1) and s["mean_ms"] == pytest.approx(0.0500005)
    assert P.stats_ms(np.array([]))["n"] == 0


def test_bad_arguments_are_one_line(tmp_path):
    r = CliRunner().invoke(cli, ["profile", "--target", "rpi9", "-o", str(tmp_path)])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "unknown target" in r.output
    r = CliRunner().invoke(cli, ["profile", "--target", "rpi4", "--seconds", "0", "-o",
                                         str(tmp_path)])
    assert r.exit_code == 2 and "--seconds 0" in r.output


def test_profile_through_a_live_jack_server(tmp_path, monkeypatch):
    """A running JACK server: the profile runs what ``edgemix run`` runs on it (the
    compiled callback, the DSP worker, the control process) and times it from inside."""
    import jack_helpers
    assert jack_helpers.have_jackd(), "jackd is missing: apt-get install jackd2 " \
                                      "(scripts/apt-test.txt)"
    prof = profiles.load("rpi4")
    models = tmp_path / "models"
    tiny_random_model(models)
    with jack_helpers.jack_server(rate=prof.sample_rate_hz, period=prof.block_size,
                                  capture=prof.n_channels, sync=False) as server:
        monkeypatch.setenv("JACK_DEFAULT_SERVER", server)
        r = CliRunner().invoke(cli, ["profile", "--target", "rpi4", "--seconds", "2",
                                     "-o", str(tmp_path / "live"), "--models", str(models)])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "live" / "profile.json").read_text())
    assert rep["mode"] == "live" and rep["backend"]["backend"] == "jack"
    # the runner ran for 2 s of wall clock, part of it opening the client on a busy machine:
    # at most that many blocks, and every block the runner counted was timed here too
    expect = 2.0 * prof.sample_rate_hz / prof.block_size
    assert 0.1 * expect <= rep["n_blocks"] <= 1.1 * expect
    assert abs(rep["n_blocks"] - rep["runner"]["blocks"]) <= 2
    assert rep["xruns"] == rep["deadline_misses"] + rep["backend_xruns"]
    # the runner counts the server's xruns and ours together; the profile splits them
    assert rep["xruns"] == rep["runner"]["xruns"]
    assert rep["misses"] == {"ours": rep["deadline_misses"], "server": rep["backend_xruns"]}
    assert rep["path"]["backend"] == "jack" and "compiled" in rep["path"]["callback"]
    assert "running JACK server" in rep["path"]["server"]
    assert rep["control"]["process"] and rep["control"]["policy_class"] == "ModelPolicy"
    for stage in ("dsp", "block"):
        assert rep["stages"][stage]["p50_ms"] > 0
    assert rep["stages"]["block"]["mean_ms"] >= rep["stages"]["dsp"]["mean_ms"]
    assert rep["control"]["hops"] >= 5 and rep["control"]["errors"] == 0
    _png_ok(tmp_path / "live" / "timeline.png", "#1f77b4")


def test_without_a_server_or_a_sound_card_a_dummy_jackd_runs_and_it_is_said(tmp_path,
                                                                            monkeypatch):
    """No JACK server and no sound card: the profile starts a dummy-driver jackd for the
    run, says so on stderr and in the JSON, plays the synthetic session into the inputs
    with a compiled player, and stops the server afterwards."""
    import jack_helpers
    from edgemix.rt import jack_tools
    if P._has_sound_card():
        pytest.skip("this machine has a sound card: the profile would not start a dummy jackd")
    assert jack_helpers.have_jackd(), "jackd is missing: apt-get install jackd2"
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "edgemix-no-such-server")
    models = tmp_path / "models"
    tiny_random_model(models)
    r = CliRunner().invoke(cli, ["profile", "--target", "rpi4", "--seconds", "2", "-o",
                                 str(tmp_path / "p"), "--models", str(models)])
    assert r.exit_code == 0, r.output
    assert "dummy-driver JACK server" in r.stderr and "no sound card" in r.stderr
    rep = json.loads((tmp_path / "p" / "profile.json").read_text())
    assert rep["path"]["backend"] == "jack" and "started for this profile" in rep["path"]["server"]
    assert rep["input"].startswith("a loop player")
    assert not any(s["what"] == "loop player" for s in rep["skipped"])
    assert rep["control"]["hops"] >= 5 and rep["control"]["errors"] == 0
    assert rep["stages"]["cycle"]["p50_share"] > 0
    name = rep["path"]["server"].split("'")[1]
    assert not jack_tools.server_running(name)  # stopped with the profile
