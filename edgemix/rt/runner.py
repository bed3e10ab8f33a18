"""The real-time runner: one engine, one backend, a control thread and an optional recorder.

What it does around a stream, in order (DESIGN.md, real-time rules):

1. compile every kernel before the stream opens (``Console.warmup()``, the feature
   extractor and the recorder's ring kernel), so nothing is JIT-compiled while live;
2. collect, then ``gc.freeze()`` and ``gc.disable()`` so the cyclic collector never runs in
   the audio path (re-enabled after the stream stops);
3. shorten the interpreter's GIL switch interval (``GIL_SWITCH_S``) so the audio callback
   never queues behind another Python thread for long;
4. lock the process's memory (``mlockall``), pin the audio thread to a CPU and ask for
   SCHED_FIFO where the OS allows, with one clear warning where it does not (the JACK backend
   asks for one step below JACK's own thread); once the audio thread's priority is known,
   put every other Python thread of the run -- the owner's wait loop, the control thread,
   the recorder's writer -- at SCHED_FIFO just below it, so none of them can be preempted
   by an ordinary process while holding the GIL the audio thread needs
   (:mod:`edgemix.rt.rtsched`);
5. time every block into a preallocated ring (:class:`~edgemix.rt.timing.BlockTimer`) and
   count late blocks and the backend's xruns;
6. hand every input block to the control path through a preallocated ring (one kernel
   call, never waiting; drops counted) and run features -> policy -> automation ->
   ``Console.stage`` off the audio thread at each hop of the input's sample clock: on the
   control thread (live backends) or synchronously between blocks (offline backends, whose
   ``drives_control`` is True: see :mod:`edgemix.rt.control`);
7. stop gracefully on SIGINT/SIGTERM (when run on the main thread); when the device is lost,
   say so in one line and retry.
"""
from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from time import perf_counter_ns

import numpy as np

from edgemix.rt import rtsched
from edgemix.rt.backend import Backend, DeviceError
from edgemix.rt.timing import BlockTimer, StageTimer

log = logging.getLogger("edgemix.rt")

#: The interpreter's GIL switch interval while streaming.  A thread that wants the GIL
#: (the audio callback) waits up to one interval before the holder (the control thread's
#: policy step, milliseconds of Python per hop) is made to let go; 50 us bounds the wait
#: at under 4 % of a 64-frame block, and a switch only happens when a thread is actually
#: waiting (the measurements: docs/design-notes.md, "Python threads beside the audio
#: callback").
GIL_SWITCH_S = 5e-5

#: How often the owner's wait loop looks at the backend (finished, lost, duration) on a live
#: stream.  Each look takes the GIL for a moment; fewer looks, fewer chances to be holding
#: it when a block is due.  Offline backends finish on their own and are looked at
#: ``OFFLINE_POLL_S`` apart so a render ends promptly.
LIVE_POLL_S = 0.2
OFFLINE_POLL_S = 0.05

#: SCHED_FIFO priority asked for the audio thread (JACK's own default is 10..80 on Debian's
#: limits; 70 keeps us under the kernel's IRQ threads at 50..90 only where they are higher).
RT_PRIORITY = 70


