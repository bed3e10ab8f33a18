"""What the sampled-instrument sessions (``export/sampled.py``) give the model: per session
the feature snapshots of its preamp-gain variants, the teacher's labels, its roles and the
library of every channel -- never audio.

Both are cached per session under ``.cache/sampled/sessions/`` keyed by everything they
depend on (features: the rendering sources, the libraries' files, the feature code;
labels: the rendering and the teacher's label key, ``export.dataset.label_key``), so a
teacher change re-teaches without touching the features and a feature change re-renders
without re-teaching.  :func:`pack` writes them into ``models/sampled_sessions.npz``, from
which ``python -m export.build_models`` retrains without any library installed.

``python -m export.sampled_data --train N --heldout M`` fills the cache and packs.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import pathlib

import numpy as np

from export import sampler as S
from export.sampled import SAMPLE_RATE_HZ, SESSION_SECONDS, render_session

# ---- products: features and teacher labels, cached per session -------------------------
#: Modules whose source decides a rendered session (and, of ``export.synth``, the
#: functions :func:`render_key` names).
RENDER_MODULES = ("export.sampled", "export.sampler", "export.arrangement")


def render_key() -> str:
    """What a rendered session depends on: the rendering sources, the libraries' files
    (path and size), the session constants."""
    from export import synth
    h = hashlib.sha256(f"{SESSION_SECONDS}:{SAMPLE_RATE_HZ}".encode())
    for name in RENDER_MODULES:
        h.update(pathlib.Path(importlib.import_module(name).__file__).read_bytes())
    # of the synthesiser only what a sampled session uses: its recording conditions
    for fn in (synth.record, synth._speech_turns, synth._biquad, synth.source_level_lufs,
               synth._k_weighted_hop_powers, synth._bleeds):
        h.update(inspect.getsource(fn).encode())
    h.update(repr((synth.NOMINAL_LUFS, synth.GAIN_OFFSET_RANGE_DB, synth.NOISE_FLOOR_RANGE_DBFS,
                   synth.DC_OFFSET_MAX, synth.TILT_RANGE_DB, synth.RESONANCE_GAIN_RANGE_DB,
                   synth.BLEED_RANGE_DB, synth._OPEN_MICS, synth._LOUD_ACOUSTIC,
                   synth._DRUMS)).encode())
    for p in list(S.SOUNDFONTS.values()) + [str(S.KIT_DIR)]:
        q = pathlib.Path(p)
        h.update(f"{p}:{q.stat().st_size if q.exists() else -1}".encode())
    return h.hexdigest()[:16]


def features_key() -> str:
    """Key of a session's feature snapshots: the rendering, the feature kernel's source
    and the augmentation (its function and constants)."""
    from export import dataset as D
    h = hashlib.sha256(render_key().encode())
    h.update(pathlib.Path(importlib.import_module("edgemix.features").__file__).read_bytes())
    for fn in (D.gain_variant_snapshots, D._snapshots):
        h.update(inspect.getsource(fn).encode())
    h.update(repr((D.GAIN_VARIANTS, D.GAIN_AUGMENT_DB, D.RAW_LUFS_RANGE,
                   D.SNAPSHOT_S)).encode())
    return h.hexdigest()[:16]


def labels_key() -> str:
    """Key of a session's teacher labels: the rendering and the teacher's label key."""
    from export.dataset import label_key
    return hashlib.sha256((render_key() + label_key()).encode()).hexdigest()[:16]


def _cached(kind: str, key: str, name: str, make, cache_dir=None) -> dict:
    path = pathlib.Path(cache_dir or S.CACHE_DIR / "sessions") / f"{kind}-{key}" / name
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    out = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **out)
    tmp.replace(path)
    return out


def session_features(seed: int, split: str, cache_dir=None) -> dict:
    """The feature snapshots of a session's preamp-gain variants
    (``export.dataset.gain_variants``; features ``(V*S, n, F)``, gains ``(V, n)`` dB), its
    roles, libraries and style; cached."""
    def make():
        from export.dataset import gain_variant_snapshots
        ss = render_session(seed, split)
        x, g = gain_variant_snapshots(ss.session, np.random.default_rng([seed, 11]))
        return {"features": x, "gains_db": g, "roles": ss.session.role_indices,
                "libraries": np.array(ss.libraries), "style": np.array(ss.style)}
    return _cached("features", features_key(), f"{split}-{seed}.npz", make, cache_dir)


def session_labels(seed: int, split: str, cache_dir=None) -> dict:
    """The teacher's ``channel_params`` and ``master_params`` of a session; cached."""
    def make():
        from export.teacher import teach
        t = teach(render_session(seed, split).session)
        return {"channel_params": t.channel_params, "master_params": t.master_params}
    return _cached("labels", labels_key(), f"{split}-{seed}.npz", make, cache_dir)


