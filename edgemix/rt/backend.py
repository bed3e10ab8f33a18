"""What every audio backend shares: one small interface and the errors it raises.

A backend moves audio between a device (or files) and the runner.  The runner hands itself
to :meth:`Backend.open`; the backend's audio thread then calls ``runner.process(x, out)``
once per block with ``x`` a ``(frames, n_inputs)`` float32 C-contiguous array and ``out`` a
``(frames, 2)`` float32 C-contiguous array that the runner fills (the stereo mix).

Lifecycle (owner thread): ``open(runner)`` -> ``start()`` -> ... -> ``stop()`` -> ``close()``.
``finished`` becomes True when a finite source (files, a synthetic session) has played out;
``lost`` holds a one-line reason when the device went away (the runner retries).
"""
from __future__ import annotations

import logging

log = logging.getLogger("edgemix.rt")


class DeviceError(ValueError):
    """An audio device or server cannot be used; the message is one line naming the fix."""


class Backend:
    """Base class.  Subclasses set ``name`` and implement open/start/stop/close."""

    name = "base"
    #: True for a backend that steps the control path itself, synchronously between blocks
    #: at audio time (the offline backends: offline == live stays exact); False for a live
    #: one, whose control path runs on its own clock (the control process or thread).
    drives_control = False

    def __init__(self, n_inputs: int, sample_rate_hz: float, block_size: int):
        self.n_inputs = int(n_inputs)
        self.sample_rate_hz = float(sample_rate_hz)
        self.block_size = int(block_size)
        self.xruns = 0
        self.finished = False
        self.lost: str | None = None
        self.runner = None

    @property
    def latency_frames(self) -> int:
        """Frames this backend adds between an input sample and the output (its buffers),
        not counting the device's own converters or the console's lookahead."""
        return 0

    @property
    def device_latency_frames(self) -> int:
        """Latency the device or audio API reports beyond ``latency_frames`` (converters,
        driver buffers); 0 where the backend works on the server's own buffers."""
        return 0

    def open(self, runner) -> None:
        self.runner = runner

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def guarded(self, work) -> None:
        """Run ``work``, a backend's audio-thread body.  An exception there (a bug, never a
        user's mistake) must not leave a dead thread behind a stream that only plays
        silence: it marks the backend ``lost`` with a one-line reason, so the runner says
        so and re-opens, and the traceback goes to the debug log."""
        try:
            work()
        except Exception as e:
            log.debug("audio thread of %s stopped", self.name, exc_info=True)
            self.lost = f"the {self.name} audio thread stopped ({e.__class__.__name__}: {e})"

    def info(self) -> dict:
        """Machine-readable description (for ``--json``)."""
        return {"backend": self.name, "sample_rate_hz": self.sample_rate_hz,
                "block_size": self.block_size, "n_inputs": self.n_inputs,
                "latency_frames": self.latency_frames, "xruns": self.xruns}
