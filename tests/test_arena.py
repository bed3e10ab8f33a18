"""The console's state arena (``edgemix/dsp/arena.py``): each stage's ``*_views`` helper
gives the kernel exactly its state type's arrays (the same memory the state object, the
meters and the shared-memory publishers read) and its constants."""
from __future__ import annotations

import dataclasses

import numba
import numpy as np
import pytest

from edgemix import console as C
from edgemix.dsp import arena as A
from edgemix.dsp import automixer, limiter, loudness, meters, reverb, strip, truepeak

VIEWS = {C.ENGINE: C._engine_views, C.STRIP: strip._strip_views,
         C.AUTOMIX: automixer._automix_views, C.REVERB: reverb._reverb_views,
         C.MASTER: C._master_views, C.LIMITER: limiter._limiter_views,
         C.TRUEPEAK: truepeak._truepeak_views, C.LOUDNESS: loudness._loudness_views,
         C.PEAK: meters._peak_views, C.CORRELATION: meters._correlation_views}


def _returner(views):
    @numba.njit
    def get(f64, i64, f32, table, s):
        return views(f64, i64, f32, table, s)
    return get


def _fields(state):
    if dataclasses.is_dataclass(state):
        return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    return dict(zip(state._fields, state))


@pytest.fixture(scope="module")
def console():
    return C.Console(44100, 48, 5, 3)


def test_every_stage_has_a_view_helper(console):
    assert sorted(VIEWS) == list(range(len(console._arena.stages)))


@pytest.mark.parametrize("stage", sorted(VIEWS))
def test_views_are_the_state_objects_arrays_and_constants(console, stage):
    state = console._arena.stages[stage]
    got = _returner(VIEWS[stage])(*console._arena.args, stage)
    fields = _fields(state)
    arrays = {k: v for k, v in fields.items() if isinstance(v, np.ndarray)}
    consts = [v for v in fields.values() if not isinstance(v, np.ndarray)]
    got_arrays = [g for g in got if isinstance(g, np.ndarray)]
    got_consts = [g for g in got if not isinstance(g, np.ndarray)]
    assert len(got) == len(fields)
    for name, a in arrays.items():  # the same memory, shape and dtype: one view each
        same = [g for g in got_arrays if g.ctypes.data == a.ctypes.data and g.shape == a.shape]
        assert len(same) == 1 and same[0].dtype == a.dtype, name
        assert np.shares_memory(a, console._arena.args[A.DTYPES.index(
            np.dtype(np.int64) if a.dtype == np.bool_ else a.dtype)])
    assert sorted(map(float, got_consts)) == sorted(map(float, consts))


def test_a_write_through_the_state_is_seen_by_the_kernel(console):
    """The console's meters read the arrays the kernel wrote (one memory)."""
    x = np.full((48, 5), 0.5, np.float32)
    console.process(x)
    assert -7.0 < console.meters.channel_peak_db[0] <= 0.0  # -6 dBFS in, pre-fader
    console.reset()
    assert np.isneginf(console.meters.channel_peak_db).all()


def test_slots_are_aligned_and_disjoint(console):
    t = console._arena.table
    for b, buf in enumerate(console._arena.args[:3]):
        spans = []
        for s, state in enumerate(console._arena.stages):
            for f, value in enumerate(_fields(state).values()):
                kind = A._buffer_of(value)
                if kind != b:
                    continue
                start, d0, d1, d2 = t[s, f]
                assert start % A.ALIGN == 0
                spans.append((start, start + d0 * d1 * d2))
        spans.sort()
        assert all(a[1] <= b_[0] for a, b_ in zip(spans, spans[1:]))
        assert not spans or spans[-1][1] <= buf.size
