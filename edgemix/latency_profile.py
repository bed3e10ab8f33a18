"""The latency profiler: run the engine and the auto-mix at a target's settings, time it.

``edgemix profile --target rpi4 --seconds 30 -o out/`` builds what the board runs, at the
profile's sample rate, block size and channel count -- the console, the feature extractor,
the model policy on the profile's model backend -- and runs them inside the real
:class:`edgemix.rt.runner.Runner` (ring to the control path, control thread, GIL switch
interval, SCHED_FIFO and pinning where allowed), so what is timed is what the board runs.

Audio thread, every block:

* ``dsp``: ``Console.process`` (strips, buses, reverb, limiter, meters);
* ``block``: the runner's whole block (the console plus the hand-off of the input to the
  control path's ring), the number that must fit the deadline;
* ``response``: from the block's release (when a device would hand it over) to the end of
  ``block``: adds the audio thread's wake-up latency (paced mode only).

Control thread (the runner's control loop, every ``model.hop_ms`` of input):
``features`` (``FeatureExtractor.process`` on the hop's frames, per call), ``inference``
(the model backend's ``predict``), ``policy`` (the rest of the hop: proposal, automation,
``Console.stage``) and ``control`` (the whole hop).

Pacing: without ``--live`` the "device" is a stand-in backend whose thread releases the
blocks of a synthetic session on the deadline grid (``k * block / rate`` from the start,
sleeping and then spinning the last 0.3 ms), so the engine runs at the board's duty cycle
and shares the CPU with the control thread the same way.  A block that ends after its
release plus one period is a *deadline miss* (what a device with one period of slack would
hear as an xrun).  ``--live`` uses the profile's backend (JACK or PortAudio) and adds the
backend's own xrun count; the release time is not visible to a client, so there
``response`` equals ``block``.

Afterwards every inference backend that imports and has a model file is timed side by side
on the same feature snapshot; what could not be profiled is listed with the reason.

Writes ``profile.json``, ``summary.md`` and three PNG plots (matplotlib, Agg): the block-time
histogram against the deadline, the timeline, and the per-stage breakdown.
"""
from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path
from time import perf_counter_ns

import numpy as np

from edgemix.infer import model_files
from edgemix.boardtools import profiles
from edgemix.rt.backend import Backend

#: Audio-thread stages, one column each in the per-block timing array.
BLOCK_STAGES = ("dsp", "block", "response")
#: Control-thread stages, one column each in the per-hop timing array (``features`` is
#: timed per call: the control loop feeds the extractor up to each hop boundary).
CONTROL_STAGES = ("inference", "policy", "control")
PERCENTILES = (50.0, 95.0, 99.0, 99.9)
#: Spin (rather than sleep) for the last part of a wait: ``time.sleep`` overshoots by
#: 50-100 us on a stock kernel, which would count against the block.
SPIN_NS = 300_000

#: Seconds of synthetic session rendered and looped as the profiler's input.
LOOP_S = 4.0

PLOTS = ("latency_histogram.png", "timeline.png", "stages.png")


def stats_ms(ns: np.ndarray) -> dict:
    """p50/p95/p99/p99.9/max/mean of durations given in ns, in ms (empty -> zeros)."""
    ns = np.asarray(ns, dtype=np.float64)
    if ns.size == 0:
        return {"n": 0, **{f"p{p:g}_ms": 0.0 for p in PERCENTILES}, "max_ms": 0.0,
                "mean_ms": 0.0}
    q = np.percentile(ns, PERCENTILES) / 1e6
    out = {"n": int(ns.size)}
    out.update({f"p{p:g}_ms": float(v) for p, v in zip(PERCENTILES, q)})
    out["max_ms"] = float(ns.max() / 1e6)
    out["mean_ms"] = float(ns.mean() / 1e6)
    return out


def load_backends(models_dir: Path) -> tuple[dict, list[dict]]:
    """Every inference backend that imports and has a model: ``({label: backend}, skipped)``."""
    skipped = []
    try:
        from edgemix import infer
    except ImportError as e:
        return {}, [{"what": "inference", "why": f"edgemix.infer not importable ({e})"}]
    files = model_files(models_dir)
    if not files:
        return {}, [{"what": "inference", "why": f"no model files in {models_dir} (build them "
                     "with `python -m export.build_models`)"}]
    loaded = {}
    for label, path in files.items():
        backend = label.split("-")[0]
        try:
            loaded[label] = infer.load(path, backend=backend)
        except (ImportError, OSError, ValueError) as e:
            skipped.append({"what": f"inference {label}", "why": str(e).splitlines()[0]})
    for label in ("numba", "numpy", "onnxruntime", "litert-fp32", "litert-int8"):
        if label not in files:
            skipped.append({"what": f"inference {label}", "why": f"no model file for it in "
                            f"{models_dir}"})
    return loaded, skipped


