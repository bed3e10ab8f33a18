"""The model and the rules side by side, through the real ``edgemix mix`` command, on
sessions whose truth we know: held-out synthesised sessions and sessions of the held-out
sample libraries (``export/sampled.py``), written as anonymous ``in_01.wav ...`` files.

Per session and policy: each channel's recognised role (the report's ``recognised_role``;
the rule policy has no ear, it has the role the file name gives, ``other`` for
``in_01``), and, against the teacher's mix of the same session (``export/teacher.py``):

* loudness balance: each channel's processed stem (``--stems-out``) in LU relative to the
  channels' mean, RMS difference from the teacher's (LU);
* spectral balance: the mix's band levels relative to their mean, RMS difference (dB);
* HPF corner (octaves) and pan errors, mean abs over playing channels;
* lead level: the lead element's stem loudness over the loudness of the sum of the other
  stems (LU), beside the teacher's;
* trim invariance: the session mixed again with every input trimmed by -20..+20 dB; mean
  abs difference of the two mixes' third-octave levels after each is normalised to the
  same integrated loudness (dB), and the difference of their integrated loudness (LU).

``python -m export.compare`` writes ``models/comparison.json`` (the model card's table);
``benchmarks/bench_real.py`` runs the same measures.
"""
from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

SAMPLE_RATE_HZ = 48000
#: Third-octave band centres (IEC 61260 nominal, 31.5 Hz .. 16 kHz).
THIRD_OCTAVE_HZ = 1000.0 * 2.0 ** (np.arange(-15, 13) / 3.0)
TRIM_SPREAD_DB = 20.0
LEAD_ROLES = ("lead_vocal", "speech")


def third_octave_levels(x: np.ndarray, sr: float) -> np.ndarray:
    """Power (dB) of a mono/stereo signal in each third-octave band (Welch spectrum)."""
    import scipy.signal
    x = np.asarray(x, np.float64)
    mono = x if x.ndim == 1 else x.mean(axis=1)
    f, p = scipy.signal.welch(mono, sr, nperseg=8192)
    out = np.empty(len(THIRD_OCTAVE_HZ))
    for i, fc in enumerate(THIRD_OCTAVE_HZ):
        sel = (f >= fc * 2 ** (-1 / 6)) & (f < fc * 2 ** (1 / 6))
        out[i] = 10.0 * math.log10(np.sum(p[sel]) + 1e-20)
    return out


def integrated_lufs(x: np.ndarray, sr: float) -> float:
    """BS.1770-4 integrated loudness (pyloudnorm's meter: an independent oracle)."""
    import pyloudnorm
    return float(pyloudnorm.Meter(sr).integrated_loudness(np.asarray(x, np.float64)))


def trim_difference(mix_a: np.ndarray, mix_b: np.ndarray, sr: float) -> tuple[float, float]:
    """(mean abs third-octave difference after loudness normalisation, dB; integrated
    loudness difference, LU) of two mixes of one session."""
    la, lb = integrated_lufs(mix_a, sr), integrated_lufs(mix_b, sr)
    ta = third_octave_levels(mix_a, sr) - la
    tb = third_octave_levels(mix_b, sr) - lb
    keep = (ta > ta.max() - 60.0) | (tb > tb.max() - 60.0)   # bands that carry the mix
    return float(np.mean(np.abs(ta - tb)[keep])), float(abs(la - lb))


def lead_over_rest_lu(stems: np.ndarray, lead: int, sr: float) -> float:
    """Loudness of the lead's processed stem over that of the sum of all the others (LU),
    both gated as BS.1770 gates a programme."""
    rest = np.delete(stems, lead, axis=0).sum(axis=0)
    return integrated_lufs(stems[lead], sr) - integrated_lufs(rest, sr)


def write_stems(stems: np.ndarray, sr: int, folder: pathlib.Path) -> pathlib.Path:
    """``stems`` ``(frames, channels)`` as ``in_01.wav ...`` (float WAV)."""
    import soundfile as sf
    folder.mkdir(parents=True, exist_ok=True)
    for c in range(stems.shape[1]):
        sf.write(folder / f"in_{c + 1:02d}.wav", stems[:, c], sr, subtype="FLOAT")
    return folder


