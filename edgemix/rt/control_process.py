"""The live control path in its own process: the audio process's GIL stays free.

Why (docs/design-notes.md, "Python threads beside the audio callback"): a JACK or PortAudio
callback that runs Python needs this process's GIL every block, and CPython hands the GIL
over by waiting time, not by priority.  A control thread that runs features -> policy ->
automation in Python (milliseconds per hop) therefore delays callbacks whatever its
priority (the xruns it cost under JACK are in the design notes).  In a process of its
own, the same control loop holds only its own GIL.

What crosses the process boundary, all in one shared-memory block, without locks:

* the **input ring**: the audio thread appends each raw input block
  (:class:`~edgemix.rt.ring.FrameRing`, single producer, single consumer, fenced for
  another process and for aarch64's weak ordering); the control process consumes it and
  steps at the hop boundaries of the input's sample clock, exactly as in-process;
* the **parameter mailbox**: a seqlock.  The control process writes a whole
  ``(channel, master)`` target pair between two increments of a sequence number (odd while
  writing); the audio thread, after each block, copies the pair to scratch arrays only when
  the number is new and even, checks it did not change meanwhile, and then hands the pair
  to ``Console.apply_targets``.  A torn or busy mailbox is simply looked at again next
  block: the audio side never waits (latest wins);
* **counters** (hops, updates, errors) the control process keeps current;
* the **meters**, in a block of their own (:mod:`edgemix.rt.meter_shm`): the audio thread
  publishes the console's meters after every block (a seqlock too); the control process
  attaches with ``MeterReader(spec["meter_shm"], spec["n_channels"])`` for its surfaces.

At the end the control process sends its last explanations and error text over a pipe.

Offline backends keep stepping the in-process :class:`~edgemix.rt.control.ControlLoop`
between blocks (``drives_control``), so offline renders stay exact and deterministic; the
control process runs the same ``ControlLoop`` class on the same input, so the parameter
trajectory is the same sequence of proposals (only its timing follows the wall clock, as
with a control thread).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import types as pytypes

import numpy as np

from edgemix import params as P
from edgemix.dsp._jit import kernel
from edgemix.rt.control import build_control_loop, ring_capacity
from edgemix.rt.ring import FrameRing, _fence_intrinsic

#: Counters the control process publishes: hops, updates, errors.
S_HOPS, S_UPDATES, S_ERRORS = range(3)
N_STATS = 3
#: How long the audio process waits for the control process to load (first run on a cold
#: Numba cache compiles the features and the policy's kernels).
START_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 10.0


@kernel(inline="always")
def _copy_pair(src_cp, src_mp, dst_cp, dst_mp):
    """Copy a ``(channel, master)`` parameter pair element by element (no allocation)."""
    for i in range(src_cp.shape[0]):
        for j in range(src_cp.shape[1]):
            dst_cp[i, j] = src_cp[i, j]
    for j in range(src_mp.shape[0]):
        dst_mp[j] = src_mp[j]


@kernel
def _mailbox_put(seq, cp, mp_, src_cp, src_mp):
    """Control process: write a target pair between two increments of ``seq[0]``."""
    s = seq[0]
    seq[0] = s + 1  # odd: writing
    _fence_intrinsic()
    _copy_pair(src_cp, src_mp, cp, mp_)
    _fence_intrinsic()
    seq[0] = s + 2  # even: complete


@kernel
def _mailbox_take(seq, cp, mp_, dst_cp, dst_mp, seen):
    """Audio thread: copy a new, complete pair to ``dst_*``; True when one was taken.

    ``seen[0]`` is the last sequence number taken.  Never waits: a pair being written, or
    overwritten while copied, is left for the next block."""
    s = seq[0]
    if s == seen[0] or s % 2 == 1:
        return False
    _fence_intrinsic()
    _copy_pair(cp, mp_, dst_cp, dst_mp)
    _fence_intrinsic()
    if seq[0] != s:
        return False
    seen[0] = s
    return True


def control_recipe(session, kind: str | None = None, surface: dict | None = None) -> dict:
    """What the control process needs to rebuild the session's policy and features: plain
    picklable values (the session object holds read-only mappings, which do not pickle).
    ``surface``: :func:`edgemix.rt.surface.surface_recipe`, to run the desk and its
    servers there."""
    return {"kind": kind or session.model.policy, "where": str(getattr(session, "path", "")),
            "roles": [c.role for c in session.channels],
            "model_path": session.model.path, "model_backend": session.model.backend,
            "hop_ms": session.model.hop_ms, "surface": surface,
            "loudness_target_lufs": session.loudness_target_lufs,
            "master": sorted(session.master), "align": session.model.align,
            "names": [c.name for c in session.channels]}


def _policy_from(recipe):
    from edgemix.automix import make_policy
    model = pytypes.SimpleNamespace(path=recipe["model_path"], backend=recipe["model_backend"])
    return make_policy(recipe["kind"], recipe["roles"], model,
                       loudness_target_lufs=recipe["loudness_target_lufs"],
                       person_master=tuple(recipe["master"]), where=recipe["where"])


class _Layout:
    """Offsets of every array in the one shared block (all 8-byte aligned)."""

    def __init__(self, n_channels: int, ring_frames: int):
        self.n, self.ring_frames = n_channels, ring_frames
        sizes = [("idx", 4 * 8), ("seq", 8), ("stats", N_STATS * 8), ("mp", P.N_MS * 8),
                 ("cp", n_channels * P.N_CH * 8), ("ring", ring_frames * n_channels * 4)]
        self.offset, at = {}, 0
        for name, size in sizes:
            self.offset[name] = at
            at += (size + 7) // 8 * 8
        self.nbytes = at

    def arrays(self, buf):
        o, n = self.offset, self.n
        return dict(
            idx=np.ndarray((4,), np.int64, buf, o["idx"]),
            seq=np.ndarray((1,), np.int64, buf, o["seq"]),
            stats=np.ndarray((N_STATS,), np.float64, buf, o["stats"]),
            mp=np.ndarray((P.N_MS,), np.float64, buf, o["mp"]),
            cp=np.ndarray((n, P.N_CH), np.float64, buf, o["cp"]),
            ring=np.ndarray((self.ring_frames, n), np.float32, buf, o["ring"]))


class _MailboxConsole:
    """What :class:`~edgemix.rt.control.ControlLoop` needs of a console, in the control
    process: its shape, and ``stage`` into the mailbox (checked and clipped here, so the
    audio side only copies)."""

    def __init__(self, spec, arrays):
        self.sample_rate_hz = spec["sample_rate_hz"]
        self.block_size = spec["block_size"]
        self.n_channels = spec["n_channels"]
        self.channel_params = spec["base_params"]
        self.master_params = spec["master_params"]
        self._a = arrays

    def stage(self, channel_params, master_params=None):
        from edgemix.console import checked_params
        cp, mp_ = checked_params(self.n_channels, channel_params,
                                 self.master_params if master_params is None else master_params)
        _mailbox_put(self._a["seq"], self._a["cp"], self._a["mp"], cp, mp_)


def _control_main(shm_name, spec, recipe, conn, stop):
    """The control process: attach, build the loop, step it on the wall clock until told
    to stop, then report."""
    from multiprocessing import resource_tracker, shared_memory
    shm = shared_memory.SharedMemory(name=shm_name)
    # The audio process owns (and unlinks) the block.  A spawned child shares its parent's
    # resource tracker, where attaching (CPython 3.11 registers it as if created) is a
    # no-op; unregistering here would drop the parent's entry (its unlink then prints a
    # KeyError traceback).  Only a process with a tracker of its own must unregister.
    if mp.parent_process() is None:
        resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001
    surface = None
    try:
        a = _Layout(spec["n_channels"], spec["ring_frames"]).arrays(shm.buf)
        try:
            policy = _policy_from(recipe)
            from edgemix.features import FeatureExtractor
            features = FeatureExtractor(spec["sample_rate_hz"], spec["n_channels"],
                                        hop_ms=recipe["hop_ms"])
            if recipe.get("align"):  # live alignment (edgemix/automix/prep/live.py)
                from edgemix.automix.prep.live import with_alignment
                policy, features = with_alignment(policy, features, spec["n_channels"],
                                                  spec["sample_rate_hz"], recipe["names"])
            console = _MailboxConsole(spec, a)
            ring = FrameRing(spec["ring_frames"], spec["n_channels"], data=a["ring"],
                             idx=a["idx"])
            loop = build_control_loop(console, policy, features,
                                      base_params=spec["base_params"],
                                      automation=spec["automation"], locked=spec["locked"],
                                      master_params=spec["master_params"],
                                      hop_s=spec["hop_s"], ring=ring)
            # compile (or load) everything the steps call before the stream starts
            features.process(np.zeros((spec["block_size"], spec["n_channels"]), np.float32))
            features.reset()
            if policy is not None:
                policy.propose(features.snapshot())
            loop.automation.reset()
            if recipe.get("surface"):
                surface = _start_surface(recipe["surface"], loop, spec, a)
        except Exception as e:
            msg = str(e) if e.__class__.__name__ in ("SurfaceError", "DeskError") \
                else f"{e.__class__.__name__}: {e}"
            conn.send({"error": msg})
            return
        conn.send({"ready": True, "surface": surface.addresses if surface else []})
        surface_stats = {}
        try:
            _run(loop, a["stats"], stop)
        finally:
            if surface is not None:
                if surface.scenes is not None:
                    surface.scenes.cancel()
                surface_stats = surface.stats()
                surface.stop()
        conn.send({"last_error": loop.last_error, "last_good": loop.last_good,
                   "surface_stats": surface_stats,
                   "last_explanations": loop.last_explanations,
                   "last_master_explanations": loop.last_master_explanations,
                   "last_recognition": loop.last_recognition,
                   "timing_rows": loop.timer.rows(), "timing_stages": loop.timer.stages,
                   "pid": os.getpid(),
                   "ring_dropped_frames": loop.ring.dropped_frames,
                   "ring_dropped_blocks": loop.ring.dropped_blocks})
    finally:
        del a
        shm.close()


def _start_surface(recipe, loop, spec, a):
    """The desk and the control surface (OSC, web) on this process's control loop; the
    desk stages straight into the mailbox (its values are already checked and clipped)."""
    from edgemix.rt.meter_shm import MeterReader
    from edgemix.rt.surface import start_control_surface
    meters = MeterReader(spec["meter_shm"], spec["n_channels"]) if spec.get("meter_shm") \
        else None

    def stage(cp, mp_):
        _mailbox_put(a["seq"], a["cp"], a["mp"], cp, mp_)
    return start_control_surface(recipe, loop, stage, meters)


def _run(loop, stats, stop):
    """The control thread's wall-clock polling (``ControlLoop.poll``), publishing counters."""
    def publish():
        stats[S_HOPS], stats[S_UPDATES], stats[S_ERRORS] = loop.hops, loop.updates, loop.errors
    loop.poll(stop, publish)


