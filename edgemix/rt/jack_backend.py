"""JACK backend (the ``JACK-Client`` package): the engine runs inside JACK's process callback.

Client ``edgemix`` (configurable) registers ``in_1 .. in_N`` and ``out_1``, ``out_2``.  The
process callback gathers the input ports into a preallocated ``(frames, N)`` float32 array,
calls ``runner.process`` and scatters the mix to the output ports, so the backend adds no
buffering of its own (``latency_frames == 0``): an input sample of JACK cycle *k* reaches
the output ports in cycle *k*.

Port buffers are read through numpy views that are built once and rebuilt only when JACK
hands out a different buffer address (it does on connection changes, not per cycle), so a
period allocates no arrays.  Connections to the system ports are made only when
``auto_connect`` is asked for.  JACK's xruns are counted from its xrun callback; a server
shutdown marks the backend ``lost`` so the runner can say so and retry.

An xrun is the *server's* verdict on a whole cycle: any client, the server's own wake-up or
the machine can make it.  To tell ours apart, each period is also timed from the start of
JACK's cycle (``jack_frames_since_cycle_start`` at entry) to the moment our outputs are
written, against the cycle's deadline one period later (``cycle_timer``): an xrun with no
late cycle of ours was not caused by edgemix.  That interval includes what the runner's
block timer cannot see -- clients ahead of us in the graph, our thread's wake-up and its
wait for the GIL.
"""
from __future__ import annotations

import logging

import numpy as np

from time import perf_counter_ns

from edgemix.rt.backend import Backend, DeviceError
from edgemix.rt.timing import BlockTimer

log = logging.getLogger("edgemix.rt")


def _import_jack():
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


class JackBackend(Backend):
    """Run the engine in JACK's process callback.

    ``input_map[i]`` is the 1-based JACK input port feeding console channel ``i`` (a
    session's ``channels[i].input``); ports ``in_1 .. in_max(input_map)`` are registered.
    """

    name = "jack"

    def __init__(self, n_inputs: int, sample_rate_hz: float, block_size: int, *,
                 client_name: str = "edgemix", server: str | None = None,
                 auto_connect: bool = False, input_map=None):
        super().__init__(n_inputs, sample_rate_hz, block_size)
        self.client_name = client_name
        self.server = server or None
        self.auto_connect = auto_connect
        self.input_map = list(input_map) if input_map is not None else list(range(1, n_inputs + 1))
        if len(self.input_map) != n_inputs:
            raise ValueError("input_map must name one JACK input port per channel")
        self.n_ports = max(self.input_map)
        self.client = None
        self.view_rebuilds = 0
        self.xrun_max_delay_us = 0.0
        #: per period: (JACK cycle start, our outputs written, cycle start + one period)
        self.cycle_timer = BlockTimer()
        self._frames = 0

    # ---- owner thread ---------------------------------------------------------------------
    def open(self, runner) -> None:
        super().open(runner)
        jack = _import_jack()
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
        # channel i reads port input_map[i]
        self._port_of_channel = [self._in_ports[k - 1] for k in self.input_map]
        self._lib = jack._lib
        self._ffi = jack._ffi
        self._client_ptr = c._ptr
        self.cycle_timer.reset()
        self._alloc(c.blocksize)
        c.set_process_callback(self._process)
        c.set_xrun_callback(self._xrun)
        c.set_blocksize_callback(self._blocksize)
        c.set_shutdown_callback(self._shutdown)

    def _alloc(self, frames: int) -> None:
        """Preallocate every array and view the process callback touches (non-RT)."""
        self._frames = int(frames)
        self._ns_per_frame = 1e9 / self.sample_rate_hz
        self._period_ns = int(frames * self._ns_per_frame)
        self._x = np.zeros((frames, self.n_inputs), np.float32)
        self._y = np.zeros((frames, 2), np.float32)
        self._x_cols = [self._x[:, i] for i in range(self.n_inputs)]
        self._y_cols = [self._y[:, k] for k in (0, 1)]
        self._in_ptr = [p._ptr for p in self._port_of_channel]
        self._out_ptr = [p._ptr for p in self._out_ports]
        self._in_addr = [None] * self.n_inputs
        self._in_view = [None] * self.n_inputs
        self._out_addr = [None, None]
        self._out_view = [None, None]

    def start(self) -> None:
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

    def stop(self) -> None:
        if self.client is not None:
            try:
                self.client.deactivate()
            except Exception:
                pass

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
            self.client = None

    @property
    def latency_frames(self) -> int:
        return 0

    def info(self) -> dict:
        d = super().info()
        cyc = self.cycle_timer.summary()
        d.update(client_name=self.client_name, server=self.server,
                 view_rebuilds=self.view_rebuilds,
                 xrun_max_delay_us=float(self.xrun_max_delay_us),
                 cycle_late=cyc["late"],
                 cycle_share={k: cyc[k] for k in ("p50", "p99", "max")})
        return d

    # ---- JACK's threads ---------------------------------------------------------------------
    def _view(self, ptr, frames):
        return np.frombuffer(self._ffi.buffer(ptr, frames * 4), dtype=np.float32)

    def _process(self, frames: int) -> None:
        """JACK process thread: gather, mix, scatter.  No arrays are allocated per period."""
        since = self._lib.jack_frames_since_cycle_start(self._client_ptr)
        t_cycle = perf_counter_ns() - int(since * self._ns_per_frame)
        if frames != self._frames:  # cannot happen after the blocksize callback; stay safe
            return
        if not self.runner._audio_thread_ready:
            # jackd owns this thread's scheduling (its own SCHED_FIFO); only note it
            self.runner.enter_foreign_audio_thread("JACK process thread")
        get = self._lib.jack_port_get_buffer
        addr, view, cols = self._in_addr, self._in_view, self._x_cols
        for i, p in enumerate(self._in_ptr):
            buf = get(p, frames)
            if buf != addr[i]:
                addr[i] = buf
                view[i] = self._view(buf, frames)
                self.view_rebuilds += 1
            np.copyto(cols[i], view[i])
        self.runner.process(self._x, self._y)
        oaddr, oview = self._out_addr, self._out_view
        for k, p in enumerate(self._out_ptr):
            buf = get(p, frames)
            if buf != oaddr[k]:
                oaddr[k] = buf
                oview[k] = self._view(buf, frames)
                self.view_rebuilds += 1
            np.copyto(oview[k], self._y_cols[k])
        self.cycle_timer.record(t_cycle, perf_counter_ns(), t_cycle + self._period_ns)

    def _xrun(self, delayed_usecs: float) -> None:
        # JACK's notification thread (not the process thread)
        self.xruns += 1
        if delayed_usecs > self.xrun_max_delay_us:
            self.xrun_max_delay_us = delayed_usecs

    def _blocksize(self, blocksize: int) -> None:
        # JACK calls this outside the process cycle: reallocating here is allowed.
        self._alloc(blocksize)

    def _shutdown(self, status, reason) -> None:
        self.lost = f"JACK server shut down: {reason}"
