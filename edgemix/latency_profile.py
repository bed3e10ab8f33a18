"""The latency profiler: run what a board runs, at its target's settings, and time it.

``edgemix profile --target rpi4 --seconds 30 -o out/`` builds the session a board bundle
for the target runs (``edgemix/app.py:session_for_target``: the profile's rate, block,
channels, backend and the model the bundle ships, or the rule policy without one) and runs
it through the one composition root, exactly as ``edgemix run`` does: the profile's live
backend (JACK: the compiled process callback and its DSP worker; PortAudio: rtmixer's C
callback) and the control path in its own process.  With no JACK server running and no
sound card on the machine, a dummy-driver ``jackd`` is started for the run and the
report says so (a PortAudio profile then runs on PortAudio's JACK host API); a loop player
with a compiled callback plays a synthetic session into the inputs.

The timings come from timers inside what runs (like sushi's ``--timing-statistics``), not
from wrappers: the runner's block timer (``block``: the whole ``Runner.process``) and stage
timer (``dsp``: ``Console.process`` inside it), the JACK backend's cycle timer (``cycle``:
from JACK's cycle start to our outputs written, as a share of the period), and the control
loop's own timer in the control process (``features``, ``inference``, ``policy``,
``control``; :data:`edgemix.rt.control.CONTROL_STAGES`).

Misses are split: ``ours`` are blocks edgemix did not deliver in time (JACK: blocks played
as silence because the worker was late, stale or dropped ones; PortAudio: blocks that took
longer than a period), ``server`` the audio server's own xruns (a JACK server on a busy
machine misses cycles with no client at fault: ``benchmarks/bench_jack.py`` runs a C-only
reference server to show it).  ``path`` in the report says which path was timed.

``--paced`` keeps the stand-in device of earlier versions (a Python thread releasing blocks
on the deadline grid, ``response`` = release to end) for a machine with no audio server
at all; its control path is the same control process.

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

from edgemix.boardtools import profiles
from edgemix.infer import model_files
from edgemix.rt.backend import Backend
from edgemix.rt.control import CONTROL_STAGES as _LOOP_STAGES
from edgemix.rt.timing import PERCENTILES, stats_ms  # noqa: F401  (re-exported)

#: Audio-side stages, one column each in the per-block timing array.
BLOCK_STAGES = ("dsp", "block", "response")
#: Control-side stages per hop (the control loop's own timer), without ``features``
#: (reported beside them: fed up to each hop boundary).
CONTROL_STAGES = tuple(s for s in _LOOP_STAGES if s != "features")
#: Spin (rather than sleep) for the last part of a wait: ``time.sleep`` overshoots by
#: 50-100 us on a stock kernel, which would count against the block.
SPIN_NS = 300_000

#: Seconds of synthetic session rendered and looped as the profiler's input.
LOOP_S = 4.0

PLOTS = ("latency_histogram.png", "timeline.png", "stages.png")


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


def _has_sound_card() -> bool:
    """Whether the kernel knows an audio device (ALSA's card list)."""
    try:
        text = Path("/proc/asound/cards").read_text()
    except OSError:
        return False
    return bool(text.strip()) and "no soundcards" not in text


class _Server:
    """The JACK server a live profile runs on: the one running, or a dummy we start."""

    def __init__(self, prof, name: str | None, rt: bool):
        from edgemix.rt import jack_tools
        self.name = name or os.environ.get("JACK_DEFAULT_SERVER") or None
        self.started = False
        self._ctx = None
        if jack_tools.server_running(self.name):
            self.note = f"the running JACK server {self.name or 'default'!r}"
            return
        if _has_sound_card():
            raise ValueError(f"no JACK server {self.name or 'default'!r} is running: start "
                             "the board's (systemctl start edgemix-jack) or jackd, pass "
                             "--server NAME, or profile without a server with --paced")
        if not jack_tools.have_jackd():
            raise ValueError("no JACK server is running, no sound card, and no jackd to start "
                             "a dummy one: apt-get install jackd2, or use --paced")
        self._ctx = jack_tools.jack_server(
            rate=prof.sample_rate_hz, period=prof.block_size, capture=prof.n_channels,
            playback=2, sync=False, rt_priority=80 if rt else None, prefix="edgemix-profile")
        self.name = self._ctx.__enter__()
        self.started = True
        self.note = (f"a dummy-driver JACK server {self.name!r} started for this profile "
                     f"(no JACK server was running and this machine has no sound card)")

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None


def _wire_player(server: str, audio: np.ndarray, pattern: str, stop: threading.Event,
                 out: dict) -> None:
    """Wait for edgemix's input ports on ``server``, connect a loop player playing
    ``audio`` to them (only to them) and start it."""
    from edgemix.rt import jack_tools
    try:
        ins = jack_tools.wait_for_ports(server, pattern, audio.shape[1], timeout_s=600)
        ins = sorted(ins, key=lambda n: int(n.rsplit("_", 1)[1]))[:audio.shape[1]]
        player = jack_tools.LoopPlayer(server, audio, name="edgemix-profile-player")
        out["player"] = player
        c = player.client
        for i, port in enumerate(ins):
            for other in c.get_all_connections(port):
                c.disconnect(other, port)
            jack_tools.connect(c, player.ports[i], port)
        player.start()
        out["wired"] = len(ins)
    except Exception as e:  # the profile goes on with the server's own inputs
        out["error"] = f"{e.__class__.__name__}: {e}"


def run_profile(target, seconds: float = 10.0, *, models_dir=None, paced: bool = False,
                seed: int = 1, control: bool = True, rt: bool = True,
                server: str | None = None, say=None) -> dict:
    """Profile ``target`` for ``seconds`` of audio; returns the result dict (see module doc).

    ``say(line)`` is told what the profile starts (a dummy JACK server).  The raw
    per-block and per-hop timings are kept under the ``_raw`` key for the plots.
    """
    import dataclasses
    from edgemix import app
    from edgemix.rt.synthetic import render_synthetic
    if not (0.1 <= float(seconds) <= 3600):
        raise ValueError(f"--seconds {seconds}: use 0.1 .. 3600")
    prof = profiles.load(target)
    fs, block, n_ch = prof.sample_rate_hz, prof.block_size, prof.n_channels
    models_dir = Path(models_dir) if models_dir else Path(__file__).resolve().parents[1] / "models"
    session, skipped = app.session_for_target(prof, models_dir)
    if not control:
        session = dataclasses.replace(session, model=dataclasses.replace(
            session.model, policy="none"))
        skipped.append({"what": "control process", "why": "--no-control"})
    elif session.model.policy != "model":
        skipped.append({"what": "model policy (inference in the control process)",
                        "why": "no loadable model file: the rule policy runs, as a bundle "
                               "without a model would"})
    n_blocks = max(1, int(seconds * fs) // block)
    loop, roles = render_synthetic(n_ch, fs, min(LOOP_S, n_blocks * block / fs), seed)
    input_desc = f"synthetic session (edgemix.rt.synthetic, seed {seed}): " + ", ".join(roles)

    srv, wiring, stop_wire, backend = None, {}, threading.Event(), None
    path = {"mode": "paced" if paced else "live", "composition": "edgemix.app.build_runner"}
    try:
        if paced:
            reps = -(-n_blocks * block // loop.shape[0])
            x = np.ascontiguousarray(np.tile(loop, (reps, 1))[:n_blocks * block], np.float32)
            backend = PacedBackend(x, fs, block)
            path.update(backend="paced", callback="a Python thread releasing blocks on the "
                        "deadline grid (--paced)", server=None)
        else:
            srv = _Server(prof, server, rt)
            if srv.started and say is not None:
                say(f"edgemix profile: {srv.note}")
            if prof.backend == "portaudio":
                pattern = "PortAudio.*:in_"
                if srv.started:  # PortAudio's JACK host API, on the server we started
                    os.environ["JACK_DEFAULT_SERVER"] = srv.name
                    session = dataclasses.replace(session, backend=dataclasses.replace(
                        session.backend, device="system"))
                path.update(backend="portaudio", callback="rtmixer's C callback (PortAudio "
                            "JACK host API)" if srv.started else "rtmixer's C callback",
                            server=srv.note)
            else:
                pattern = f"{session.backend.client_name}:in_"
                session = dataclasses.replace(session, backend=dataclasses.replace(
                    session.backend, auto_connect=not srv.started))
                path.update(backend="jack", callback="the compiled JACK process callback "
                            "(Numba cfunc) and its DSP worker", server=srv.note)
            if srv.started:
                threading.Thread(target=_wire_player, args=(srv.name, loop, pattern,
                                                             stop_wire, wiring),
                                 daemon=True, name="edgemix-profile-wiring").start()
                input_desc = "a loop player (compiled callback) playing the " + input_desc
            else:
                input_desc = "the running server's inputs"
        here = os.sched_getaffinity(0)
        cpu = next((c for c in prof.audio_cores if c in here), None)
        try:
            runner, session = app.build_runner(
                session, server=srv.name if srv else None, rt_priority=rt, backend=backend,
                cpu=cpu)
        except Exception as e:
            raise ValueError(str(e).splitlines()[0]) from None
        if runner.control is not None:
            path["control"] = ("the control process (features, policy, automation in its "
                               "own interpreter)" if hasattr(runner.control, "recipe")
                               else "the control loop in this process")
        else:
            path["control"] = None
        cpu0, wall0 = os.times(), time.perf_counter()
        stats = runner.run(duration_s=None if paced else seconds)
        cpu1, wall1 = os.times(), time.perf_counter()
        backend = runner.backend
        info = backend.info()
    finally:
        stop_wire.set()
        if wiring.get("player") is not None:
            try:
                wiring["player"].close()
            except Exception:
                pass
        if srv is not None:
            if srv.started and prof.backend == "portaudio":
                # PortAudio's JACK host API aborts the process at exit when the server it
                # was attached to is gone: let go of PortAudio before stopping the server
                try:
                    from edgemix.rt.portaudio_backend import _import
                    _import()[1]._terminate()
                except Exception:
                    pass
            srv.close()
    if wiring.get("error"):
        skipped.append({"what": "loop player", "why": wiring["error"]})

    blocks = runner.timer.rows()
    dsp = runner.stage_timer.rows()[:, 0]
    k = min(blocks.shape[0], dsp.shape[0])
    if isinstance(backend, PacedBackend):
        k = min(k, backend.done)
    times = np.zeros((k, len(BLOCK_STAGES)), np.int64)
    times[:, 0] = dsp[-k:] if k else 0
    times[:, 1] = (blocks[-k:, 1] - blocks[-k:, 0]) if k else 0
    period_ns = block * 1e9 / fs
    if isinstance(backend, PacedBackend):
        times[:, 2] = backend.end[:k] - backend.release[:k]
        release = backend.release[:k] - (backend.release[0] if k else 0)
        ours = int(np.sum(times[:, 2] > period_ns))
        server_xruns = 0
    else:
        times[:, 2] = times[:, 1]
        release = blocks[-k:, 0] - (blocks[-k, 0] if k else 0)
        if path["backend"] == "jack":
            ours = int(info.get("missed", 0) + info.get("stale", 0) + info.get("overflows", 0))
            server_xruns = int(info.get("server_xruns", 0))
        else:
            ours = int(np.sum(times[:, 1] > period_ns))
            server_xruns = int(info.get("xruns", 0))
    wall = wall1 - wall0
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    policy = runner.control.recipe["kind"] if hasattr(runner.control, "recipe") else (
        type(runner.policy).__name__ if runner.policy is not None else None)
    result = {
        "target": prof.name, "description": prof.description,
        "mode": path["mode"], "path": path,
        "settings": {"sample_rate_hz": fs, "block_size": block, "periods": prof.periods,
                     "n_channels": n_ch, "n_aux": prof.n_aux, "hop_ms": prof.hop_ms,
                     "backend": prof.backend, "model_format": prof.model_format,
                     "ring_blocks": info.get("ring_blocks")},
        "deadline_ms": period_ns / 1e6,
        "seconds": times.shape[0] * block / fs, "n_blocks": int(times.shape[0]),
        "stages": {s: stats_ms(times[:, i]) for i, s in enumerate(BLOCK_STAGES)},
        "audio_thread": stats["rt"],
        "misses": {"ours": ours, "server": server_xruns},
        "deadline_misses": ours,
        "backend_xruns": server_xruns,
        "xruns": ours + server_xruns,
        "cpu": {"process_percent_of_one_core": 100.0 * cpu_s / wall if wall > 0 else 0.0,
                "audio_thread_load_percent": 100.0 * float(times[:, 1].sum()) /
                (max(times.shape[0], 1) * period_ns),
                "block_p99_share_of_deadline": stats_ms(times[:, 1])["p99_ms"] * 1e6
                / period_ns},
        "control": None, "inference": {}, "primary_backend": None, "skipped": skipped,
        "runner": stats, "backend": info,
        "host": {"machine": platform.machine(), "python": platform.python_version(),
                 "cpus": os.cpu_count(), "node": platform.node()},
        "input": input_desc,
        "model": {"policy": session.model.policy, "path": session.model.path,
                  "backend": session.model.backend},
    }
    if path["backend"] == "jack":
        cyc = info.get("cycle_share", {})
        result["stages"]["cycle"] = {"p50_share": cyc.get("p50", 0.0),
                                     "p99_share": cyc.get("p99", 0.0),
                                     "max_share": cyc.get("max", 0.0),
                                     "late": info.get("cycle_late", 0)}
    ctl_stats = stats.get("control")
    ctl_rows = np.zeros((0, len(_LOOP_STAGES)), np.int64)
    if ctl_stats is not None:
        rows = getattr(runner.control, "final", {}).get("timing_rows")
        if rows is None and hasattr(runner.control, "timer"):
            rows = runner.control.timer.rows()
        if rows is not None:
            ctl_rows = rows
        timing = {s: stats_ms(ctl_rows[:, i]) for i, s in enumerate(_LOOP_STAGES)}
        result["control"] = {"hops": int(ctl_stats["hops"]),
                             "process": bool(ctl_stats.get("process", False)),
                             "policy": policy, "policy_class": _policy_class(policy),
                             "backend": session.model.backend if policy == "model" else None,
                             "errors": ctl_stats["errors"],
                             "last_error": ctl_stats.get("last_error"), **timing}
    # each backend side by side, on a snapshot of the same input (features here)
    backends, skipped_inf = load_backends(models_dir)
    skipped += skipped_inf
    result["primary_backend"] = _pick_primary(backends, prof)
    result["inference"] = time_backends(backends, _snapshot(loop, fs, prof.hop_ms), n_ch)
    result["_raw"] = {"times": times, "release": release,
                      "control": ctl_rows[:, [1, 2, 3]] if ctl_rows.size else
                      np.zeros((0, 3), np.int64)}
    return result


def _policy_class(kind):
    return {"model": "ModelPolicy", "rules": "RulePolicy"}.get(kind, kind)


def _snapshot(x: np.ndarray, fs: float, hop_ms: float):
    """A feature snapshot of ``x`` (the profile's input), for timing the backends."""
    try:
        from edgemix.features import FeatureExtractor
    except ImportError:
        return None
    fx = FeatureExtractor(fs, x.shape[1], hop_ms=hop_ms)
    fx.process(x)
    return fx.snapshot()


def time_backends(backends: dict, snapshot, n_channels: int, calls: int = 200) -> dict:
    """Each backend's ``predict`` on the same snapshot (``(n_channels, F)`` or None:
    zeros), ``calls`` times (after one warm-up)."""
    if not backends:
        return {}
    from edgemix.infer import MAX_CHANNELS
    out = {}
    for label, b in backends.items():
        feat = np.zeros((MAX_CHANNELS, b.n_features), np.float32)
        if snapshot is not None:
            feat[:n_channels] = snapshot[:, :b.n_features]
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
        f"{r['description']}. Mode: **{r['mode']}**: {r['path']['backend']} "
        f"({r['path']['callback']}); control: {r['path']['control'] or 'none'}; server: "
        f"{r['path']['server'] or 'none'}. {r['seconds']:.2f} s of audio, "
        f"{r['n_blocks']} blocks; input: {r['input']}.", "",
        f"- {s['sample_rate_hz']} Hz, {s['block_size']} frames x {s['periods']} periods, "
        f"{s['n_channels']} channels, {s['n_aux']} aux, backend {s['backend']}",
        f"- deadline per block: **{r['deadline_ms']:.3f} ms**",
        f"- misses: **{r['misses']['ours']} ours** (blocks edgemix did not deliver in time), "
        f"**{r['misses']['server']} the server's** (its own xruns)",
        f"- audio thread: {r['audio_thread']}",
        f"- CPU: audio thread {r['cpu']['audio_thread_load_percent']:.1f} % of its deadline "
        f"budget; whole process {r['cpu']['process_percent_of_one_core']:.1f} % of one core",
        f"- host: {r['host']['machine']}, {r['host']['cpus']} CPUs, Python {r['host']['python']}",
        "", "## Audio thread, per block (ms)", "",
        "| stage | p50 | p95 | p99 | p99.9 | max | max / deadline |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, st in r["stages"].items():
        if name == "cycle":
            continue
        lines.append(f"| {name} | {st['p50_ms']:.3f} | {st['p95_ms']:.3f} | {st['p99_ms']:.3f}"
                     f" | {st['p99.9_ms']:.3f} | {st['max_ms']:.3f} | "
                     f"{st['max_ms'] / r['deadline_ms']:.2f} |")
    if "cycle" in r["stages"]:
        c = r["stages"]["cycle"]
        lines += ["", f"JACK cycle (JACK's cycle start to our outputs written), share of the "
                  f"period: p50 {c['p50_share']:.3f}, p99 {c['p99_share']:.3f}, max "
                  f"{c['max_share']:.3f}; late cycles {c['late']}."]
    if r["control"]:
        c = r["control"]
        lines += ["", f"## Control {'process' if c['process'] else 'loop'} ({c['hops']} hops, "
                  f"policy {c['policy_class']}, backend "
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
        if name == "cycle":  # shares of the period, not ms
            continue
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
