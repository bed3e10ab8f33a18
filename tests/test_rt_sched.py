"""Scheduling around the audio thread: the helper priority band, memory locking, and the JACK
backend's per-cycle timing that tells an xrun edgemix caused from one it did not.

Real threads at real SCHED_FIFO priorities (skipped where the OS does not allow them), the
kernel's own accounting (/proc) for locked memory, and a real ``jackd -d dummy``.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgemix.console import Console
from edgemix.rt import rtsched
from edgemix.rt.backend import Backend
from edgemix.rt.recorder import Recorder
from edgemix.rt.runner import RT_PRIORITY, Runner

from jack_helpers import have_jackd, jack_server

FS = 48000


def _fifo_allowed() -> bool:
    ok = []

    def probe():
        ok.append(rtsched.set_fifo(1).startswith("SCHED_FIFO"))
    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return ok[0]


needs_fifo = pytest.mark.skipif(not _fifo_allowed(), reason="SCHED_FIFO not permitted here")


def test_helper_band_is_below_the_audio_thread_and_above_ordinary():
    for audio in range(0, 100):  # every SCHED_FIFO priority (0: not real-time)
        band = rtsched.helper_priorities(audio)
        if audio < 2:  # no room below the audio thread inside SCHED_FIFO's 1..99
            assert band is None
            continue
        control, helper = band
        assert 1 <= helper <= control < audio
        assert control == min(rtsched.CONTROL_RT_PRIORITY, audio - 1)


class PacedBackend(Backend):
    """A device stand-in: its own thread (SCHED_FIFO through the runner) calls the runner
    once per 64-frame period and samples every thread's scheduling while the stream runs."""

    name = "paced-test"

    def __init__(self, n):
        super().__init__(n, FS, 64)
        self.seen = {}
        self._stop = threading.Event()
        self._t = None

    def start(self):
        self._stop.clear()
        self.owner_tid = threading.get_native_id()
        self._t = threading.Thread(target=self._work, daemon=True)
        self._t.start()

    def _work(self):
        r = self.runner
        r.enter_audio_thread()
        x = np.zeros((64, self.n_inputs), np.float32)
        y = np.zeros((64, 2), np.float32)
        n = 0
        while not self._stop.is_set():
            r.process(x, y)
            n += 1
            if n == 300:  # 0.4 s in: the owner has long set the band
                self.seen = {
                    "audio": rtsched.fifo_priority(),
                    "owner": rtsched.fifo_priority(self.owner_tid),
                    "control": rtsched.fifo_priority(r.control.native_id),
                    "recorder": rtsched.fifo_priority(r.recorder.native_id)}
            time.sleep(64 / FS)

    def stop(self):
        self._stop.set()
        if self._t is not None:
            self._t.join()


class Quiet:
    """A policy with no opinion on anything (NaN): the control thread runs, moves nothing."""

    def __init__(self, n):
        from edgemix import params as P
        self.none = np.full((n, P.N_CH), np.nan)

    def propose(self, snapshot):
        return self.none


def _runner(tmp_path, backend, rt=True):
    con = Console(FS, 64, 2, 1)
    rec = Recorder(tmp_path / "rec", 2, FS, capacity_s=1.0)
    return Runner(con, backend, policy=Quiet(2), recorder=rec, rt_priority=rt, hop_s=0.05)


@needs_fifo
def test_every_python_thread_of_a_live_run_sits_below_the_audio_thread(tmp_path):
    b = PacedBackend(2)
    r = _runner(tmp_path, b)
    st = r.run(duration_s=0.8)
    seen = b.seen
    assert seen["audio"] == RT_PRIORITY and r.audio_priority == RT_PRIORITY
    control, helper = rtsched.helper_priorities(RT_PRIORITY)
    assert seen == {"audio": RT_PRIORITY, "owner": helper, "control": control,
                    "recorder": helper}, seen
    assert f"control SCHED_FIFO {control}" in st["rt_helpers"]
    # the owner (this thread) is back to ordinary scheduling, and nothing stays locked
    assert rtsched.fifo_priority() == 0
    assert st["memory_lock"].startswith(("locked", "not locked"))
    assert _vm_locked_kb() == 0


def test_no_real_time_audio_thread_means_no_real_time_helpers(tmp_path, monkeypatch):
    """A machine that refuses real-time priority (no rtprio limit): the audio thread runs at
    normal priority, and a real-time helper would preempt it, so none is."""
    monkeypatch.setattr(rtsched, "set_fifo", lambda priority, tid=0: "normal priority "
                        "(PermissionError)")
    b = PacedBackend(2)
    r = _runner(tmp_path, b)
    st = r.run(duration_s=0.8)
    assert b.seen["audio"] == 0
    assert b.seen["control"] == b.seen["owner"] == b.seen["recorder"] == 0
    assert "not real-time" in st["rt_helpers"]


