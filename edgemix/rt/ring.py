"""A single-producer single-consumer ring of audio frames, for the recorder.

The audio thread pushes each block's inputs and mix side by side into one preallocated
``(capacity, channels)`` float32 ring with one kernel call; a writer thread drains it.
A block that does not fit is dropped whole and counted (frames and blocks), never waited
for: the audio path never blocks (DESIGN.md, real-time rules).

Index state lives in an int64 array ``idx``: ``[written, read, dropped_frames,
dropped_blocks]``, running totals (never wrapped), so ``written - read`` is the fill.
"""
from __future__ import annotations

import numpy as np
from numba.core import types
from numba.extending import intrinsic

from edgemix.dsp._jit import kernel

I_WRITTEN, I_READ, I_DROPPED_FRAMES, I_DROPPED_BLOCKS = range(4)


@intrinsic
def _fence_intrinsic(typingctx):
    """A full memory barrier (LLVM ``fence seq_cst``: ``mfence`` on x86, ``dmb ish`` on
    aarch64)."""
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.none(), codegen


@kernel
def _memory_fence():
    """Order every load and store before this call against every one after it.

    The ring's consumer may be another process (the control process,
    :mod:`edgemix.rt.control_process`), where no GIL hand-over orders memory, and aarch64
    reorders freely: the producer fences between storing the frames and publishing
    ``written``, the consumer between reading ``written`` and reading the frames, and
    between reading the frames and releasing them (``read``).
    """
    _fence_intrinsic()


# nogil=False: within one process the GIL hand-over is a barrier too; the explicit fence
# makes the ring safe across processes.  The kernel is a few microseconds.
@kernel(nogil=False)
def _ring_push(ring, idx, a, b, n_frames):
    """Append ``n_frames`` rows of ``[a | b]`` (each ``(frames, ch)``) or drop and count."""
    cap = ring.shape[0]
    w = idx[I_WRITTEN]
    if cap - (w - idx[I_READ]) < n_frames:
        idx[I_DROPPED_FRAMES] += n_frames
        idx[I_DROPPED_BLOCKS] += 1
        return False
    na = a.shape[1]
    nb = b.shape[1]
    for n in range(n_frames):
        row = (w + n) % cap
        for c in range(na):
            ring[row, c] = a[n, c]
        for c in range(nb):
            ring[row, na + c] = b[n, c]
    _fence_intrinsic()  # the frames are visible before the index that publishes them
    idx[I_WRITTEN] = w + n_frames
    return True


class FrameRing:
    """``capacity`` frames of ``channels`` float32; one producer, one consumer."""

    def __init__(self, capacity_frames: int, channels: int, *, data=None, idx=None):
        """``data`` (``(capacity, channels)`` float32) and ``idx`` (``(4,)`` int64) may be
        given, e.g. views of shared memory; they are zeroed."""
        if capacity_frames < 1 or channels < 1:
            raise ValueError("a frame ring needs at least one frame and one channel")
        self.capacity = int(capacity_frames)
        self.channels = int(channels)
        self.data = np.zeros((self.capacity, self.channels), dtype=np.float32) \
            if data is None else data
        self.idx = np.zeros(4, dtype=np.int64) if idx is None else idx
        if self.data.shape != (self.capacity, self.channels) or self.idx.shape != (4,):
            raise ValueError("ring arrays of the wrong shape")
        self.data[:] = 0.0
        self.idx[:] = 0

    def push(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Producer: append ``a`` and ``b`` side by side (``(frames, ca)``, ``(frames, cb)``,
        ``ca + cb == channels``).  Returns False (and counts) when the block was dropped."""
        return _ring_push(self.data, self.idx, a, b, a.shape[0])

    def warmup(self, ca: int) -> None:
        """Compile the push kernel for float32 C-contiguous blocks (pushes nothing)."""
        z = np.zeros((0, ca), np.float32)
        _ring_push(self.data, self.idx, z, np.zeros((0, self.channels - ca), np.float32), 0)

    @property
    def available(self) -> int:
        return int(self.idx[I_WRITTEN] - self.idx[I_READ])

    def read_regions(self):
        """Consumer: up to two contiguous views holding every frame written so far."""
        r, w = int(self.idx[I_READ]), int(self.idx[I_WRITTEN])
        if w == r:
            return ()
        _memory_fence()  # read the frames only after the index that published them
        start = r % self.capacity
        n = w - r
        first = min(n, self.capacity - start)
        views = (self.data[start:start + first],)
        if n > first:
            views += (self.data[:n - first],)
        return views

    def advance(self, frames: int) -> None:
        """Consumer: release ``frames`` frames after reading them."""
        _memory_fence()  # done reading before the producer may overwrite them
        self.idx[I_READ] += frames

    @property
    def dropped_frames(self) -> int:
        return int(self.idx[I_DROPPED_FRAMES])

    @property
    def dropped_blocks(self) -> int:
        return int(self.idx[I_DROPPED_BLOCKS])

    @property
    def written(self) -> int:
        return int(self.idx[I_WRITTEN])