class ControlProcess:
    """The live control path of a :class:`~edgemix.rt.runner.Runner`, in a child process.

    The runner treats it like :class:`~edgemix.rt.control.ControlLoop`: :meth:`push` on the
    audio thread (the input block into the shared ring, then any new targets from the
    mailbox into the console); :meth:`warmup`, :meth:`reset`, :meth:`start`, :meth:`stop`
    and :meth:`stats` on the owner thread.
    """

    def __init__(self, console, recipe: dict, *, base_params=None, automation=None,
                 locked=None, master_params=None, hop_s: float = 0.1):
        from multiprocessing import shared_memory
        from edgemix.features import FeatureExtractor
        self.console = console
        self.recipe = dict(recipe)
        n = console.n_channels
        fs = console.sample_rate_hz
        hop_frames = FeatureExtractor(fs, n, hop_ms=recipe["hop_ms"]).hop_frames
        self.hop_frames = hop_frames
        self.hop_s = hop_frames / fs
        ring_frames = ring_capacity(hop_frames, console.block_size)
        self._spec = {
            "sample_rate_hz": fs, "block_size": console.block_size, "n_channels": n,
            "ring_frames": ring_frames, "hop_s": hop_s,
            "base_params": np.array(console.channel_params if base_params is None
                                    else base_params, np.float64),
            "automation": None if automation is None else np.asarray(automation, np.float64),
            "locked": None if locked is None else np.asarray(locked),
            "master_params": np.array(console.master_params if master_params is None
                                      else master_params, np.float64)}
        from edgemix.rt.meter_shm import MeterWriter
        self.meters = MeterWriter(console)
        self._spec["meter_shm"] = self.meters.name
        layout = _Layout(n, ring_frames)
        self._shm = shared_memory.SharedMemory(create=True, size=layout.nbytes)
        self._a = layout.arrays(self._shm.buf)
        self._a["seq"][:] = 0
        self._a["stats"][:] = 0.0
        self.ring = FrameRing(ring_frames, n, data=self._a["ring"], idx=self._a["idx"])
        self._nothing = np.zeros((0, 0), np.float32)
        self._cp = np.zeros((n, P.N_CH))
        self._mp = np.zeros(P.N_MS)
        self._seen = np.zeros(1, np.int64)
        ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited threads or locks
        self._ctx = ctx
        self._stop = ctx.Event()
        self._proc = None
        self._conn = None
        self.final: dict = {}
        self.last_good = None
        self.last_explanations = None
        self.last_master_explanations: dict = {}
        self.last_recognition = None
        self.rt_status = "not requested"
        self.applied = 0  # target pairs the audio thread took from the mailbox
        #: the control surface's addresses once the process runs; ``announce(addresses)``
        #: is called with them at start (the CLI prints them)
        self.surface_addresses: list[str] = []
        self.announce = None
        self._counts = (0, 0, 0)

    # ---- audio thread -------------------------------------------------------------------
    def push(self, x: np.ndarray) -> bool:
        """Audio thread, after each block: publish the meters, append the input block,
        then apply new targets if any arrived.  Never waits (the ring drops and counts when
        full; a busy mailbox waits a block; the meters are a seqlock)."""
        self.meters.publish()
        ok = self.ring.push(x, self._nothing)
        if _mailbox_take(self._a["seq"], self._a["cp"], self._a["mp"], self._cp, self._mp,
                         self._seen):
            self.console.apply_targets(self._cp, self._mp)
            self.applied += 1
        return ok

    # ---- owner thread -------------------------------------------------------------------
    def warmup(self) -> None:
        """Compile the audio side's kernels and start the control process; wait until it
        has loaded its policy and features (a one-line error if it cannot)."""
        self.ring.warmup(self.console.n_channels)
        self.meters.warmup()
        _mailbox_take(self._a["seq"], self._a["cp"], self._a["mp"], self._cp, self._mp,
                      self._seen)
        if self._proc is not None and self._proc.is_alive():
            return
        parent, child = self._ctx.Pipe()
        self._stop.clear()
        self._proc = self._ctx.Process(
            target=_control_main, name="edgemix-control",
            args=(self._shm.name, self._spec, self.recipe, child, self._stop), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(START_TIMEOUT_S):
            self._kill()
            raise RuntimeError("the control process did not start in time")
        msg = parent.recv()
        if "error" in msg:
            self._kill()
            if self.recipe.get("surface"):  # a port in use etc.: the user's to fix
                from edgemix.rt.surface import SurfaceError
                raise SurfaceError(msg["error"])
            raise RuntimeError(f"the control process failed to start: {msg['error']}")
        self.surface_addresses = list(msg.get("surface", []))
        if self.surface_addresses and self.announce is not None:
            self.announce(self.surface_addresses)

    def reset(self) -> None:
        """Before a stream: empty the ring (the control process has consumed nothing)."""
        self.ring.idx[:] = 0

    def start(self, rt_priority: int | None = None) -> None:
        """Let the control process's loop run (it was started and loaded by ``warmup``)."""
        if self._proc is None:
            self.warmup()
        if rt_priority is not None:
            from edgemix.rt import rtsched
            self.rt_status = rtsched.set_fifo(rt_priority, self._proc.pid)

    @property
    def native_id(self) -> int | None:
        """The control process's id (its main thread runs the loop), for its scheduling."""
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    def stop(self) -> None:
        """End the control process, collect its report, sync the console's staged params
        to what the audio side last applied, release the shared memory."""
        if self._proc is not None:
            self._stop.set()
            try:
                if self._conn.poll(STOP_TIMEOUT_S):
                    self.final = self._conn.recv()
            except (EOFError, OSError):
                pass
            self._proc.join(STOP_TIMEOUT_S)
            if self._proc.is_alive():
                self._kill()
            self._proc = None
        self.last_good = self.final.get("last_good")
        self.last_explanations = self.final.get("last_explanations")
        self.last_master_explanations = self.final.get("last_master_explanations") or {}
        self.last_recognition = self.final.get("last_recognition")
        if self._a is not None:
            self._counts = tuple(int(v) for v in self._a["stats"][[S_HOPS, S_UPDATES, S_ERRORS]])
        if self.applied:  # the console reports what it mixed with
            self.console.stage(self._cp, self._mp)
        self._release()

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()
            self._proc = None

    def _release(self) -> None:
        if self._shm is not None:
            self.ring = FrameRing(1, 1)  # drop the views before the block goes
            self._a = None
            self._shm.close()
            self._shm.unlink()
            self._shm = None
        self.meters.close()

    def __del__(self):
        try:
            if self._proc is not None:
                self._kill()
            self._release()
        except Exception:
            pass

    def stats(self) -> dict:
        s = self._a["stats"] if self._a is not None else None
        hops, updates, errors = ((int(s[S_HOPS]), int(s[S_UPDATES]), int(s[S_ERRORS]))
                                 if s is not None else self._counts)
        timing = {}
        if "timing_rows" in self.final:  # the control process's own timers, after stop
            from edgemix.rt.timing import stats_ms
            rows = self.final["timing_rows"]
            timing = {name: stats_ms(rows[:, i])
                      for i, name in enumerate(self.final["timing_stages"])}
        return {"process": True, "hops": hops, "updates": updates, "errors": errors,
                "timing": timing, "pid": self.final.get("pid"),
                "surface": self.surface_addresses,
                "surface_stats": self.final.get("surface_stats", {}),
                "applied": self.applied, "rt": self.rt_status,
                "last_error": self.final.get("last_error"), "hop_frames": self.hop_frames,
                "ring_capacity_frames": self.ring.capacity,
                "ring_dropped_frames": self.final.get("ring_dropped_frames",
                                                      self.ring.dropped_frames),
                "ring_dropped_blocks": self.final.get("ring_dropped_blocks",
                                                      self.ring.dropped_blocks)}
