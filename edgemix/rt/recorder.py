"""The recorder: every input and the mix to WAV, on a writer thread, never in the audio path.

The audio side calls :meth:`Recorder.push` once per block: one kernel call copies the block's
inputs and mix into a preallocated ring (:class:`edgemix.rt.ring.FrameRing`).  A writer
thread drains the ring to ``inputs.wav`` (one channel per input, in input order) and
``mix.wav`` (stereo) through soundfile, as 32-bit float so the recording is bit-exact.
If the disk falls behind and the ring fills, whole blocks are dropped and counted
(``dropped_frames``); the count is in the stats and in a warning at close, never silent.
"""
from __future__ import annotations

import logging
import pathlib
import threading

import numpy as np

from edgemix.rt.ring import FrameRing

log = logging.getLogger("edgemix.rt")


class Recorder:
    """Record ``n_inputs`` inputs and the stereo mix into ``directory``.

    ``push`` is for the audio thread only; ``open``/``close``/``stats`` for the thread that
    owns the run.  ``capacity_s`` of audio can queue up before blocks are dropped.
    """

    def __init__(self, directory, n_inputs: int, sample_rate_hz: float,
                 capacity_s: float = 4.0, flush_ms: float = 50.0):
        if n_inputs < 1:
            raise ValueError("the recorder needs at least one input")
        if capacity_s <= 0:
            raise ValueError(f"recorder capacity {capacity_s} s: use a positive number")
        self.directory = pathlib.Path(directory)
        self.n_inputs = int(n_inputs)
        self.sample_rate_hz = int(sample_rate_hz)
        self.ring = FrameRing(int(capacity_s * sample_rate_hz), self.n_inputs + 2)
        self.flush_s = flush_ms / 1000.0
        self.frames_written = 0
        self._stop = threading.Event()
        self._thread = None
        self._files = None
        self.error = None

    @property
    def inputs_path(self) -> pathlib.Path:
        return self.directory / "inputs.wav"

    @property
    def mix_path(self) -> pathlib.Path:
        return self.directory / "mix.wav"

    def open(self) -> None:
        """Create the files, compile the push kernel and start the writer thread."""
        import soundfile as sf
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._files = (
                sf.SoundFile(self.inputs_path, "w", self.sample_rate_hz, self.n_inputs,
                             subtype="FLOAT", format="WAV"),
                sf.SoundFile(self.mix_path, "w", self.sample_rate_hz, 2, subtype="FLOAT",
                             format="WAV"))
        except (OSError, RuntimeError) as e:
            raise ValueError(f"{self.directory}: cannot create the recording ({e}): "
                             "choose a writable folder") from None
        self.ring.warmup(self.n_inputs)
        self._stop.clear()
        self._thread = threading.Thread(target=self._writer, name="edgemix-recorder",
                                        daemon=True)
        self._thread.start()

    @property
    def native_id(self) -> int | None:
        """The writer thread's kernel thread id while it runs (the runner sets its priority:
        it takes the GIL between its writes, see :mod:`edgemix.rt.rtsched`)."""
        return self._thread.native_id if self._thread is not None else None

    def push(self, inputs: np.ndarray, mix: np.ndarray) -> bool:
        """Audio thread: queue one block (``(frames, n_inputs)`` and ``(frames, 2)`` float32
        C-contiguous).  Never blocks; returns False when the block had to be dropped."""
        return self.ring.push(inputs, mix)

    def _drain(self) -> int:
        n_done = 0
        fi, fm = self._files
        for view in self.ring.read_regions():
            fi.write(view[:, :self.n_inputs])
            fm.write(view[:, self.n_inputs:])
            self.ring.advance(view.shape[0])
            n_done += view.shape[0]
        self.frames_written += n_done
        return n_done

    def _writer(self) -> None:
        try:
            while not self._stop.wait(self.flush_s):
                self._drain()
            self._drain()
        except Exception as e:  # a full disk must not take the audio path down
            self.error = f"{e.__class__.__name__}: {e}"
            log.error("recorder stopped writing: %s", self.error)

    def close(self) -> dict:
        """Stop the writer after it has written every queued frame; close valid WAVs."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self._files is not None:
            for f in self._files:
                f.close()
            self._files = None
        st = self.stats()
        if st["dropped_frames"]:
            log.warning("recorder dropped %d frames in %d blocks (the disk fell behind): "
                        "use a faster disk or a larger recorder capacity",
                        st["dropped_frames"], st["dropped_blocks"])
        return st

    def stats(self) -> dict:
        return {"frames_written": int(self.frames_written),
                "frames_pushed": self.ring.written,
                "dropped_frames": self.ring.dropped_frames,
                "dropped_blocks": self.ring.dropped_blocks,
                "error": self.error,
                "inputs_path": str(self.inputs_path), "mix_path": str(self.mix_path)}
