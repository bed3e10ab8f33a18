"""The console's state table (``edgemix/dsp/arena.py``): each stage's ``_*_views`` helper
gives the kernel exactly its state type's arrays (the same memory the state object, the
meters and the shared-memory publishers read) and its constants."""
from __future__ import annotations

import dataclasses

import numba
import numpy as np
import pytest

from edgemix import console as C
from edgemix.dsp import arena as A
from edgemix.dsp import delay, gain_sharing, limiter, loudness, meters, reverb, strip, truepeak

VIEWS = {C.ENGINE: C._engine_views, C.STRIP: strip._strip_views,
         C.AUTOMIX: gain_sharing._automix_views, C.REVERB: reverb._reverb_views,
         C.MASTER: C._master_views, C.LIMITER: limiter._limiter_views,
         C.TRUEPEAK: truepeak._truepeak_views, C.LOUDNESS: loudness._loudness_views,
         C.PEAK: meters._peak_views, C.CORRELATION: meters._correlation_views,
         C.DELAY: delay._delay_views}


def _returner(views):
    @numba.njit
    def get(table, s):
        return views(table, s)
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
    got = _returner(VIEWS[stage])(console._arena.table, stage)
    fields = _fields(state)
    arrays = {k: v for k, v in fields.items() if isinstance(v, np.ndarray)}
    consts = [v for v in fields.values() if not isinstance(v, np.ndarray)]
    got_arrays = [g for g in got if isinstance(g, np.ndarray)]
    got_consts = [g for g in got if not isinstance(g, np.ndarray)]
    assert len(got) == len(fields)
    for name, a in arrays.items():  # the same memory, shape and dtype: one view each
        same = [g for g in got_arrays if g.ctypes.data == a.ctypes.data and g.shape == a.shape]
        assert len(same) == 1 and same[0].dtype == a.dtype, name
    assert sorted(map(float, got_consts)) == sorted(map(float, consts))


def test_a_write_through_the_state_is_seen_by_the_kernel(console):
    """The console's meters read the arrays the kernel wrote (one memory)."""
    x = np.full((48, 5), 0.5, np.float32)
    console.process(x)
    assert -7.0 < console.meters.channel_peak_db[0] <= 0.0  # -6 dBFS in, pre-fader
    console.reset()
    assert np.isneginf(console.meters.channel_peak_db).all()


def test_a_rebound_state_array_is_caught():
    c = C.Console(48000, 32, 2, 1)
    c._arena.check()
    c._strip.dyn = c._strip.dyn.copy()  # what no state may do: the table would be stale
    with pytest.raises(RuntimeError, match="StripState.dyn was replaced"):
        c._arena.check()


def test_the_arena_refuses_what_the_table_cannot_point_at():
    import dataclasses

    @dataclasses.dataclass
    class Bad:
        x: np.ndarray
    with pytest.raises(TypeError, match="C-contiguous"):
        A.Arena([Bad(np.zeros((4, 4))[:, ::2])])
    with pytest.raises(TypeError, match="dtype"):
        A.Arena([Bad(np.zeros(3, np.complex128))])
