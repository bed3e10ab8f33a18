"""The JACK backend's compiled process callback, without a server.

* ``_exchange`` (the ring protocol of one period) against a slow reference written from its
  description, over random schedules of a worker that keeps up, falls behind, stalls for
  longer than the ring and catches up;
* from the callback's output alone: every block played is the worker's result for the
  input exactly ``delay`` periods earlier, or silence that was counted;
* the cfunc itself, called as JACK would (a C call with the table as its argument), with
  stand-ins for ``jack_port_get_buffer``, ``jack_get_cycle_times``, ``jack_get_time`` and
  ``sem_post`` made with ctypes: it moves the ports' frames, posts once per period and
  writes the cycle timing in ``BlockTimer``'s layout.
"""
from __future__ import annotations

import ctypes
from collections import deque

import numpy as np
import pytest

from edgemix.rt import jack_cycle as jc
from edgemix.rt.timing import BlockTimer


def worker_result(block):
    """What the stand-in worker makes of an input block ``(frames, n_in)``: two channels
    that depend on every input sample, so any misplaced frame shows."""
    return np.stack([block.sum(axis=1), (block * np.arange(1, block.shape[1] + 1)).sum(axis=1)],
                    axis=1).astype(np.float32)


class ReferenceRings:
    """The protocol from jack_cycle's docstring, with deques and nothing clever."""

    def __init__(self, slots, delay):
        self.slots, self.delay = slots, delay
        self.inputs = deque()    # (cycle, block) pushed, not yet processed
        self.outputs = deque()   # (cycle, block) processed, not yet played or dropped
        self.cycle = 0
        self.missed = self.stale = self.overflows = 0

    def work_one(self):
        if not self.inputs or len(self.outputs) >= self.slots:
            return False
        c, block = self.inputs.popleft()
        self.outputs.append((c, worker_result(block)))
        return True

    def period(self, block, frames):
        if len(self.inputs) < self.slots:
            self.inputs.append((self.cycle, block.copy()))
        else:
            self.overflows += 1
        out = np.zeros((frames, 2), np.float32)
        want = self.cycle - self.delay
        if want >= 0:
            while self.outputs and self.outputs[0][0] < want:
                self.outputs.popleft()
                self.stale += 1
            if self.outputs and self.outputs[0][0] == want:
                out = self.outputs.popleft()[1]
            else:
                self.missed += 1
        self.cycle += 1
        return out


def run_kernel(schedule, inputs, slots, delay):
    """Drive ``_exchange`` with numpy 'port buffers'; ``schedule[c]`` blocks are processed by
    the worker (through _claim_block/_release_block) before period ``c``."""
    n_cycles, frames, n_in = inputs.shape
    in_data = np.zeros((slots, frames, n_in), np.float32)
    out_data = np.zeros((slots, frames, 2), np.float32)
    in_tag = np.zeros(slots, np.int64)
    out_tag = np.full(slots, -1, np.int64)
    count = np.zeros(jc.N_COUNTERS, np.int64)
    ports_in = [np.zeros(frames, np.float32) for _ in range(n_in)]
    ports_out = [np.zeros(frames, np.float32) for _ in range(2)]
    in_bufs = np.array([p.ctypes.data for p in ports_in], np.int64)
    out_bufs = np.array([p.ctypes.data for p in ports_out], np.int64)
    played = np.zeros((n_cycles, frames, 2), np.float32)
    for c in range(n_cycles):
        for _ in range(schedule[c]):
            s = jc._claim_block(count, slots)
            if s < 0:
                break
            out_data[s] = worker_result(in_data[s])
            jc._release_block(count, in_tag, out_tag, s)
        for i in range(n_in):
            ports_in[i][:] = inputs[c, :, i]
        ports_out[0][:] = ports_out[1][:] = np.nan  # the callback must write every frame
        jc._exchange(frames, in_bufs, out_bufs, in_data, in_tag, out_data, out_tag, count,
                     delay)
        played[c] = np.stack(ports_out, axis=1)
    return played, count


def schedules(seed, n_cycles, slots):
    """Worker behaviours: keeping up (1 a period), bursts, short lateness, a stall longer
    than the ring (input overflows), then catching up."""
    rng = np.random.default_rng(seed)
    s = rng.choice([0, 1, 1, 1, 2, 3], size=n_cycles)
    at = n_cycles // 3
    s[at:at + slots + 4] = 0           # stalled past the whole ring
    s[at + slots + 4] = 2 * slots      # then takes everything it can
    s[:3] = 1
    return s


@pytest.mark.parametrize("seed, slots, delay", [(1, 5, 1), (2, 6, 2), (3, 8, 4), (4, 40, 2), (5, 12, 9)])
def test_exchange_equals_the_reference(seed, slots, delay):
    rng = np.random.default_rng(seed)
    n_cycles, frames, n_in = 200, 8, 3
    inputs = rng.standard_normal((n_cycles, frames, n_in)).astype(np.float32)
    sched = schedules(seed, n_cycles, slots)
    played, count = run_kernel(sched, inputs, slots, delay)
    ref = ReferenceRings(slots, delay)
    want = np.zeros_like(played)
    for c in range(n_cycles):
        for _ in range(sched[c]):
            if not ref.work_one():
                break
        want[c] = ref.period(inputs[c], frames)
    np.testing.assert_array_equal(played, want)
    assert (count[jc.C_MISSED], count[jc.C_STALE], count[jc.C_OVERFLOWS]) == (
        ref.missed, ref.stale, ref.overflows)
    assert count[jc.C_CYCLES] == n_cycles
    # the schedule did exercise every path
    assert ref.missed > 0 and ref.stale > 0 and ref.overflows > 0


