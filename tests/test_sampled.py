"""Sessions of real sampled instruments (export/sampled.py, sampler.py, arrangement.py):
FluidSynth SoundFonts, Hydrogen kits, espeak-ng/Festival voices, recorded like the
synthesiser's sessions, with every channel's library known and the held-out libraries
never in a training session."""
import numpy as np
import pytest

from export import sampled as SM
from export import sampler as S
from export.synth import NOMINAL_LUFS, source_level_lufs

ROLES = ("kick", "snare", "hats_overheads", "bass", "guitar", "keys_piano", "pad",
         "lead_vocal", "backing_vocal", "other")


@pytest.fixture(scope="module")
def band():
    return SM.render_session(3, "train", roles=ROLES, seconds=3.0, conditions=False)


def test_a_seed_gives_the_same_session_and_names_are_anonymous(band):
    again = SM.render_session(3, "train", roles=ROLES, seconds=3.0, conditions=False)
    np.testing.assert_array_equal(again.session.stems, band.session.stems)
    assert band.session.roles == ROLES
    assert band.session.names == tuple(f"in_{i:02d}" for i in range(1, len(ROLES) + 1))
    other = SM.render_session(4, "train", roles=ROLES, seconds=3.0, conditions=False)
    assert not np.array_equal(other.session.stems, band.session.stems)


def test_every_channel_plays_at_the_nominal_level(band):
    for c, role in enumerate(ROLES):
        level = source_level_lufs(band.session.stems[:, c], SM.SAMPLE_RATE_HZ)
        assert abs(level - NOMINAL_LUFS) < 0.5, (role, level)


def test_libraries_are_recorded_and_held_out_ones_never_train():
    train = {x for v in SM.TRAIN_LIBRARIES.values() for x in v} | {S.PERCUSSION_KIT}
    held = {x for v in SM.HELDOUT_LIBRARIES.values() for x in v}
    assert not train & held
    h = SM.render_session(5, "heldout", roles=ROLES + ("speech",), seconds=2.0)
    assert set(h.libraries) <= held and len(h.libraries) == len(ROLES) + 1
    assert h.libraries[ROLES.index("lead_vocal")] in SM.HELDOUT_LIBRARIES["voice"]
    assert h.libraries[ROLES.index("bass")] in SM.HELDOUT_LIBRARIES["soundfont"]
    t = SM.render_session(5, "train", roles=ROLES, seconds=2.0)
    assert set(t.libraries) <= train


def test_kit_velocity_picks_its_layer():
    """Hydrogen's rule: a hit plays the layer whose velocity range holds it (The Black
    Pearl's kick has five recorded layers, softest to hardest)."""
    kit = S.load_kit("The Black Pearl 1.0")
    layers = kit.pieces["kick"][0]
    assert len(layers) >= 3 and {"kick", "snare", "hat_closed"} <= set(kit.pieces)
    soft = S.render_kit(kit, "kick", 0, [(0.0, 0.05)], 1.0, 32000)
    hard = S.render_kit(kit, "kick", 0, [(0.0, 1.0)], 1.0, 32000)
    # a different recording, not the same one scaled
    k = np.argmax(np.abs(hard))
    assert abs(np.corrcoef(soft / np.max(np.abs(soft)), hard / np.max(np.abs(hard)))[0, 1]) < 0.999
    assert np.max(np.abs(hard)) > 3 * np.max(np.abs(soft)) and k < 32000


def test_soundfont_notes_sound_at_their_pitch():
    """An A2 (110 Hz) on the GM acoustic bass of a SoundFont: the strongest partial below
    400 Hz lies at 110 Hz or one of its harmonics."""
    x = S.render_soundfont("timgm6mb", 32, [S.Note(0.0, 0.8, 45, 100)], 1.0, 32000)
    spec = np.abs(np.fft.rfft(x[:16000] * np.hanning(16000)))
    f = np.fft.rfftfreq(16000, 1 / 32000)
    low = f < 400
    peak = f[low][np.argmax(spec[low])]
    assert min(abs(peak - k * 110.0) for k in (1, 2, 3)) < 4.0, peak
    assert np.max(np.abs(x[-3200:])) < 0.3 * np.max(np.abs(x))   # released


def test_voices_speak_and_are_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "CACHE_DIR", tmp_path)
    a = S.speak("espeak", "en-us+f3", "Good evening and welcome.", 32000, 60, 160)
    assert 0.8 < len(a) / 32000 < 4.0 and np.sqrt(np.mean(a ** 2)) > 1e-3
    assert len(list(tmp_path.rglob("*.npy"))) == 1
    np.testing.assert_array_equal(S.speak("espeak", "en-us+f3", "Good evening and welcome.",
                                          32000, 60, 160), a)
    b = S.speak("festival_kal", "", "Good evening and welcome.", 32000)
    assert 0.8 < len(b) / 32000 < 4.0 and np.sqrt(np.mean(b ** 2)) > 1e-3


def test_missing_library_names_its_package(monkeypatch):
    monkeypatch.setitem(S.SOUNDFONTS, "nowhere", "/nonexistent/x.sf2")
    with pytest.raises(S.MissingLibrary, match="apt-get install"):
        S.render_soundfont("nowhere", 0, [], 1.0, 32000)


def test_the_shipped_pack_is_current_and_split_by_library():
    """models/sampled_sessions.npz: made by the current rendering, features and teacher
    (else retraining would learn from stale data: ``python -m export.sampled_data``), its
    held-out sessions played only by held-out libraries, its training ones never."""
    from export import sampled_data as SD
    from export.build_models import N_SAMPLED_HELDOUT, N_SAMPLED_TRAIN
    pack = SD.load_pack()
    assert SD.current(pack), "models/sampled_sessions.npz is stale"
    assert len(pack["train"]) >= N_SAMPLED_TRAIN and len(pack["heldout"]) >= N_SAMPLED_HELDOUT
    held = {x for v in SM.HELDOUT_LIBRARIES.values() for x in v}
    for split, sessions in (("train", pack["train"]), ("heldout", pack["heldout"])):
        for p in sessions:
            libs = set(p["libraries"].tolist())
            assert (libs <= held) if split == "heldout" else not (libs & held)
            n = len(p["roles"])
            assert p["features"].shape[1:] == (n, 43) and np.isfinite(p["features"]).all()
    assert any(np.isfinite(p["channel_params"]).all() for p in pack["heldout"])
