"""Training pairs for the student: (features of a session, teacher's parameters, roles).

Two sources, one format:

- :func:`teacher_dataset`: sessions from the session synthesiser (``export/synth.py``),
  labelled by the teacher (``export/teacher.py``) -- the real training data, used
  whenever those modules are installed;
- :func:`interim_dataset`: an **interim** generator of feature vectors, written before the
  synthesiser and the teacher existed, so the pipeline (training, export, parity) could
  be built and tested.  Its labels come from a handful of textbook mixing rules applied
  to the very quantities it generates; it is not a teacher and its numbers say nothing
  about mix quality.

Format (:class:`Dataset`): ``features (N, 32, F)`` float32 in ``FEATURE_NAMES`` order,
``mask (N, 32)`` float32, ``targets01 (N, 32, P)`` float32 (``MODEL_OUTPUTS`` normalised by
``edgemix.params.normalise_outputs``), ``roles (N, 32)`` int64 (``-1`` where absent).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgemix import features as feat
from edgemix.infer.base import MAX_CHANNELS
from edgemix import params as P
from edgemix.params import MODEL_OUTPUTS, normalise_outputs
from edgemix.roles import ROLE_NAMES


@dataclass
class Dataset:
    features: np.ndarray
    mask: np.ndarray
    targets01: np.ndarray
    roles: np.ndarray
    source: str
    #: Consecutive rows that come from one synthesised session (augmentations).
    examples_per_session: int = 1

    def __len__(self):
        return self.features.shape[0]

    def concat(self, other: "Dataset") -> "Dataset":
        """Both datasets' examples (the same examples per session), this one's first."""
        if other.examples_per_session != self.examples_per_session:
            raise ValueError("datasets with different examples per session")
        return Dataset(*(np.concatenate([getattr(self, k), getattr(other, k)])
                         for k in ("features", "mask", "targets01", "roles")),
                       f"{self.source}+{other.source}", self.examples_per_session)

    def split(self, n_first_sessions: int):
        """(the first n sessions' examples, the rest): no session straddles the split."""
        k = n_first_sessions * self.examples_per_session
        a = Dataset(self.features[:k], self.mask[:k], self.targets01[:k], self.roles[:k],
                    self.source, self.examples_per_session)
        b = Dataset(self.features[k:], self.mask[k:], self.targets01[k:], self.roles[k:],
                    self.source, self.examples_per_session)
        return a, b


def teacher_available() -> bool:
    """True when the session synthesiser and the teacher are installed."""
    try:
        import export.synth  # noqa: F401
        import export.teacher  # noqa: F401
    except ImportError:
        return False
    return True


def build_dataset(n_sessions: int, seed: int, prefer_teacher: bool = True,
                  label_dir=None, teach: bool = True, feature_dir=None) -> Dataset:
    """Synthesiser + teacher when available, else the interim generator."""
    if prefer_teacher and teacher_available():
        return teacher_dataset(n_sessions, seed, label_dir, teach, feature_dir)
    return interim_dataset(n_sessions, seed)


# ---- synthesiser + teacher ------------------------------------------------------------
#: Synthesised session length and rate: long enough for the features' 3 s short-term and
#: gate windows to fill, short enough that the teacher (several renders) stays affordable.
SESSION_SECONDS = 6.0
SAMPLE_RATE_HZ = 32000
#: Times (s) at which a feature snapshot is taken: each is one training example with the
#: session's teacher labels (the model sees a running snapshot, the teacher the session).
SNAPSHOT_S = (4.0, 4.5, 5.0, 5.5, 6.0)
#: Extra preamp gain variants per session (the first is the session as recorded).  The
#: teacher's trims undo raw level (step 1 of export/teacher.py: trim = target - loudness)
#: and every later step works on the trimmed signal, so a channel recorded g dB hotter has
#: the same labels except trim - g; tests/test_model_dataset.py checks that on the teacher.
GAIN_VARIANTS = 4
GAIN_AUGMENT_DB = 12.0
#: Raw active loudness kept inside this range by the augmentation (the BS.1770 -70 LUFS
#: absolute gate must not start to bite, and peaks stay below full scale).
RAW_LUFS_RANGE = (-60.0, -12.0)
_BAND_ROLES = tuple(r for r in ROLE_NAMES if r != "speech")


def session_roles(rng: np.random.Generator) -> tuple[str, ...]:
    """A random line-up: a spoken panel of 1..8 (15 %), a large band of 25..32 channels
    (10 %) or a band of 1..24."""
    u = rng.random()
    if u < 0.15:
        return ("speech",) * int(rng.integers(1, 9))
    n = int(rng.integers(25, MAX_CHANNELS + 1)) if u < 0.25 else int(rng.integers(1, 25))
    return tuple(str(r) for r in rng.choice(_BAND_ROLES, n))


def _snapshots(stems: np.ndarray, sr: int) -> np.ndarray:
    """Feature snapshots ``(len(SNAPSHOT_S), channels, F)`` of one recording."""
    fx = feat.FeatureExtractor(sr, stems.shape[1])
    out = np.zeros((len(SNAPSHOT_S), stems.shape[1], feat.N_FEATURES), np.float32)
    done = 0
    for i, t in enumerate(SNAPSHOT_S):
        end = min(int(round(t * sr)), stems.shape[0])
        fx.process(stems[done:end])
        done = end
        out[i] = fx.snapshot()
    return out


# ---- the teacher's labels, cached per session ------------------------------------------
#: Decimals (dB) of the measurements hashed by the fingerprints below: a label moves by
#: far less than 0.01 dB when what it is made from moves by less than that.
FINGERPRINT_DECIMALS = 2
#: The fixed sessions :func:`teacher_fingerprint` teaches, 3 s each: a band of every band
#: role (the synthesiser's default line-up of 13) and a panel of two talkers.
FINGERPRINT_SESSIONS = ((20261204, 13, "band"), (20261205, 2, "speech"))
FINGERPRINT_SECONDS = 3.0


def synth_fingerprint() -> str:
    """A hash of what the synthesiser makes (the stems of a fixed session, to 1e-5), not
    of how it is written: the sessions are made again from their seeds at every build, so
    the labels of a seed stay valid exactly while its session does."""
    import hashlib
    from export.synth import synth_session
    s, _ = synth_for(int(session_seeds(1, 0)[0]))
    t = synth_session(FINGERPRINT_SESSIONS[0][0], seconds=2.0, sample_rate_hz=SAMPLE_RATE_HZ,
                      n_channels=13)
    v = np.round(np.concatenate([s.stems.ravel()[::97], t.stems.ravel()[::97]]), 5) + 0.0
    return hashlib.sha256(v.astype(np.float64).tobytes()).hexdigest()[:16]


def teacher_fingerprint() -> str:
    """A hash of what the teacher decides (its settings for the fixed
    :data:`FINGERPRINT_SESSIONS`, rounded to ``FINGERPRINT_DECIMALS``), not of how its
    sources (the teacher, the rule policy, the schema, the roles) are written: a refactor,
    or a policy change the teacher does not use, keeps hours of labels; a change that
    moves any setting of these two sessions (every step of the teacher acts on them)
    re-keys them."""
    import hashlib
    from export.synth import synth_session
    from export.teacher import teach
    parts = []
    for seed, n, kind in FINGERPRINT_SESSIONS:
        s = synth_session(seed, seconds=FINGERPRINT_SECONDS, sample_rate_hz=SAMPLE_RATE_HZ,
                          n_channels=n,
                          kind=kind, keep_clean=False)
        t = teach(s)
        parts += [t.channel_params.ravel(), t.master_params.ravel()]
    v = np.round(np.concatenate(parts), FINGERPRINT_DECIMALS) + 0.0
    return hashlib.sha256(v.astype(np.float64).tobytes()).hexdigest()[:16]


def engine_fingerprint() -> str:
    """A hash of what the engine does, not of how it is written: one second of seeded
    noise bursts through two channels with HPF, EQ, compression, pan, fader, reverb send
    and the master limiter in circuit, measured as the teacher measures (band levels of
    the mix and each channel's solo playing level), rounded to ``FINGERPRINT_DECIMALS``."""
    import hashlib
    from edgemix import params as P
    from export.synth import source_level_lufs
    from export.teacher import _solo, band_levels, render
    sr = SAMPLE_RATE_HZ
    rng = np.random.default_rng(20261124)
    env = np.repeat(rng.uniform(0.05, 1.0, (10, 2)), sr // 10, axis=0)
    x = (rng.standard_normal((sr, 2)) * env * [0.3, 0.05]).astype(np.float32)
    p = P.channel_defaults(2)
    for c, sign in enumerate((1.0, -1.0)):
        for name, v in (("trim_db", 6.0 * sign), ("hpf_hz", 120.0), ("eq1_gain_db", 4.0 * sign),
                        ("eq2_gain_db", -5.0), ("eq3_gain_db", 3.0), ("eq4_gain_db", -2.0 * sign),
                        ("comp_threshold_db", -30.0), ("comp_ratio", 4.0),
                        ("comp_makeup_db", 2.0), ("fader_db", -3.0), ("pan", 0.5 * sign),
                        ("aux1_send_db", -10.0)):
            p[c, getattr(P.CH, name)] = v
    m = P.master_defaults()
    levels = [band_levels(render(x, sr, p, m), sr)]
    levels += [[source_level_lufs(_solo(x, sr, p, c), sr) for c in range(2)]]
    v = np.round(np.concatenate([np.ravel(a) for a in levels]), FINGERPRINT_DECIMALS) + 0.0
    return hashlib.sha256(v.astype(np.float64).tobytes()).hexdigest()[:16]


#: The teacher labels the shipped model was trained on, shipped beside it (the training
#: data is made here and shipped in models/: a fresh clone retrains without re-teaching).
SHIPPED_LABELS = "teacher_labels.npz"


def shipped_labels_path():
    import pathlib
    return pathlib.Path(__file__).resolve().parents[1] / "models" / SHIPPED_LABELS


def pack_labels(label_dir, seeds, out_path) -> int:
    """Write the labels of ``seeds`` from ``label_dir`` into one ``.npz`` keyed by
    :func:`label_key`; returns how many were packed."""
    import pathlib
    arrays = {"key": np.array(label_key())}
    for seed in seeds:
        f = pathlib.Path(label_dir) / f"{seed}.npz"
        if f.is_file():
            with np.load(f, allow_pickle=False) as z:
                arrays[f"cp_{seed}"] = z["channel_params"]
                arrays[f"mp_{seed}"] = z["master_params"]
    out_path = pathlib.Path(out_path)
    tmp = out_path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out_path)
    return (len(arrays) - 1) // 2


#: The shipped pack, loaded once per state of the label sources (the full key also renders
#: the engine for a second, so it is checked once per state, not once per session).
_SHIPPED: dict = {}


def _shipped_label(seed: int):
    """``(channel_params, master_params)`` of ``seed`` from the shipped pack, when the pack
    was made by the current label sources and engine (else None: re-teach)."""
    state = _sources_hash().hexdigest()
    if state not in _SHIPPED:
        _SHIPPED[state] = {}
        path = shipped_labels_path()
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == label_key():
                    _SHIPPED[state] = {k: z[k] for k in z.files if k != "key"}
    lab = _SHIPPED[state]
    if f"cp_{seed}" not in lab:
        return None
    return lab[f"cp_{seed}"], lab[f"mp_{seed}"]


#: Modules whose source is hashed (cheaply) to tell when the fingerprints must be taken
#: again; the key itself is made of the fingerprints, not of these sources.
LABEL_MODULES = ("export.synth", "export.teacher", "edgemix.automix.rules",
                 "edgemix.automix.policy", "edgemix.params", "edgemix.roles",
                 "edgemix.features", "edgemix.console")


def _sources_hash():
    """The label sources and the session constants (cheap: no rendering)."""
    import hashlib
    import importlib
    import inspect
    import pathlib
    h = hashlib.sha256(f"{SESSION_SECONDS}:{SAMPLE_RATE_HZ}".encode())
    h.update(inspect.getsource(session_roles).encode())
    for name in LABEL_MODULES:
        h.update(pathlib.Path(importlib.import_module(name).__file__).read_bytes())
    return h


_LABEL_KEYS: dict = {}


def label_key() -> str:
    """Key of the teacher labels, by behaviour: the session constants and line-up draw,
    what the synthesiser makes, what the teacher decides and how the engine sounds
    (:func:`synth_fingerprint`, :func:`teacher_fingerprint`, :func:`engine_fingerprint`;
    taken once per state of the sources, a few seconds)."""
    import hashlib
    import inspect
    state = _sources_hash().hexdigest()
    if state not in _LABEL_KEYS:
        h = hashlib.sha256(f"{SESSION_SECONDS}:{SAMPLE_RATE_HZ}".encode())
        h.update(inspect.getsource(session_roles).encode())
        for fp in (synth_fingerprint(), teacher_fingerprint(), engine_fingerprint()):
            h.update(fp.encode())
        _LABEL_KEYS[state] = h.hexdigest()[:16]
    return _LABEL_KEYS[state]


def synth_for(seed: int):
    """The synthesised session of a dataset seed (its line-up drawn from the seed)."""
    from export.synth import synth_session
    rng = np.random.default_rng([seed, 1])
    roles = session_roles(rng)
    session = synth_session(seed, roles=roles, seconds=SESSION_SECONDS,
                            sample_rate_hz=SAMPLE_RATE_HZ, keep_clean=False)
    return session, rng


def teacher_labels(seed: int, label_dir=None, session=None):
    """The teacher's ``(channel_params, master_params)`` in units for a dataset seed,
    read from ``label_dir/<seed>.npz`` or the shipped pack (``models/teacher_labels.npz``)
    when there, else taught (and kept in ``label_dir``)."""
    import pathlib
    path = pathlib.Path(label_dir) / f"{seed}.npz" if label_dir else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["channel_params"], z["master_params"]
    shipped = _shipped_label(seed)
    if shipped is not None:
        return shipped
    from export.teacher import teach
    if session is None:
        session, _ = synth_for(seed)
    t = teach(session)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, channel_params=t.channel_params, master_params=t.master_params)
        tmp.replace(path)  # atomic: a killed run never leaves half a file
    return t.channel_params, t.master_params


