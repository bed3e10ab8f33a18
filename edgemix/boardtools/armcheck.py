"""Render a short session and run every model backend; compare two such runs.

The ARM check (``scripts/arm_check.sh``) runs ``render`` twice, once natively on the build
machine and once under qemu-user aarch64 emulation from the bundle's own wheels, then
``compare``: the console's mix, the features and each model backend's outputs must agree
across the two architectures, and on each architecture every backend must agree with the
numpy reference.

    edgemix board armcheck render --profile rpi4 --models models -o x86.npz
    edgemix board armcheck compare x86.npz arm.npz [--json report.json]
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from edgemix.infer import model_files
#: Cross-architecture tolerances.  The kernels are compiled with FMA contraction allowed
#: (``edgemix.dsp._jit.FASTMATH``), so aarch64 (fused multiply-add everywhere) and x86-64
#: (FMA where LLVM picks it) round differently in the last float32 bit; through recursive
#: filters and dynamics that stays far below the 16-bit LSB (3e-5).
MIX_ATOL = 1e-4
#: Features are levels in dB, frequencies in Hz and ratios; compared with both tolerances.
FEATURE_ATOL = 1e-2
FEATURE_RTOL = 1e-4
#: Model outputs in normalised 0..1 units: float backends agree to float32 round-off;
#: an int8 model may differ across architectures by a quantisation step or two.
FLOAT_ATOL = 1e-4
INT8_ATOL = 0.02


def render(profile_name, models_dir, seconds: float) -> dict:
    """Mix ``seconds`` of the synthetic session at the profile's settings; features at the
    end; every importable backend's prediction on those features.  Arrays + notes."""
    from edgemix.boardtools import profiles
    from edgemix import app
    from edgemix.rt.synthetic import render_synthetic
    prof = profiles.load(profile_name)
    fs, b, n = prof.sample_rate_hz, prof.block_size, prof.n_channels
    out: dict = {"machine": platform.machine(), "python": platform.python_version(),
                 "profile": prof.name}
    notes = []

    t = time.perf_counter()
    # the console the board's session builds (the composition root's), at its settings
    c = app.session_for_target(prof, models_dir)[0].build_console()
    c.warmup()
    out["warmup_s"] = time.perf_counter() - t
    # Non-trivial settings so every stage of the strip does work (EQ, compressor, pan, sends).
    for ch in range(n):
        c.set_channel(ch, "hpf_hz", 60.0 + 10.0 * ch)
        c.set_channel(ch, "eq2_gain_db", -3.0 + ch % 5)
        c.set_channel(ch, "eq3_gain_db", 2.0)
        c.set_channel(ch, "comp_ratio", 4.0)
        c.set_channel(ch, "comp_threshold_db", -30.0)
        c.set_channel(ch, "pan", -0.8 + 1.6 * ch / max(n - 1, 1))
        c.set_channel(ch, "aux1_send_db", -12.0)
    x, _ = render_synthetic(n, fs, seconds, seed=3)
    mix = np.empty((x.shape[0], 2), np.float32)
    t = time.perf_counter()
    for s in range(0, x.shape[0], b):
        c.process(x[s:s + b], out=mix[s:s + b])
    out["render_s"] = time.perf_counter() - t
    out["mix"] = mix

    try:
        from edgemix.features import FeatureExtractor
        fx = FeatureExtractor(fs, n, hop_ms=prof.hop_ms)
        for s in range(0, x.shape[0], b):
            fx.process(x[s:s + b])
        out["features"] = fx.snapshot()
    except ImportError as e:
        notes.append(f"features: not importable ({e})")

    files = model_files(Path(models_dir) if models_dir else None)
    if not files:
        notes.append(f"models: no model files in {models_dir}")
    if files and "features" in out:
        from edgemix import infer
        for label, path in files.items():
            try:
                backend = infer.load(path, backend=label.split("-")[0])
            except (ImportError, OSError, ValueError) as e:
                notes.append(f"{label}: skipped ({str(e).splitlines()[0]})")
                continue
            feats = np.zeros((infer.MAX_CHANNELS, backend.n_features), np.float32)
            feats[:n] = out["features"][:, :backend.n_features]
            mask = np.zeros(infer.MAX_CHANNELS, np.float32)
            mask[:n] = 1.0
            params01, roles = backend.predict(feats, mask)
            out[f"params01:{label}"] = np.array(params01[:n])
            out[f"roles:{label}"] = np.array(roles[:n])
            golden = _golden_parity(backend, Path(models_dir), int8="int8" in label)
            if golden is not None:
                out.setdefault("golden", {})[label] = golden
    out["notes"] = notes
    return out


