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

from edgemix.dsp._jit import kernel

I_WRITTEN, I_READ, I_DROPPED_FRAMES, I_DROPPED_BLOCKS = range(4)


# nogil=False on purpose: the kernel stores the frames, then publishes ``written``.  Holding
# the GIL while it runs means the Python reader can never observe the new index before the
# data (the GIL hand-over is a full memory barrier, which matters on aarch64's weak
# ordering); the kernel is a few microseconds, so holding the GIL costs nothing.
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
    idx[I_WRITTEN] = w + n_frames
    return True


class FrameRing:
    """``capacity`` frames of ``channels`` float32; one producer, one consumer."""

    def __init__(self, capacity_frames: int, channels: int):
        if capacity_frames < 1 or channels < 1:
            raise ValueError("a frame ring needs at least one frame and one channel")
        self.capacity = int(capacity_frames)
        self.channels = int(channels)
        self.data = np.zeros((self.capacity, self.channels), dtype=np.float32)
        self.idx = np.zeros(4, dtype=np.int64)

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
        start = r % self.capacity
        n = w - r
        first = min(n, self.capacity - start)
        views = (self.data[start:start + first],)
        if n > first:
            views += (self.data[:n - first],)
        return views

    def advance(self, frames: int) -> None:
        """Consumer: release ``frames`` frames after reading them."""
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
