"""A dummy JACK server, a compiled loop player and port wiring: for ``edgemix profile``
on a machine without a sound card (and for the tests and benchmarks, tests/jack_helpers.py).

The server runs ``jackd -d dummy``: the dummy driver keeps real time without a sound card.
The player (:class:`LoopPlayer`) loops a multichannel session into its output ports from a
compiled process callback (a Numba ``cfunc`` with the JACK backend's own intrinsics), so no
Python runs in the server's cycle and the player cannot be the client that makes it late.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import subprocess
import time
import uuid

import numpy as np
from numba import carray, cfunc, types

from edgemix.rt.jack_cycle import _address, _float32s, _get_buffer, _int64s, _table, _voidptr


def have_jackd() -> bool:
    """Whether a ``jackd`` is on the PATH (Debian: jackd2)."""
    return shutil.which("jackd") is not None


def server_running(name: str | None = None) -> bool:
    """Whether a JACK server ``name`` (None: the default one) answers."""
    try:
        from edgemix.rt.jack_backend import import_jack
        jack = import_jack()
        c = jack.Client("edgemix-probe", no_start_server=True, servername=name)
    except Exception:
        return False
    c.close()
    return True


def stop_process(proc) -> None:
    """Terminate ``proc``; kill it if it has not gone within 5 s."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def jackd_command(name, rate=48000, period=64, capture=16, playback=2, sync=True,
                  rt_priority=80) -> list[str]:
    """The command line of a dummy JACK server named ``name``."""
    prio = ["-R", "-P", str(rt_priority)] if rt_priority is not None else []
    return ["jackd"] + prio + (["-S"] if sync else []) + [
        "-n", name, "-d", "dummy", "-r", str(rate), "-p", str(period), "-C", str(capture),
        "-P", str(playback)]


@contextlib.contextmanager
def jack_server(rate=48000, period=64, capture=16, playback=2, sync=True, timeout_s=15.0,
                rt_priority=80, name=None, prefix="edgemix"):
    """Start a dummy JACK server with a unique name (``prefix-<hex>``, or ``name``); yield
    the name; always kill it.

    ``rt_priority``: jackd's SCHED_FIFO priority (its clients run 5 below), None for jackd's
    own default."""
    import jack
    jack.set_error_function(lambda msg: None)  # libjack's "cannot connect" while we poll
    name = name or f"{prefix}-{uuid.uuid4().hex[:8]}"
    args = jackd_command(name, rate, period, capture, playback, sync, rt_priority)
    env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        t_end = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jackd exited ({proc.returncode}): "
                                   f"{proc.stderr.read().decode(errors='replace')[-500:]}")
            try:
                c = jack.Client("probe", no_start_server=True, servername=name)
                c.close()
                break
            except jack.JackError:
                if time.monotonic() > t_end:
                    raise RuntimeError("jackd did not come up in time")
                time.sleep(0.1)
        yield name
    finally:
        stop_process(proc)
        proc.stderr.close()


class LoopPlayer:
    """A :class:`Player` that loops, with a compiled process callback (Numba ``cfunc``, the
    JACK backend's own intrinsics): no Python in JACK's cycle, so a benchmark's player cannot
    be the client that makes the server late.  Silence until ``start()``."""

    def __init__(self, server: str, audio: np.ndarray, name="player"):
        import jack
        self.audio = np.ascontiguousarray(audio, dtype=np.float32)
        self.client = jack.Client(name, no_start_server=True, servername=server)
        self.ports = [self.client.outports.register(f"out_{i + 1}")
                      for i in range(self.audio.shape[1])]
        ffi, lib = jack._ffi, jack._lib
        self._ports = np.array([int(ffi.cast("uintptr_t", p._ptr)) for p in self.ports],
                               np.int64)
        self._state = np.zeros(2, np.int64)  # [playing, position]
        get_buffer = ctypes.cast(ctypes.CDLL(ctypes.util.find_library("jack")
                                             or "libjack.so.0").jack_port_get_buffer,
                                 ctypes.c_void_p).value
        self._table = np.array([get_buffer, self._ports.ctypes.data, len(self.ports),
                                self.audio.ctypes.data, self.audio.shape[0],
                                self._state.ctypes.data], np.int64)
        jack._check(lib.jack_set_process_callback(
            self.client._ptr, ffi.cast("JackProcessCallback", _loop_play.address),
            ffi.cast("void *", self._table.ctypes.data)), "cannot set the player's callback")
        self.client.activate()

    def start(self):
        self._state[0] = 1

    def close(self):
        self.client.deactivate()
        self.client.close()


@cfunc(types.int32(types.uint32, types.voidptr), cache=True)
def _loop_play(nframes, arg):
    """The compiled callback of :class:`LoopPlayer`; ``arg``: its table (get_buffer, ports,
    number of ports, audio, audio frames, state)."""
    t = carray(_table(arg), (6,))
    n_ports, length = t[2], t[4]
    ports = carray(_int64s(t[1]), (n_ports,))
    audio = carray(_float32s(t[3]), (length, n_ports))
    state = carray(_int64s(t[5]), (2,))
    pos = state[1]
    for k in range(n_ports):
        buf = carray(_float32s(_address(_get_buffer(t[0], _voidptr(ports[k]), nframes))),
                     (nframes,))
        q = pos
        for n in range(nframes):
            buf[n] = audio[q, k] if state[0] else 0.0
            q += 1
            if q == length:
                q = 0
    if state[0]:
        state[1] = (pos + nframes) % length
    return 0


def connect(client, src, dst, timeout_s=30.0) -> None:
    """``client.connect(src, dst)``, retried until it takes: a client's ports are visible
    as soon as it registers them, but JACK refuses connections to them until the client is
    activated (edgemix sets up its rings and worker in between)."""
    import jack
    t_end = time.monotonic() + timeout_s
    while True:
        try:
            client.connect(src, dst)
            return
        except jack.JackError:
            if time.monotonic() > t_end:
                raise
            time.sleep(0.05)


def wait_for_ports(server: str, pattern: str, count: int, timeout_s=30.0, proc=None):
    """Wait until ``count`` ports match ``pattern`` on ``server``; return their names."""
    import jack
    c = jack.Client("waiter", no_start_server=True, servername=server)
    try:
        t_end = time.monotonic() + timeout_s
        while True:
            names = [p.name for p in c.get_ports(pattern)]
            if len(names) >= count:
                return names
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"edgemix exited early ({proc.returncode}): "
                                   f"{proc.stderr.read().decode(errors='replace')[-1500:]}")
            if time.monotonic() > t_end:
                raise RuntimeError(f"no ports matching {pattern!r} after {timeout_s} s: {names}")
            time.sleep(0.1)
    finally:
        c.close()
