"""Per-block timing: a preallocated ring of (start, end, deadline) written by the audio side.

Following sushi's ``--timing-statistics``: the cost of each block is kept as a share of the
time it was allowed (its deadline), and read out as p50/p99/max from another thread.  The
audio side only stores three integers and bumps a counter in arrays allocated up front; the
reader copies the ring and does the statistics, so the audio path never waits on it.
"""
from __future__ import annotations

import numpy as np


class BlockTimer:
    """Ring of the last ``capacity`` blocks' timings in nanoseconds (``time.perf_counter_ns``).

    ``record`` belongs to the audio thread; ``summary`` may be called from any thread (it
    copies, so a block written meanwhile can at worst be counted in the next summary).
    """

    def __init__(self, capacity: int = 1 << 16):
        if capacity < 1 or capacity & (capacity - 1):
            raise ValueError(f"timer capacity {capacity}: use a power of two")
        self.capacity = int(capacity)
        self._mask = self.capacity - 1
        self._t = np.zeros((self.capacity, 3), dtype=np.int64)  # start, end, deadline
        # [blocks recorded, late blocks (end > deadline)]
        self._count = np.zeros(2, dtype=np.int64)

    def record(self, start_ns: int, end_ns: int, deadline_ns: int) -> None:
        """Audio thread: store one block's timing (no allocation beyond the int arguments)."""
        c = self._count
        row = self._t[c[0] & self._mask]
        row[0] = start_ns
        row[1] = end_ns
        row[2] = deadline_ns
        if end_ns > deadline_ns:
            c[1] += 1
        c[0] += 1

    def reset(self) -> None:
        self._count[:] = 0

    @property
    def blocks(self) -> int:
        return int(self._count[0])

    @property
    def late(self) -> int:
        """Blocks whose processing ended after their deadline."""
        return int(self._count[1])

    def shares(self) -> np.ndarray:
        """Processing time / allowed time of the newest ``min(blocks, capacity)`` blocks."""
        n = min(int(self._count[0]), self.capacity)
        t = self._t.copy()[:n] if n < self.capacity else self._t.copy()
        budget = (t[:, 2] - t[:, 0]).astype(np.float64)
        busy = (t[:, 1] - t[:, 0]).astype(np.float64)
        ok = budget > 0
        return busy[ok] / budget[ok]

    def summary(self) -> dict:
        """``{'blocks', 'late', 'p50', 'p99', 'max', 'mean'}``; shares of the deadline."""
        s = self.shares()
        if s.size == 0:
            return {"blocks": self.blocks, "late": self.late, "p50": 0.0, "p99": 0.0,
                    "max": 0.0, "mean": 0.0}
        p50, p99 = np.percentile(s, [50.0, 99.0])
        return {"blocks": self.blocks, "late": self.late, "p50": float(p50),
                "p99": float(p99), "max": float(s.max()), "mean": float(s.mean())}
