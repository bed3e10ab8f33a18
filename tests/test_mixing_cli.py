"""``edgemix demo`` and ``edgemix mix``: the README's main job and the offline auto-mix."""
import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from scipy.signal import resample_poly

from edgemix.cli import cli


def _true_peak_dbtp(y):
    """Independent of edgemix: 8x polyphase oversampling (scipy)."""
    return 20 * np.log10(np.abs(resample_poly(y.astype(np.float64), 8, 1, axis=0)).max())


def test_demo_writes_a_mix_that_is_neither_silent_nor_clipped_and_a_report(tmp_path):
    pyln = pytest.importorskip("pyloudnorm")
    out = tmp_path / "demo"
    # the README's main job, with its default policy (the shipped model)
    r = CliRunner().invoke(cli, ["demo", "-o", str(out), "--seconds", "6", "--channels", "5"])
    assert r.exit_code == 0, r.output
    y, fs = sf.read(str(out / "mix.wav"))
    assert y.shape[1] == 2 and fs == 48000
    loud = pyln.Meter(fs).integrated_loudness(y)
    assert loud > -40.0, "the demo mix is (nearly) silent"
    assert _true_peak_dbtp(y) <= -1.0 + 0.05
    rep = json.loads((out / "report.json").read_text())
    assert rep["policy"] == "model"
    assert len(rep["channels"]) == 5
    assert all(c["role"] != "" and "fader_db" in c["params"] for c in rep["channels"])
    assert abs(rep["master"]["integrated_lufs"] - loud) < 0.5
    assert (out / "report.md").read_text().startswith("# edgemix mix report")
    assert len(list((out / "stems").glob("*.wav"))) == 5
    processed = sorted((out / "processed").glob("*.wav"))
    assert [p.name for p in processed] == sorted(p.name for p in (out / "stems").glob("*.wav"))
    assert all(sf.info(str(p)).channels == 2 for p in processed)


def _stems(folder, n=3, fs=48000, seconds=3.0, channels=1):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(fs * seconds)) / fs
    names = ["kick", "bass", "vocal", "guitar"]
    for i in range(n):
        x = 0.1 * np.sin(2 * np.pi * (80 + 150 * i) * t) + 0.02 * rng.standard_normal(len(t))
        data = x if channels == 1 else np.stack([x] * channels, 1)
        sf.write(str(folder / f"{i + 1:02d}_{names[i]}.wav"), data, fs)
    return folder


def test_mix_writes_processed_stems_that_sum_to_the_mix(tmp_path):
    """``--stems-out``: one stereo file per channel, the whole length; with the master
    section transparent they add up to the mix (after the limiter's constant latency)."""
    stems = _stems(tmp_path / "stems", n=3, seconds=1.5)
    params = tmp_path / "session.toml"
    params.write_text(
        '[master]\nlimiter_on = 0\nreverb_return_db = -90.0\n\n'
        '[[channels]]\nname = "kick"\ninput = 1\nrole = "kick"\nfader_db = -6.0\npan = -0.5\n\n'
        '[[channels]]\nname = "bass/di"\ninput = 2\nrole = "bass"\ncomp_on = 1\n\n'
        '[[channels]]\nname = "vocal"\ninput = 3\nrole = "lead_vocal"\npan = 0.7\n')
    out = tmp_path / "out" / "mix.wav"
    processed = tmp_path / "processed"
    r = CliRunner().invoke(cli, ["mix", str(stems), "-o", str(out), "--params", str(params),
                                 "--policy", "none", "--stems-out", str(processed)])
    assert r.exit_code == 0, r.output
    files = sorted(processed.glob("*.wav"))
    assert [f.name for f in files] == ["01_kick.wav", "02_bass_di.wav", "03_vocal.wav"]
    y, fs = sf.read(str(out), dtype="float32")
    parts = [sf.read(str(f), dtype="float32")[0] for f in files]
    assert all(p.shape == y.shape == (72000, 2) for p in parts)
    total = np.sum(parts, axis=0)
    assert np.abs(total).max() > 0.01
    from edgemix.dsp.limiter import LimiterState
    lat = LimiterState.allocate(fs).latency_frames
    np.testing.assert_allclose(total[:-lat], y[lat:], rtol=0, atol=1e-5)
    # kick is panned left of centre and 6 dB down: its left side is the louder
    assert np.abs(parts[0][:, 0]).max() > np.abs(parts[0][:, 1]).max()


def test_mix_with_manual_settings_that_win(tmp_path):
    stems = _stems(tmp_path / "stems")
    params = tmp_path / "session.toml"
    params.write_text(
        '[[channels]]\nname = "kick"\ninput = 1\nrole = "kick"\nautomation = 1.0\n'
        'fader_db = -12.0\n\n'
        '[[channels]]\nname = "bass"\ninput = 2\nrole = "bass"\nautomation = 0.0\n\n'
        '[[channels]]\nname = "vocal"\ninput = 3\nrole = "lead_vocal"\n')
    out = tmp_path / "out" / "mix.wav"
    r = CliRunner().invoke(cli, ["mix", str(stems), "-o", str(out), "--params", str(params),
                                 "--policy", "rules", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output.strip().splitlines()[-1])
    kick, bass = rep["channels"][0], rep["channels"][1]
    assert kick["params"]["fader_db"] == -12.0       # a person's setting always wins
    assert bass["params"]["trim_db"] == 0.0          # automation 0: manual (the defaults)
    assert bass["params"]["fader_db"] == 0.0
    y, _ = sf.read(str(out))
    assert np.abs(y).max() > 1e-3


def test_mix_without_a_session_file_names_channels_after_the_stems(tmp_path):
    stems = _stems(tmp_path / "stems", n=2)
    out = tmp_path / "mix.wav"
    r = CliRunner().invoke(cli, ["mix", str(stems), "-o", str(out), "--policy", "none",
                                 "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output.strip().splitlines()[-1])
    assert [c["name"] for c in rep["channels"]] == ["01_kick", "02_bass"]
    assert rep["channels"][0]["role"] == "kick"


@pytest.mark.parametrize("case", ["missing", "rates", "mono_stereo", "empty"])
def test_mix_bad_stems_are_one_line_errors(tmp_path, case):
    d = tmp_path / "stems"
    if case == "missing":
        d = tmp_path / "nowhere"
    elif case == "rates":
        _stems(d, n=1)
        sf.write(str(d / "02_other.wav"), np.zeros(4410), 44100)
    elif case == "mono_stereo":
        _stems(d, n=1)
        sf.write(str(d / "02_other.wav"), np.zeros((4800, 2)), 48000)
    elif case == "empty":
        _stems(d, n=1)
        sf.write(str(d / "02_other.wav"), np.zeros(0), 48000)
    r = CliRunner().invoke(cli, ["mix", str(d), "-o", str(tmp_path / "m.wav")])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("edgemix: error:"), r.output
    assert "Traceback" not in r.output