def run_mix(stems_dir: pathlib.Path, out_dir: pathlib.Path, policy: str = "model") -> dict:
    """``edgemix mix STEMS --json --stems-out`` in a subprocess (the real command); returns
    its JSON report with the mix ``(frames, 2)`` and processed stems ``(channels, frames,
    2)`` added."""
    import soundfile as sf
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "edgemix", "mix", str(stems_dir), "-o",
           str(out_dir / "mix.wav"), "--json", "--policy", policy, "--stems-out",
           str(out_dir / "stems")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"edgemix mix failed ({r.returncode}): {r.stderr.strip()[-400:]}")
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    rep["mix"], _ = sf.read(out_dir / "mix.wav", dtype="float64", always_2d=True)
    files = sorted((out_dir / "stems").glob("*.wav"))
    rep["stems"] = np.stack([sf.read(f, dtype="float64", always_2d=True)[0] for f in files])
    return rep


def recognised_roles(rep: dict) -> list[str]:
    """Per channel the role the policy heard (the rule policy: the role it was given)."""
    return [c.get("recognised_role") or c["role"] for c in rep["channels"]]


def session_measures(stems: np.ndarray, roles, sr: int, teacher, policies=("model", "rules"),
                     seed: int = 0, work=None) -> dict:
    """Every measure of the module docstring for one session ``stems`` ``(frames, n)``
    with true ``roles`` and the teacher's result ``teacher`` (``export.teacher.teach``)."""
    from edgemix import params as P
    from export.teacher import _solo, band_levels, render
    work = pathlib.Path(work or tempfile.mkdtemp(prefix="edgemix-compare-"))
    n = stems.shape[1]
    tp = teacher.channel_params
    active = tp[:, P.CH.fader_db] > P.OFF_DB
    solo_t = np.array([integrated_lufs(_solo(stems, sr, tp, c), sr) if active[c] else np.nan
                       for c in range(n)])
    mix_t = band_levels(render(stems, sr, tp, teacher.master_params), sr)
    leads = [c for c, r in enumerate(roles) if r in LEAD_ROLES and active[c]]
    lead = leads[0] if len(leads) == 1 and n > 1 else None
    out = {"n_channels": n}
    if lead is not None:
        st = np.stack([_solo(stems, sr, tp, c) for c in range(n)])
        out["lead_lu_teacher"] = lead_over_rest_lu(st, lead, sr)
    rng = np.random.default_rng([seed, 5])
    trims = rng.uniform(-TRIM_SPREAD_DB, TRIM_SPREAD_DB, n)
    a = write_stems(stems, sr, work / "a")
    b = write_stems(stems * (10.0 ** (trims / 20.0)).astype(np.float32), sr, work / "b")
    rel = lambda v: v - np.nanmean(v)  # noqa: E731
    for pol in policies:
        ra = run_mix(a, work / f"{pol}-a", pol)
        rb = run_mix(b, work / f"{pol}-b", pol)
        heard = recognised_roles(ra)
        out[f"role_accuracy_{pol}"] = float(np.mean([h == r for h, r in zip(heard, roles)]))
        solo = np.array([integrated_lufs(ra["stems"][c], sr) if active[c] else np.nan
                         for c in range(n)])
        good = active & np.isfinite(solo) & np.isfinite(solo_t)
        if good.sum() >= 2:
            d = rel(solo[good]) - rel(solo_t[good])
            out[f"loudness_lu_{pol}"] = float(np.sqrt(np.mean(d ** 2)))
        mix = band_levels(ra["mix"], sr)
        out[f"spectral_db_{pol}"] = float(np.sqrt(np.mean((rel(mix) - rel(mix_t)) ** 2)))
        hpf = np.array([c["params"]["hpf_hz"] for c in ra["channels"]])
        pan = np.array([c["params"]["pan"] for c in ra["channels"]])
        if active.any():
            out[f"hpf_oct_{pol}"] = float(np.mean(np.abs(np.log2(hpf[active]
                                                                 / tp[active, P.CH.hpf_hz]))))
            out[f"pan_{pol}"] = float(np.mean(np.abs(pan[active] - tp[active, P.CH.pan])))
        bal, loud = trim_difference(ra["mix"], rb["mix"], sr)
        out[f"trim_balance_db_{pol}"] = bal
        out[f"trim_loudness_lu_{pol}"] = loud
        out[f"master_lufs_{pol}"] = integrated_lufs(ra["mix"], sr)
        if lead is not None:
            out[f"lead_lu_{pol}"] = lead_over_rest_lu(ra["stems"], lead, sr)
    return out