def teacher_session(seed: int, label_dir=None):
    """One synthesised session and its teacher labels (taught now when missing),
    augmented (:func:`session_examples`)."""
    session, rng = synth_for(seed)
    return session_examples(session, teacher_labels(seed, label_dir, session)[0], rng)


_FEATURE_KEYS: dict = {}


def synth_features_key() -> str:
    """Key of a synthesised session's feature snapshots: what the synthesiser makes, the
    feature code and the augmentation (taken once per state of the sources)."""
    state = _sources_hash().hexdigest()
    if state not in _FEATURE_KEYS:
        _FEATURE_KEYS[state] = _synth_features_key()
    return _FEATURE_KEYS[state]


def _synth_features_key() -> str:
    import hashlib
    import importlib
    import inspect
    import pathlib
    h = hashlib.sha256(synth_fingerprint().encode())
    h.update(inspect.getsource(session_roles).encode())
    h.update(pathlib.Path(importlib.import_module("edgemix.features").__file__).read_bytes())
    for fn in (gain_variant_snapshots, _snapshots):
        h.update(inspect.getsource(fn).encode())
    h.update(repr((GAIN_VARIANTS, GAIN_AUGMENT_DB, RAW_LUFS_RANGE, SNAPSHOT_S,
                   SESSION_SECONDS, SAMPLE_RATE_HZ)).encode())
    return h.hexdigest()[:16]


