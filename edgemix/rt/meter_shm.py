"""Meters from the audio side to the control side, through shared memory (issue 12, item 7).

The audio thread publishes the console's meters after every block into one preallocated
``multiprocessing.shared_memory`` block; the control process (the desk's ``/meters``, the
web surface) reads them whenever it likes.  No server code and no lock in the audio
process: the writer is one kernel call that copies a few hundred bytes between two
increments of a sequence number (a seqlock, like the parameter mailbox of
:mod:`edgemix.rt.control_process`).  A reader copies the block and keeps the copy only if
the number was even and unchanged across the copy; otherwise it tries again, a few times,
and then keeps its last good frame.  The writer never waits for a reader, any number of
readers may read, and a reader that stalls costs only itself.

What is published, raw (the reader turns it into dB; ``-inf`` is silence):

* per channel (``CHANNEL_METERS``): the pre-fader sample peak (IEC 60268-18 return), the
  pre-fader RMS (300 ms), the gain reduction of compressor plus gate (dB, >= 0) and the
  gain-sharing automixer's gain (dB, 0 = unity);
* the master (``MASTER_METERS``): sample peak L/R (held, falling), the true-peak maximum
  since reset (BS.1770-4 Annex 2), loudness momentary / short-term / integrated and the
  loudness range (BS.1770-4, EBU Tech 3341/3342), the stereo correlation, and the
  limiter's gain reduction now;
* the console's sample clock at the end of the block and the publisher's
  ``CLOCK_MONOTONIC`` time in ns (``time.perf_counter_ns`` on Linux), so a reader can tell
  how fresh a frame is and a benchmark can time it to the browser.

Fences: across processes no GIL hand-over orders memory, and aarch64 reorders stores, so
both sides fence (LLVM ``fence seq_cst``) between the sequence number and the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from time import perf_counter_ns

import numpy as np

from edgemix.dsp._jit import kernel
from edgemix.dsp.meters import CORR_R, PEAK_LEVEL
from edgemix.dsp import loudness as L
from edgemix.dsp.limiter import S_GAIN
from edgemix.dsp.strip import D_METER_MS, D_PEAK, D_YG, D_YL
from edgemix.dsp.truepeak import TP_MAX
from edgemix.rt.ring import _fence_intrinsic

#: Per-channel meters, in the order of the rows of a frame's ``channel`` array (dB).
CHANNEL_METERS = ("peak_db", "rms_db", "gain_reduction_db", "automix_gain_db")
#: Master meters, in the order of a frame's ``master`` values.
MASTER_METERS = ("peak_l_db", "peak_r_db", "true_peak_dbtp", "momentary_lufs",
                 "short_term_lufs", "integrated_lufs", "loudness_range_lu", "correlation",
                 "limiter_gain_reduction_db")
_N_CH_ROWS = len(CHANNEL_METERS)
_N_MASTER = len(MASTER_METERS)
#: Header entries: sample clock, publish time (ns), frames published since the block began.
H_CLOCK, H_TIME_NS, H_PUBLISHED = range(3)
_N_HEAD = 3
#: Attempts a reader makes before keeping its last frame (a copy takes well under a
#: microsecond, a publish about as long, so two in a row are already rare).
READ_TRIES = 8
#: Names of the blocks this process's writers created (a reader here must not untrack them).
_CREATED_HERE: set[str] = set()


def _layout(n_channels: int) -> tuple[dict, int]:
    sizes = [("seq", 8), ("head", _N_HEAD * 8), ("master", _N_MASTER * 8),
             ("channel", _N_CH_ROWS * n_channels * 8)]
    offset, at = {}, 0
    for name, size in sizes:
        offset[name] = at
        at += size
    return offset, at


def _arrays(buf, n_channels: int) -> dict:
    o, _ = _layout(n_channels)
    return dict(seq=np.ndarray((1,), np.int64, buf, o["seq"]),
                head=np.ndarray((_N_HEAD,), np.int64, buf, o["head"]),
                master=np.ndarray((_N_MASTER,), np.float64, buf, o["master"]),
                channel=np.ndarray((_N_CH_ROWS, n_channels), np.float64, buf, o["channel"]))


@kernel
def _publish(seq, head, master, channel, dyn, automix_db, peak, tp, loud, corr, lim_s,
             clock, now_ns):
    """Audio thread: copy the console's meter state between two increments of ``seq``."""
    s = seq[0]
    seq[0] = s + 1  # odd: writing
    _fence_intrinsic()
    for c in range(channel.shape[1]):
        channel[0, c] = dyn[D_PEAK, c]
        channel[1, c] = dyn[D_METER_MS, c]
        channel[2, c] = dyn[D_YL, c] - dyn[D_YG, c]
        channel[3, c] = automix_db[c]
    master[0] = peak[0, PEAK_LEVEL]
    master[1] = peak[1, PEAK_LEVEL]
    master[2] = max(tp[0, TP_MAX], tp[1, TP_MAX])
    master[3] = loud[L.IDX_MOMENTARY_LUFS]
    master[4] = loud[L.IDX_SHORT_TERM_LUFS]
    master[5] = loud[L.IDX_INTEGRATED_LUFS]
    master[6] = loud[L.IDX_LRA_LU]
    master[7] = corr[CORR_R]
    master[8] = lim_s[S_GAIN]
    head[H_CLOCK] = clock[0]
    head[H_TIME_NS] = now_ns
    head[H_PUBLISHED] += 1
    _fence_intrinsic()
    seq[0] = s + 2  # even: complete


