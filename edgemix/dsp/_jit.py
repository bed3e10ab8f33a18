"""One place for how every kernel is compiled.

Following pynndescent's ``distances.py``: ``cache=True`` so a board never JITs while live
(point ``NUMBA_CACHE_DIR`` at a writable path on a read-only install), ``nogil=True`` so the
audio thread and the control thread never serialise on the GIL inside a kernel, and one
named fast-math set that leaves out ``nnan``/``ninf`` so NaN/Inf checks in the input guard
still work, and ``reassoc`` so a sum does not change with the block size (live equals
offline, DESIGN.md contract 4).
"""
from __future__ import annotations

import hashlib
import os
import pathlib

import numba

#: LLVM fast-math flags allowed in kernels: FMA contraction, reciprocal and approximate
#: functions, signed zeros.  Not ``nnan``/``ninf`` (the guard must see NaN), not
#: ``reassoc`` (results must not depend on how a loop was split into blocks).
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn"})


def _source_key() -> str:
    """A hash of every module in the package.

    Numba's cache checks only the file of the function it caches, so a fused kernel that
    calls kernels from other modules would keep running a stale copy of them after an
    upgrade or an edit.  Keying the cache folder by the whole package's source makes any
    change start a fresh cache.
    """
    h = hashlib.sha256(numba.__version__.encode())
    root = pathlib.Path(__file__).resolve().parents[1]
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _configure_cache() -> None:
    base = os.environ.get("NUMBA_CACHE_DIR") or numba.config.CACHE_DIR
    if not base:
        base = os.path.join(os.path.expanduser("~"), ".cache", "edgemix", "numba")
    numba.config.CACHE_DIR = os.path.join(base, _source_key())


_configure_cache()


def kernel(func=None, **overrides):
    """Decorate a private real-time kernel: ``@kernel`` or ``@kernel(inline="always")``."""
    options = dict(cache=True, nogil=True, fastmath=set(FASTMATH), error_model="numpy",
                   boundscheck=False)
    options.update(overrides)
    if func is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(func)
