"""JACK backend (the ``JACK-Client`` package): a compiled process callback, a DSP worker.

Client ``edgemix`` (configurable) registers ``in_1 .. in_N`` and ``out_1``, ``out_2``;
connections to the system ports are made only when ``auto_connect`` is asked for.

JACK's process callback is :func:`edgemix.rt.jack_cycle.jack_process`, machine code that
never enters Python: each period it copies the input ports into an input ring, plays the
output block due ``ring_blocks`` periods after its input from an output ring (silence,
counted as ``missed``, when it is not ready), posts a semaphore and times itself.  The DSP
worker thread (real-time priority from the runner, below JACK's own) sleeps on that
semaphore, runs ``runner.process`` on each new block straight out of the input ring into
the output ring, and goes back to sleep.  The backend therefore adds exactly
``ring_blocks * period`` frames of latency (``latency_frames``), and the worker has that
long for a block, whatever JACK's thread, the GIL or the interpreter does meanwhile.  Why
not run the engine inside the callback: docs/design-notes.md, "JACK: a compiled process
callback".

Deadline misses, all counted: ``missed`` (an output block not ready when due, played as
silence; a block finished later is dropped as ``stale`` so the latency stays fixed),
``overflows`` (an input block dropped because the worker stalled for a whole ring), and
JACK's own xruns (``server_xruns``, from its xrun callback).  ``xruns`` is the server's
plus ours.  The callback's own cost is timed from JACK's cycle start to our outputs written,
against the next cycle's start (``cycle_timer``).  A server shutdown or a change of period
marks the backend ``lost`` so the runner says so and re-opens it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

import numpy as np

from edgemix.rt import jack_cycle as jc
from edgemix.rt.backend import Backend, DeviceError
from edgemix.rt.runner import RT_PRIORITY
from edgemix.rt.timing import BlockTimer

log = logging.getLogger("edgemix.rt")


def import_jack():
    try:
        import jack  # noqa: F401  (JACK-Client)
    except (ImportError, OSError) as e:
        raise DeviceError(f"JACK is not available ({e}): install libjack (Debian: "
                          "libjack-jackd2-0) and `pip install edgemix[live]`") from None
    # libjack writes its own multi-line complaints to stderr ("Cannot connect to server
    # socket ..."); route them to the log so a user sees our one-line message instead
    jack.set_error_function(lambda msg: log.debug("libjack: %s", msg))
    jack.set_info_function(lambda msg: log.debug("libjack: %s", msg))
    return jack


#: Default ``ring_blocks`` of a JACK session: periods between an input block and its mix
#: at the output, i.e. how long the worker has per block (measured in bench_jack.py and
#: written up in docs/design-notes.md).
DEFAULT_RING_BLOCKS = 2
#: The input ring holds at least this long, so only a stall of the worker this long drops
#: input (counted as ``overflows``); shorter stalls only cost the blocks they make late.
INPUT_RING_S = 0.1
#: How long ``start`` waits for the worker thread to be scheduled before activating.
WORKER_START_S = 2.0
#: Bytes reserved for a POSIX ``sem_t`` (glibc: 32 on x86-64 and aarch64).
_SEM_BYTES = 64


class _Semaphore:
    """A POSIX unnamed semaphore in memory we own: the compiled callback posts it (through
    ``post_address``), the worker waits on it (ctypes lets go of the GIL meanwhile)."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        self._init, self.wait_fn, self._post, self._destroy = (
            libc.sem_init, libc.sem_wait, libc.sem_post, libc.sem_destroy)
        for fn in (self._init, self.wait_fn, self._post, self._destroy):
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p]
        self._init.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint]
        self.post_address = ctypes.cast(self._post, ctypes.c_void_p).value
        self._mem = np.zeros(_SEM_BYTES, np.uint8)
        self.address = self._mem.ctypes.data
        if self._init(self.address, 0, 0) != 0:
            raise DeviceError(f"cannot create a semaphore (errno {ctypes.get_errno()})")

    def post(self) -> None:
        self._post(self.address)

    def destroy(self) -> None:
        self._destroy(self.address)