@kernel
def _read(seq, head, master, channel, d_head, d_master, d_channel, tries):
    """Reader: copy a complete frame into ``d_*``; its (even) sequence number, or -1."""
    for _ in range(tries):
        s = seq[0]
        if s % 2 == 1:
            continue
        _fence_intrinsic()
        for i in range(head.shape[0]):
            d_head[i] = head[i]
        for i in range(master.shape[0]):
            d_master[i] = master[i]
        for r in range(channel.shape[0]):
            for c in range(channel.shape[1]):
                d_channel[r, c] = channel[r, c]
        _fence_intrinsic()
        if seq[0] == s:
            return s
    return -1


def _db(lin, power: bool = False) -> float:
    if not lin > 0.0:
        return -math.inf
    return (10.0 if power else 20.0) * math.log10(lin)


@dataclass(frozen=True)
class MeterFrame:
    """One consistent set of meter readings (dB; ``-inf`` for silence).

    ``channel[name]`` is a tuple with one value per channel (0-based), ``master[name]`` a
    float; ``seq`` grows with every publish (even numbers), ``sample_clock`` is the
    console's frame count at the end of the block, ``published_ns`` the audio side's
    ``CLOCK_MONOTONIC`` time of the publish."""

    seq: int
    sample_clock: int
    published_ns: int
    channel: dict
    master: dict

    def to_json(self) -> dict:
        """JSON-ready: ``-inf`` (silence) and any non-finite value become None."""
        def f(v):
            return round(v, 2) if math.isfinite(v) else None
        return {"seq": self.seq, "sample_clock": self.sample_clock,
                "published_ns": self.published_ns,
                "channel": {k: [f(v) for v in vs] for k, vs in self.channel.items()},
                "master": {k: f(v) for k, v in self.master.items()}}


class _Block:
    """A shared block a process holds: its ``close`` runs also when it is forgotten."""

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class MeterWriter(_Block):
    """Audio process: owns the shared block and publishes ``console``'s meters into it.

    :meth:`publish` belongs to the audio thread (after each ``Console.process``; no
    allocation beyond the time stamp's small integer); :attr:`name` goes to the reader's
    process; :meth:`close` (owner thread, after the stream stopped) releases the block."""

    def __init__(self, console):
        from multiprocessing import shared_memory
        self.n_channels = console.n_channels
        _, nbytes = _layout(self.n_channels)
        self._shm = shared_memory.SharedMemory(create=True, size=nbytes)
        self.name = self._shm.name
        _CREATED_HERE.add(self.name)
        self._a = _arrays(self._shm.buf, self.n_channels)
        self._a["seq"][:] = 0
        self._a["head"][:] = 0
        self._a["master"][:] = 0.0
        self._a["channel"][:] = 0.0
        self.bind(console)

    def bind(self, console) -> None:
        """Read from ``console``'s live meter state (its arrays, by reference)."""
        if console.n_channels != self.n_channels:
            raise ValueError(f"a meter block for {self.n_channels} channels cannot carry "
                             f"a console of {console.n_channels}")
        src = console.meter_state()
        a = self._a
        self._args = (a["seq"], a["head"], a["master"], a["channel"], src.dyn,
                      src.automix_gains_db, src.peak, src.true_peak, src.loudness,
                      src.correlation, src.limiter, src.clock)

    def publish(self) -> None:
        """Audio thread: one kernel call, never waits."""
        a = self._args
        _publish(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11],
                 perf_counter_ns())

    def warmup(self) -> None:
        """Compile the writer's and the reader's kernels (publishes one frame)."""
        self.publish()
        MeterReader._compile(self.n_channels)

    @property
    def published(self) -> int:
        return int(self._a["head"][H_PUBLISHED]) if self._a is not None else 0

    def close(self) -> None:
        if self._shm is not None:
            self._args = ()
            self._a = None
            self._shm.close()
            self._shm.unlink()
            _CREATED_HERE.discard(self.name)
            self._shm = None