def _golden_parity(backend, models_dir: Path, int8: bool) -> dict | None:
    """The model's own golden I/O through this backend, judged by
    :mod:`edgemix.infer.golden` (contract 3's tolerances); None without a golden file."""
    from edgemix.infer import golden as G
    g = models_dir / "golden.npz"
    if not g.is_file():
        return None
    with np.load(g, allow_pickle=False) as z:
        golden = {k: z[k] for k in z.files}
    p, r = G.run_backend(backend, golden)
    res = G.compare(p, r, golden, int8=int8)
    return {k: res[k] for k in ("max_err_01", "max_err_logit", "role_agreement", "ok")}


def save(result: dict, path) -> None:
    arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
    meta = {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)


def load(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files if k != "__meta__"}
        d.update(json.loads(str(z["__meta__"])))
    return d


def compare(host: dict, arm: dict) -> dict:
    """Cross-architecture and within-architecture parity; ``ok`` when all pass."""
    rows = []

    def row(what, diff, tol, ok=None):
        rows.append({"what": what, "max_abs_diff": float(diff), "tolerance": tol,
                     "ok": bool(diff <= tol) if ok is None else ok})

    row("mix (stereo master)", np.max(np.abs(host["mix"] - arm["mix"])), MIX_ATOL)
    if "features" in host and "features" in arm:
        d = np.abs(host["features"] - arm["features"])
        tol = FEATURE_ATOL + FEATURE_RTOL * np.abs(host["features"])
        rows.append({"what": "features", "max_abs_diff": float(d.max()),
                     "tolerance": f"{FEATURE_ATOL} + {FEATURE_RTOL} x |value|",
                     "ok": bool(np.all(d <= tol))})
    labels = sorted({k.split(":", 1)[1] for k in arm if k.startswith("params01:")})
    for label in labels:
        tol = INT8_ATOL if "int8" in label else FLOAT_ATOL
        if f"params01:{label}" in host:
            row(f"{label}: params01 {host['machine']} vs {arm['machine']}",
                np.max(np.abs(host[f"params01:{label}"] - arm[f"params01:{label}"])), tol)
        # int8 against the float reference is the model's quantisation error, judged by the
        # golden rows below in parameter units; here only the float backends.
        if "params01:numpy" in arm and label != "numpy" and "int8" not in label:
            row(f"{label}: params01 vs numpy reference on {arm['machine']}",
                np.max(np.abs(arm[f"params01:{label}"] - arm["params01:numpy"])), tol)
            agree = float(np.mean(np.argmax(arm[f"roles:{label}"], 1)
                                  == np.argmax(arm["roles:numpy"], 1)))
            rows.append({"what": f"{label}: role agreement vs numpy on {arm['machine']}",
                         "max_abs_diff": 1.0 - agree, "tolerance": 0.0, "ok": agree == 1.0})
    for label, g in sorted(arm.get("golden", {}).items()):
        h = host.get("golden", {}).get(label)
        # The verdict is the model's (edgemix.infer.golden's tolerances); what ARM must not do is
        # fail where the build machine passes.
        rows.append({"what": f"{label}: golden I/O on {arm['machine']} (golden parity: "
                     f"{'pass' if g['ok'] else 'outside tolerance'}; on {host['machine']}: "
                     f"{'pass' if h and h['ok'] else 'outside tolerance' if h else 'not run'})",
                     "max_abs_diff": g["max_err_01"], "tolerance": "edgemix.infer.golden",
                     "ok": bool(g["ok"] or (h is not None and not h["ok"]))})
    missing = sorted({k.split(":", 1)[1] for k in host if k.startswith("params01:")}
                     - set(labels))
    return {"host": host["machine"], "target": arm["machine"], "rows": rows,
            "not_run_on_target": missing, "notes_host": host.get("notes", []),
            "notes_target": arm.get("notes", []),
            "timing_target_s": {"warmup": arm.get("warmup_s"), "render": arm.get("render_s")},
            "timing_host_s": {"warmup": host.get("warmup_s"), "render": host.get("render_s")},
            "ok": all(r["ok"] for r in rows)}