def synth_products(seed: int, label_dir=None, feature_dir=None):
    """A synthesised session's examples like :func:`teacher_session`, but its features
    cached on their own (``feature_dir``, keyed by :func:`synth_features_key`) and its
    targets from the teacher's labels where known, else NaN (roles only): a teacher
    change re-teaches without re-synthesising, and no session is taught here.  The gain
    variants are drawn from the measured raw levels
    (:func:`gain_variant_snapshots`)."""
    import pathlib
    path = None
    if feature_dir is not None:
        path = pathlib.Path(feature_dir) / f"synth-features-{synth_features_key()}" / \
            f"{seed}.npz"
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            x, gains, roles = z["features"], z["gains_db"], z["roles"]
    else:
        session, rng = synth_for(seed)
        x, gains = gain_variant_snapshots(session, rng)
        roles = session.role_indices
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, features=x, gains_db=gains, roles=roles)
            tmp.replace(path)
    y = np.full(x.shape[:2] + (len(MODEL_OUTPUTS),), np.nan)
    if labels_known(seed, label_dir):
        lab = teacher_labels(seed, label_dir)[0][:, P.MODEL_OUTPUT_COLUMNS]
        trim = MODEL_OUTPUTS.index("trim_db")
        per = x.shape[0] // gains.shape[0]
        y[:] = lab[None]
        for v, g in enumerate(gains):
            y[v * per:(v + 1) * per, :, trim] = P.CHANNEL_SPECS["trim_db"].clip(
                lab[:, trim] - g)
    return x, y, roles