def test_rt_off_touches_no_scheduling_and_locks_nothing(tmp_path):
    b = PacedBackend(2)
    r = _runner(tmp_path, b, rt=False)
    st = r.run(duration_s=0.8)
    assert set(b.seen.values()) == {0}
    assert st["rt_helpers"] == st["memory_lock"] == "not requested"


def _vm_locked_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmLck:"):
                return int(line.split()[1])
    return 0


def test_lock_memory_is_what_the_kernel_counts():
    status = rtsched.lock_memory()
    try:
        if status.startswith("locked"):
            # everything resident is locked: at least the interpreter and numpy
            assert _vm_locked_kb() > 10_000
        else:
            assert status.startswith("not locked (") and _vm_locked_kb() == 0
    finally:
        rtsched.unlock_memory()
    assert _vm_locked_kb() == 0


# ---- JACK: a stall of ours is counted where it happens ------------------------------------

class StallingConsole(Console):
    """The real console, stalled once for ``stall_s`` at block ``at`` (a slow block of ours)."""

    def __init__(self, *a, at=None, stall_s=0.0, **kw):
        super().__init__(*a, **kw)
        self.at, self.stall_s, self.calls = at, stall_s, 0

    def process(self, block, out=None, **kw):
        self.calls += 1
        if self.calls == self.at:
            time.sleep(self.stall_s)
        return super().process(block, out=out, **kw)


@pytest.mark.jack
@pytest.mark.skipif(not have_jackd(), reason="jackd not installed (scripts/apt-test.txt)")
def test_a_stall_of_ours_costs_only_the_blocks_it_makes_late():
    """10 ms stuck in our worker (7.5 periods): JACK's compiled callback goes on, plays
    silence for each block not ready when due and counts it, drops the late blocks when
    they come (stale), and every block after the stall is on time again."""
    from edgemix.rt.jack_backend import JackBackend
    period_s = 64 / FS
    with jack_server(rate=FS, period=64, capture=2, playback=2) as server:
        con = StallingConsole(FS, 64, 2, 1, at=750, stall_s=0.010)  # 1 s in
        b = JackBackend(2, FS, 64, server=server, client_name="edgemix-sched-test",
                        ring_blocks=2)
        r = Runner(con, b, rt_priority=True)
        st = r.run(duration_s=2.0)
    # the blocks due while the worker was stuck (10 ms less the 2-period ring), give or
    # take the wake-ups around it; nothing else missed in 2 s, no input lost
    due = 0.010 / period_s - 2
    assert due - 2 <= st["backend_missed"] <= due + 4, st
    assert 1 <= st["backend_stale"] <= st["backend_missed"]
    assert st["backend_overflows"] == 0
    assert st["xruns"] == st["backend_server_xruns"] + st["backend_missed"]
    # the worker processed every input block, late ones included (bar the last one or two,
    # pushed as the stream stopped)
    assert st["backend_cycles"] - 2 <= st["blocks"] <= st["backend_cycles"]
    assert st["blocks"] > 1400
    # the block timer saw the stall as one block's processing time
    assert st["late_blocks"] >= 1 and st["block_time_share"]["max"] > 5.0


@pytest.mark.jack
@pytest.mark.skipif(not have_jackd(), reason="jackd not installed (scripts/apt-test.txt)")
@needs_fifo
def test_jack_worker_runs_just_below_jacks_own_process_thread():
    """Under jackd's default priority (clients at 5) the DSP worker must not outrank JACK's
    thread (it would delay the server's cycle): it sits one below, the helpers below it."""
    from edgemix.rt.jack_backend import JackBackend
    with jack_server(rate=FS, period=64, capture=2, playback=2, rt_priority=10) as server:
        b = JackBackend(2, FS, 64, server=server, client_name="edgemix-prio-test")
        r = Runner(Console(FS, 64, 2, 1), b, rt_priority=True)
        st = r.run(duration_s=0.5)
    assert st["backend_worker_priority"] == 4 and r.audio_priority == 4
    assert "SCHED_FIFO 4" in st["rt"]
    control, helper = rtsched.helper_priorities(4)
    assert f"owner SCHED_FIFO {helper}" in st["rt_helpers"]
    assert st["blocks"] > 0.3 * FS / 64
