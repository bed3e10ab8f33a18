"""Training data from the synthesiser and the teacher: the gain augmentation is exact."""
import numpy as np

from edgemix import params as P
from edgemix.features import FEATURE_INDEX, N_FEATURES
from edgemix.params import MODEL_OUTPUTS
from edgemix.roles import ROLE_NAMES
from export import dataset as D
from export.synth import synth_session
from export.teacher import teach


def test_teacher_labels_shift_only_the_trim_with_preamp_gain():
    """The augmentation's premise, checked on the teacher itself: a channel recorded g dB
    hotter gets trim - g and otherwise the same settings."""
    s = synth_session(7, roles=("kick", "bass", "lead_vocal", "guitar"), seconds=3,
                      sample_rate_hz=32000, keep_clean=False)
    y0 = teach(s).model_outputs
    g = np.array([6.0, -9.0, 3.0, -4.0])
    s.stems = s.stems * (10.0 ** (g / 20.0)).astype(np.float32)
    y1 = teach(s).model_outputs
    trim = MODEL_OUTPUTS.index("trim_db")
    np.testing.assert_allclose(y1[:, trim], y0[:, trim] - g, atol=0.05)
    others = [j for j in range(len(MODEL_OUTPUTS)) if j != trim]
    np.testing.assert_allclose(y1[:, others], y0[:, others], rtol=1e-3, atol=0.05)


def test_session_seeds_do_not_depend_on_the_count():
    assert D.session_seeds(5, 3) == D.session_seeds(9, 3)[:5]
    assert D.session_seeds(5, 3) != D.session_seeds(5, 4)


def test_session_roles_cover_bands_panels_and_32_channels():
    rng = np.random.default_rng(0)
    lineups = [D.session_roles(rng) for _ in range(400)]
    sizes = [len(r) for r in lineups]
    assert min(sizes) == 1 and max(sizes) == 32
    assert any(set(r) == {"speech"} for r in lineups)
    assert any("kick" in r and "lead_vocal" in r for r in lineups)


def test_teacher_session_examples(monkeypatch):
    monkeypatch.setattr(D, "SESSION_SECONDS", 3.0)
    monkeypatch.setattr(D, "SNAPSHOT_S", (2.0, 3.0))
    monkeypatch.setattr(D, "session_roles", lambda rng: ("snare", "pad", "backing_vocal"))
    x, y, r = D.teacher_session(11)
    per = D.GAIN_VARIANTS * 2
    assert x.shape == (per, 3, N_FEATURES) and y.shape == (per, 3, len(MODEL_OUTPUTS))
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))
    assert [ROLE_NAMES[i] for i in r] == ["snare", "pad", "backing_vocal"]
    trim = MODEL_OUTPUTS.index("trim_db")
    rms = FEATURE_INDEX["rms_st_dbfs"]  # ungated, so it moves by exactly the applied gain
    # variant k's trim moves opposite to its measured level change (same snapshot time)
    for v in range(1, D.GAIN_VARIANTS):
        heard = (x[2 * v + 1, :, rms] > -90.0) & (x[1, :, rms] > -90.0)
        d_trim = y[2 * v + 1, heard, trim] - y[1, heard, trim]
        d_level = x[2 * v + 1, heard, rms] - x[1, heard, rms]
        np.testing.assert_allclose(d_trim, -d_level, atol=0.05)
        assert heard.any()
    # everything but the trim is the same label in every example
    others = [j for j in range(len(MODEL_OUTPUTS)) if j != trim]
    assert np.all(y[:, :, others] == y[:1, :, others])
    for j, spec in enumerate(P.MODEL_OUTPUT_SPECS):
        assert np.all((y[:, :, j] >= spec.min) & (y[:, :, j] <= spec.max))


def test_teacher_labels_are_cached_per_session(monkeypatch, tmp_path):
    """The expensive step is kept: the second request for a session reads the file the
    first one wrote (the teacher is not run again) and gives the same labels."""
    import export.teacher
    monkeypatch.setattr(D, "SESSION_SECONDS", 2.0)
    monkeypatch.setattr(D, "session_roles", lambda rng: ("kick", "lead_vocal"))
    cp, mp = D.teacher_labels(5, tmp_path)
    assert (tmp_path / "5.npz").is_file() and cp.shape == (2, P.N_CH) and mp.shape == (P.N_MS,)

    def no_teacher(*a, **k):
        raise AssertionError("the teacher ran although its labels were cached")
    monkeypatch.setattr(export.teacher, "teach", no_teacher)
    cp2, mp2 = D.teacher_labels(5, tmp_path)
    np.testing.assert_array_equal(cp2, cp)
    np.testing.assert_array_equal(mp2, mp)


def test_engine_fingerprint_follows_behaviour_not_source(monkeypatch):
    """Same engine, same key; an engine that renders differently (here: 1 dB more gain on
    everything it returns) gives another key, so stale labels are never reused."""
    import export.teacher
    a = D.engine_fingerprint()
    assert D.engine_fingerprint() == a
    render = export.teacher.render
    monkeypatch.setattr(export.teacher, "render",
                        lambda *args, **kw: render(*args, **kw) * np.float32(10 ** (1 / 20)))
    assert D.engine_fingerprint() != a


def test_shipped_teacher_labels_are_the_current_engines_and_cover_the_training_seeds():
    """The training data ships in models/: the teacher's labels for every session seed the
    shipped model was built from, keyed by the label sources and the engine's sound.  A
    change that alters either makes this fail until the labels are re-taught
    (``python -m export.dataset``, then ``python -m export.build_models``)."""
    import json
    from export import dataset as D
    from export.build_models import N_HELDOUT_SESSIONS, N_TRAIN_SESSIONS
    path = D.shipped_labels_path()
    metrics = json.loads((path.parent / "metrics.json").read_text())
    with np.load(path, allow_pickle=False) as z:
        assert str(z["key"]) == D.label_key(), "models/teacher_labels.npz is stale"
        seeds = D.session_seeds(N_TRAIN_SESSIONS + N_HELDOUT_SESSIONS, 0)
        # every held-out session, and as many training sessions as the model was taught
        # with (the others taught it their roles only)
        assert all(f"cp_{s}" in z.files and f"mp_{s}" in z.files
                   for s in seeds[N_TRAIN_SESSIONS:])
        taught = sum(f"cp_{s}" in z.files for s in seeds[:N_TRAIN_SESSIONS])
        assert taught == metrics["n_train_sessions_taught"] > 0
        cp = z[f"cp_{seeds[0]}"]
        assert cp.ndim == 2 and np.isfinite(cp).all()
    # read from the pack, not re-taught (teaching one session takes seconds)
    got_cp, _ = D.teacher_labels(seeds[0], label_dir=None)
    np.testing.assert_array_equal(got_cp, cp)