def labels_known(seed: int, label_dir=None) -> bool:
    """Whether the teacher's labels of ``seed`` are cached or shipped (no teaching)."""
    import pathlib
    if label_dir and (pathlib.Path(label_dir) / f"{seed}.npz").is_file():
        return True
    return _shipped_label(seed) is not None


def session_examples(session, channel_params: np.ndarray, rng: np.random.Generator):
    """A session's augmented training examples from its teacher labels
    (``channel_params`` in units, the teacher's whole settings).

    Returns ``(features (V*S, n, F) float32, targets (V*S, n, P) in units, roles (n,))``
    for ``V = GAIN_VARIANTS`` preamp-gain variants times ``S = len(SNAPSHOT_S)`` snapshots.
    """
    from edgemix.automix.rules import TRIM_TARGET_LUFS

    y = channel_params[:, P.MODEL_OUTPUT_COLUMNS]
    trim = MODEL_OUTPUTS.index("trim_db")
    # raw active loudness the teacher measured, from its trim (NaN for a silent channel)
    silent = y[:, MODEL_OUTPUTS.index("fader_db")] <= P.OFF_DB
    raw_lufs = np.where(silent, np.nan, TRIM_TARGET_LUFS - y[:, trim])
    x, gains = gain_variant_snapshots(session, rng, raw_lufs)
    per = len(SNAPSHOT_S)
    ys = []
    for g in gains:
        yv = y.copy()
        yv[:, trim] = P.CHANNEL_SPECS["trim_db"].clip(y[:, trim] - g)
        ys += [yv] * per
    return x, np.stack(ys), session.role_indices