@pytest.mark.parametrize("delay", [1, 2, 3])
def test_every_block_played_is_the_input_delay_periods_earlier_or_counted_silence(delay):
    """Fixed latency through lateness and recovery, read from the output alone."""
    rng = np.random.default_rng(delay)
    n_cycles, frames, n_in, slots = 300, 16, 4, 7
    inputs = rng.standard_normal((n_cycles, frames, n_in)).astype(np.float32)
    played, count = run_kernel(schedules(10 + delay, n_cycles, slots), inputs, slots, delay)
    silent = 0
    for c in range(n_cycles):
        if c >= delay and np.array_equal(played[c], worker_result(inputs[c - delay])):
            continue
        assert not played[c].any(), f"period {c} played something other than its block"
        silent += 1
    # silence exactly where a block was due and not ready (plus the first ``delay``)
    assert silent == delay + count[jc.C_MISSED]
    assert 0 < count[jc.C_MISSED] < n_cycles // 2


def test_rings_refuse_a_delay_they_cannot_hold():
    with pytest.raises(ValueError, match="at least 5 slots"):
        jc.CycleRings(2, 8, 4, 2, ports=[0, 0, 0, 0], client=0, sem=0,
                      functions=dict.fromkeys(jc.FUNCTIONS, 0), timer=BlockTimer(16))


# ---- the compiled callback, called the way JACK calls it ---------------------------------

GET_BUFFER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32)
CYCLE_TIMES = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32),
                               ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint64),
                               ctypes.POINTER(ctypes.c_float))
GET_TIME = ctypes.CFUNCTYPE(ctypes.c_uint64)
SEM_POST = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
PROCESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p)


def test_compiled_callback_moves_frames_posts_and_times_each_period():
    frames, n_in, period_us = 16, 3, 333
    buffers = [np.zeros(frames, np.float32) for _ in range(n_in + 2)]
    handles = {id(b): b for b in buffers}  # 'jack_port_t *' -> its buffer
    seen = {"client": [], "posts": 0, "now": 0, "cycle": 0}

    def get_buffer(port, n):
        assert n == frames
        return port  # our 'ports' are the buffers' own addresses

    def cycle_times(client, cur_frames, cur_us, next_us, period):
        seen["client"].append(client)
        cur_us[0] = 1000 + period_us * seen["cycle"]
        next_us[0] = cur_us[0] + period_us
        cur_frames[0] = frames * seen["cycle"]
        period[0] = period_us
        return 0

    def get_time():
        # our outputs are written 100 us into each cycle, and late in the fourth
        seen["now"] = 1000 + period_us * seen["cycle"] + (500 if seen["cycle"] == 3 else 100)
        return seen["now"]

    def sem_post(sem):
        seen["posts"] += 1
        return 0

    fns = [GET_BUFFER(get_buffer), CYCLE_TIMES(cycle_times), GET_TIME(get_time),
           SEM_POST(sem_post)]
    addr = lambda f: ctypes.cast(f, ctypes.c_void_p).value  # noqa: E731
    timer = BlockTimer(8)
    rings = jc.CycleRings(n_in, frames, 6, 1, ports=[b.ctypes.data for b in buffers],
                          client=0xC1, sem=0x5E, timer=timer,
                          functions=dict(zip(jc.FUNCTIONS, map(addr, fns))))
    assert len(handles) == n_in + 2
    process = PROCESS(jc.jack_process.address)
    rng = np.random.default_rng(0)
    sent = []
    for c in range(5):
        seen["cycle"] = c
        x = rng.standard_normal((frames, n_in)).astype(np.float32)
        sent.append(x)
        for i in range(n_in):
            buffers[i][:] = x[:, i]
        assert process(frames, rings.arg) == 0
        # the worker's part: the block just pushed, straight back as [sum, first input]
        s = jc._claim_block(rings.count, rings.slots)
        assert s >= 0 and np.array_equal(rings.in_blocks[s], x)
        rings.out_blocks[s][:, 0] = x.sum(axis=1)
        rings.out_blocks[s][:, 1] = x[:, 0]
        jc._release_block(rings.count, rings.in_tag, rings.out_tag, s)
        out = np.stack(buffers[n_in:], axis=1)
        if c == 0:
            assert not out.any()  # nothing is due in the first period (delay 1)
        else:
            np.testing.assert_array_equal(out[:, 0], sent[c - 1].sum(axis=1))
            np.testing.assert_array_equal(out[:, 1], sent[c - 1][:, 0])
    assert seen["posts"] == 5 and seen["client"] == [0xC1] * 5
    assert rings.stat(jc.C_CYCLES) == 5 and rings.stat(jc.C_MISSED) == 0
    t = timer.summary()
    assert t["blocks"] == 5 and t["late"] == 1  # the fourth period's outputs came late
    np.testing.assert_allclose(sorted(timer.shares()), [100 / 333] * 4 + [500 / 333])
    # a period of another size is refused whole (and counted), nothing is touched
    assert process(frames // 2, rings.arg) == 0
    assert rings.stat(jc.C_ODD_FRAMES) == 1 and rings.stat(jc.C_CYCLES) == 5
    assert seen["posts"] == 5
