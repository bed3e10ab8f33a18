"""How many bytes of Python heap a block-path call allocates: one measurement for every
"no allocation after warm-up" test.

tracemalloc counts every thread of the process, not only the caller.  The one thread the suite
leaves alive is tqdm's monitor (started by the first progress bar, in the CLI tests; it wakes
every 10 s and copies tqdm's instance list): CI saw a true-peak test fail on a 2,332-byte
peak that its own 200 calls did not make.  So the measurement is taken over several windows
and the least of each is kept -- an allocation made by the code under test happens in every
window; a wake-up of another thread lands in one.
"""
from __future__ import annotations

import tracemalloc
from typing import Callable


def heap_bytes(call: Callable[[], object], calls: int, windows: int = 3,
               warmup: int = 5) -> tuple[int, int]:
    """(transient, retained) bytes over ``calls`` calls, least of ``windows`` windows.

    transient: the traced peak above the window's start (temporaries freed at once count);
    retained: what the window leaves behind (a leak grows with ``calls``)."""
    for _ in range(warmup):
        call()
    transient, retained = [], []
    for _ in range(windows):
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            for _ in range(calls):
                call()
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        transient.append(peak - base)
        retained.append(current - base)
    return min(transient), min(retained)
