"""Rebuild everything in ``models/`` from a seed: ``python -m export.build_models``.

Steps: training data (synthesiser + teacher when installed, else the interim generator;
the teacher's labels are cached per session under ``build/teacher-<key>/``, filled ahead by
``python -m export.dataset --sessions N``, the slow step), training, the weights ``.npz``, ONNX float and int8 (QDQ), TFLite float32 and int8, golden
I/O from the training side (PyTorch), held-out metrics, the model card and ``SHA256SUMS``.
Deterministic: the same seed on the same versions gives byte-identical files.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

from edgemix.infer.base import MAX_CHANNELS
from edgemix.infer.weights import FITTED_NAMES, n_parameters, save_weights, write_npz
from edgemix.params import MODEL_OUTPUT_SPECS, MODEL_OUTPUTS, denormalise_outputs
from edgemix.roles import ROLE_NAMES
from export import dataset as D
from export import verify as V
from export import sampled_data as SD
from export.dataset import build_dataset, session_seeds
from export.onnx_export import OPSET, write_onnx
from export.quantize import calibrate, quantize_onnx_int8
from export.tflite_export import write_tflite
from export.train import TrainConfig, predict_torch, train

#: Sessions in the golden file: a spread of channel counts, including 1 and 32.
N_GOLDEN = 8
N_CALIBRATION = 256


def golden_inputs(held) -> tuple[np.ndarray, np.ndarray]:
    """Inputs for the golden file: held-out examples plus one channel alone and a full
    32-channel console put together from held-out channels (every count is covered)."""
    counts = held.mask.sum(axis=1)
    order = np.argsort(counts, kind="stable")
    picks = [int(order[(len(order) - 1) * k // (N_GOLDEN - 3)]) for k in range(N_GOLDEN - 2)]
    feats = [held.features[i] for i in picks]
    masks = [held.mask[i] for i in picks]
    one = np.zeros_like(held.features[0])
    big = picks[-1]
    one[0] = held.features[big][0]
    m1 = np.zeros_like(held.mask[0])
    m1[0] = 1.0
    rows = held.features[held.mask > 0]
    full = rows[np.linspace(0, len(rows) - 1, MAX_CHANNELS).astype(int)]
    feats += [one, full]
    masks += [m1, np.ones_like(held.mask[0])]
    return np.stack(feats).astype(np.float32), np.stack(masks).astype(np.float32)


def quality_metrics(pred01, role_logits, data) -> dict:
    """Student against its labels on held-out sessions, in parameter units."""
    present = (data.mask > 0) & np.isfinite(data.targets01).all(axis=-1)
    a = denormalise_outputs(pred01[present])
    b = denormalise_outputs(data.targets01[present])
    per_param = {}
    for i, spec in enumerate(MODEL_OUTPUT_SPECS if len(a) else ()):
        if spec.scale == "log":
            e = np.abs(np.log2(a[:, i] / b[:, i]))
            unit = "oct"
        else:
            e = np.abs(a[:, i] - b[:, i])
            unit = "pan" if spec.name == "pan" else "dB"
        per_param[spec.name] = {"mae": float(e.mean()), "p90": float(np.quantile(e, 0.9)),
                                "unit": unit}
    present = data.mask > 0
    acc = float(np.mean(role_logits[present].argmax(-1) == data.roles[present]))
    return {"per_param": per_param, "role_accuracy": acc,
            "sessions": int(len(data)), "channels": int(present.sum()),
            "labelled_channels": int(len(a))}


def role_report(role_logits, data, libraries) -> dict:
    """Top-1 role accuracy of present channels overall and per library, and the confusion
    matrix (rows: the true role, columns: the recognised one, counts), in ROLE_NAMES order."""
    present = data.mask > 0
    pred = role_logits[present].argmax(-1)
    true = data.roles[present]
    libs = np.asarray(libraries)[present]
    conf = np.zeros((len(ROLE_NAMES), len(ROLE_NAMES)), np.int64)
    np.add.at(conf, (true, pred), 1)
    per_lib = {str(k): {"accuracy": float(np.mean(pred[libs == k] == true[libs == k])),
                        "channels": int(np.sum(libs == k))}
               for k in sorted(set(libs.tolist()))}
    return {"accuracy": float(np.mean(pred == true)), "channels": int(present.sum()),
            "per_library": per_lib, "confusion": conf.tolist()}


#: Sampled-instrument sessions (export/sampled.py) beside the synthesised ones: training
#: libraries (the last SAMPLED_SEEN_SHARE of them held out by session) and the held-out
#: libraries (export.sampled.HELDOUT_LIBRARIES), all shipped in models/sampled_sessions.npz.
N_SAMPLED_TRAIN = 150
N_SAMPLED_HELDOUT = 30
SAMPLED_SEEN_SHARE = 0.1


def sampled_sessions(n_train: int, n_heldout: int, log=print) -> dict:
    """The shipped pack of sampled sessions; made again (rendering and teaching, cached)
    when it is missing, too small or made by other sources and the libraries are here."""
    path = SD.shipped_path()
    pack = SD.load_pack(path) if path.is_file() else None
    fresh = pack is not None and len(pack["train"]) >= n_train and \
        len(pack["heldout"]) >= n_heldout
    try:
        fresh = fresh and SD.current(pack)
        if not fresh:
            log(f"sampled sessions: packing {n_train} + {n_heldout} into {path}")
            SD.pack(n_train, n_heldout, path, log=log)
            pack = SD.load_pack(path)
    except SD.S.MissingLibrary as e:
        if pack is None:
            raise
        log(f"sampled sessions: the shipped pack is used as it is ({e})")
    return {"train": pack["train"][:n_train], "heldout": pack["heldout"][:n_heldout],
            "features_key": pack["features_key"], "labels_key": pack["labels_key"]}


def _int8_parity(backend, features, mask, ref01, ref_logits) -> dict:
    golden = {"features": features, "mask": mask, "params01": ref01, "role_logits": ref_logits}
    p, r = V.run_backend(backend, golden)
    return V.compare(p, r, golden, int8=True)


def dataset_cache_path(n_sessions: int, seed: int, cache_dir) -> pathlib.Path:
    """Where :func:`dataset_cached` keeps an assembled dataset: a key of everything it
    depends on (the dataset, feature, schema and role sources and, with the teacher, the
    key of its labels: :func:`export.dataset.label_key`), the seed and the count."""
    import hashlib
    import importlib
    from export.dataset import label_key, teacher_available
    h = hashlib.sha256(f"{n_sessions}:{seed}".encode())
    for name in ("export.dataset", "edgemix.features", "edgemix.params", "edgemix.roles"):
        h.update(pathlib.Path(importlib.import_module(name).__file__).read_bytes())
    if teacher_available():
        h.update(label_key().encode())
    return pathlib.Path(cache_dir) / f"dataset-{h.hexdigest()[:16]}.npz"


def dataset_cached(n_sessions: int, seed: int, cache_dir, log=print, teach: bool = True):
    """:func:`build_dataset`, kept in ``cache_dir`` (None: not kept).  The teacher's labels
    are cached per session under ``cache_dir/teacher-<key>/`` (``python -m export.dataset``
    fills it ahead; sessions missing there are taught now, one process)."""
    from export.dataset import Dataset, label_dir_for, teacher_available
    path = dataset_cache_path(n_sessions, seed, cache_dir) if cache_dir and teach else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            log(f"data: cached {path}")
            return Dataset(z["features"], z["mask"], z["targets01"], z["roles"],
                           str(z["source"]), int(z["examples_per_session"]))
    label_dir = label_dir_for(cache_dir) if cache_dir and teacher_available() else None
    data = build_dataset(n_sessions, seed, label_dir=label_dir, teach=teach,
                         feature_dir=cache_dir)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, features=data.features, mask=data.mask, targets01=data.targets01,
                 roles=data.roles, source=data.source,
                 examples_per_session=data.examples_per_session)
    return data


#: Defaults of the shipped model: sessions (the teacher's labels for all of them are one
#: ``python -m export.dataset --sessions 400`` away, about 45 min in one process) and epochs
#: (about 5 min of training in one thread at 20 examples per session).
N_TRAIN_SESSIONS = 200
N_HELDOUT_SESSIONS = 12
EPOCHS = 100
QAT_EPOCHS = 25
#: Weight of the int8-robustness term of the quantisation-aware epochs (TrainConfig.
#: qat_noise_weight).  Measured on the 24 held-out sessions (int8 TFLite against float,
#: trim p99 / worst, dB; in brackets the float model's held-out trim MAE against the
#: labels): 0 -> 0.66 / 2.2 (1.50), 3 -> 0.41 / 1.25 (1.38), 10 -> 0.30 / 0.84 (1.42),
#: 15 -> 0.28 / 0.87 (1.66), 30 -> 0.20 / 0.60 (1.78).  Only 10 and above met the golden
#: check; 10 keeps the float model's accuracy at or above the earlier model's (1.47 dB).
#: With the band levels limited to -60 dB (export/model.py:INPUT_LIMITS), trim and send:
#: 10 -> 0.28 / 0.71 and 0.28 / 0.85 (1.38), 20 -> 0.27 / 0.68 and 0.29 / 0.83 (1.42),
#: with 19 and 8 held-out channels outside INT8_TOL_UNITS on some parameter.
#: Trained with the sampled-instrument sessions (most of them roles only), 20 left the
#: golden aux send 0.96 dB off in the int8 file (tolerance 0.5): 40.
QAT_NOISE_WEIGHT = 40.0
#: Weight of the role cross-entropy against the parameter loss: most sampled-instrument
#: sessions carry roles but no teacher labels, and recognising the role by ear is what
#: labelling, panning, balance and gain sharing stand on (issue 10).
ROLE_WEIGHT = 2.0


def build(out_dir, seed: int = 0, n_train: int = N_TRAIN_SESSIONS,
          n_heldout: int = N_HELDOUT_SESSIONS, epochs: int = EPOCHS,
          qat_epochs: int = QAT_EPOCHS, log=print, cache_dir=None,
          onnx_int8: bool = False, n_sampled_train: int = N_SAMPLED_TRAIN,
          n_sampled_heldout: int = N_SAMPLED_HELDOUT) -> dict:
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # every synthesised session teaches its roles; its parameters where the teacher's
    # labels are cached or shipped (the held-out ones are taught now if missing)
    if D.teacher_available():
        label_dir = D.label_dir_for(cache_dir) if cache_dir else None
        for s in session_seeds(n_train + n_heldout, seed)[n_train:]:
            D.teacher_labels(s, label_dir)
    data = dataset_cached(n_train + n_heldout, seed, cache_dir, log, teach=False)
    train_set, held = data.split(n_train)
    n_taught = int(np.isfinite(train_set.targets01).all(axis=(1, 2)).sum()
                   // train_set.examples_per_session)
    log(f"data: {n_train} train ({n_taught} taught) + {n_heldout} held-out sessions, "
        f"{len(train_set)} + {len(held)} examples ({data.source}), "
        f"{time.perf_counter() - t0:.0f} s")
    samp = sampled_sessions(n_sampled_train, n_sampled_heldout, log)
    n_seen = int(round(len(samp["train"]) * (1.0 - SAMPLED_SEEN_SHARE)))
    s_train, _ = SD.to_dataset(samp["train"][:n_seen])
    s_seen, s_seen_libs = SD.to_dataset(samp["train"][n_seen:])
    s_held, s_held_libs = SD.to_dataset(samp["heldout"])
    train_set = train_set.concat(s_train)
    log(f"data: + {n_seen} sampled-instrument sessions ({len(s_train)} examples); held out "
        f"{len(samp['train']) - n_seen} of the training libraries and "
        f"{len(samp['heldout'])} of the held-out libraries")
    cfg = TrainConfig(seed=seed, epochs=epochs, qat_epochs=qat_epochs, role_weight=ROLE_WEIGHT,
                      qat_noise_weight=QAT_NOISE_WEIGHT)
    n_epochs = epochs + qat_epochs
    res = train(train_set, cfg, progress=lambda e, loss: log(
        f"epoch {e + 1}/{n_epochs} loss {loss:.5f}") if (e + 1) % 10 == 0 or e == 0 else None)
    w = res.weights
    log(f"trained {n_parameters(w)} parameters in {res.seconds:.0f} s "
        f"({len(train_set)} examples from {n_train} sessions)")

    save_weights(out / "student.npz", w)
    write_onnx(out / "student.onnx", w)
    write_tflite(out / "student_float32.tflite", w)
    cal = train_set.split(N_CALIBRATION // train_set.examples_per_session)[0]
    # the int8 model uses the ranges of the quantisation-aware model (export/train.py)
    ranges = res.ranges if res.ranges is not None else calibrate(w, cal.features, cal.mask)
    write_tflite(out / "student_int8.tflite", w, ranges)
    if onnx_int8:
        quantize_onnx_int8(out / "student.onnx", out / "student_int8.onnx", cal.features,
                           cal.mask)
    else:
        (out / "student_int8.onnx").unlink(missing_ok=True)

    # golden I/O from the training side (PyTorch, float32)
    gf, gm = golden_inputs(held)
    gp, gr = predict_torch(res.model, gf, gm)
    write_npz(out / "golden.npz", {"features": gf, "mask": gm, "params01": gp,
                                   "role_logits": gr})

    # held-out quality and int8 parity over every held-out session
    hp, hr = predict_torch(res.model, held.features, held.mask)
    quality = quality_metrics(hp, hr, held)
    sampled = {}
    for key, d, libs in (("heldout_libraries", s_held, s_held_libs),
                         ("training_libraries", s_seen, s_seen_libs)):
        p, r = predict_torch(res.model, d.features, d.mask)
        sampled[key] = {"labels": quality_metrics(p, r, d), "roles": role_report(r, d, libs),
                        "sessions": len(d) // max(d.examples_per_session, 1)}
    log(f"sampled held-out libraries: role accuracy "
        f"{sampled['heldout_libraries']['roles']['accuracy']:.3f}; training libraries, "
        f"held-out sessions: {sampled['training_libraries']['roles']['accuracy']:.3f}")
    from edgemix import infer
    parity = {name: _int8_parity(infer.load(out / name), held.features, held.mask, hp, hr)
              for name in ("student_int8.tflite", "student_int8.onnx")
              if (out / name).is_file()}
    golden_report = V.verify(out)
    t_eval = time.perf_counter()
    teacher = None
    if data.source == "teacher":
        seeds = session_seeds(n_train + n_heldout, seed)[n_train:]
        from export.dataset import label_dir_for
        rows, summary = V.teacher_quality(out / "student.npz", seeds,
                                          label_dir_for(cache_dir) if cache_dir else None,
                                          {"student_int8": out / "student_int8.tflite"})
        teacher = {"sessions": rows, "summary": summary}
        log(f"teacher comparison on {len(rows)} held-out sessions "
            f"({time.perf_counter() - t_eval:.0f} s): {summary}")
    # no timings in the files: a rebuild from the same seed is byte-identical
    metrics = {"seed": seed, "data_source": data.source, "n_train_sessions": n_train,
               "n_train_examples": len(train_set), "epochs": epochs, "qat_epochs": qat_epochs,
               "qat_noise_weight": cfg.qat_noise_weight,
               "final_train_loss": res.losses[-1], "parameters": n_parameters(w),
               "fitted_constants": int(sum(np.size(w[k]) for k in FITTED_NAMES)),
               "role_weight": cfg.role_weight,
               "examples_per_session": data.examples_per_session,
               "snapshot_s": list(D.SNAPSHOT_S), "session_s": D.SESSION_SECONDS,
               "onnx_opset": OPSET, "quality_heldout": quality,
               "int8_parity_heldout": parity, "golden_parity": golden_report,
               "teacher_quality": teacher, "sampled": sampled,
               "n_train_sessions_taught": n_taught,
               "n_sampled_train_taught": int(np.isfinite(s_train.targets01).all(axis=(1, 2)).sum()
                                             // max(s_train.examples_per_session, 1)),
               "n_sampled_train_sessions": n_seen,
               "sampled_keys": {"features": samp["features_key"], "labels": samp["labels_key"]}}
    if data.source == "teacher" and cache_dir:
        from export.dataset import SHIPPED_LABELS, label_dir_for, pack_labels
        n = pack_labels(label_dir_for(cache_dir), session_seeds(n_train + n_heldout, seed),
                        out / SHIPPED_LABELS)
        log(f"packed the teacher labels of {n} sessions into {out / SHIPPED_LABELS}")
    write_card(out, metrics)
    log(f"wrote {out} in {time.perf_counter() - t0:.0f} s")
    return metrics


def write_card(out, metrics: dict) -> None:
    """metrics.json, MODEL_CARD.md and SHA256SUMS (last: it covers the other files)."""
    out = pathlib.Path(out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card({**metrics, "_out_dir": str(out)}))
    names = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != "SHA256SUMS")
    (out / "SHA256SUMS").write_text("".join(f"{V.sha256_of(out / n)}  {n}\n" for n in names))


def refresh_card(out) -> dict:
    """Re-run the golden parity of the files in ``out`` (e.g. after a tolerance in
    export/verify.py changed) and rewrite the card and checksums; no retraining."""
    out = pathlib.Path(out)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["golden_parity"] = V.verify(out)
    for r in metrics["int8_parity_heldout"].values():
        r.pop("meets_target", None)
        r["ok"] = V.int8_verdict(r["max_err_units"], r["role_agreement"])
    write_card(out, metrics)
    return metrics


def model_card(m: dict) -> str:
    """The model card, written from the measured metrics (nothing typed in by hand)."""
    from edgemix.automix.rules import TRIM_TARGET_LUFS
    from edgemix.features import FEATURE_NAMES
    from export.model import INPUT_LIMITS
    limits = ", ".join(f"`{k}` {'' if lo is None else f'from {lo:g}'}"
                       f"{'' if hi is None else f' to {hi:g}'}".strip()
                       for k, (lo, hi) in INPUT_LIMITS.items())
    q = m["quality_heldout"]
    # in the schema's order: metrics.json is written with sorted keys, so a card rewritten
    # from it (refresh_card) must not depend on the dict's order
    rows = "\n".join(
        f"| `{k}` | {q['per_param'][k]['unit']} | {q['per_param'][k]['mae']:.3g} | "
        f"{q['per_param'][k]['p90']:.3g} |" for k in MODEL_OUTPUTS if k in q["per_param"])
    par_names = list(m["int8_parity_heldout"])
    held = m["int8_parity_heldout"]
    int8_gold = {k: v for k, v in m["golden_parity"].items() if k.split(":")[0] in held}
    par = [f"| `{k}` | {V.INT8_TOL_UNITS[k]:.3g} | " + " | ".join(
        f"{held[n]['p99_err_units'][k]:.3g} / {held[n]['max_err_units'][k]:.3g}"
        for n in par_names) + " | " + " | ".join(
        f"{v['max_err_units'][k]:.3g}" for v in int8_gold.values()) + " |"
        for k in V.INT8_TOL_UNITS]
    par.append(f"| role agreement | {V.INT8_MIN_ROLE_AGREEMENT:g} | " + " | ".join(
        f"{held[n]['role_agreement']:.4f}" for n in par_names) + " | " + " | ".join(
        f"{v['role_agreement']:.4f}" for v in int8_gold.values()) + " |")
    gold_ok = all(v["ok"] for v in int8_gold.values())
    over = sorted({k for n in par_names for k, e in held[n]["max_err_units"].items()
                   if e > V.INT8_TOL_UNITS[k]})
    over_p99 = sorted({k for n in par_names for k, e in held[n]["p99_err_units"].items()
                       if e > V.INT8_TOL_UNITS[k]})
    int8_verdict = (
        f"On the golden sessions the int8 file is {'within' if gold_ok else '**outside**'} "
        "the tolerance on every parameter. Over all held-out channels, the 99th percentile is "
        + (f"**above** it on {', '.join(f'`{k}`' for k in over_p99)}" if over_p99
           else "within it everywhere")
        + "; the worst case is "
        + (f"above it on {', '.join(f'`{k}`' for k in over)} (see docs/design-notes.md, "
           "\"The int8 graph\")" if over else "within it too")
        + ".")
    gold = "\n".join(f"| `{k}` | {v['max_err_01']:.2e} | {v['max_err_logit']:.2e} | "
                     f"{v['role_agreement']:.4f} | {'yes' if v['ok'] else '**no**'} |"
                     for k, v in m["golden_parity"].items())
    specs = "\n".join(f"| {i} | `{s.name}` | {s.min:g} .. {s.max:g} | {s.scale} |"
                      for i, s in enumerate(MODEL_OUTPUT_SPECS))
    source = ("sessions from `export/synth.py` labelled by `export/teacher.py`"
              if m["data_source"] != "interim" else
              "**the interim generator** in `export/dataset.py` (textbook rules applied to "
              "generated feature vectors; not the teacher: these numbers say nothing about "
              "mix quality)")
    tq = m.get("teacher_quality")
    if tq:
        t = tq["summary"]
        ways = ("student", "student_int8", "equal_loudness", "equal_loudness_oracle",
                "unprocessed")
        tq_rows = "\n".join(
            f"| {label} | " + " | ".join(f"{t[f'{key}_{w}']:.2f}" for w in ways) + " |"
            for key, label in (("loudness_lu", "loudness balance error (LU RMS)"),
                               ("spectral_db", "mix spectral balance error (dB RMS)"),
                               ("hpf_oct", "HPF corner error (octaves, mean abs)"),
                               ("pan", "pan error (mean abs)")))
        teacher_section = f"""