def gain_variant_snapshots(session, rng: np.random.Generator, raw_lufs=None):
    """Feature snapshots of ``GAIN_VARIANTS`` preamp-gain variants of a session (the first
    as recorded, the others each channel moved by up to +-``GAIN_AUGMENT_DB``, kept so its
    raw playing level ``raw_lufs`` (NaN: silent; default: measured with
    ``export.synth.source_level_lufs``) stays within ``RAW_LUFS_RANGE``).

    Returns ``(features (V*S, n, F) float32, gains_db (V, n))``."""
    n = session.stems.shape[1]
    sr = session.sample_rate_hz
    if raw_lufs is None:
        from export.synth import source_level_lufs
        raw_lufs = np.array([source_level_lufs(session.stems[:, c], sr) for c in range(n)])
        raw_lufs = np.where(np.isfinite(raw_lufs), raw_lufs, np.nan)
    silent = ~np.isfinite(raw_lufs)
    xs, gains = [], []
    for v in range(GAIN_VARIANTS):
        g = np.zeros(n)
        if v:
            g = rng.uniform(-GAIN_AUGMENT_DB, GAIN_AUGMENT_DB, n)
            lo = RAW_LUFS_RANGE[0] - raw_lufs
            hi = RAW_LUFS_RANGE[1] - raw_lufs
            g = np.where(silent, 0.0, np.clip(g, np.minimum(lo, 0.0), np.maximum(hi, 0.0)))
        gains.append(g)
        stems = session.stems * (10.0 ** (g / 20.0)).astype(np.float32)
        xs += list(_snapshots(stems, sr))
    return np.stack(xs), np.stack(gains)