class MeterReader(_Block):
    """Control process (or any process): attach to a :class:`MeterWriter`'s block by name
    and read consistent frames.  One reader per thread (it keeps its own scratch)."""

    def __init__(self, name: str, n_channels: int):
        from multiprocessing import resource_tracker, shared_memory
        self.n_channels = int(n_channels)
        self._shm = shared_memory.SharedMemory(name=name)
        import multiprocessing
        # a spawned child shares its parent's tracker (see edgemix.rt.control_process)
        if name not in _CREATED_HERE and multiprocessing.parent_process() is None:
            # the audio process owns (and unlinks) the block; this one must not (Python
            # 3.11 registers an attached block with the resource tracker as if created)
            resource_tracker.unregister(self._shm._name, "shared_memory")  # noqa: SLF001
        _, nbytes = _layout(self.n_channels)
        if self._shm.size < nbytes:
            self._shm.close()
            raise ValueError(f"meter block {name!r} is too small for {n_channels} channels")
        self._a = _arrays(self._shm.buf, self.n_channels)
        self._head = np.zeros(_N_HEAD, np.int64)
        self._master = np.zeros(_N_MASTER)
        self._channel = np.zeros((_N_CH_ROWS, self.n_channels))
        self._last: MeterFrame | None = None
        self.torn = 0  # reads that kept the last frame because the writer was busy

    @staticmethod
    def _compile(n_channels: int) -> None:
        z = np.zeros(1, np.int64)
        _read(z, np.zeros(_N_HEAD, np.int64), np.zeros(_N_MASTER),
              np.zeros((_N_CH_ROWS, n_channels)), np.zeros(_N_HEAD, np.int64),
              np.zeros(_N_MASTER), np.zeros((_N_CH_ROWS, n_channels)), 1)

    @property
    def seq(self) -> int:
        """The writer's sequence number now (changes with every publish)."""
        return int(self._a["seq"][0])

    def read(self) -> MeterFrame | None:
        """The newest complete frame; the last one when the writer was busy every try;
        None before the first publish."""
        a = self._a
        if a["seq"][0] == 0:
            return None
        if self._last is not None and int(a["seq"][0]) == self._last.seq:
            return self._last
        s = _read(a["seq"], a["head"], a["master"], a["channel"], self._head, self._master,
                  self._channel, READ_TRIES)
        if s < 0:
            self.torn += 1
            return self._last
        ch, m = self._channel, self._master
        n = self.n_channels
        channel = {
            "peak_db": tuple(_db(ch[0, c]) for c in range(n)),
            "rms_db": tuple(_db(ch[1, c], power=True) for c in range(n)),
            "gain_reduction_db": tuple(max(0.0, float(ch[2, c])) for c in range(n)),
            "automix_gain_db": tuple(float(ch[3, c]) for c in range(n)),
        }
        master = {
            "peak_l_db": _db(m[0]), "peak_r_db": _db(m[1]), "true_peak_dbtp": _db(m[2]),
            "momentary_lufs": float(m[3]), "short_term_lufs": float(m[4]),
            "integrated_lufs": float(m[5]), "loudness_range_lu": float(m[6]),
            "correlation": float(m[7]), "limiter_gain_reduction_db": (max(0.0, -_db(m[8])) if m[8] > 0.0
                                          else 0.0),
        }
        self._last = MeterFrame(int(s), int(self._head[H_CLOCK]), int(self._head[H_TIME_NS]),
                                channel, master)
        return self._last

    def close(self) -> None:
        if self._shm is not None:
            self._a = None
            self._shm.close()
            self._shm = None
