"""Session synthesiser: determinism, roles, recording conditions as the metadata says,
levels, and loading real stems."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from export.synth import (NOMINAL_LUFS, active_loudness_lufs, guess_role, load_stems,
                          source_level_lufs,
                          synth_session)

SR = 48000
ROLES = ("kick", "snare", "hats_overheads", "bass", "guitar", "keys_piano", "pad",
         "lead_vocal", "backing_vocal", "other")


@pytest.fixture(scope="module")
def session():
    return synth_session(11, roles=ROLES, seconds=6.0)


def test_deterministic_per_seed(session):
    again = synth_session(11, roles=ROLES, seconds=6.0)
    np.testing.assert_array_equal(again.stems, session.stems)
    np.testing.assert_array_equal(again.gain_offsets_db, session.gain_offsets_db)
    other = synth_session(12, roles=ROLES[:3], seconds=6.0)
    assert not np.allclose(other.stems, session.stems[:, :3])


def test_roles_as_requested(session):
    assert session.roles == ROLES
    assert session.stems.shape == (6 * SR, len(ROLES))
    assert session.stems.dtype == np.float32 and session.stems.flags.c_contiguous
    with pytest.raises(ValueError, match="unknown role"):
        synth_session(1, roles=("kick", "tuba"), seconds=2.0)
    panel = synth_session(3, kind="speech", n_channels=4, seconds=12.0)
    assert panel.roles == ("speech",) * 4
    # every panellist gets a turn
    assert all(np.isfinite(active_loudness_lufs(panel.clean[:, c], SR)) for c in range(4))


def test_levels_and_finiteness(session):
    assert np.all(np.isfinite(session.stems))
    for c in range(session.n_channels):
        # the clean source plays at the nominal level (K-weighted, gated), by construction
        assert abs(source_level_lufs(session.clean[:, c], SR) - NOMINAL_LUFS) < 0.05
    # the raw playing level is the nominal level moved by the metadata's gain offset
    # (noise floor and bleed barely touch the loudest hops)
    raw = [source_level_lufs(session.stems[:, c], SR) for c in range(session.n_channels)]
    np.testing.assert_allclose(raw, NOMINAL_LUFS + session.gain_offsets_db, atol=1.0)
    peak = np.abs(session.stems).max(axis=0)
    assert np.all(peak < 2.0)                        # below +6 dBFS even at +10 dB offset
    assert np.all((session.gain_offsets_db >= -30) & (session.gain_offsets_db <= 10))


def test_offsets_and_polarity_as_metadata_says(session):
    raw = session.stems.astype(np.float64)
    clean = session.clean.astype(np.float64)
    for c in range(session.n_channels):
        r = raw[:, c] - raw[:, c].mean()
        s = clean[:, c] - clean[:, c].mean()
        slope = np.dot(r, s) / np.dot(s, s)          # bleed and noise are uncorrelated
        expect = 10 ** (session.gain_offsets_db[c] / 20) * \
            (-1 if session.polarity_inverted[c] else 1)
        assert np.sign(slope) == np.sign(expect), c
        assert abs(20 * np.log10(abs(slope) / abs(expect))) < 0.5, c
        # DC offset: the mean of the recording minus the (scaled) mean of the source
        dc = raw[:, c].mean() - expect * clean[:, c].mean()
        assert abs(dc - session.dc_offsets[c]) < 2e-4, c


def test_clean_when_conditions_off():
    s = synth_session(5, roles=("bass", "lead_vocal"), seconds=3.0, conditions=False)
    np.testing.assert_array_equal(s.stems, s.clean)
    assert np.all(s.gain_offsets_db == 0) and not s.polarity_inverted.any()


def test_load_stems(tmp_path):
    x = np.random.default_rng(0).standard_normal((4800, 3)).astype(np.float32) * 0.1
    for name, col in (("01_Kick_In", 0), ("02_Lead Vox", 1), ("03_gtr_amp", 2)):
        sf.write(tmp_path / f"{name}.wav", x[:, col], SR, subtype="FLOAT")
    s = load_stems(tmp_path)
    np.testing.assert_array_equal(s.stems, x)
    assert s.roles == ("kick", "lead_vocal", "guitar") and s.sample_rate_hz == SR
    assert guess_role("BV 2") == "backing_vocal" and guess_role("zz") == "other"

    sf.write(tmp_path / "04_short.wav", x[:100, 0], SR)
    with pytest.raises(ValueError, match="trim or pad"):
        load_stems(tmp_path)
    (tmp_path / "04_short.wav").unlink()
    sf.write(tmp_path / "05_rate.wav", x[:, 0], 44100)
    with pytest.raises(ValueError, match="resample"):
        load_stems(tmp_path)
    (tmp_path / "05_rate.wav").unlink()
    sf.write(tmp_path / "06_stereo.wav", x[:, :2], SR)
    with pytest.raises(ValueError, match="mono"):
        load_stems(tmp_path)
    (tmp_path / "06_stereo.wav").unlink()
    (tmp_path / "07_bad.wav").write_bytes(b"not a wav")
    # the checks and messages are the runtime's (edgemix.rt.offline.probe_stems)
    with pytest.raises(ValueError, match="07_bad.wav: not a readable audio file"):
        load_stems(tmp_path)
    with pytest.raises(ValueError, match="no audio files"):
        load_stems(_empty(tmp_path))
    with pytest.raises(ValueError, match="not a folder"):
        load_stems(tmp_path / "01_Kick_In.wav")


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d