def labels_cached(seed: int, split: str, cache_dir=None) -> bool:
    d = pathlib.Path(cache_dir or S.CACHE_DIR / "sessions") / f"labels-{labels_key()}"
    return (d / f"{split}-{seed}.npz").is_file()


def session_products(seed: int, split: str, cache_dir=None, teach: bool = True) -> dict:
    """Features, per-example targets in units (the labels with each variant's trim moved
    by its gain), roles and libraries of a session.  ``teach=False``: labels only when
    already cached, else NaN (the session then teaches the model its roles only)."""
    from edgemix import params as P
    f = session_features(seed, split, cache_dir)
    if teach or labels_cached(seed, split, cache_dir):
        lab = session_labels(seed, split, cache_dir)
    else:
        n = len(f["roles"])
        lab = {"channel_params": np.full((n, P.N_CH), np.nan),
               "master_params": np.full(P.N_MS, np.nan)}
    y = lab["channel_params"][:, P.MODEL_OUTPUT_COLUMNS]
    trim = P.MODEL_OUTPUTS.index("trim_db")
    per = f["features"].shape[0] // f["gains_db"].shape[0]
    ys = np.repeat(y[None], f["features"].shape[0], axis=0)
    for v, g in enumerate(f["gains_db"]):
        ys[v * per:(v + 1) * per, :, trim] = P.CHANNEL_SPECS["trim_db"].clip(y[:, trim] - g)
    return {**f, **lab, "targets": ys.astype(np.float32)}


def split_seeds(split: str, n: int) -> list[int]:
    base = {"train": 1000, "heldout": 900000}[split]
    return [base + i for i in range(n)]


# ---- the shipped pack ------------------------------------------------------------------------
SHIPPED = "sampled_sessions.npz"


def shipped_path() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[1] / "models" / SHIPPED


def pack(n_train: int, n_heldout: int, out_path=None, cache_dir=None, log=print,
         teach: bool = False) -> dict:
    """Render (cached) and pack the products of ``n_train`` + ``n_heldout`` sessions: per
    session its examples (present channels only), labels in units (NaN for a session not
    taught yet; ``teach``: teach it now), roles, libraries."""
    import time
    out_path = pathlib.Path(out_path or shipped_path())
    arrays: dict = {"features_key": np.array(features_key()),
                    "labels_key": np.array(labels_key())}
    t0 = time.perf_counter()
    counts = {}
    for split, n in (("train", n_train), ("heldout", n_heldout)):
        ok = labelled = 0
        for i, seed in enumerate(split_seeds(split, n)):
            p = session_products(seed, split, cache_dir, teach)
            labelled += int(np.isfinite(p["channel_params"]).all())
            for k in ("features", "targets", "roles", "channel_params", "master_params",
                      "libraries", "style", "gains_db"):
                arrays[f"{split}_{seed}_{k}"] = p[k]
            ok += 1
            if (i + 1) % 10 == 0 or i + 1 == n:
                log(f"{split}: {i + 1}/{n} sessions ({time.perf_counter() - t0:.0f} s)")
        counts[split] = ok
        counts[f"{split}_labelled"] = labelled
    arrays["seeds_train"] = np.array(split_seeds("train", n_train))
    arrays["seeds_heldout"] = np.array(split_seeds("heldout", n_heldout))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out_path)
    return counts