def _pick_primary(backends: dict, prof: profiles.Profile) -> str | None:
    """The backend the board would run: the profile's format, else its fallback."""
    want = {"tflite-int8": "litert-int8", "tflite-fp32": "litert-fp32", "onnx": "onnxruntime",
            "numba": "numba"}
    for fmt in (prof.model_format, prof.model_fallback):
        if fmt and want[fmt] in backends:
            return want[fmt]
    return next(iter(backends), None)


class PacedBackend(Backend):
    """Stands in for an audio device: its thread hands the runner the blocks of ``x`` on the
    deadline grid and records each block's release and end (``perf_counter_ns``)."""

    name = "paced"
    wants_rt_thread = True

    def __init__(self, x: np.ndarray, sample_rate_hz: float, block_size: int):
        super().__init__(x.shape[1], sample_rate_hz, block_size)
        self.x = x
        n = x.shape[0] // block_size
        self.release = np.zeros(n, np.int64)
        self.end = np.zeros(n, np.int64)
        self.done = 0
        self._stop = threading.Event()
        self._thread = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edgemix-profile-audio")
        self._thread.start()

    def _run(self) -> None:
        self.runner.enter_audio_thread()  # affinity and SCHED_FIFO, as a device thread
        b = self.block_size
        period_ns = b * 1e9 / self.sample_rate_hz
        out = np.empty((b, 2), np.float32)
        t0 = perf_counter_ns() + 2_000_000
        for k in range(self.release.size):
            rel = t0 + int(k * period_ns)
            while True:  # sleep most of the wait, spin the rest
                left = rel - perf_counter_ns()
                if left <= 0:
                    break
                if left > SPIN_NS:
                    time.sleep((left - SPIN_NS) / 1e9)
            if self._stop.is_set():
                break
            self.runner.process(self.x[k * b:(k + 1) * b], out)
            self.end[k] = perf_counter_ns()
            self.release[k] = rel
            self.done = k + 1
        self.finished = True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _time_method(obj, name: str, times: np.ndarray, count: np.ndarray) -> None:
    """Replace ``obj.name`` (an instance attribute shadowing the method) by a version that
    stores each call's duration in ``times[count[0]]``; no allocation per call."""
    inner = getattr(obj, name)

    def timed(*args, **kw):
        t = perf_counter_ns()
        r = inner(*args, **kw)
        i = count[0]
        if i < times.shape[0]:
            times[i] = perf_counter_ns() - t
            count[0] = i + 1
        return r
    setattr(obj, name, timed)