def session_seeds(n: int, seed: int) -> list[int]:
    """Seeds of the ``n`` sessions of a dataset (independent of how many are asked for)."""
    ss = np.random.SeedSequence(seed)
    return [int(c.generate_state(1)[0]) for c in ss.spawn(n)]


def teacher_dataset(n_sessions: int, seed: int, label_dir=None,
                    teach: bool = True, feature_dir=None) -> Dataset:
    """``n_sessions`` synthesised sessions labelled by the teacher, each augmented to
    ``GAIN_VARIANTS * len(SNAPSHOT_S)`` examples (consecutive rows: split on multiples).
    One process: the teacher's labels are a separate, cached step (``python -m
    export.dataset``) so this costs only the synthesis and feature extraction."""
    seeds = session_seeds(n_sessions, seed)
    parts = [teacher_session(s, label_dir) for s in seeds] if teach else \
        [synth_products(s, label_dir, feature_dir) for s in seeds]
    per = GAIN_VARIANTS * len(SNAPSHOT_S)
    total = per * n_sessions
    xs = np.zeros((total, MAX_CHANNELS, feat.N_FEATURES), np.float32)
    ys = np.zeros((total, MAX_CHANNELS, len(MODEL_OUTPUTS)), np.float32)
    ms = np.zeros((total, MAX_CHANNELS), np.float32)
    rs = np.full((total, MAX_CHANNELS), -1, np.int64)
    for i, (x, y, r) in enumerate(parts):
        n = len(r)
        rows = slice(i * per, (i + 1) * per)
        xs[rows, :n] = x
        ys[rows, :n] = normalise_outputs(y)
        ms[rows, :n] = 1.0
        rs[rows, :n] = r
    return Dataset(xs, ms, ys, rs, "teacher", examples_per_session=per)


# ---- the interim generator ------------------------------------------------------------
# Per role: spectral peak (Hz), spectral width (octaves), crest (dB), activity (0..1),
# loudness offset in the mix (LU, relative to the lead), HPF corner (Hz), pan side,
# reverb send (dB).  Textbook starting points, used only to make consistent labels.
_ROLE_TABLE = {
    "kick":           (60.0, 1.2, 18.0, 0.5, -3.0, 30.0, 0.0, -30.0),
    "snare":          (250.0, 2.0, 17.0, 0.4, -4.0, 80.0, 0.0, -18.0),
    "hats_overheads": (7000.0, 1.6, 15.0, 0.6, -10.0, 250.0, 0.6, -22.0),
    "bass":           (90.0, 1.3, 10.0, 0.8, -3.0, 35.0, 0.0, -40.0),
    "guitar":         (900.0, 1.8, 12.0, 0.7, -7.0, 100.0, 0.7, -20.0),
    "keys_piano":     (600.0, 2.2, 14.0, 0.6, -8.0, 60.0, 0.5, -18.0),
    "pad":            (1200.0, 2.5, 8.0, 0.9, -12.0, 120.0, 0.8, -14.0),
    "lead_vocal":     (1500.0, 1.6, 14.0, 0.6, 0.0, 90.0, 0.0, -14.0),
    "backing_vocal":  (1700.0, 1.6, 13.0, 0.4, -8.0, 110.0, 0.6, -12.0),
    "speech":         (900.0, 1.5, 16.0, 0.5, 0.0, 100.0, 0.0, -40.0),
    "other":          (2000.0, 2.5, 14.0, 0.5, -9.0, 80.0, 0.4, -20.0),
}
_GAIN_STAGE_LUFS = -23.0   # trim target for the active loudness (EBU R 128 reference)


