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
import re

import numba

#: LLVM fast-math flags allowed in kernels: FMA contraction, reciprocal and approximate
#: functions, signed zeros.  Not ``nnan``/``ninf`` (the guard must see NaN), not
#: ``reassoc`` (results must not depend on how a loop was split into blocks).
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn"})


#: A module-level import of edgemix (a kernel can only freeze its own module's globals, and
#: those come from module-level imports; a function-level import feeds no kernel).
_IMPORT = re.compile(rb"^(?:from[ \t]+(edgemix[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)"
                     rb"|import[ \t]+(edgemix[\w.]*))", re.M)


def _module_file(root: pathlib.Path, dotted: str) -> pathlib.Path | None:
    """The source file of an ``edgemix.*`` module under ``root`` (the package folder)."""
    parts = dotted.split(".")[1:]
    if not parts:
        return root / "__init__.py"
    rel = pathlib.Path(*parts)
    for cand in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def kernel_sources(root: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Every source file that can change a compiled kernel: the modules that define
    kernels (they import this one), and every edgemix module they import at module level,
    transitively.

    A kernel freezes the module globals it reads (``TICK``, ``Z_LIMIT``, a schema column
    index) into its machine code, wherever they are defined, and Numba's own cache checks
    only the file of the function it caches.  The scan reads the import lines (a
    constant reached only through ``importlib`` would be missed: kernels do not do that).
    """
    root = pathlib.Path(root) if root else pathlib.Path(__file__).resolve().parents[1]
    todo = [f for f in sorted(root.rglob("*.py"))
            if f.name == "_jit.py" or b"_jit import" in f.read_bytes()]
    seen: set[pathlib.Path] = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for m in _IMPORT.finditer(f.read_bytes()):
            base = (m.group(1) or m.group(3)).decode()
            names = m.group(2).decode() if m.group(2) else ""
            names = [n.split()[0] for n in names.strip("() \n").replace("\n", " ").split(",")
                     if n.split() and not n.strip().startswith("#")]
            subs = [_module_file(root, f"{base}.{n}") for n in names]
            # ``from edgemix import params``: the submodule only; the package's
            # __init__ counts when a name is defined there (or for ``import edgemix...``)
            wanted = [g for g in subs if g is not None]
            if not names or any(g is None for g in subs):
                wanted.append(_module_file(root, base))
            for g in wanted:
                if g is not None and g not in seen:
                    todo.append(g)
    return sorted(seen)


def _source_key(root: pathlib.Path | None = None) -> str:
    """A hash of every kernel source (:func:`kernel_sources`) and Numba's version.

    Keying the cache folder by them makes any change there start a fresh cache (a fused
    kernel would otherwise keep a stale copy of a callee or a constant from another
    module), while an edit to, say, the CLI keeps it.
    """
    root = pathlib.Path(root) if root else pathlib.Path(__file__).resolve().parents[1]
    h = hashlib.sha256(numba.__version__.encode())
    for f in kernel_sources(root):
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
