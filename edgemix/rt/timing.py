"""Per-block timing: a preallocated ring of (start, end, deadline) written by the audio side.

Following sushi's ``--timing-statistics``: the cost of each block is kept as a share of the
time it was allowed (its deadline), and read out as p50/p99/max from another thread.  The
audio side only stores three integers and bumps a counter in arrays allocated up front; the
reader copies the ring and does the statistics, so the audio path never waits on it.
"""
from __future__ import annotations

import numpy as np


def _oldest_first(ring: np.ndarray, written: int) -> np.ndarray:
    """The rows a ring of ``len(ring)`` (a power of two) holds after ``written`` writes,
    oldest first (a copy)."""
    if written <= ring.shape[0]:
        return ring[:written].copy()
    k = written & (ring.shape[0] - 1)
    return np.concatenate([ring[k:], ring[:k]])


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

    def rows(self) -> np.ndarray:
        """``(blocks kept, 3)`` int64 ns (start, end, deadline), oldest first (a copy)."""
        return _oldest_first(self._t, int(self._count[0]))

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


#: Percentiles every stage summary reports.
PERCENTILES = (50.0, 95.0, 99.0, 99.9)


def stats_ms(ns) -> dict:
    """p50/p95/p99/p99.9/max/mean of durations given in ns, in ms (empty -> zeros)."""
    ns = np.asarray(ns, dtype=np.float64)
    if ns.size == 0:
        return {"n": 0, **{f"p{p:g}_ms": 0.0 for p in PERCENTILES}, "max_ms": 0.0,
                "mean_ms": 0.0}
    q = np.percentile(ns, PERCENTILES) / 1e6
    out = {"n": int(ns.size)}
    out.update({f"p{p:g}_ms": float(v) for p, v in zip(PERCENTILES, q)})
    out["max_ms"] = float(ns.max() / 1e6)
    out["mean_ms"] = float(ns.mean() / 1e6)
    return out


class StageTimer:
    """Per-stage durations (ns) of the last ``capacity`` rounds, one column per stage name.

    Like sushi's ``--timing-statistics``, kept where the work happens: the runner times
    the console inside each block, the control loop each stage of each hop.  ``add``
    (the timed thread) only stores integers into arrays allocated up front; ``summary``
    and ``rows`` copy, from any thread.
    """

    def __init__(self, stages, capacity: int = 1 << 16):
        if capacity < 1 or capacity & (capacity - 1):
            raise ValueError(f"timer capacity {capacity}: use a power of two")
        self.stages = tuple(stages)
        self.capacity = int(capacity)
        self._mask = self.capacity - 1
        self._t = np.zeros((self.capacity, len(self.stages)), np.int64)
        self._count = np.zeros(1, np.int64)
        self._n = len(self.stages)
        self._i = 0

    def add(self, stage: int, ns: int) -> None:
        """The timed thread: add ``ns`` to ``stage`` of the current round (calls add up;
        scalar stores only, no Python objects kept)."""
        self._t[self._i, stage] += ns

    def end(self) -> None:
        """Close the current round; the next one starts at zero."""
        c = self._count
        c[0] += 1
        i = int(c[0]) & self._mask
        self._i = i
        t = self._t
        for j in range(self._n):
            t[i, j] = 0

    def reset(self) -> None:
        self._count[0] = 0
        self._i = 0
        self._t[0] = 0

    @property
    def rounds(self) -> int:
        return int(self._count[0])

    def rows(self) -> np.ndarray:
        """``(rounds kept, stages)`` int64 ns, oldest first (a copy)."""
        return _oldest_first(self._t, int(self._count[0]))

    def summary(self, rows: np.ndarray | None = None) -> dict:
        """``{stage: stats_ms(...)}`` over the rounds kept."""
        rows = self.rows() if rows is None else rows
        return {s: stats_ms(rows[:, i]) for i, s in enumerate(self.stages)}