class Runner:
    """Drive ``console`` from ``backend``.

    ``process`` belongs to the backend's audio thread; :meth:`step_control` to an offline
    backend's thread, between blocks; everything else to the thread that calls :meth:`run`
    (the owner).  ``policy`` is any object with ``propose(snapshot)``; ``features`` an object
    with ``process(block)``, ``snapshot()``, ``reset()`` and ``hop_frames`` (fed on the
    control side, never on the audio thread).  ``base_params`` (the manual settings),
    ``automation`` (levels 0..1 per channel) and ``locked`` make the
    :class:`~edgemix.automix.policy.Automation` the proposals go through.
    ``control_recipe`` (:func:`edgemix.rt.control_process.control_recipe`): with a live
    backend, run the control path in its own process, built from the recipe (``policy``
    and ``features`` are then not used); offline backends always step it in-process.
    """

    def __init__(self, console, backend: Backend, *, policy=None, features=None,
                 recorder=None, base_params=None, automation=None, locked=None,
                 master_params=None, hop_s: float = 0.1, rt_priority: bool = True,
                 cpu: int | None = None, timer_capacity: int = 1 << 16,
                 retry_s: float = 1.0, max_retries: int | None = None,
                 control_recipe=None):
        if backend.n_inputs != console.n_channels:
            raise ValueError(f"the backend delivers {backend.n_inputs} inputs but the console "
                             f"has {console.n_channels} channels: make them agree")
        self.console = console
        self.backend = backend
        self.policy = policy
        self.features = features
        self.recorder = recorder
        self.hop_s = hop_s
        self.rt_priority = rt_priority
        self.cpu = cpu
        self.retry_s = retry_s
        self.max_retries = max_retries
        self.timer = BlockTimer(timer_capacity)
        #: the console's share of each block (``dsp``; the rest of ``timer``'s block is the
        #: hand-off to the control path, the recorder and the meters)
        self.stage_timer = StageTimer(("dsp",), timer_capacity)
        self.ns_per_frame = 1e9 / console.sample_rate_hz
        self.errors = 0          # exceptions caught in the audio path (output zeroed)
        self.frames = 0
        self.retries = 0
        self.rt_status = "not requested"
        #: SCHED_FIFO priority of the audio thread once it ran (0: not real-time; None: not
        #: known yet).  The helper threads are put below it (``_raise_helpers``).
        self.audio_priority: int | None = None
        self.helpers_status = "not requested"
        self.memlock_status = "not requested"
        self.stop_reason = ""
        self._stop = threading.Event()
        self._audio_thread: int | None = None  # the thread enter_audio_thread last set up
        self.control = None
        live = not backend.drives_control
        if control_recipe is not None and live:
            # a live run: the control path in its own process (its Python never holds
            # this process's GIL; see edgemix.rt.control_process and docs/design-notes.md)
            from edgemix.rt.control_process import ControlProcess
            self.control = ControlProcess(console, control_recipe, base_params=base_params,
                                          automation=automation, locked=locked,
                                          master_params=master_params, hop_s=hop_s)
        elif policy is not None or features is not None:
            from edgemix.rt.control import build_control_loop
            self.control = build_control_loop(console, policy, features,
                                              base_params=base_params, automation=automation,
                                              locked=locked, master_params=master_params,
                                              hop_s=hop_s)

    # ---- audio thread ---------------------------------------------------------------------
    def process(self, x: np.ndarray, out: np.ndarray) -> None:
        """Audio thread: mix one block into ``out``; time it; hand the input to the control
        path's ring and the recorder (neither ever waits)."""
        t0 = perf_counter_ns()
        frames = x.shape[0]
        try:
            self.console.process(x, out=out)
        except Exception:  # fail soft: the output buffer is always filled
            out.fill(0.0)
            self.errors += 1
        self.stage_timer.add(0, perf_counter_ns() - t0)
        self.stage_timer.end()
        if self.control is not None:
            self.control.push(x)
        if self.recorder is not None:
            self.recorder.push(x, out)
        self.frames += frames
        self.timer.record(t0, perf_counter_ns(), t0 + int(frames * self.ns_per_frame))

    def enter_audio_thread(self, priority: int = RT_PRIORITY) -> None:
        """Called by a backend from its audio thread (again from a new one after a re-open):
        CPU affinity and SCHED_FIFO ``priority``."""
        me = threading.get_ident()
        if self._audio_thread == me:
            return
        self._audio_thread = me
        if not self.rt_priority:
            self.rt_status = "not requested"
            return
        notes = []
        try:
            cpus = sorted(os.sched_getaffinity(0))
            cpu = self.cpu if self.cpu is not None else cpus[-1]
            os.sched_setaffinity(0, {cpu})
            notes.append(f"pinned to CPU {cpu}")
        except (AttributeError, OSError, ValueError) as e:
            notes.append(f"no CPU affinity ({e.__class__.__name__})")
        status = rtsched.set_fifo(priority)
        if status.startswith("SCHED_FIFO"):
            notes.append(status)
        else:
            notes.append("no real-time priority")
            log.warning("audio thread runs without real-time priority (%s): allow it with an "
                        "rtprio limit (e.g. the 'audio' group in /etc/security/limits.d)",
                        status)
        self.rt_status = ", ".join(notes)
        self.audio_priority = rtsched.fifo_priority()

    # ---- offline backend's thread, between blocks ---------------------------------------
    def step_control(self) -> None:
        """Run every control hop whose boundary the input has reached, synchronously (an
        offline backend calls this before each block, so hops happen at audio time)."""
        if self.control is not None:
            self.control.advance()

    # ---- owner thread ---------------------------------------------------------------------
    def warmup(self) -> None:
        """Compile every kernel the stream calls (console, ring, features, recorder), then
        leave the engine and the control path in a clean state."""
        self.console.warmup()
        b, n = self.console.block_size, self.console.n_channels
        if self.features is not None:
            self.features.process(np.zeros((b, n), np.float32))
        if self.control is not None:
            self.control.warmup()
            self.control.reset()
        if self.recorder is not None:
            self.recorder.ring.warmup(n)
        self.timer.reset()
        self.stage_timer.reset()

    def _raise_helpers(self) -> None:
        """Owner thread, once the audio thread has run its first block: put the owner, the
        control thread and the recorder's writer at SCHED_FIFO below the audio thread."""
        if self.audio_priority is None:
            return
        self._helpers_done = True
        band = rtsched.helper_priorities(self.audio_priority)
        if band is None:
            self.helpers_status = "normal priority (the audio thread is not real-time)"
            return
        control, helper = band
        notes = [f"owner {rtsched.set_fifo(helper)}"]
        if self.control is not None and self.control.native_id is not None:
            self.control.rt_status = rtsched.set_fifo(control, self.control.native_id)
            notes.append(f"control {self.control.rt_status}")
        if self.recorder is not None and self.recorder.native_id is not None:
            notes.append(f"recorder {rtsched.set_fifo(helper, self.recorder.native_id)}")
        self.helpers_status = ", ".join(notes)

    def request_stop(self, reason: str = "stopped") -> None:
        """Any thread (or a signal handler): end :meth:`run` at its next check."""
        if not self.stop_reason:
            self.stop_reason = reason
        self._stop.set()

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(
                sig, lambda s, f: self.request_stop(signal.Signals(s).name))
        return old

    def _open_backend(self, first: bool = False) -> bool:
        """Open and start; on a device error say so once per attempt and return False.

        The first open raises at once (a wrong device name is a configuration error, not a
        lost device); later re-opens retry up to ``max_retries`` (None = until stopped)."""
        try:
            self.backend.open(self)
            self.backend.start()
            return True
        except DeviceError as e:
            if first or (self.max_retries is not None and self.retries >= self.max_retries):
                try:
                    self.backend.close()
                except Exception:
                    pass
                raise
            self.retries += 1
            log.warning("%s; retrying in %g s", e, self.retry_s)
            try:
                self.backend.close()
            except Exception:
                pass
            return False

    def run(self, duration_s: float | None = None) -> dict:
        """Run until the source ends, ``duration_s`` passes, a signal or ``request_stop``.

        Returns :meth:`stats`.  Raises DeviceError when the device cannot be opened and
        ``max_retries`` is exhausted.
        """
        self.warmup()
        old_signals = self._install_signals()
        old_switch = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_S)
        if self.recorder is not None:
            self.recorder.open()
        gc.collect()
        gc.freeze()
        gc.disable()
        live = not self.backend.drives_control
        if live and self.rt_priority:
            self.memlock_status = rtsched.lock_memory()
        t_start = time.monotonic()
        opened = False
        self._helpers_done = not (live and self.rt_priority)
        try:
            opened = self._open_backend(first=True)
            if opened and self.control is not None and live:
                self.control.start()
            while opened and not self._stop.is_set():
                if not self._helpers_done:
                    self._raise_helpers()
                if duration_s is not None and time.monotonic() - t_start >= duration_s:
                    self.request_stop("duration reached")
                    break
                if self.backend.finished:
                    self.request_stop("source finished")
                    break
                if self.backend.lost:
                    reason = self.backend.lost
                    log.warning("audio device lost (%s); retrying in %g s", reason, self.retry_s)
                    try:
                        self.backend.stop()
                        self.backend.close()
                    except Exception:
                        pass
                    self.backend.lost = None
                    opened = False
                    while not opened and not self._stop.is_set():
                        self._stop.wait(self.retry_s)
                        if not self._stop.is_set():
                            opened = self._open_backend()
                    continue
                if not self._helpers_done:  # wait for the audio thread's first block
                    self._stop.wait(0.005)
                    continue
                poll_s = LIVE_POLL_S if live else OFFLINE_POLL_S
                if duration_s is not None:
                    poll_s = min(poll_s, max(0.0, t_start + duration_s - time.monotonic()))
                self._stop.wait(poll_s)
        finally:
            # the audio side first: the control path's shared memory and the console's
            # staged parameters must not change under a block still being processed
            if opened:
                try:
                    self.backend.stop()
                finally:
                    self.backend.close()
            if self.control is not None:
                self.control.stop()
            if live and self.rt_priority:
                rtsched.set_normal()
                if self.memlock_status.startswith("locked"):
                    rtsched.unlock_memory()
            gc.enable()
            gc.unfreeze()
            sys.setswitchinterval(old_switch)
            for sig, handler in old_signals.items():
                signal.signal(sig, handler)
            self.recorder_stats = self.recorder.close() if self.recorder is not None else None
        return self.stats()

    def stats(self) -> dict:
        """Everything a person or a test wants after (or during) a run; JSON-friendly."""
        t = self.timer.summary()
        st = {
            "backend": self.backend.name,
            "sample_rate_hz": self.console.sample_rate_hz,
            "block_size": self.console.block_size,
            "n_channels": self.console.n_channels,
            "frames": int(self.frames),
            "blocks": t["blocks"],
            "late_blocks": t["late"],
            "block_time_share": {k: t[k] for k in ("p50", "p99", "max", "mean")},
            "deadline_ms": 1000.0 * self.console.block_size / self.console.sample_rate_hz,
            "xruns": int(self.backend.xruns),
            "audio_errors": int(self.errors),
            "guard_count": int(getattr(self.console, "guard_count", 0)),
            "backend_latency_frames": int(self.backend.latency_frames),
            "console_latency_frames": int(self.console.latency_frames),
            "latency_frames": int(self.backend.latency_frames + self.console.latency_frames),
            "device_latency_frames": int(self.backend.device_latency_frames),
            "total_latency_frames": int(self.backend.latency_frames
                                        + self.console.latency_frames
                                        + self.backend.device_latency_frames),
            "retries": int(self.retries),
            "rt": self.rt_status,
            "rt_helpers": self.helpers_status,
            "memory_lock": self.memlock_status,
            "stop_reason": self.stop_reason,
        }
        if self.control is not None:
            st["control"] = self.control.stats()
        if self.recorder is not None:
            st["recorder"] = self.recorder.stats()
        st.update({f"backend_{k}": v for k, v in self.backend.info().items()
                   if k not in ("backend", "sample_rate_hz", "block_size", "n_inputs",
                                "latency_frames", "xruns")})
        return st