def _band_powers(rng, role, loud_lufs):
    f0, width, *_ = _ROLE_TABLE[role]
    f0 = f0 * 2.0 ** rng.normal(0.0, 0.3)
    oct_ = np.log2(feat.BAND_CENTRES_HZ / f0)
    shape_db = -6.0 * (oct_ / width) ** 2 + rng.normal(0.0, 1.5, feat.N_BANDS)
    p = 10.0 ** (shape_db / 10.0)
    return p / p.sum() * 10.0 ** ((loud_lufs + 0.691) / 10.0), f0


def _interim_session(rng, n_ch):
    names = list(ROLE_NAMES)
    roles = rng.integers(0, len(names), n_ch)
    x = np.zeros((MAX_CHANNELS, feat.N_FEATURES), np.float64)
    y = np.zeros((MAX_CHANNELS, len(MODEL_OUTPUTS)), np.float64)
    band_p = np.zeros((n_ch, feat.N_BANDS))
    side = 1.0
    for c in range(n_ch):
        role = names[roles[c]]
        _, _, crest, activity, mix_lu, hpf, pan_side, send = _ROLE_TABLE[role]
        loud = rng.uniform(-55.0, -8.0)
        band_p[c], f0 = _band_powers(rng, role, loud)
        rel = band_p[c] / band_p[c].sum()
        act = float(np.clip(activity + rng.normal(0, 0.15), 0.02, 1.0))
        crest_c = crest + rng.normal(0.0, 2.0)
        rms = loud - 1.0 + rng.normal(0.0, 1.0)
        x[c, feat.F_LACT] = loud
        x[c, feat.F_LST] = loud + 10.0 * np.log10(act)
        x[c, feat.F_RMS] = rms + 10.0 * np.log10(act)
        x[c, feat.F_PEAK] = min(rms + crest_c, 0.0)
        x[c, feat.F_CREST] = x[c, feat.F_PEAK] - x[c, feat.F_RMS]
        x[c, feat.F_ACT] = act
        x[c, feat.F_CENT] = float(np.sum(rel * feat.BAND_CENTRES_HZ))
        x[c, feat.F_ROLL] = float(feat.BAND_CENTRES_HZ[np.searchsorted(np.cumsum(rel), 0.85)])
        dens = rel / np.diff(feat.BAND_EDGES_HZ)
        x[c, feat.F_FLAT] = float(np.exp(np.mean(np.log(dens))) / np.mean(dens))
        x[c, feat.F_LF] = float(rel[feat.BAND_CENTRES_HZ < 100.0].sum())
        x[c, feat.F_BAND:feat.F_BAND + feat.N_BANDS] = 10.0 * np.log10(rel)
        # labels: gain staging, role balance, role HPF/pan/send, dynamics from the crest
        trim = np.clip(_GAIN_STAGE_LUFS - loud, -40.0, 40.0)
        fader = mix_lu - 10.0 * np.log10(max(n_ch, 1)) / 2.0
        if pan_side:
            pan, side = pan_side * side * rng.uniform(0.6, 1.0), -side
        else:
            pan = 0.0
        strong = x[c, feat.F_BAND:feat.F_BAND + feat.N_BANDS]
        y[c] = [trim, max(hpf, 0.5 * f0 if f0 > 2 * hpf else hpf),
                np.clip(-0.3 * (strong[:3].mean() + 10.0), -6.0, 6.0), 2.0 * f0 + 200.0,
                -2.0 if role in ("kick", "bass") else 0.0, 3000.0 if "vocal" in role else 5000.0,
                2.0 if role in ("lead_vocal", "speech") else 0.0,
                np.clip(-0.2 * (strong[-3:].mean() + 25.0), -6.0, 6.0),
                np.clip(_GAIN_STAGE_LUFS + crest_c / 2.0 - 12.0, -60.0, 0.0),
                1.5 + 0.15 * crest_c, 30.0 / (1.0 + crest_c / 4.0), 80.0 + 400.0 * act,
                0.0, fader, pan, send]
    own_total = band_p.sum(axis=0)
    for c in range(n_ch):
        rest = own_total - band_p[c]
        x[c, feat.F_MASK:feat.F_MASK + feat.N_BANDS] = np.clip(
            10.0 * np.log10((band_p[c] + feat.EPS_POWER) / (rest + feat.EPS_POWER)), -100, 100)
        own = band_p[c].sum()
        x[c, feat.F_REL] = np.clip(10.0 * np.log10((own + feat.EPS_POWER)
                                                   / (own_total.sum() - own + feat.EPS_POWER)),
                                   -100, 100)
    # makeup gain: what the threshold/ratio take away at the active loudness
    y[:n_ch, 12] = np.clip((x[:n_ch, feat.F_LACT] + y[:n_ch, 0] - y[:n_ch, 8]).clip(0)
                           * (1.0 - 1.0 / y[:n_ch, 9]) * 0.5, 0.0, 24.0)
    r = np.full(MAX_CHANNELS, -1, np.int64)
    r[:n_ch] = roles
    return x, y, r


