"""One table for a fused kernel's state: the address and shape of every stage's arrays.

Each array argument costs about 0.1 us at the Python -> Numba boundary (the dispatcher
types and unboxes it), and a Numba tuple or named tuple of arrays costs more, not less.
So a kernel that runs many stages in one call takes the stages' state as one
:class:`Arena`: an int64 table ``(stages, fields, 4)`` of (address, d0, d1, d2), one
argument whatever the number of stages.  Inside the kernel each stage's view helper
(``_strip_views``, ``_reverb_views``, ...; an ``inline="always"`` kernel beside the state
type) rebuilds the stage's arrays from the table (:func:`_f64_1` ... :func:`_f32_2`, a
``carray`` over the address: no allocation, no reference count), in the order of the
stage kernel's arguments.

The arrays stay where each state type allocated them (packing them into one buffer was
slower per channel: docs/design-notes.md, "The console kernel's arguments").

The convention for a stage's state (``docs/architecture.md``): one type per stage (a
dataclass or a NamedTuple) with ``allocate(...)`` (a classmethod) and ``reset()`` (in
place: a state never rebinds its arrays, the table points at them); its fields are
C-contiguous arrays (float64, int64, float32; bool is stored as int64) or int/float
constants fixed at allocation.  The arena keeps a reference to every array it points at
(and its own copy of every constant), so an address in the table never dangles.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from llvmlite import ir
from numba import carray, types
from numba.extending import intrinsic

from edgemix.dsp._jit import kernel

#: dtypes a state array may have (bool is kept as int64 by its state type).
DTYPES = (np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.float32))
#: Columns of the table: address, then up to three dimensions.
_ADDR, _D0, _D1, _D2 = 0, 1, 2, 3


def _fields(state) -> list[tuple[str, object]]:
    if dataclasses.is_dataclass(state):
        return [(f.name, getattr(state, f.name)) for f in dataclasses.fields(state)]
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a NamedTuple
        return list(zip(state._fields, state))
    raise TypeError(f"{type(state).__name__}: a stage state is a dataclass or a NamedTuple")


def _as_array(where: str, value) -> np.ndarray:
    """A state field as the array the table points at (constants: a one-element copy)."""
    if isinstance(value, np.ndarray):
        if value.dtype not in DTYPES:
            raise TypeError(f"{where}: dtype {value.dtype}: use one of "
                            f"{', '.join(map(str, DTYPES))}")
        if not value.flags.c_contiguous or value.ndim > 3:
            raise TypeError(f"{where}: a state array must be C-contiguous with <= 3 dimensions")
        return value
    if isinstance(value, (bool, int, np.integer)):
        return np.array([value], np.int64)
    if isinstance(value, (float, np.floating)):
        return np.array([value], np.float64)
    raise TypeError(f"{where}: a field of type {type(value).__name__}: use an array, an int "
                    "or a float")


class Arena:
    """The address table of a fused kernel's stages: stage ``s``'s field ``f`` (in its
    type's field order) is ``table[s, f] = (address, d0, d1, d2)``."""

    def __init__(self, stages):
        self.stages = list(stages)
        layout = [_fields(st) for st in self.stages]
        n_fields = max((len(f) for f in layout), default=1)
        self.table = np.zeros((len(self.stages), n_fields, 4), np.int64)
        self._keep = []  # every array the table points at stays alive with the arena
        for s, (st, fields) in enumerate(zip(self.stages, layout)):
            for f, (name, value) in enumerate(fields):
                a = _as_array(f"{type(st).__name__}.{name}", value)
                self._keep.append(a)
                dims = list(a.shape) + [1] * (3 - a.ndim)
                self.table[s, f] = (a.ctypes.data, *dims)

    def check(self) -> None:
        """RuntimeError when a state's array was rebound since (the table would be stale)."""
        for s, st in enumerate(self.stages):
            for f, (name, value) in enumerate(_fields(st)):
                if isinstance(value, np.ndarray) and value.ctypes.data != self.table[s, f, 0]:
                    raise RuntimeError(f"{type(st).__name__}.{name} was replaced: states "
                                       "change their arrays in place")


@intrinsic
def _f64s(typingctx, address):
    """An int64 address as ``double *``."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.DoubleType().as_pointer())
    return types.CPointer(types.float64)(types.int64), codegen


@intrinsic
def _i64s(typingctx, address):
    """An int64 address as ``int64 *``."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(64).as_pointer())
    return types.CPointer(types.int64)(types.int64), codegen


@intrinsic
def _f32s(typingctx, address):
    """An int64 address as ``float *``."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.FloatType().as_pointer())
    return types.CPointer(types.float32)(types.int64), codegen


@kernel(inline="always")
def _f64_1(table, s, f):
    """Stage ``s``'s field ``f``: a 1-D float64 array."""
    t = table[s, f]
    return carray(_f64s(t[_ADDR]), (t[_D0],))


@kernel(inline="always")
def _f64_2(table, s, f):
    """Stage ``s``'s field ``f``: a 2-D float64 array."""
    t = table[s, f]
    return carray(_f64s(t[_ADDR]), (t[_D0], t[_D1]))


@kernel(inline="always")
def _f64_3(table, s, f):
    """Stage ``s``'s field ``f``: a 3-D float64 array."""
    t = table[s, f]
    return carray(_f64s(t[_ADDR]), (t[_D0], t[_D1], t[_D2]))


@kernel(inline="always")
def _i64_1(table, s, f):
    """Stage ``s``'s field ``f``: a 1-D int64 array."""
    t = table[s, f]
    return carray(_i64s(t[_ADDR]), (t[_D0],))


@kernel(inline="always")
def _f32_2(table, s, f):
    """Stage ``s``'s field ``f``: a 2-D float32 array."""
    t = table[s, f]
    return carray(_f32s(t[_ADDR]), (t[_D0], t[_D1]))
