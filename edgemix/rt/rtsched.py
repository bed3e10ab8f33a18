"""Real-time scheduling and memory locking for the live runner's threads (Linux).

Why each Python thread of a live process matters to the audio callback: the callback runs
Python, so it needs the GIL, and whichever thread holds the GIL when a block is due delays
that block until it lets go.  A holder at normal priority can be preempted by any busy
process on the machine *while it holds the GIL*, and the SCHED_FIFO audio thread then waits
a scheduler quantum (milliseconds) for it: priority inversion.  The cure used here is a
priority band: every Python thread of the live process that may take the GIL runs SCHED_FIFO
*below* the audio thread (so it never preempts it) and *above* ordinary processes (so nothing
ordinary preempts it mid-hold).  :func:`helper_priorities` derives the band from the audio
thread's actual priority, which JACK (not us) chooses for its process thread.

:func:`lock_memory` is ``mlockall``: the audio path's pages (code, arrays, interpreter
state) stay resident, so no block waits for a page to be read back (mlockall(2);
JACK's own ``--no-mlock`` default is to lock for the same reason).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource

#: Highest priority for the control thread (the policy step takes milliseconds of Python
#: per hop); it always stays below the audio thread (see :func:`helper_priorities`).
CONTROL_RT_PRIORITY = 60

_MCL_CURRENT, _MCL_FUTURE = 1, 2  # <sys/mman.h> on Linux (x86-64 and aarch64 alike)


def fifo_priority(tid: int = 0) -> int:
    """SCHED_FIFO/RR priority of thread ``tid`` (0: the caller), 0 when it is not real-time."""
    try:
        if os.sched_getscheduler(tid) in (os.SCHED_FIFO, os.SCHED_RR):
            return int(os.sched_getparam(tid).sched_priority)
    except (AttributeError, OSError):
        pass
    return 0


def set_fifo(priority: int, tid: int = 0) -> str:
    """Put thread ``tid`` (a native thread id; 0: the caller) at SCHED_FIFO ``priority``.

    Returns a status for the run's stats: ``"SCHED_FIFO n"`` or why not (never raises)."""
    try:
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(int(priority)))
        return f"SCHED_FIFO {int(priority)}"
    except (AttributeError, OSError) as e:
        return f"normal priority ({e.__class__.__name__})"


def set_normal(tid: int = 0) -> None:
    """Back to SCHED_OTHER (after a run, for the thread that owned it)."""
    try:
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def helper_priorities(audio_priority: int) -> tuple[int, int] | None:
    """``(control, other helpers)`` SCHED_FIFO priorities below ``audio_priority``.

    None when the audio thread is not real-time: then no helper may be either (a real-time
    helper would preempt the audio thread itself).  The control thread sits just under the
    audio thread (at most :data:`CONTROL_RT_PRIORITY`), the owner's wait loop and the
    recorder's writer one step lower; all of them stay at 1 or above (SCHED_FIFO's floor).
    """
    if audio_priority < 2:
        return None
    control = max(1, min(CONTROL_RT_PRIORITY, audio_priority - 1))
    return control, max(1, control - 1)


def lock_memory() -> str:
    """``mlockall`` the process: its current pages, and its future ones where the locked-memory
    limit is unlimited (with a finite limit, MCL_FUTURE would turn every later allocation past
    the limit into a MemoryError, so only what exists now is locked).  Returns a status."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        flags = _MCL_CURRENT | (_MCL_FUTURE if soft == resource.RLIM_INFINITY else 0)
        if libc.mlockall(flags) != 0:
            err = ctypes.get_errno()
            return f"not locked ({os.strerror(err)})"
        return "locked (current and future)" if flags & _MCL_FUTURE else "locked (current)"
    except (OSError, AttributeError) as e:
        return f"not locked ({e.__class__.__name__})"


def unlock_memory() -> None:
    """``munlockall`` (after a run, so an interactive process does not keep everything pinned)."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").munlockall()
    except (OSError, AttributeError):
        pass