def interim_dataset(n_sessions: int, seed: int) -> Dataset:
    """The interim generator (see the module docstring): ``n_sessions`` from ``seed``."""
    assert MODEL_OUTPUTS[12] == "comp_makeup_db" and MODEL_OUTPUTS[9] == "comp_ratio"
    rng = np.random.default_rng(seed)
    xs = np.zeros((n_sessions, MAX_CHANNELS, feat.N_FEATURES), np.float32)
    ys = np.zeros((n_sessions, MAX_CHANNELS, len(MODEL_OUTPUTS)), np.float32)
    ms = np.zeros((n_sessions, MAX_CHANNELS), np.float32)
    rs = np.full((n_sessions, MAX_CHANNELS), -1, np.int64)
    for i in range(n_sessions):
        n_ch = int(rng.integers(1, MAX_CHANNELS + 1))
        x, y, r = _interim_session(rng, n_ch)
        xs[i] = x
        ys[i] = normalise_outputs(y)
        ys[i, n_ch:] = 0.0
        ms[i, :n_ch] = 1.0
        rs[i] = r
    return Dataset(xs, ms, ys, rs, "interim")


# ---- the separate, cached labelling step ----------------------------------------------
def label_dir_for(cache_dir) -> "pathlib.Path":
    """Where the teacher labels of the current sources and engine are kept."""
    import pathlib
    return pathlib.Path(cache_dir) / f"teacher-{label_key()}"


def main(argv=None) -> int:
    """``python -m export.dataset --sessions N``: teach the first N sessions of a seed into
    the label cache (one process; resumable: sessions already there are skipped)."""
    import argparse
    import pathlib
    import sys
    import time
    ap = argparse.ArgumentParser(prog="python -m export.dataset", description=main.__doc__)
    ap.add_argument("--sessions", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=str(pathlib.Path(__file__).resolve().parents[1] / "build"))
    a = ap.parse_args(argv)
    if a.sessions < 1:
        ap.error(f"--sessions {a.sessions}: use 1 or more")
    d = label_dir_for(a.cache)
    t0 = time.perf_counter()
    for i, s in enumerate(session_seeds(a.sessions, a.seed)):
        if not (d / f"{s}.npz").is_file():
            teacher_labels(s, d)
        if (i + 1) % 10 == 0 or i + 1 == a.sessions:
            print(f"{i + 1}/{a.sessions} sessions in {d} ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
