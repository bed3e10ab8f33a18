"""One place for how every kernel is compiled.

Following pynndescent's ``distances.py``: ``cache=True`` so a board never JITs while live
(point ``NUMBA_CACHE_DIR`` at a writable path on a read-only install), ``nogil=True`` so the
audio thread and the control thread never serialise on the GIL inside a kernel, and one
named fast-math set that leaves out ``nnan``/``ninf`` so NaN/Inf checks in the input guard
still work, and ``reassoc`` so a sum does not change with the block size (live equals
offline, DESIGN.md contract 4).
"""
from __future__ import annotations

import numba

#: LLVM fast-math flags allowed in kernels: FMA contraction, reciprocal and approximate
#: functions, signed zeros.  Not ``nnan``/``ninf`` (the guard must see NaN), not
#: ``reassoc`` (results must not depend on how a loop was split into blocks).
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn"})


def kernel(func=None, **overrides):
    """Decorate a private real-time kernel: ``@kernel`` or ``@kernel(inline="always")``."""
    options = dict(cache=True, nogil=True, fastmath=set(FASTMATH), error_model="numpy",
                   boundscheck=False)
    options.update(overrides)
    if func is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(func)