def _run_in_runner(prof, console, features, policy, model_backend, backend, seconds, rt):
    """Run ``backend`` through the real runner with timing wrappers; the raw timings."""
    from edgemix.rt.runner import Runner
    period_s = prof.block_size / prof.sample_rate_hz
    cap = int(seconds / period_s * 1.5) + 4096
    hops = int(seconds * 1000.0 / prof.hop_ms * 4) + 64
    t = {"dsp": np.zeros(cap, np.int64), "block": np.zeros((cap, 2), np.int64),
         "features": np.zeros(hops * 8, np.int64), "inference": np.zeros(hops, np.int64),
         "control": np.zeros((hops, 2), np.int64)}
    n = {k: np.zeros(1, np.int64) for k in t}

    class TimedRunner(Runner):
        def process(self, x, out):  # audio thread: one row per block
            t0 = perf_counter_ns()
            super().process(x, out)
            i = n["block"][0]
            if i < cap:
                t["block"][i] = (t0, perf_counter_ns())
                n["block"][0] = i + 1

    _time_method(console, "process", t["dsp"], n["dsp"])
    if features is not None:
        _time_method(features, "process", t["features"], n["features"])
    if model_backend is not None:
        _time_method(model_backend, "predict", t["inference"], n["inference"])
    # the profile's audio core where this machine has it, else the runner's choice
    here = os.sched_getaffinity(0)
    cpu = next((c for c in prof.audio_cores if c in here), None)
    runner = TimedRunner(console, backend, policy=policy, features=features,
                         hop_s=prof.hop_ms / 1000.0, rt_priority=rt, cpu=cpu)
    if runner.control is not None:
        control = runner.control
        step = control.step

        def timed_step():  # control thread: one row per hop (whole hop, inference in it)
            i0 = n["inference"][0]
            t0 = perf_counter_ns()
            r = step()
            i = n["control"][0]
            if i < hops:
                inf = int(t["inference"][i0:n["inference"][0]].sum())
                t["control"][i] = (perf_counter_ns() - t0, inf)
                n["control"][0] = i + 1
            return r
        control.step = timed_step

    start = backend.start
    armed = []

    def armed_start():  # count the stream's calls only, not the runner's warm-up calls
        if not armed:   # (a restart after a lost device keeps counting)
            for k in n:
                n[k][0] = 0
            armed.append(True)
        start()
    backend.start = armed_start
    stats = runner.run(duration_s=None if isinstance(backend, PacedBackend) else seconds)
    for obj, name in ((console, "process"), (features, "process"), (model_backend, "predict")):
        if obj is not None and name in vars(obj):
            delattr(obj, name)
    k = int(min(n["dsp"][0], n["block"][0]))
    blk = t["block"][:k]
    times = np.zeros((k, len(BLOCK_STAGES)), np.int64)
    times[:, 0] = t["dsp"][:k]
    times[:, 1] = blk[:, 1] - blk[:, 0]
    if isinstance(backend, PacedBackend):
        k = min(k, backend.done)
        times = times[:k]
        times[:, 2] = backend.end[:k] - backend.release[:k]
        release = backend.release[:k] - (backend.release[0] if k else 0)
    else:
        times[:, 2] = times[:, 1]
        release = blk[:, 0] - (blk[0, 0] if k else 0)
    h = int(n["control"][0])
    ctl = np.zeros((h, len(CONTROL_STAGES)), np.int64)
    ctl[:, 0] = t["control"][:h, 1]
    ctl[:, 2] = t["control"][:h, 0]
    ctl[:, 1] = ctl[:, 2] - ctl[:, 0]
    return {"times": times, "release": release, "control": ctl,
            "features": t["features"][:int(n["features"][0])], "runner": stats,
            "rt": runner.rt_status,
            "control_stats": runner.control.stats() if runner.control is not None else None}


