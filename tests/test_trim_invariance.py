"""Trim invariance through the real ``edgemix mix`` (issue 10, item 4): two copies of a
session that differ only in input gains (up to +-20 dB per channel, anonymous channel
names ``in_01.wav`` ...) give the same mix -- at most 0.5 dB mean |third-octave balance
difference| after loudness normalisation and integrated loudness within 1 LU -- and the
master lands at the session's loudness target.  The JSON carries each channel's
recognised role and probability beside the session's role."""
from __future__ import annotations

import json

import numpy as np
import pyloudnorm
import pytest
import scipy.signal
import soundfile as sf
from click.testing import CliRunner

from edgemix.automix.reasons import name_of
from edgemix.cli import cli
from export.synth import source_level_lufs, synth_session

SR = 48000
ROLES = ("kick", "snare", "hats_overheads", "bass", "guitar", "keys_piano", "lead_vocal")
#: Every mic's playing level before the copies' gains (a preamp set for its source).
MIC_LUFS = -30.0
TARGET_LUFS = -16.0


def third_octave_levels(y: np.ndarray) -> np.ndarray:
    """Third-octave band levels (dB, 31.5 Hz .. 16 kHz) of a stereo mix normalised to
    -23 LUFS (pyloudnorm's BS.1770 meter): its spectral balance, whatever its loudness."""
    y = np.asarray(y, dtype=np.float64)
    y = y * 10 ** ((-23.0 - pyloudnorm.Meter(SR).integrated_loudness(y)) / 20)
    f, p = scipy.signal.welch(y.mean(axis=1), SR, nperseg=8192)
    out = []
    for fc in 1000.0 * 2.0 ** (np.arange(-15, 13) / 3.0):
        sel = (f >= fc * 2 ** (-1 / 6)) & (f < fc * 2 ** (1 / 6))
        out.append(10 * np.log10(p[sel].sum() + 1e-20))
    return np.array(out)


@pytest.fixture(scope="module")
def two_copies(tmp_path_factory):
    root = tmp_path_factory.mktemp("trims")
    # clean sources: the copies differ in their input gains and in nothing else (with the
    # synthesiser's bleed and noise, a bleed-only mic near BS.1770's -70 LUFS gate is
    # measured in one copy and not in the other: see docs/design-notes.md)
    syn = synth_session(14, roles=ROLES, seconds=12.0, conditions=False)
    base = syn.stems.astype(np.float64)
    level = np.array([source_level_lufs(base[:, c], SR) for c in range(len(ROLES))])
    base *= 10 ** ((MIC_LUFS - level) / 20)
    gains = np.random.default_rng(3).uniform(-20.0, 20.0, len(ROLES))
    session = root / "session.toml"
    chans = "".join(f"[[channels]]\nname = \"in_{c + 1:02d}\"\ninput = {c + 1}\n"
                    for c in range(len(ROLES)))
    session.write_text(f"[session]\nblock_size = 1024\nloudness_target_lufs = {TARGET_LUFS}\n"
                       + chans)
    out = {}
    for name, g in (("a", np.zeros(len(ROLES))), ("b", gains)):
        stems = root / name / "in"
        stems.mkdir(parents=True)
        for c in range(len(ROLES)):
            sf.write(stems / f"in_{c + 1:02d}.wav", (base[:, c] * 10 ** (g[c] / 20))
                     .astype(np.float32), SR, subtype="FLOAT")
        mix = root / name / "mix.wav"
        r = CliRunner().invoke(cli, ["mix", str(stems), "-o", str(mix), "--params",
                                     str(session), "--policy", "model", "--json",
                                     "--stems-out", str(root / name / "out")])
        assert r.exit_code == 0, r.output
        out[name] = (json.loads(r.output.strip().splitlines()[-1]),
                     sf.read(mix, dtype="float64")[0],
                     [sf.read(p, dtype="float64")[0]
                      for p in sorted((root / name / "out").glob("*.wav"))])
    return gains, out


def test_two_copies_differing_in_input_gains_give_the_same_mix(two_copies):
    gains, out = two_copies
    assert np.abs(gains).max() > 15.0
    (ra, ya, _), (rb, yb, _) = out["a"], out["b"]
    balance = np.mean(np.abs(third_octave_levels(ya) - third_octave_levels(yb)))
    meter = pyloudnorm.Meter(SR)
    loud_a, loud_b = meter.integrated_loudness(ya), meter.integrated_loudness(yb)
    assert balance <= 0.5, balance
    assert abs(loud_a - loud_b) <= 1.0, (loud_a, loud_b)
    # the trims took the gains out: they differ by the gains, within a dB
    trims = np.array([[c["params"]["trim_db"] for c in r["channels"]] for r in (ra, rb)])
    np.testing.assert_allclose(trims[0] - trims[1], gains, atol=1.0)


def test_the_master_lands_at_the_sessions_loudness_target(two_copies):
    _, out = two_copies
    for report, y, _ in out.values():
        assert report["master"]["loudness_target_lufs"] == TARGET_LUFS
        assert abs(pyloudnorm.Meter(SR).integrated_loudness(y) - TARGET_LUFS) <= 1.5
        assert "loudness target is -16 LUFS" in report["master"]["why"]["master_fader_db"]


def test_the_json_carries_the_recognised_role_apart_from_the_sessions(two_copies):
    _, out = two_copies
    report = out["a"][0]
    heard = []
    for c, ch in zip(ROLES, report["channels"]):
        assert ch["role"] == "other"                       # anonymous: the session says nothing
        assert ch["role_source"] == "heard" and ch["mixed_as"] == ch["recognised_role"]
        assert 0.0 < ch["role_probability"] <= 1.0
        heard.append(ch["recognised_role"] == c)
        # the explanations use the role the channel was mixed as
        if ch["recognised_role"] != "other":
            assert f"heard as {name_of(ch['recognised_role'])}" in ch["why"]["pan"]
    assert np.mean(heard) >= 5 / 7


@pytest.mark.xfail(strict=True, reason="with the model retrained on sampled instruments "
                   "(real, issue 10) the lead measures -2.9 LU over the rest here (0 .. +6 "
                   "wanted; the earlier model's EQ left it on top): the policy has to hold it")
def test_the_lead_vocal_sits_on_top_of_the_rest(two_copies):
    """The lead vocal's processed stem against the sum of the others' (pyloudnorm, whole
    file): within the 0 .. +6 LU a pop or rock mix keeps (rules.LEAD_OVER_REST_RANGE_LU)."""
    from edgemix.automix.rules import LEAD_OVER_REST_RANGE_LU
    _, out = two_copies
    meter = pyloudnorm.Meter(SR)
    lead = ROLES.index("lead_vocal")
    for _, _, stems in out.values():
        rest = sum(y for c, y in enumerate(stems) if c != lead)
        margin = meter.integrated_loudness(stems[lead]) - meter.integrated_loudness(rest)
        lo, hi = LEAD_OVER_REST_RANGE_LU
        assert lo <= margin <= hi, margin
