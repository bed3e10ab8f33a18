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
    """A hash of every module that defines kernels (those that import this one).

    Numba's cache checks only the file of the function it caches, so a fused kernel that
    calls kernels from other modules would keep running a stale copy of them after an
    upgrade or an edit.  Keying the cache folder by the source of every kernel module (and
    the schema they read constants from) makes any change there start a fresh cache, while
    an edit to, say, the CLI keeps it.
    """
    h = hashlib.sha256(numba.__version__.encode())
    root = pathlib.Path(__file__).resolve().parents[1]
    for f in sorted(root.rglob("*.py")):
        text = f.read_bytes()
        if b"_jit import" in text or f.name in ("_jit.py", "params.py"):
            h.update(f.relative_to(root).as_posix().encode())
            h.update(text)
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