def load_pack(path=None) -> dict:
    """``{split: [per-session dict of features, targets, roles, libraries, ...]}``."""
    path = pathlib.Path(path or shipped_path())
    out = {"train": [], "heldout": []}
    with np.load(path, allow_pickle=False) as z:
        for split in out:
            for seed in z[f"seeds_{split}"]:
                pre = f"{split}_{int(seed)}_"
                out[split].append({k[len(pre):]: z[k] for k in z.files if k.startswith(pre)})
        out["features_key"] = str(z["features_key"])
        out["labels_key"] = str(z["labels_key"])
    return out


def main(argv=None) -> int:
    """``python -m export.sampled_data --train N --heldout M``: render, teach and pack sampled
    sessions into models/sampled_sessions.npz (resumable: every session is cached)."""
    import argparse
    import sys
    ap = argparse.ArgumentParser(prog="python -m export.sampled_data", description=main.__doc__)
    ap.add_argument("--train", type=int, default=240)
    ap.add_argument("--heldout", type=int, default=40)
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", choices=("train", "heldout"), default=None,
                    help="fill the cache for one split only (no pack)")
    ap.add_argument("--features-only", action="store_true",
                    help="with --only: features (and roles) only, no teacher labels")
    ap.add_argument("--start", type=int, default=0, help="with --only: first session index")
    ap.add_argument("--step", type=int, default=1, help="with --only: every STEP-th session")
    a = ap.parse_args(argv)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if a.only:
            n = a.train if a.only == "train" else a.heldout
            seeds = split_seeds(a.only, n)[a.start::a.step]
            for i, s in enumerate(seeds):
                (session_features if a.features_only else session_products)(s, a.only)
                log(f"{a.only}: {i + 1}/{len(seeds)}")
            return 0
        log(str(pack(a.train, a.heldout, a.out, log=log)))
    except S.MissingLibrary as e:
        log(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def to_dataset(sessions: list[dict]):
    """An ``export.dataset.Dataset`` of packed sessions (each padded to ``MAX_CHANNELS``)
    and the library of every row's channels ``(N, MAX_CHANNELS)`` ('' where absent)."""
    from edgemix import features as feat
    from edgemix.infer.base import MAX_CHANNELS
    from edgemix.params import MODEL_OUTPUTS, normalise_outputs
    from export.dataset import Dataset
    per = sessions[0]["features"].shape[0] if sessions else 1
    total = per * len(sessions)
    xs = np.zeros((total, MAX_CHANNELS, feat.N_FEATURES), np.float32)
    ys = np.zeros((total, MAX_CHANNELS, len(MODEL_OUTPUTS)), np.float32)
    ms = np.zeros((total, MAX_CHANNELS), np.float32)
    rs = np.full((total, MAX_CHANNELS), -1, np.int64)
    libs = np.full((total, MAX_CHANNELS), "", dtype=object)
    for i, p in enumerate(sessions):
        n = len(p["roles"])
        rows = slice(i * per, (i + 1) * per)
        xs[rows, :n] = p["features"]
        ys[rows, :n] = normalise_outputs(p["targets"])
        ms[rows, :n] = 1.0
        rs[rows, :n] = p["roles"]
        libs[rows, :n] = np.asarray(p["libraries"], dtype=object)
    return Dataset(xs, ms, ys, rs, "sampled", examples_per_session=per), libs


def current(pack_dict: dict) -> bool:
    """Whether a loaded pack was made by the current rendering, features and teacher."""
    return (pack_dict.get("features_key") == features_key()
            and pack_dict.get("labels_key") == labels_key())