def run_profile(target, seconds: float = 10.0, *, models_dir=None, live: bool = False,
                seed: int = 1, control: bool = True, rt: bool = True) -> dict:
    """Profile ``target`` for ``seconds`` of audio; returns the result dict (see module doc).

    The raw per-block and per-hop timings are kept under the ``_raw`` key for the plots.
    """
    from edgemix.console import Console
    from edgemix.rt.synthetic import render_synthetic
    if not (0.1 <= float(seconds) <= 3600):
        raise ValueError(f"--seconds {seconds}: use 0.1 .. 3600")
    prof = profiles.load(target)
    fs, block, n_ch = prof.sample_rate_hz, prof.block_size, prof.n_channels
    skipped: list[dict] = []
    models_dir = Path(models_dir) if models_dir else Path(__file__).resolve().parents[1] / "models"

    console = Console(sample_rate_hz=fs, block_size=block, n_channels=n_ch, n_aux=prof.n_aux)
    features = policy = None
    backends, primary = {}, None
    if control:
        try:
            from edgemix.features import FeatureExtractor
            features = FeatureExtractor(fs, n_ch, hop_ms=prof.hop_ms)
        except ImportError as e:
            skipped.append({"what": "features", "why": f"edgemix.features not importable ({e})"})
        backends, skipped_inf = load_backends(models_dir)
        skipped += skipped_inf
        primary = _pick_primary(backends, prof)
        if primary is not None and features is not None:
            try:
                from edgemix.automix.model_policy import ModelPolicy
                policy = ModelPolicy(backends[primary])
            except ImportError as e:
                skipped.append({"what": "policy", "why": f"model policy not importable ({e})"})
        elif features is not None:
            skipped.append({"what": "policy (inference on the control thread)",
                            "why": "no loadable model backend"})
    else:
        skipped.append({"what": "control thread", "why": "--no-control"})

    n_blocks = max(1, int(seconds * fs) // block)
    if live:
        if prof.backend == "jack":
            from edgemix.rt.jack_backend import JackBackend
            device = JackBackend(n_ch, fs, block)
        else:
            from edgemix.rt.portaudio_backend import RtmixerBackend
            device = RtmixerBackend(n_ch, fs, block, ring_blocks=prof.periods)
        input_desc = "the live server's inputs"
    else:
        # The built-in generator's loop, repeated: rendering a long session with the
        # richer export.synth would cost more than the profile itself.
        loop, roles = render_synthetic(n_ch, fs, min(LOOP_S, n_blocks * block / fs), seed)
        reps = -(-n_blocks * block // loop.shape[0])
        x = np.ascontiguousarray(np.tile(loop, (reps, 1))[:n_blocks * block], np.float32)
        device = PacedBackend(x, fs, block)
        input_desc = (f"synthetic session (edgemix.rt.synthetic, seed {seed}): "
                      + ", ".join(roles))

    cpu0, wall0 = os.times(), time.perf_counter()
    raw = _run_in_runner(prof, console, features, policy,
                         backends.get(primary) if policy is not None else None, device,
                         seconds, rt)
    cpu1, wall1 = os.times(), time.perf_counter()
    times = raw["times"]

    period_ns = block * 1e9 / fs
    wall = wall1 - wall0
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    misses = int(np.sum(times[:, 2] > period_ns))
    backend_xruns = int(device.xruns)
    result = {
        "target": prof.name, "description": prof.description,
        "mode": "live" if live else "paced",
        "settings": {"sample_rate_hz": fs, "block_size": block, "periods": prof.periods,
                     "n_channels": n_ch, "n_aux": prof.n_aux, "hop_ms": prof.hop_ms,
                     "backend": prof.backend, "model_format": prof.model_format},
        "deadline_ms": period_ns / 1e6,
        "seconds": times.shape[0] * block / fs, "n_blocks": int(times.shape[0]),
        "stages": {s: stats_ms(times[:, i]) for i, s in enumerate(BLOCK_STAGES)},
        "audio_thread": raw["rt"],
        "deadline_misses": misses,
        "backend_xruns": backend_xruns,
        "xruns": misses + backend_xruns,
        "cpu": {"process_percent_of_one_core": 100.0 * cpu / wall if wall > 0 else 0.0,
                "audio_thread_load_percent": 100.0 * float(times[:, 1].sum()) /
                (max(times.shape[0], 1) * period_ns),
                "block_p99_share_of_deadline": stats_ms(times[:, 1])["p99_ms"] * 1e6
                / period_ns},
        "control": None, "inference": {}, "primary_backend": primary, "skipped": skipped,
        "runner": raw["runner"], "backend": device.info(),
        "host": {"machine": platform.machine(), "python": platform.python_version(),
                 "cpus": os.cpu_count(), "node": platform.node()},
        "input": input_desc,
    }
    ctl = raw["control"]
    if raw["control_stats"] is not None:
        result["control"] = {"hops": int(ctl.shape[0]), "backend": primary,
                             "policy_class": type(policy).__name__ if policy else None,
                             "errors": raw["control_stats"]["errors"],
                             "last_error": raw["control_stats"]["last_error"],
                             "features": stats_ms(raw["features"]),
                             **{s: stats_ms(ctl[:, i]) for i, s in enumerate(CONTROL_STAGES)}}
    result["inference"] = time_backends(backends, features, n_ch)
    result["_raw"] = {"times": times, "release": raw["release"], "control": ctl}
    return result


def time_backends(backends: dict, features, n_channels: int, calls: int = 200) -> dict:
    """Each backend's ``predict`` on the same snapshot, ``calls`` times (after one warm-up)."""
    if not backends:
        return {}
    from edgemix.infer import MAX_CHANNELS
    out = {}
    for label, b in backends.items():
        feat = np.zeros((MAX_CHANNELS, b.n_features), np.float32)
        if features is not None:
            snap = features.snapshot()
            feat[:n_channels] = snap[:, :b.n_features]
        mask = np.zeros(MAX_CHANNELS, np.float32)
        mask[:n_channels] = 1.0
        b.predict(feat, mask)
        t = np.zeros(calls, np.int64)
        for i in range(calls):
            s = perf_counter_ns()
            b.predict(feat, mask)
            t[i] = perf_counter_ns() - s
        out[label] = {"file": os.path.basename(getattr(b, "path", "")), **stats_ms(t)}
    return out


# ---- reports ----------------------------------------------------------------------------

def summary_markdown(r: dict) -> str:
    s = r["settings"]
    lines = [
        f"# edgemix latency profile: {r['target']}", "",
        f"{r['description']}. Mode: **{r['mode']}** "
        f"({'blocks released on the deadline grid' if r['mode'] == 'paced' else 'live backend'}"
        f"), {r['seconds']:.2f} s of audio, {r['n_blocks']} blocks.", "",
        f"- {s['sample_rate_hz']} Hz, {s['block_size']} frames x {s['periods']} periods, "
        f"{s['n_channels']} channels, {s['n_aux']} aux, backend {s['backend']}",
        f"- deadline per block: **{r['deadline_ms']:.3f} ms**",
        f"- deadline misses: **{r['deadline_misses']}**, xruns: **{r['xruns']}** "
        f"({r['backend_xruns']} reported by the backend)",
        f"- audio thread: {r['audio_thread']}",
        f"- CPU: audio thread {r['cpu']['audio_thread_load_percent']:.1f} % of its deadline "
        f"budget; whole process {r['cpu']['process_percent_of_one_core']:.1f} % of one core",
        f"- host: {r['host']['machine']}, {r['host']['cpus']} CPUs, Python {r['host']['python']}",
        "", "## Audio thread, per block (ms)", "",
        "| stage | p50 | p95 | p99 | p99.9 | max | max / deadline |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, st in r["stages"].items():
        lines.append(f"| {name} | {st['p50_ms']:.3f} | {st['p95_ms']:.3f} | {st['p99_ms']:.3f}"
                     f" | {st['p99.9_ms']:.3f} | {st['max_ms']:.3f} | "
                     f"{st['max_ms'] / r['deadline_ms']:.2f} |")
    if r["control"]:
        c = r["control"]
        lines += ["", f"## Control thread ({c['hops']} hops, policy {c['policy_class']}, backend "
                  f"{c['backend']}, {c['errors']} errors) (ms)", "",
                  "| stage | calls | p50 | p99 | max |",
                  "|---|---:|---:|---:|---:|"]
        for name in ("features",) + CONTROL_STAGES:
            st = c[name]
            lines.append(f"| {name} | {st['n']} | {st['p50_ms']:.3f} | {st['p99_ms']:.3f} | "
                         f"{st['max_ms']:.3f} |")
    if r["inference"]:
        lines += ["", "## Inference backends side by side (ms per predict)", "",
                  "| backend | file | p50 | p99 | max |", "|---|---|---:|---:|---:|"]
        for name, st in r["inference"].items():
            lines.append(f"| {name} | {st['file']} | {st['p50_ms']:.3f} | {st['p99_ms']:.3f} | "
                         f"{st['max_ms']:.3f} |")
    if r["skipped"]:
        lines += ["", "## Not profiled", ""] + [f"- {s['what']}: {s['why']}" for s in r["skipped"]]
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in PLOTS), ""]
    return "\n".join(lines)


def write_plots(r: dict, out_dir: Path) -> list[Path]:
    """The three PNGs (matplotlib's Agg canvas; no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    times = r["_raw"]["times"].astype(np.float64) / 1e6
    release_s = r["_raw"]["release"].astype(np.float64) / 1e9
    deadline = r["deadline_ms"]
    paths = []

    def save(fig, name):
        FigureCanvasAgg(fig)
        p = out_dir / name
        fig.savefig(p, dpi=100)
        paths.append(p)

    # Fixed margins: matplotlib's constrained layout costs more than the whole plot.
    fig = Figure(figsize=(8, 4.5))
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.12, top=0.91)
    ax = fig.add_subplot()
    block = times[:, 1]
    hi = max(deadline * 1.1, float(block.max()) * 1.05)
    ax.hist(block, bins=np.linspace(0, hi, 120), color="#1f77b4", label="whole block")
    ax.hist(times[:, 0], bins=np.linspace(0, hi, 120), histtype="step", color="#ff7f0e",
            label="dsp (console)")
    ax.axvline(deadline, color="#d62728", lw=2, label=f"deadline {deadline:.2f} ms")
    ax.axvline(r["stages"]["block"]["p99_ms"], color="#2ca02c", ls="--",
               label=f"p99 {r['stages']['block']['p99_ms']:.3f} ms")
    ax.set_yscale("log")
    ax.set_xlabel("block processing time (ms)")
    ax.set_ylabel("blocks")
    ax.set_title(f"{r['target']}: block time vs deadline ({r['n_blocks']} blocks, "
                 f"{r['deadline_misses']} misses)")
    ax.legend()
    save(fig, "latency_histogram.png")

    # Two panels: the audio thread against its deadline, the control thread against its
    # hop.  The audio panel is clipped just above the deadline so one outlier (a page
    # fault, the shared host) does not flatten the rest; clipped blocks are drawn on the top.
    ctl = r["_raw"]["control"]
    fig = Figure(figsize=(10, 6 if len(ctl) else 4.5))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.09, top=0.93, hspace=0.35)
    ax = fig.add_subplot(2 if len(ctl) else 1, 1, 1)
    top = max(1.5 * deadline, 1.2 * r["stages"]["block"]["p99.9_ms"])
    if r["mode"] == "paced":
        ax.plot(release_s, np.minimum(times[:, 2], top), lw=0.6, color="#9467bd",
                label="release to end")
    ax.plot(release_s, np.minimum(block, top), lw=0.6, color="#1f77b4", label="whole block")
    late = times[:, 2] > deadline
    if late.any():
        ax.plot(release_s[late], np.minimum(times[late, 2], top), "x", color="#d62728",
                label=f"deadline miss ({int(late.sum())})")
    ax.axhline(deadline, color="#d62728", lw=1.5, label="deadline")
    ax.set_ylim(0, top * 1.02)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("ms (clipped at the top)")
    ax.set_title(f"{r['target']}: audio thread, per block ({r['mode']})")
    ax.legend(loc="upper right", fontsize=8)
    if len(ctl):
        ax2 = fig.add_subplot(2, 1, 2)
        hop_s = r["settings"]["hop_ms"] / 1000.0
        t_hop = np.arange(1, len(ctl) + 1) * hop_s
        ax2.plot(t_hop, ctl[:, 0] / 1e6, ".-", lw=0.6, ms=3, color="#8c564b",
                 label="inference")
        ax2.plot(t_hop, ctl[:, 2] / 1e6, ".-", lw=0.6, ms=3, color="#7f7f7f",
                 label="whole control hop")
        ax2.set_xlabel("time (s)")
        ax2.set_ylabel("ms")
        ax2.set_title(f"control thread, every {r['settings']['hop_ms']:g} ms "
                      f"(backend {r['control']['backend']})")
        ax2.legend(loc="upper right", fontsize=8)
    save(fig, "timeline.png")

    fig = Figure(figsize=(10, 4.5))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.27, top=0.91)
    ax = fig.add_subplot()
    labels, p50, p99, mx = [], [], [], []
    for name, st in r["stages"].items():
        labels.append(name)
        p50.append(st["p50_ms"]), p99.append(st["p99_ms"]), mx.append(st["max_ms"])
    if r["control"]:
        for name in ("features",) + CONTROL_STAGES:
            st = r["control"][name]
            labels.append(f"ctl:{name}")
            p50.append(st["p50_ms"]), p99.append(st["p99_ms"]), mx.append(st["max_ms"])
    for name, st in r["inference"].items():
        labels.append(f"infer:{name}")
        p50.append(st["p50_ms"]), p99.append(st["p99_ms"]), mx.append(st["max_ms"])
    xs = np.arange(len(labels))
    w = 0.27
    ax.bar(xs - w, p50, w, label="p50", color="#2ca02c")
    ax.bar(xs, p99, w, label="p99", color="#ff7f0e")
    ax.bar(xs + w, mx, w, label="max", color="#d62728")
    ax.axhline(deadline, color="k", ls="--", lw=1, label="audio deadline")
    ax.set_xticks(xs, labels, rotation=30, ha="right")
    ax.set_ylabel("ms")
    ax.set_title(f"{r['target']}: per-stage cost (audio thread, control thread, backends)")
    ax.legend()
    save(fig, "stages.png")
    return paths


def write_report(r: dict, out_dir) -> dict[str, Path]:
    """``profile.json``, ``summary.md`` and the plots into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in r.items() if k != "_raw"}
    paths = {"json": out_dir / "profile.json", "summary": out_dir / "summary.md"}
    paths["json"].write_text(json.dumps(clean, indent=2, allow_nan=False) + "\n",
                             encoding="utf-8")
    paths["summary"].write_text(summary_markdown(r), encoding="utf-8")
    for p in write_plots(r, out_dir):
        paths[p.stem] = p
    return paths
