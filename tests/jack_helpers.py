"""A real JACK dummy server and two plain JACK clients (player, catcher) for the tests.

The server runs ``jackd -S -n <unique> -d dummy``: the dummy driver keeps real time without
a sound card or real-time privileges.  ``-S`` (synchronous mode) makes the server wait for
every client in a cycle, so a client that is late (this machine is shared) makes the cycle
late -- counted as an xrun -- instead of being skipped; skipped cycles would break the
sample-exact comparison with the offline render that the tests make.  (A test client that
jackd does skip for a cycle shows up as a gap in its frame times; the tests align by
frame time, so such a gap cannot shift the rest of a recording.)

The server runs real-time (``-R -P 80``; jackd2 then runs its clients' process threads at
75): above every thread of an edgemix run (audio 70, control 60), so another edgemix run on
the same machine -- its control thread holds a CPU for milliseconds every hop -- cannot
preempt this server's cycle, as it could at jackd2's default priority 10.

The player writes a known multichannel session to its output ports starting at a JACK
frame time it records; the catcher records its input ports with each cycle's frame time.
With player -> edgemix -> catcher connected (no feedback loop), JACK runs the three in
graph order within each cycle, so the timelines line up by frame time alone.
"""
from __future__ import annotations

import numpy as np

from edgemix.rt import jack_tools
from edgemix.rt.jack_tools import (LoopPlayer, connect, have_jackd, jackd_command,  # noqa: F401
                                   stop_process, wait_for_ports)


def jack_server(*args, **kw):
    """:func:`edgemix.rt.jack_tools.jack_server`, named ``edgemix-test-<hex>``."""
    kw.setdefault("prefix", "edgemix-test")
    return jack_tools.jack_server(*args, **kw)


class _PortBuffers:
    """numpy views of JACK port buffers, rebuilt only when JACK hands out a new address, so a
    test client's process callback allocates nothing (no garbage collection in its cycle)."""

    def __init__(self, ports, frames):
        import jack
        self._get = jack._lib.jack_port_get_buffer
        self._ffi = jack._ffi
        self._ptr = [p._ptr for p in ports]
        self._addr = [None] * len(ports)
        self._view = [None] * len(ports)
        self.frames = frames

    def __getitem__(self, i):
        buf = self._get(self._ptr[i], self.frames)
        if buf != self._addr[i]:
            self._addr[i] = buf
            self._view[i] = np.frombuffer(self._ffi.buffer(buf, self.frames * 4), np.float32)
        return self._view[i]


class Player:
    """A JACK client that plays ``audio`` ((frames, channels) float32) once, from ``start()``."""

    def __init__(self, server: str, audio: np.ndarray, name="player"):
        import jack
        self.audio = np.ascontiguousarray(audio, dtype=np.float32)
        self.client = jack.Client(name, no_start_server=True, servername=server)
        self.ports = [self.client.outports.register(f"out_{i + 1}")
                      for i in range(self.audio.shape[1])]
        self._bufs = _PortBuffers(self.ports, self.client.blocksize)
        self.pos = 0
        self.playing = False
        self.start_frame_time = None
        self.done = False
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames):
        bufs = self._bufs
        if not self.playing or self.done:
            for i in range(len(self.ports)):
                bufs[i].fill(0.0)
            return
        if self.start_frame_time is None:
            self.start_frame_time = self.client.last_frame_time
        n = min(frames, self.audio.shape[0] - self.pos)
        for i in range(len(self.ports)):
            a = bufs[i]
            a[:n] = self.audio[self.pos:self.pos + n, i]
            a[n:] = 0.0
        self.pos += n
        if self.pos >= self.audio.shape[0]:
            self.done = True

    def start(self):
        self.playing = True

    def close(self):
        self.client.deactivate()
        self.client.close()


class Catcher:
    """A JACK client that records its ``channels`` inputs with each cycle's frame time."""

    def __init__(self, server: str, channels: int, seconds: float, rate=48000, name="catcher"):
        import jack
        self.client = jack.Client(name, no_start_server=True, servername=server)
        self.ports = [self.client.inports.register(f"in_{i + 1}") for i in range(channels)]
        cap = int(seconds * rate)
        self.data = np.zeros((cap, channels), np.float32)
        self.times = np.zeros(cap // self.client.blocksize + 1, np.int64)
        self.n_cycles = 0
        self._bufs = _PortBuffers(self.ports, self.client.blocksize)
        self.pos = 0
        self.recording = False
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames):
        if not self.recording or self.pos + frames > self.data.shape[0]:
            return
        self.times[self.n_cycles] = self.client.last_frame_time
        self.n_cycles += 1
        for i in range(len(self.ports)):
            self.data[self.pos:self.pos + frames, i] = self._bufs[i]
        self.pos += frames

    def start(self):
        self.recording = True

    def timeline(self):
        """(JACK frame time of each recorded cycle, the recorded frames)."""
        return self.times[:self.n_cycles].copy(), self.data[:self.pos]

    def close(self):
        self.client.deactivate()
        self.client.close()


