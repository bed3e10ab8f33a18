"""Parity of every backend with the golden I/O, in normalised and in parameter units.

``python -m export.verify [models/]`` checks ``SHA256SUMS`` and runs every shipped file
through its backend on ``golden.npz``; exit status 1 if anything is outside tolerance.

Tolerances (DESIGN.md contract 3):

- float backends (numpy, Numba, ONNX Runtime, LiteRT float32): ``FLOAT_TOL_01`` in
  normalised units on every present channel's parameters, ``FLOAT_TOL_LOGIT`` on logits;
- int8 backends: per parameter in its own units (:data:`INT8_TOL_UNITS`, the issue's
  example: dB for gains and thresholds, octaves for frequencies, pan units, log2 of the
  ratio for the ratio and the time constants) and a role agreement of at least
  ``INT8_MIN_ROLE_AGREEMENT``.
"""
from __future__ import annotations

import hashlib
import json
import pathlib
import sys

import numpy as np

from edgemix.params import MODEL_OUTPUT_SPECS, denormalise_outputs

FLOAT_TOL_01 = 1e-4
FLOAT_TOL_LOGIT = 1e-3
#: Unit of the int8 error per parameter scale: linear parameters in their own units,
#: log-scaled ones in octaves (log2 of the ratio of predicted to golden).
#: The tolerance is the issue's example (issue 4, "Proof"): 0.5 dB on every gain and
#: threshold, 1/6 octave on every frequency; the same 1/6 octave (a factor 1.12) on the
#: ratio and the time constants; on pan, the shift that moves either side's gain by 0.5 dB
#: at the centre (constant-power law: 20/ln 10 * tan(pi/4) * pi/4 = 6.8 dB per pan unit,
#: so 0.073).  Fixed from the issue before measuring, not from the measurement.
INT8_GAIN_TOL_DB = 0.5
INT8_FREQ_TOL_OCT = 1.0 / 6.0
INT8_PAN_TOL = INT8_GAIN_TOL_DB / (20.0 / np.log(10.0) * np.pi / 4.0)
INT8_TOL_UNITS = {
    "trim_db": INT8_GAIN_TOL_DB, "fader_db": INT8_GAIN_TOL_DB,
    "aux1_send_db": INT8_GAIN_TOL_DB, "pan": INT8_PAN_TOL,
    "eq1_gain_db": INT8_GAIN_TOL_DB, "eq2_gain_db": INT8_GAIN_TOL_DB,
    "eq3_gain_db": INT8_GAIN_TOL_DB, "eq4_gain_db": INT8_GAIN_TOL_DB,
    "comp_threshold_db": INT8_GAIN_TOL_DB, "comp_makeup_db": INT8_GAIN_TOL_DB,
    "hpf_hz": INT8_FREQ_TOL_OCT, "eq2_hz": INT8_FREQ_TOL_OCT, "eq3_hz": INT8_FREQ_TOL_OCT,
    "comp_ratio": INT8_FREQ_TOL_OCT, "comp_attack_ms": INT8_FREQ_TOL_OCT,
    "comp_release_ms": INT8_FREQ_TOL_OCT,
}
INT8_MIN_ROLE_AGREEMENT = 0.97

#: The files ``build_models`` ships and the backend each runs on.
SHIPPED = {
    "student.npz": ("numba", "numpy"),
    "student.onnx": ("onnxruntime",),
    "student_float32.tflite": ("litert",),
    "student_int8.tflite": ("litert",),
}
#: Built only with ``build_models --onnx-int8``: onnxruntime's own min/max calibration
#: ignores the QAT ranges and measured far outside INT8_TOL_UNITS (trim p99 6.8 dB).
OPTIONAL = {"student_int8.onnx": ("onnxruntime",)}


def unit_errors(params01: np.ndarray, golden01: np.ndarray, present: np.ndarray,
                quantile: float = 1.0) -> dict:
    """name -> |error| over present channels (the max, or a quantile), in the units of
    :data:`INT8_TOL_UNITS`."""
    a = denormalise_outputs(params01[present])
    b = denormalise_outputs(golden01[present])
    out = {}
    for i, spec in enumerate(MODEL_OUTPUT_SPECS):
        if spec.scale == "log":
            e = np.abs(np.log2(a[:, i] / b[:, i]))
        else:
            e = np.abs(a[:, i] - b[:, i])
        out[spec.name] = float(np.quantile(e, quantile)) if e.size else 0.0
    return out


def run_backend(backend, golden: dict):
    """(params01, role_logits) of a backend for every golden session."""
    feats, mask = golden["features"], golden["mask"]
    p = np.zeros_like(golden["params01"])
    r = np.zeros_like(golden["role_logits"])
    for i in range(feats.shape[0]):
        pi, ri = backend.predict(feats[i], mask[i])
        p[i], r[i] = pi, ri
    return p, r


def int8_verdict(units: dict, role_agreement: float) -> bool:
    """Per-parameter errors in units within :data:`INT8_TOL_UNITS`, with enough role
    agreement."""
    return bool(all(units[k] <= INT8_TOL_UNITS[k] for k in units)
                and role_agreement >= INT8_MIN_ROLE_AGREEMENT)


def compare(p, r, golden: dict, int8: bool) -> dict:
    """Errors of one backend against the golden outputs and whether they pass."""
    present = golden["mask"] > 0
    err01 = float(np.abs(p - golden["params01"])[present].max())
    err_logit = float(np.abs(r - golden["role_logits"])[present].max())
    agree = float(np.mean(r[present].argmax(-1) == golden["role_logits"][present].argmax(-1)))
    units = unit_errors(p, golden["params01"], present)
    if int8:
        ok = int8_verdict(units, agree)
    else:
        ok = err01 <= FLOAT_TOL_01 and err_logit <= FLOAT_TOL_LOGIT
    return {"max_err_01": err01, "max_err_logit": err_logit, "role_agreement": agree,
            "max_err_units": units, "p99_err_units": unit_errors(p, golden["params01"],
                                                                 present, 0.99),
            "int8": int8, "ok": bool(ok)}


def sha256_of(path) -> str:
    """Hex SHA-256 of a file (streamed by the standard library)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_sums(models_dir) -> list[str]:
    """Files whose SHA-256 differs from ``SHA256SUMS`` (empty when all match)."""
    d = pathlib.Path(models_dir)
    bad = []
    for line in (d / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        name = name.lstrip("*")
        if not (d / name).is_file() or sha256_of(d / name) != digest:
            bad.append(name)
    return bad


def verify(models_dir) -> dict:
    """Every shipped file through its backend(s) on the golden I/O."""
    from edgemix import infer
    d = pathlib.Path(models_dir)
    with np.load(d / "golden.npz", allow_pickle=False) as z:
        golden = {k: z[k] for k in z.files}
    report = {}
    for fname, backends in {**SHIPPED, **OPTIONAL}.items():
        if not (d / fname).is_file():
            continue
        for kind in backends:
            b = infer.load(d / fname, kind)
            p, r = run_backend(b, golden)
            report[f"{fname}:{b.name}"] = compare(p, r, golden, int8="int8" in fname)
    return report


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