## Against the teacher ({t['sessions']} held-out synthesised sessions, rendered)

Each held-out session is rendered by the engine with the teacher's settings, the
student's (float32 and int8 TFLite; its outputs over the teacher's switches), two
equal-loudness baselines (every channel trimmed to the same loudness, all else neutral:
from the snapshot's active loudness, which is what the student sees, and from the
teacher's whole-session trims, an oracle) and the unprocessed sum (all neutral).
Balances are relative (each channel's solo loudness, or each band of the mix, minus the
mean), compared with the teacher's; see `export/verify.py:session_quality`.

| measure | student | student, int8 TFLite | equal loudness (snapshot) | equal loudness (oracle) | unprocessed |
|---|---|---|---|---|---|
{tq_rows}

Role accuracy on these sessions: {t['role_accuracy']:.3f}.

The pan row is the network's own pan output.  The model policy does not use it: it places
each channel by the role the network recognised (`edgemix/automix/model_policy.py:place_pans`,
the teacher's own placement; which side of a pair a channel takes is a convention about
the set of channels that a per-channel network cannot learn).  Pan error of the policy's
pans: {t['pan_student_placed']:.3f} mean abs.

- Gap to the teacher closed (1 - student error / unprocessed error), loudness balance:
  {100 * t['loudness_lu_gap_closed']:.0f} % (int8: {100 * t['loudness_lu_gap_closed_int8']:.0f} %; target: at least 80 %).
- Spectral balance: {100 * t['spectral_db_gap_closed']:.0f} % (int8: {100 * t['spectral_db_gap_closed_int8']:.0f} %).
- Loudness balance against the equal-loudness baseline from the same snapshot:
  {t['loudness_lu_student']:.2f} vs {t['loudness_lu_equal_loudness']:.2f} LU RMS
  ({'beaten' if t['loudness_lu_student'] < t['loudness_lu_equal_loudness'] else '**not beaten**'}).
"""
    else:
        teacher_section = "\n(No teacher comparison: trained on the interim generator.)\n"
    return f"""# edgemix student model

Generated by `python -m export.build_models --seed {m['seed']}` (do not edit by hand).

A mix-aware per-channel network: a shared per-channel MLP, a masked mean/max pool over
channels (DeepSets / PointNet) feeding a mix context back to every channel, a parameter
head and a role head.  The parameter head is residual: a fixed skip from the input carries
the gain-staging answer (trim = {TRIM_TARGET_LUFS:g} LUFS - `loudness_active_lufs`) and each
output's linear head spans only the range the teacher's labels use around it (fitted on the
training labels), clamped to 0..1.  {m['parameters']} trained parameters (plus
{m.get('fitted_constants', 0)} fitted constants: standardisation, skip, spans).  The
network is written out in `edgemix/infer/weights.py`.

## Files

| file | what | runs on |
|---|---|---|
| `student.npz` | float32 weights (the source of every other file) | Numba-native, numpy reference |
| `student.onnx` | float32, opset {m['onnx_opset']} | ONNX Runtime |
| `student_float32.tflite` | float32, builtin ops only | LiteRT (`ai_edge_litert`) |
| `student_int8.tflite` | int8 weights (per-channel, symmetric) and activations (per-tensor; the parameter head's range per output, folded into the head and the tail) for every layer; float32 I/O: standardisation and mask weights in float32, then QUANTIZE; DEQUANTIZE after the parameter head, then the float32 tail (skip, span, clamp) | LiteRT |
| `golden.npz` | {N_GOLDEN} sessions: inputs and the PyTorch outputs | tests |
| `metrics.json` | everything measured below | |

## Inputs

- `features` `(32, {len(FEATURE_NAMES)})` float32: per channel the features of
  `edgemix.features.FEATURE_NAMES`, units in each name (`_lufs`, `_dbfs`, `_db`, `_lu`,
  `_hz`, `_ratio` = 0..1).  Taken from the raw channel input before trim/EQ.  The
  network sees each feature clipped to the range it was trained on, narrowed where a
  feature stops carrying information ({limits};
  `export/model.py:INPUT_LIMITS`); the trim's skip reads the raw loudness.
- `mask` `(32,)` float32: 1 for a present channel, 0 for an absent one.

## Outputs

- `params` `(32, 16)` in 0..1, mapped to units by `edgemix.params.denormalise_outputs`:

| column | parameter | range | scale |
|---|---|---|---|
{specs}

- `role_logits` `(32, {len(ROLE_NAMES)})`: unnormalised log-probabilities of
  {', '.join(f'`{r}`' for r in ROLE_NAMES)}.

Rows of absent channels are unspecified.

## Training data

{source}: {m['n_train_sessions']} synthesised training sessions of 1..32 channels
({m.get('n_train_sessions_taught', m['n_train_sessions'])} of them with the teacher's labels;
the others teach the role head only) and {m.get('n_sampled_train_sessions', 0)} sessions of sampled
instruments ({m.get('n_sampled_train_taught', 0)} with labels; see below),
{m['n_train_examples']} examples in all, {m['epochs']} float epochs
then {m['qat_epochs']} quantisation-aware epochs (every hidden unit first rescaled to fill
its int8 range, the same function; weights on their int8 grid with straight-through
gradients, and a {m.get('qat_noise_weight', 0):g} x penalty on how far the parameters move
when every activation gets one int8 step of noise; the float files carry exactly the int8
file's weights, see `export/train.py`),
seed {m['seed']}, one CPU thread, final training loss
{m['final_train_loss']:.5f} (Huber loss of each parameter's error in loss units: 1 dB,
1/3 octave, 0.1 pan; plus {m.get('role_weight', 1.0):g} x role cross-entropy; in the
last epochs plus the int8 noise penalty; see `export/train.py`).  Examples: {m.get('examples_per_session', '?')} per session (preamp-gain
variants x feature snapshots at {m.get('snapshot_s', '?')} s of a
{m.get('session_s', '?')} s session).  The teacher's labels of every session ship in
`teacher_labels.npz` (keyed by the label sources and the engine's sound): the sessions
themselves are synthesised again from their seeds, so `python -m export.build_models`
retrains from a fresh clone without re-teaching or rendering (the sampled sessions'
features and labels ship in `sampled_sessions.npz`); teaching the synthesised sessions
is `python -m export.dataset --sessions N`, rendering and teaching the sampled ones
`python -m export.sampled_data` (both cached; costs in `benchmarks/bench_real.py`).

## Held-out labels ({q['sessions']} examples, {q['channels']} channels)

Student against its labels; frequencies, ratio and time constants in octaves (log2 of the
ratio), gains in dB, pan in pan units.  Role accuracy {q['role_accuracy']:.3f}.

| parameter | unit | mean abs error | 90th percentile |
|---|---|---|---|
{rows}

{teacher_section}
{sampled_section(m)}
## Backend parity

Golden I/O (`golden.npz`), every present channel.  Float tolerances: {V.FLOAT_TOL_01:g} in
normalised units, {V.FLOAT_TOL_LOGIT:g} on role logits.

| file:backend | max error (0..1) | max error (logits) | role agreement | within tolerance |
|---|---|---|---|---|
{gold}

int8 against float32, per parameter (units as above): the 99th percentile / worst case
over all held-out sessions, and the worst case on the golden sessions (what
`export/verify.py` asserts).  **Tolerance** is the issue's example (`INT8_TOL_UNITS`).
{int8_verdict}  The int8 file's mix quality is the float model's (table above).

| parameter | tolerance | {' | '.join(f'`{n}` held-out' for n in par_names)} | {' | '.join(f'`{n}` golden' for n in int8_gold)} |
|---|---|{'---|' * (len(par_names) + len(int8_gold))}
{chr(10).join(par)}
"""


def _confusion_table(conf) -> str:
    short = [r.replace("_overheads", "").replace("_piano", "").replace("_vocal", "")
             for r in ROLE_NAMES]
    head = "| true \\ heard | " + " | ".join(short) + " | accuracy |"
    rows = [head, "|---|" + "---|" * (len(ROLE_NAMES) + 1)]
    for i, r in enumerate(ROLE_NAMES):
        n = sum(conf[i])
        if not n:
            continue
        cells = " | ".join(f"**{v}**" if j == i and v else (str(v) if v else "")
                           for j, v in enumerate(conf[i]))
        rows.append(f"| `{r}` | {cells} | {conf[i][i] / n:.2f} |")
    return "\n".join(rows)


def comparison_section(out_dir) -> str:
    """The model and the rules side by side (``models/comparison.json``, written by
    ``python -m export.compare`` for the model whose checksum it names)."""
    path = pathlib.Path(out_dir) / "comparison.json"
    if not path.is_file():
        return "(Not measured: run `python -m export.compare`.)\n"
    c = json.loads(path.read_text())
    model = pathlib.Path(out_dir) / "student.npz"
    stale = model.is_file() and c.get("model_sha256") != V.sha256_of(model)
    rows = []
    measures = (("role_accuracy", "role accuracy (top-1, anonymous names)", "{:.3f}"),
                ("loudness_lu", "loudness balance error vs teacher (LU RMS)", "{:.2f}"),
                ("spectral_db", "spectral balance error vs teacher (dB RMS)", "{:.2f}"),
                ("trim_balance_db", "trim invariance: third-octave difference (dB, mean / worst)", None),
                ("trim_loudness_lu", "trim invariance: loudness difference (LU, mean / worst)", None),
                ("lead_lu", "lead over the rest (LU; teacher: see below)", "{:+.1f}"),
                ("hpf_oct", "HPF corner error vs teacher (octaves)", "{:.2f}"),
                ("pan", "pan error vs teacher (mean abs)", "{:.3f}"))
    kinds = [k for k in ("synthesised", "heldout_libraries") if k in c]
    for key, label, fmt in measures:
        cells = []
        for kind in kinds:
            sm = c[kind]["summary"]
            for pol in ("model", "rules"):
                k = f"{key}_{pol}"
                if k not in sm:
                    cells.append("-")
                elif fmt is None:
                    cells.append(f"{sm[k]:.2f} / {sm[k + '_max']:.2f}")
                else:
                    cells.append(fmt.format(sm[k]))
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    lead_t = " ; ".join(f"{k}: {c[k]['summary'].get('lead_lu_teacher', float('nan')):+.1f} LU"
                        for k in kinds)
    names = {"synthesised": "held-out synthesised", "heldout_libraries": "held-out libraries"}
    head = "| measure | " + " | ".join(f"{names[k]}: model | {names[k]}: rules"
                                      for k in kinds) + " |"
    return (("**Measured on an earlier model: run `python -m export.compare` again.**\n\n"
             if stale else "")
            + ", ".join(f"{c[k]['summary']['sessions']} {names[k]}" for k in kinds) + " "
            "sessions (48 kHz, 8 s, anonymous `in_NN.wav`), each mixed by `edgemix mix` with "
            "the model and with the rules, and again with every input trimmed by -20..+20 dB "
            "(`export/compare.py`).\n\n"
            + head + "\n|---|" + "---|" * (2 * len(kinds)) + "\n" + "\n".join(rows)
            + f"\n\nThe teacher's lead over the rest: {lead_t}.\n")


def sampled_section(m: dict) -> str:
    """Held-out-library evaluation of the sampled-instrument sessions."""
    sm = m.get("sampled")
    if not sm:
        return ""
    from export.sampled import HELDOUT_LIBRARIES, TRAIN_LIBRARIES
    held, seen = sm["heldout_libraries"], sm["training_libraries"]
    lib_rows = "\n".join(
        f"| `{lib}` | {'held out' if part is held else 'training'} | {v['channels']} | "
        f"{v['accuracy']:.3f} |"
        for part in (held, seen) for lib, v in part["roles"]["per_library"].items())
    pp = held["labels"]["per_param"]
    lab = ", ".join(f"`{k}` {pp[k]['mae']:.2f} {pp[k]['unit']}"
                    for k in ("trim_db", "fader_db", "hpf_hz", "eq2_gain_db", "eq3_gain_db",
                              "comp_threshold_db", "aux1_send_db") if k in pp) or "none taught"
    fmt = lambda d: "; ".join(f"{k}: {', '.join(f'`{x}`' for x in v)}"  # noqa: E731
                              for k, v in d.items())
    ok = held["roles"]["accuracy"] >= 0.9
    return f"""
## Sampled instruments, judged on libraries training never heard

{m.get('n_sampled_train_sessions', 0)} of the training sessions are sampled-instrument sessions (`export/sampled.py`:
our own arrangements in seven styles played by SoundFonts through FluidSynth, Hydrogen
drum kits of recorded multi-velocity samples, espeak-ng and Festival voices, then a room
and the synthesiser's recording conditions).  Training libraries: {fmt(TRAIN_LIBRARIES)}.
Held out (never in a training session): {fmt(HELDOUT_LIBRARIES)}.

Role accuracy (top-1, every feature snapshot and preamp-gain variant of each channel):
**{held['roles']['accuracy']:.3f}** on {held['sessions']} sessions of the held-out libraries
({held['roles']['channels']} channel examples; target 0.9: {'met' if ok else '**not met**'}),
{seen['roles']['accuracy']:.3f} on {seen['sessions']} held-out sessions of the training libraries.
Label errors on the held-out libraries (mean abs): {lab}.

| library | | channel examples | role accuracy |
|---|---|---|---|
{lib_rows}

Confusion on the held-out libraries (rows: the true role, columns: the role heard):

{_confusion_table(held['roles']['confusion'])}

### The model and the rules side by side

{comparison_section(m.get('_out_dir', 'models'))}"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.build_models", description=__doc__)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parents[1] / "models"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-sessions", type=int, default=N_TRAIN_SESSIONS,
                    help="synthesised sessions for training (each gives several examples)")
    ap.add_argument("--heldout-sessions", type=int, default=N_HELDOUT_SESSIONS)
    ap.add_argument("--sampled-train", type=int, default=N_SAMPLED_TRAIN,
                    help="sampled-instrument sessions of the training libraries")
    ap.add_argument("--sampled-heldout", type=int, default=N_SAMPLED_HELDOUT,
                    help="sampled-instrument sessions of the held-out libraries")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--cache", default=str(pathlib.Path(__file__).resolve().parents[1] / "build"),
                    help="folder for the generated training data ('' for none)")
    ap.add_argument("--qat-epochs", type=int, default=QAT_EPOCHS,
                    help="quantisation-aware fine-tuning epochs after the float ones")
    ap.add_argument("--onnx-int8", action="store_true",
                    help="also write student_int8.onnx (onnxruntime.quantization, QDQ)")
    ap.add_argument("--card-only", action="store_true",
                    help="only re-check the golden parity and rewrite the card and checksums")
    a = ap.parse_args(argv)
    if a.card_only:
        m = refresh_card(a.out)
        return 0 if all(v["ok"] for v in m["golden_parity"].values()) else 1
    m = build(a.out, a.seed, a.train_sessions, a.heldout_sessions, a.epochs, a.qat_epochs,
              log=lambda s: print(s, file=sys.stderr), cache_dir=a.cache or None,
              onnx_int8=a.onnx_int8, n_sampled_train=a.sampled_train,
              n_sampled_heldout=a.sampled_heldout)
    return 0 if all(v["ok"] for v in m["golden_parity"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
