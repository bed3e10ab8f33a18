"""Parity of every backend with the golden I/O, and the student's quality against the teacher.

``python -m export.verify [models/]`` checks ``SHA256SUMS`` and runs every shipped file
through its backend on ``golden.npz``; exit status 1 if anything is outside tolerance.
The golden-parity judgement itself (tolerances, :func:`compare`, :func:`verify`) is the
runtime's, :mod:`edgemix.infer.golden`, re-exported here for the build.
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from edgemix.infer.golden import (FLOAT_TOL_01, FLOAT_TOL_LOGIT, INT8_FREQ_TOL_OCT,  # noqa: F401
                                  INT8_GAIN_TOL_DB, INT8_MIN_ROLE_AGREEMENT, INT8_PAN_TOL,
                                  INT8_TOL_UNITS, OPTIONAL, SHIPPED, check_sums, compare,
                                  int8_verdict, run_backend, sha256_of, unit_errors, verify)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    d = pathlib.Path(argv[0] if argv else "models")
    bad = check_sums(d)
    report = verify(d)
    print(json.dumps({"checksum_mismatch": bad, "backends": report}, indent=1))
    return 0 if not bad and all(v["ok"] for v in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())


# ---- quality against the teacher ------------------------------------------------------
def _relative(v: np.ndarray) -> np.ndarray:
    """Levels relative to their mean: a balance, independent of the overall level."""
    return v - v.mean()


def session_quality(seed: int, predict, label_dir=None, others=None) -> dict:
    """Render one held-out synthesised session four ways and compare with the teacher.

    ``predict(features (n, F)) -> (values (n, len(MODEL_OUTPUTS)) in units, role indices)``
    is the student (``others``: name -> more students, e.g. the int8 file, rendered and
    measured the same way).  Ways: the teacher's settings; the student's (its MODEL_OUTPUTS written
    over the teacher's full settings, so the switches are the same); the unprocessed sum
    (every parameter at its neutral default); an equal-loudness baseline (each channel
    trimmed to the same loudness, everything else neutral: from the snapshot's active
    loudness, the information the student has, and from the teacher's whole-session trims,
    an oracle).  Measured on the engine's
    renders: the loudness balance (each channel's solo active loudness relative to the
    channels' mean, LU RMS against the teacher's), the mix's spectral balance (band levels
    of the mix relative to their mean, dB RMS against the teacher's mix), HPF (octaves) and
    pan errors, and role accuracy.
    """
    from edgemix import features as F
    from edgemix.automix.rules import TRIM_TARGET_LUFS
    from edgemix.params import CH, CHANNEL_SPECS, MODEL_OUTPUT_COLUMNS, OFF_DB, channel_defaults
    from export import dataset as D
    from export.teacher import _solo, band_levels, render, source_level_lufs

    s, _ = D.synth_for(seed)
    roles = s.roles
    sr = s.sample_rate_hz
    channel_params, master_params = D.teacher_labels(seed, label_dir, s)
    feats = D._snapshots(s.stems, sr)[-1]
    values, role_pred = predict(feats)
    n = len(roles)
    student = channel_params.copy()
    student[:, MODEL_OUTPUT_COLUMNS] = values
    extra = {}
    for name, fn in (others or {}).items():
        extra[name] = channel_params.copy()
        extra[name][:, MODEL_OUTPUT_COLUMNS] = fn(feats)[0]
    neutral = channel_defaults(n)
    active = channel_params[:, CH.fader_db] > OFF_DB
    # equal loudness from what the student sees: each channel's active loudness in the
    # same snapshot, trimmed to the gain-staging target (silent channels left at 0 dB)
    equal = channel_defaults(n)
    lact = feats[:, F.FEATURE_INDEX["loudness_active_lufs"]].astype(np.float64)
    equal[:, CH.trim_db] = np.where(lact > F.FLOOR_DB, CHANNEL_SPECS["trim_db"].clip(
        TRIM_TARGET_LUFS - lact), 0.0)
    # ... and from the whole session (the teacher's own trims: an oracle the runtime lacks)
    oracle = channel_defaults(n)
    oracle[:, CH.trim_db] = channel_params[:, CH.trim_db]
    ways = {"teacher": channel_params, "student": student, "unprocessed": neutral,
            "equal_loudness": equal, "equal_loudness_oracle": oracle, **extra}
    out = {"n_channels": n, "n_active": int(active.sum())}
    solo = {}
    for k, prm in ways.items():
        # measured as the teacher measures its balance (step 6 of export/teacher.py)
        solo[k] = np.array([source_level_lufs(_solo(s.stems, sr, prm, c), sr)
                            if active[c] else np.nan for c in range(n)])
    mix = {k: band_levels(render(s.stems, sr, prm, master_params), sr)
           for k, prm in ways.items()}
    ok = active & np.isfinite(solo["teacher"])
    for k in ("student", "unprocessed", "equal_loudness", "equal_loudness_oracle", *extra):
        good = ok & np.isfinite(solo[k])
        if good.sum() >= 2:
            d = _relative(solo[k][good]) - _relative(solo["teacher"][good])
            out[f"loudness_lu_{k}"] = float(np.sqrt(np.mean(d ** 2)))
        d = _relative(mix[k]) - _relative(mix["teacher"])
        out[f"spectral_db_{k}"] = float(np.sqrt(np.mean(d ** 2)))
        out[f"hpf_oct_{k}"] = float(np.mean(np.abs(np.log2(
            ways[k][ok, CH.hpf_hz] / channel_params[ok, CH.hpf_hz])))) if ok.any() else 0.0
        out[f"pan_{k}"] = float(np.mean(np.abs(ways[k][ok, CH.pan]
                                               - channel_params[ok, CH.pan]))) if ok.any() \
            else 0.0
    # what the model policy proposes for the pan: placed by the recognised roles, not the
    # network's own pan output (edgemix/automix/model_policy.py:place_pans)
    from edgemix.automix.model_policy import place_pans
    from edgemix.roles import ROLE_NAMES
    placed = np.array([v for v, _ in place_pans([ROLE_NAMES[i] for i in role_pred],
                                                feats.astype(np.float64))])
    out["pan_student_placed"] = float(np.mean(np.abs(placed[ok] - channel_params[ok, CH.pan]))) \
        if ok.any() else 0.0
    out["role_correct"] = int(np.sum(np.asarray(role_pred) == s.role_indices))
    return out


def summarise_quality(rows: list[dict]) -> dict:
    """Means over sessions (loudness over sessions with >= 2 active channels) and the share
    of the unprocessed-to-teacher gap the student closes."""
    out = {}
    keys = sorted({k for r in rows for k in r if k.split("_")[0] in
                   ("loudness", "spectral", "hpf", "pan")})
    for k in keys:
        vals = [r[k] for r in rows if k in r]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    out["role_accuracy"] = sum(r["role_correct"] for r in rows) / sum(r["n_channels"]
                                                                      for r in rows)
    for m in ("loudness_lu", "spectral_db"):
        out[f"{m}_gap_closed"] = 1.0 - out[f"{m}_student"] / out[f"{m}_unprocessed"]
        for k in [k for k in out if k.startswith(f"{m}_student_")]:
            out[f"{m}_gap_closed_{k[len(m) + 9:]}"] = 1.0 - out[k] / out[f"{m}_unprocessed"]
    out["sessions"] = len(rows)
    return out


def _student_predict(path):
    from edgemix.automix.model_policy import ModelPolicy
    pol = ModelPolicy(path, backend="numpy" if str(path).endswith(".npz") else None)

    def predict(feats):
        values, probs = pol.predict_units(feats)
        return values, probs.argmax(axis=1)
    return predict


def teacher_quality(npz_path, seeds, label_dir=None, others=None) -> tuple[list[dict], dict]:
    """:func:`session_quality` of a weights file on held-out session seeds, summarised
    (one process; the teacher's labels come from ``label_dir`` when cached there).
    ``others``: name -> model file, measured beside it (keys ``..._student_<name>``)."""
    predict = _student_predict(str(npz_path))
    more = {k: _student_predict(str(v)) for k, v in (others or {}).items()}
    rows = [session_quality(int(s), predict, label_dir, more) for s in seeds]
    return rows, summarise_quality(rows)
