"""One arena per fused kernel: every stage's state in one buffer per dtype.

Each array argument costs about 0.1 us at the Python -> Numba boundary (the dispatcher
types and unboxes it), and a Numba tuple or named tuple of arrays costs more, not less.
So a kernel that runs many stages in one call takes the stages' state as one
:class:`Arena`: three buffers (float64, int64, float32) and an offset table, four
arguments whatever the number of stages.  Inside the kernel each stage's own view helper
(``_strip_views``, ``_reverb_views``, ...; an ``inline="always"`` kernel beside the state
type) rebuilds the stage's arrays from the table with :func:`_view1`/:func:`_view2`/:func:`_view3`,
in the order of the stage kernel's arguments.  A view is a slice and a reshape: no
allocation, a few nanoseconds.

The convention for a stage's state (``docs/architecture.md``): one type per stage (a
dataclass or a NamedTuple) with ``allocate(...)`` (a classmethod) and ``reset()``
(in place); its fields are arrays (or int/float constants, fixed at allocation), in the
order its kernel takes them.  :class:`Arena` copies every array into its buffer and points
the state's field at the copy, so the state object, the kernel and every reader (meters,
shared-memory publishers) see the same memory.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from edgemix.dsp._jit import kernel

#: The buffers, by dtype: an array field goes to the buffer of its dtype (bool as int64).
DTYPES = (np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.float32))
#: Every slot starts on a 64-byte boundary (8 float64), like a fresh numpy array's data, so
#: the vectorised channel loops see the alignment they saw before.
ALIGN = 8
#: Columns of the offset table: start, then up to three dimensions.
_START, _D0, _D1, _D2 = 0, 1, 2, 3


def _fields(state) -> list[tuple[str, object]]:
    if dataclasses.is_dataclass(state):
        return [(f.name, getattr(state, f.name)) for f in dataclasses.fields(state)]
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a NamedTuple
        return list(zip(state._fields, state))
    raise TypeError(f"{type(state).__name__}: a stage state is a dataclass or a NamedTuple")


def _buffer_of(value) -> int:
    """Which buffer a field goes to (an index into :data:`DTYPES`)."""
    if isinstance(value, np.ndarray):
        dt = np.dtype(np.int64) if value.dtype == np.bool_ else value.dtype
    elif isinstance(value, (bool, int, np.integer)):
        dt = np.dtype(np.int64)
    elif isinstance(value, (float, np.floating)):
        dt = np.dtype(np.float64)
    else:
        raise TypeError(f"a state field of type {type(value).__name__}: use an array, "
                        "an int or a float")
    if dt not in DTYPES:
        raise TypeError(f"a state array of dtype {dt}: use one of "
                        f"{', '.join(map(str, DTYPES))}")
    return DTYPES.index(dt)


class Arena:
    """The states of a fused kernel's stages in three buffers and an offset table.

    ``stages`` is a sequence of state objects; stage ``s``'s field ``f`` (in its type's
    field order) is the slot ``table[s, f] = (start, d0, d1, d2)`` in the buffer of its
    dtype.  After construction :attr:`stages` holds the states with every array field
    pointing into the arena (dataclasses are updated in place, NamedTuples replaced);
    int and float fields are copied in as one-element slots (constants).
    """

    def __init__(self, stages):
        stages = list(stages)
        layout = [[(name, value, _buffer_of(value)) for name, value in _fields(st)]
                  for st in stages]
        n_fields = max((len(f) for f in layout), default=0)
        self.table = np.zeros((len(stages), max(n_fields, 1), 4), np.int64)
        sizes = [0, 0, 0]
        for s, fields in enumerate(layout):
            for f, (name, value, b) in enumerate(fields):
                shape = value.shape if isinstance(value, np.ndarray) else (1,)
                if len(shape) > 3:
                    raise ValueError(f"{type(stages[s]).__name__}.{name}: at most 3 dimensions")
                dims = list(shape) + [1] * (3 - len(shape))
                start = -(-sizes[b] // ALIGN) * ALIGN
                self.table[s, f] = (start, *dims)
                sizes[b] = start + int(np.prod(shape, dtype=np.int64))
        self.f64, self.i64, self.f32 = (np.zeros(max(n, 1), dt) for n, dt in zip(sizes, DTYPES))
        buffers = (self.f64, self.i64, self.f32)
        self.stages = []
        for s, (st, fields) in enumerate(zip(stages, layout)):
            new = {}
            for f, (name, value, b) in enumerate(fields):
                start, *dims = self.table[s, f]
                if isinstance(value, np.ndarray):
                    view = buffers[b][start:start + value.size].reshape(value.shape)
                    view[...] = value
                    new[name] = view
                else:
                    buffers[b][start] = value
            if dataclasses.is_dataclass(st):
                for name, view in new.items():
                    setattr(st, name, view)
                self.stages.append(st)
            else:
                self.stages.append(st._replace(**new))

    @property
    def args(self) -> tuple:
        """The kernel's four arguments: ``(f64, i64, f32, table)``."""
        return self.f64, self.i64, self.f32, self.table

    @property
    def nbytes(self) -> int:
        return self.f64.nbytes + self.i64.nbytes + self.f32.nbytes + self.table.nbytes


@kernel(inline="always")
def _view1(buf, table, s, f):
    """Stage ``s``'s field ``f`` as a 1-D view of ``buf``."""
    t = table[s, f]
    return buf[t[_START]:t[_START] + t[_D0]]


@kernel(inline="always")
def _view2(buf, table, s, f):
    """Stage ``s``'s field ``f`` as a 2-D view of ``buf``."""
    t = table[s, f]
    return buf[t[_START]:t[_START] + t[_D0] * t[_D1]].reshape((t[_D0], t[_D1]))


@kernel(inline="always")
def _view3(buf, table, s, f):
    """Stage ``s``'s field ``f`` as a 3-D view of ``buf``."""
    t = table[s, f]
    return buf[t[_START]:t[_START] + t[_D0] * t[_D1] * t[_D2]].reshape((t[_D0], t[_D1],
                                                                          t[_D2]))
