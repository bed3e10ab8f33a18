"""``edgemix prep`` end to end: a folder of anonymous stems (FluidSynth renders) with
planted faults -- clicks, a polarity-inverted copy, a Haas double, a silent stretch --
through the real command; the JSON fields, the report, the corrected copies, the
untouched originals, and one-line errors for bad input."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import soundfont

SR = soundfont.SAMPLE_RATE_HZ
SECONDS = 12.0


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    why = soundfont.available()
    if why:
        pytest.skip(why)
    parts = soundfont.render_parts(SECONDS, seed=5)
    d = tmp_path_factory.mktemp("stems")
    truth = {}
    # in_01 drums, in_02 bass, in_03 piano (+3 clicks), in_04 guitar, in_05 its Haas
    # double, in_06 strings, in_07 strings inverted, in_08 lead with a 4 s gap
    piano = parts["piano"].copy()
    rms = float(np.sqrt(np.mean(piano ** 2)))
    clicks = [int(2.0 * SR) + 11, int(5.5 * SR) + 3, int(9.25 * SR) + 40]
    for k, p in enumerate(clicks):
        piano[p] += (-1) ** k * 0.5 * rms
    truth["clicks"] = [p / SR for p in clicks]
    haas = 7.3                          # ms
    dly = haas * 1e-3 * SR
    g = parts["guitar"]
    n = len(g)
    f = np.fft.rfftfreq(2 * n)
    double = np.fft.irfft(np.fft.rfft(g, 2 * n) * np.exp(-2j * np.pi * f * dly), 2 * n)[:n]
    truth["haas_ms"] = haas
    lead = parts["lead"].copy()
    rng = np.random.default_rng(0)
    gap = (4.0, 8.0)
    lead[int(gap[0] * SR):int(gap[1] * SR)] = 10 ** (-75 / 20) * rng.normal(size=int(4 * SR))
    truth["gap"] = gap
    stems = [parts["drums"], parts["bass"], piano, g, double, parts["strings"],
             -parts["strings"], lead]
    for k, x in enumerate(stems):
        sf.write(str(d / f"in_{k + 1:02d}.wav"), x.astype(np.float32), SR, subtype="FLOAT")
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()}
    return d, truth, digest


def _prep(*args):
    return subprocess.run([sys.executable, "-m", "edgemix", "prep", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_prep_finds_the_planted_faults(planted, tmp_path):
    d, truth, digest = planted
    fixed = tmp_path / "fixed"
    r = _prep(d, "-o", fixed, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    chans = {c["name"]: c for c in doc["channels"]}
    assert list(chans) == [f"in_{k:02d}" for k in range(1, 9)]
    for c in chans.values():       # the fields the issue asks for, with their types
        assert isinstance(c["group"], str) and c["group"]
        assert isinstance(c["polarity_inverted"], bool)
        assert c["aligned_to"] is None or c["aligned_to"] in chans
        assert isinstance(c["delay_ms"], float) and isinstance(c["confidence"], float)
        assert isinstance(c["clicks_s"], list) and isinstance(c["silent_s"], list)
        assert all(len(s) == 2 and s[0] < s[1] for s in c["silent_s"])
        assert isinstance(c["xair_colour"], int) and c["colour"].startswith("#")
    # clicks: every planted one, to the sample, and nothing else on the piano
    got = chans["in_03"]["clicks_s"]
    assert len(got) == len(truth["clicks"]), got
    assert np.allclose(got, truth["clicks"], atol=1.5 / SR)
    # silence: the lead's gap, with the pads
    sil = chans["in_08"]["silent_s"]
    assert any(a <= truth["gap"][0] + 0.35 and b >= truth["gap"][1] - 0.25 for a, b in sil), sil
    # mono: the Haas double and the inverted pair, each with its fix
    mono = doc["mono"]
    assert -1.0 <= mono["correlation"] <= 1.0
    assert len(mono["loss_db"]) == len(mono["bands_hz"]) >= 8
    comb = [p for p in mono["comb_pairs"] if {p["a"], p["b"]} == {"in_04", "in_05"}]
    assert len(comb) == 1 and abs(comb[0]["delay_ms"] - truth["haas_ms"]) <= 1e3 / SR, comb
    assert [(p["a"], p["b"]) for p in mono["inverted_pairs"]] == [("in_06", "in_07")]
    text = " ".join(mono["warnings"])
    assert "invert the polarity of in_07" in text and "Haas double" in text
    # alignment (the align estimator): the double is in_04, late by the planted delay
    assert chans["in_05"]["aligned_to"] == "in_04"
    assert abs(chans["in_05"]["delay_ms"] - truth["haas_ms"]) <= 0.05
    assert chans["in_05"]["polarity_inverted"] is False and chans["in_05"]["confidence"] > 0.5
    # the report for people, and the corrected copies
    md = (fixed / "prep.md").read_text()
    assert "# edgemix prep report" in md and "click at 2.0002 s" in md
    assert json.loads((fixed / "prep.json").read_text())["channels"][2]["clicks_s"] == got
    assert sorted(p.name for p in fixed.glob("*.wav")) == sorted(digest)
    clean = sf.read(str(fixed / "in_03.wav"))[0]
    orig = sf.read(str(d / "in_03.wav"))[0]
    for t in truth["clicks"]:
        p = int(round(t * SR))
        assert abs(clean[p] - np.mean(clean[p - 1:p + 2:2])) < abs(orig[p] - np.mean(orig[p - 1:p + 2:2]))
    # the aligned pair's copies null: in_04 delayed to meet in_05
    a, b = sf.read(str(fixed / "in_04.wav"))[0], sf.read(str(fixed / "in_05.wav"))[0]
    mid = slice(SR, len(a) - SR)
    null_db = 10 * np.log10(np.sum((a[mid] - b[mid]) ** 2) / np.sum(b[mid] ** 2))
    assert null_db < -40.0, null_db
    lead = sf.read(str(fixed / "in_08.wav"))[0]
    assert np.all(lead[int(5.0 * SR):int(7.0 * SR)] == 0.0)       # gated
    # the originals are untouched
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()} == digest


def test_prep_bad_input_is_one_line(planted, tmp_path):
    d, _, _ = planted
    for args, words in (((tmp_path / "nope",), "not a folder"),
                        ((d, "-o", d), "would overwrite the original stems"),
                        ((tmp_path,), "holds no audio files")):
        r = _prep(*args)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in r.stderr, r.stderr