def summarise(rows: list[dict]) -> dict:
    keys = sorted({k for r in rows for k in r if k != "n_channels"})
    out = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
    for k in [k for k in keys if k.startswith("trim_")]:
        out[f"{k}_max"] = float(np.max([r[k] for r in rows if k in r]))
    for pol in ("model", "rules"):
        k = f"role_accuracy_{pol}"
        if k in keys:   # channel-weighted, as the card's other accuracies
            out[k] = float(sum(r[k] * r["n_channels"] for r in rows)
                           / sum(r["n_channels"] for r in rows))
    out["sessions"] = len(rows)
    return out


def heldout_library_sessions(n: int, seconds: float = 8.0):
    """``n`` sessions of the held-out libraries at 48 kHz: (stems, roles) each."""
    from export.sampled import render_session
    for i in range(n):
        ss = render_session(950000 + i, "heldout", seconds=seconds, sr=SAMPLE_RATE_HZ)
        yield ss.session


def heldout_synth_sessions(n: int, seconds: float = 8.0):
    from export.synth import synth_session
    from export.dataset import session_roles
    for i in range(n):
        rng = np.random.default_rng([960000 + i, 1])
        roles = session_roles(rng)[:16]
        yield synth_session(960000 + i, roles=roles, seconds=seconds,
                            sample_rate_hz=SAMPLE_RATE_HZ, keep_clean=False)


def taught(session, name: str):
    """The teacher's result for a comparison session, cached under ``.cache/compare/``
    (keyed by the teacher's label key, :func:`export.dataset.label_key`)."""
    from types import SimpleNamespace
    from export.dataset import label_key
    from export.teacher import teach
    path = pathlib.Path(__file__).resolve().parents[1] / ".cache" / "compare" / \
        f"{label_key()}-{name}.npz"
    if path.is_file():
        with np.load(path) as z:
            return SimpleNamespace(channel_params=z["channel_params"],
                                   master_params=z["master_params"])
    t = teach(session)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, channel_params=t.channel_params, master_params=t.master_params)
    return t


def compare(n_sessions: int = 6, log=print, teach_only: bool = False) -> dict:
    """Both kinds of held-out sessions, teacher and both policies: rows and summaries."""
    res = {}
    for kind, gen in (("synthesised", heldout_synth_sessions),
                      ("heldout_libraries", heldout_library_sessions)):
        rows = []
        for i, s in enumerate(gen(n_sessions)):
            t = taught(s, f"{kind}-{i}")
            if teach_only:
                continue
            rows.append(session_measures(s.stems, s.roles, s.sample_rate_hz, t, seed=i))
            log(f"{kind}: {i + 1}/{n_sessions}: {rows[-1]}")
        res[kind] = {"sessions": rows, "summary": summarise(rows) if rows else {}}
    return res


def main(argv=None) -> int:
    """``python -m export.compare``: model and rules side by side on held-out sessions,
    written to models/comparison.json (with the checksum of the model it measured)."""
    import argparse
    from export.verify import sha256_of
    ap = argparse.ArgumentParser(prog="python -m export.compare", description=main.__doc__)
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument("--teach-only", action="store_true",
                    help="only fill the teacher's cache (it does not depend on the model)")
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parents[1]
                                         / "models" / "comparison.json"))
    a = ap.parse_args(argv)
    res = compare(a.sessions, log=lambda s: print(s, file=sys.stderr, flush=True),
                  teach_only=a.teach_only)
    if a.teach_only:
        return 0
    model = pathlib.Path(__file__).resolve().parents[1] / "models" / "student.npz"
    res["model_sha256"] = sha256_of(model)
    pathlib.Path(a.out).write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