class JackBackend(Backend):
    """JACK client with a compiled process callback and a Python DSP worker thread.

    ``input_map[i]`` is the 1-based JACK input port feeding console channel ``i`` (a
    session's ``channels[i].input``); ports ``in_1 .. in_max(input_map)`` are registered.
    """

    name = "jack"

    def __init__(self, n_inputs: int, sample_rate_hz: float, block_size: int, *,
                 client_name: str = "edgemix", server: str | None = None,
                 auto_connect: bool = False, input_map=None,
                 ring_blocks: int = DEFAULT_RING_BLOCKS):
        super().__init__(n_inputs, sample_rate_hz, block_size)
        if ring_blocks < 1:
            raise ValueError(f"ring_blocks = {ring_blocks}: use 1 or more")
        self.client_name = client_name
        self.server = server or None
        self.auto_connect = auto_connect
        self.ring_blocks = int(ring_blocks)
        self.input_map = list(input_map) if input_map is not None else list(range(1, n_inputs + 1))
        if len(self.input_map) != n_inputs:
            raise ValueError("input_map must name one JACK input port per channel")
        self.n_ports = max(self.input_map)
        self.client = None
        self.server_xruns = 0
        self.worker_priority = RT_PRIORITY
        self.xrun_max_delay_us = 0.0
        #: per period, in JACK's microseconds: (cycle start, our outputs written, next cycle)
        self.cycle_timer = BlockTimer()
        self.rings: jc.CycleRings | None = None
        self._frames = 0
        self._sem: _Semaphore | None = None
        self._worker = None
        self._stop = threading.Event()
        self._ready = threading.Event()

    # ``xruns`` (what the runner reports): the server's and our own missed blocks
    @property
    def xruns(self) -> int:
        return int(self.server_xruns + (self.rings.stat(jc.C_MISSED) if self.rings else 0))

    @xruns.setter
    def xruns(self, value: int) -> None:  # Backend.__init__ zeroes it
        self.server_xruns = int(value)

    @property
    def latency_frames(self) -> int:
        return self.ring_blocks * (self._frames or self.block_size)

    # ---- owner thread ---------------------------------------------------------------------
    def open(self, runner) -> None:
        super().open(runner)
        jack = import_jack()
        self.finished = False
        try:
            self.client = jack.Client(self.client_name, no_start_server=True,
                                      servername=self.server)
        except jack.JackError as e:
            where = f"server {self.server!r}" if self.server else "the default JACK server"
            raise DeviceError(f"cannot reach {where} ({e}): start jackd (e.g. "
                              "`jackd -d alsa`) or set backend.kind to another backend") from None
        c = self.client
        if c.samplerate != int(self.sample_rate_hz):
            rate = c.samplerate
            c.close()
            self.client = None
            raise DeviceError(f"JACK runs at {rate} Hz but the session asks for "
                              f"{int(self.sample_rate_hz)} Hz: set session.sample_rate_hz = {rate}")
        if c.blocksize != self.block_size:
            log.warning("JACK's period is %d frames, the session says %d: using %d",
                        c.blocksize, self.block_size, c.blocksize)
        self._in_ports = [c.inports.register(f"in_{k}") for k in range(1, self.n_ports + 1)]
        self._out_ports = [c.outports.register(f"out_{k}") for k in (1, 2)]
        self._alloc(jack, c.blocksize)
        ffi, lib = jack._ffi, jack._lib
        # the compiled callback gets the table as its argument (jack_cycle's T_* layout);
        # JACK-Client has no public way to register a C function, so its cffi handle is used
        jack._check(lib.jack_set_process_callback(
            c._ptr, ffi.cast("JackProcessCallback", jc.jack_process.address),
            ffi.cast("void *", self.rings.arg)), "Error setting process callback")
        c.set_xrun_callback(self._xrun)
        c.set_blocksize_callback(self._blocksize)
        c.set_shutdown_callback(self._shutdown)

    def _alloc(self, jack, frames: int) -> None:
        """The semaphore, the rings and the callback's table (before activation)."""
        ffi = jack._ffi
        self._frames = int(frames)
        if self._sem is None:
            self._sem = _Semaphore()
        # the library JACK-Client loaded (dlopen hands out the same one again), through
        # ctypes: JACK-Client's cffi declarations leave out jack_get_cycle_times
        libjack = ctypes.CDLL(ctypes.util.find_library("jack") or "libjack.so.0")
        functions = {name: ctypes.cast(getattr(libjack, name), ctypes.c_void_p).value
                     for name in jc.FUNCTIONS if name != "sem_post"}
        functions["sem_post"] = self._sem.post_address
        # the worker sits just below JACK's own process thread, which must never wait for
        # it (JACK runs its clients at the server's -P minus 5: 75 at -P 80, 5 by default)
        libjack.jack_client_real_time_priority.restype = ctypes.c_int
        libjack.jack_client_real_time_priority.argtypes = [ctypes.c_void_p]
        jack_priority = libjack.jack_client_real_time_priority(
            int(ffi.cast("uintptr_t", self.client._ptr)))
        self.worker_priority = (min(RT_PRIORITY, jack_priority - 1) if jack_priority > 1
                                else RT_PRIORITY)
        # channel i reads port input_map[i]; then the two outputs
        ports = [self._in_ports[k - 1] for k in self.input_map] + self._out_ports
        period_s = self._frames / self.sample_rate_hz
        self.cycle_timer.reset()
        self.rings = jc.CycleRings(
            self.n_inputs, self._frames,
            max(self.ring_blocks + 3, int(np.ceil(INPUT_RING_S / period_s))), self.ring_blocks,
            ports=[int(ffi.cast("uintptr_t", p._ptr)) for p in ports],
            client=int(ffi.cast("uintptr_t", self.client._ptr)), sem=self._sem.address,
            functions=functions, timer=self.cycle_timer)

    def start(self) -> None:
        self._stop.clear()
        self._ready.clear()
        self._worker = threading.Thread(target=self.guarded, args=(self._work,),
                                        name="edgemix-dsp", daemon=True)
        self._worker.start()
        # the worker's scheduling is settled before the first period can wait for it
        self._ready.wait(WORKER_START_S)
        try:
            self.client.activate()
        except Exception as e:
            raise DeviceError(f"cannot activate the JACK client ({e}): check the server") from None
        if self.auto_connect:
            self._connect_system()

    def _connect_system(self) -> None:
        c = self.client
        capture = c.get_ports(is_physical=True, is_output=True, is_audio=True)
        playback = c.get_ports(is_physical=True, is_input=True, is_audio=True)
        if len(capture) < self.n_ports:
            log.warning("JACK has %d physical inputs for %d edgemix inputs: connecting %d",
                        len(capture), self.n_ports, len(capture))
        for src, dst in zip(capture, self._in_ports):
            c.connect(src, dst)
        for src, dst in zip(self._out_ports, playback):
            c.connect(src, dst)

    def _stop_worker(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._sem.post()
            self._worker.join()
            self._worker = None

    def stop(self) -> None:
        if self.client is not None:
            try:
                self.client.deactivate()  # the callback is not called after this returns
            except Exception:
                pass
        self._stop_worker()

    def close(self) -> None:
        self._stop_worker()
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
            self.client = None
        if self._sem is not None:
            self._sem.destroy()
            self._sem = None

    def info(self) -> dict:
        d = super().info()
        cyc = self.cycle_timer.summary()
        n = self.rings.stat if self.rings else (lambda counter: 0)
        d.update(client_name=self.client_name, server=self.server,
                 ring_blocks=self.ring_blocks, worker_priority=self.worker_priority,
                 ring_slots=self.rings.slots if self.rings else 0,
                 server_xruns=int(self.server_xruns),
                 xrun_max_delay_us=float(self.xrun_max_delay_us),
                 cycles=n(jc.C_CYCLES), missed=n(jc.C_MISSED), stale=n(jc.C_STALE),
                 overflows=n(jc.C_OVERFLOWS), odd_periods=n(jc.C_ODD_FRAMES),
                 cycle_late=cyc["late"],
                 cycle_share={k: cyc[k] for k in ("p50", "p99", "max")})
        return d

    # ---- the DSP worker thread -------------------------------------------------------------
    def _work(self) -> None:
        """Sleep on the callback's semaphore; process every block it has pushed since."""
        self.runner.enter_audio_thread(self.worker_priority)
        self._ready.set()
        rings = self.rings
        count, slots = rings.count, rings.slots
        ins, outs = rings.in_blocks, rings.out_blocks
        in_tag, out_tag = rings.in_tag, rings.out_tag
        wait, sem = self._sem.wait_fn, self._sem.address
        process, stop = self.runner.process, self._stop
        claim, release = jc._claim_block, jc._release_block
        while not stop.is_set():
            wait(sem)  # ctypes lets go of the GIL while it sleeps
            s = claim(count, slots)
            while s >= 0:
                process(ins[s], outs[s])
                release(count, in_tag, out_tag, s)
                s = claim(count, slots)

    # ---- JACK's other threads ---------------------------------------------------------------
    def _xrun(self, delayed_usecs: float) -> None:
        # JACK's notification thread (not the process thread)
        self.server_xruns += 1
        if delayed_usecs > self.xrun_max_delay_us:
            self.xrun_max_delay_us = delayed_usecs

    def _blocksize(self, blocksize: int) -> None:
        # JACK calls this outside the process cycle (also once on activation)
        if blocksize != self._frames:
            self.lost = (f"JACK's period changed from {self._frames} to {blocksize} frames: "
                         "re-opening")

    def _shutdown(self, status, reason) -> None:
        self.lost = f"JACK server shut down: {reason}"

