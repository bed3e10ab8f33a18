"""JACK's process callback, compiled to machine code: it never enters Python.

Why (docs/design-notes.md, "JACK: a compiled process callback"): a Python process
callback must wake JACK's thread, take the GIL and run interpreter code inside the server's
cycle, and on a loaded board any of the three can be late by more than a 64-frame period,
which JACK then counts as an xrun of the whole graph.  Here the callback is a Numba
``cfunc`` (cached like every kernel) that only moves frames between JACK's port buffers and
two preallocated rings, posts a semaphore and times itself; the console runs on a DSP
worker thread that the semaphore wakes (python-rtmixer's design, with JACK's own port
buffers and a wake-up instead of polling).

The rings hold ``slots`` blocks of one period.  Cycle *c* (JACK's *c*-th call since
activation) writes its input block tagged *c* and plays the output block tagged
``c - delay_blocks``; the worker turns input block *c* into output block *c*.  So an input
frame leaves the outputs exactly ``delay_blocks`` periods later, and the worker has that
long to process a block.  A block the worker has not finished in time is played as silence
and counted (``missed``); when it arrives later it is dropped (``stale``), so the latency
stays fixed without restarting anything.  An input block that finds the input ring full
(the worker stalled for ``slots`` periods) is dropped and counted (``overflows``).

Counters have one writer each (single producer, single consumer per ring): the callback
writes ``cycles``, ``in_written``, ``out_read`` and the loss counts, the worker
``in_read`` and ``out_written``.  Frames are fenced before the index that publishes them
(LLVM ``fence seq_cst``: x86 keeps stores in order anyway, aarch64 does not).

The callback reaches libjack and libc through function addresses stored in a table at run
time (``jack_port_get_buffer``, ``jack_get_cycle_times``, ``jack_get_time``,
``sem_post``), not through ctypes objects baked into the code, so the compiled callback is
cacheable and the same machine code serves every client.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, types
from numba.extending import intrinsic

from edgemix.dsp._jit import kernel
from edgemix.dsp.arena import _f32s as _float32s, _i64s as _int64s  # noqa: F401
from edgemix.rt.ring import _fence_intrinsic

#: Counter array layout (int64), see the module docstring for who writes which.
(C_CYCLES, C_IN_WRITTEN, C_IN_READ, C_OUT_WRITTEN, C_OUT_READ, C_MISSED, C_STALE,
 C_OVERFLOWS, C_ODD_FRAMES, N_COUNTERS) = range(10)

#: Table layout (int64): what the compiled callback is handed as its ``void *arg``.
(T_GET_BUFFER, T_CYCLE_TIMES, T_GET_TIME, T_SEM_POST, T_CLIENT, T_SEM,
 T_PORTS, T_BUFS, T_N_IN, T_FRAMES, T_SLOTS, T_DELAY,
 T_IN_DATA, T_IN_TAG, T_OUT_DATA, T_OUT_TAG, T_COUNT, T_TIMES, T_TIMES_COUNT, T_TIMES_CAP,
 T_SCRATCH, N_TABLE) = range(22)
#: Output ports: the stereo mix.
N_OUT = 2
#: Scratch words for jack_get_cycle_times' out-arguments (frames, usecs, next usecs, period).
N_SCRATCH = 4


# ---- calling C through an address -------------------------------------------------------
def _c_caller(restype, *argtypes):
    """An intrinsic ``call(fn_address, *args)`` that calls the C function at ``fn_address``
    with the given Numba types (pointers as ``voidptr``)."""
    sig = restype(types.int64, *argtypes)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(context.get_value_type(restype),
                               [context.get_value_type(t) for t in argtypes])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(fn, args[1:])

    # one fixed arity per signature (intrinsics are typed by their Python signature)
    if len(argtypes) == 0:
        def call(typingctx, fn):
            return sig, codegen
    elif len(argtypes) == 1:
        def call(typingctx, fn, a):
            return sig, codegen
    elif len(argtypes) == 2:
        def call(typingctx, fn, a, b):
            return sig, codegen
    else:
        assert len(argtypes) == 5

        def call(typingctx, fn, a, b, c, d, e):
            return sig, codegen
    return intrinsic(call)


# void *jack_port_get_buffer(jack_port_t *, jack_nframes_t)
_get_buffer = _c_caller(types.voidptr, types.voidptr, types.uint32)
# int jack_get_cycle_times(const jack_client_t *, jack_nframes_t *current_frames,
#     jack_time_t *current_usecs, jack_time_t *next_usecs, float *period_usecs)
_cycle_times = _c_caller(types.int32, types.voidptr, types.voidptr, types.voidptr,
                         types.voidptr, types.voidptr)
# jack_time_t jack_get_time(void)
_get_time = _c_caller(types.uint64)
# int sem_post(sem_t *)
_sem_post = _c_caller(types.int32, types.voidptr)


@intrinsic
def _voidptr(typingctx, address):
    """An int64 address as ``void *``."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())
    return types.voidptr(types.int64), codegen


@intrinsic
def _address(typingctx, pointer):
    """A ``void *`` as an int64 address."""
    def codegen(context, builder, signature, args):
        return builder.ptrtoint(args[0], ir.IntType(64))
    return types.int64(types.voidptr), codegen


@intrinsic
def _table(typingctx, pointer):
    """The callback's ``void *arg`` as ``int64 *``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64).as_pointer())
    return types.CPointer(types.int64)(types.voidptr), codegen


# ---- the ring exchange ------------------------------------------------------------------
@kernel(inline="always")
def _exchange(frames, in_bufs, out_bufs, in_data, in_tag, out_data, out_tag, count, delay):
    """One period: push JACK's inputs as block ``cycles``, play block ``cycles - delay``.

    ``in_bufs``/``out_bufs``: addresses of this period's float32 port buffers (``frames``
    each); ``in_data``/``out_data``: ``(slots, frames, channels)`` rings; ``*_tag``: the
    cycle each slot holds.
    """
    slots = in_data.shape[0]
    n_in = in_data.shape[2]
    cycle = count[C_CYCLES]
    # input: the newest block, or a counted drop when the worker is a whole ring behind
    w = count[C_IN_WRITTEN]
    if w - count[C_IN_READ] < slots:
        s = w % slots
        for i in range(n_in):
            src = carray(_float32s(in_bufs[i]), (frames,))
            for n in range(frames):
                in_data[s, n, i] = src[n]
        in_tag[s] = cycle
        _fence_intrinsic()  # the frames before the index that publishes them
        count[C_IN_WRITTEN] = w + 1
    else:
        count[C_OVERFLOWS] += 1
    # output: the block due now; older ones the worker finished too late are dropped
    want = cycle - delay
    played = False
    if want >= 0:
        r = count[C_OUT_READ]
        while r < count[C_OUT_WRITTEN]:
            _fence_intrinsic()  # read the slot only after the index that published it
            s = r % slots
            if out_tag[s] < want:
                r += 1
                count[C_STALE] += 1
                continue
            if out_tag[s] == want:
                for k in range(out_bufs.shape[0]):
                    dst = carray(_float32s(out_bufs[k]), (frames,))
                    for n in range(frames):
                        dst[n] = out_data[s, n, k]
                r += 1
                played = True
            break
        _fence_intrinsic()  # done reading before the worker may reuse the slots
        count[C_OUT_READ] = r
        if not played:
            count[C_MISSED] += 1
    if not played:
        for k in range(out_bufs.shape[0]):
            dst = carray(_float32s(out_bufs[k]), (frames,))
            for n in range(frames):
                dst[n] = 0.0
    count[C_CYCLES] = cycle + 1


@cfunc(types.int32(types.uint32, types.voidptr), cache=True, nopython=True)
def jack_process(nframes, arg):
    """``JackProcessCallback``: ``arg`` is the table (see the ``T_*`` layout)."""
    tab = carray(_table(arg), (N_TABLE,))
    frames = tab[T_FRAMES]
    n_in = tab[T_N_IN]
    slots = tab[T_SLOTS]
    count = carray(_int64s(tab[T_COUNT]), (N_COUNTERS,))
    scratch = tab[T_SCRATCH]
    _cycle_times(tab[T_CYCLE_TIMES], _voidptr(tab[T_CLIENT]), _voidptr(scratch),
                 _voidptr(scratch + 8), _voidptr(scratch + 16), _voidptr(scratch + 24))
    if nframes != frames:  # a period of another size before the backend re-opened
        count[C_ODD_FRAMES] += 1
        return 0
    ports = carray(_int64s(tab[T_PORTS]), (n_in + N_OUT,))
    bufs = carray(_int64s(tab[T_BUFS]), (n_in + N_OUT,))
    for p in range(n_in + N_OUT):
        bufs[p] = _address(_get_buffer(tab[T_GET_BUFFER], _voidptr(ports[p]), nframes))
    in_data = carray(_float32s(tab[T_IN_DATA]), (slots, frames, n_in))
    out_data = carray(_float32s(tab[T_OUT_DATA]), (slots, frames, N_OUT))
    in_tag = carray(_int64s(tab[T_IN_TAG]), (slots,))
    out_tag = carray(_int64s(tab[T_OUT_TAG]), (slots,))
    _exchange(frames, bufs[:n_in], bufs[n_in:], in_data, in_tag, out_data, out_tag, count,
              tab[T_DELAY])
    _sem_post(tab[T_SEM_POST], _voidptr(tab[T_SEM]))
    # the period as JACK timed it: cycle start, our outputs written, the next cycle's start
    # (the layout of edgemix.rt.timing.BlockTimer, in microseconds: only ratios are read)
    sc = carray(_int64s(scratch), (N_SCRATCH,))
    tc = carray(_int64s(tab[T_TIMES_COUNT]), (2,))
    cap = tab[T_TIMES_CAP]
    row = carray(_int64s(tab[T_TIMES] + 24 * (tc[0] & (cap - 1))), (3,))
    end = np.int64(_get_time(tab[T_GET_TIME]))
    row[0] = sc[1]
    row[1] = end
    row[2] = sc[2]
    if end > sc[2]:
        tc[1] += 1
    tc[0] += 1
    return 0


# ---- the worker's side ------------------------------------------------------------------
@kernel(nogil=False)
def _claim_block(count, slots):
    """Worker: the slot of the oldest unprocessed input block, or -1 when there is none."""
    r = count[C_IN_READ]
    if r >= count[C_IN_WRITTEN] or count[C_OUT_WRITTEN] - count[C_OUT_READ] >= slots:
        return -1  # nothing new, or (the server stopped calling) no free output slot
    _fence_intrinsic()  # read the frames only after the index that published them
    return r % slots


@kernel(nogil=False)
def _release_block(count, in_tag, out_tag, slot):
    """Worker: publish output block ``slot`` (tagged like its input) and free the input."""
    out_tag[slot] = in_tag[slot]
    _fence_intrinsic()  # the mix before the index that publishes it
    count[C_OUT_WRITTEN] += 1
    count[C_IN_READ] += 1


# ---- allocation (owner thread, before the client is activated) --------------------------
#: The C functions the callback calls, by the names their addresses are looked up under.
FUNCTIONS = {"jack_port_get_buffer": T_GET_BUFFER, "jack_get_cycle_times": T_CYCLE_TIMES,
             "jack_get_time": T_GET_TIME, "sem_post": T_SEM_POST}


class CycleRings:
    """The rings, tags and counters the callback and the worker share, and the table that
    hands them (and the C functions) to the callback.  Everything is allocated here, once.

    ``ports``: addresses of the ``jack_port_t`` of each input channel then the two outputs;
    ``client``: the ``jack_client_t`` address; ``sem``: the address of an initialised
    ``sem_t``; ``functions``: name -> address for every name in :data:`FUNCTIONS`;
    ``timer``: the :class:`~edgemix.rt.timing.BlockTimer` the callback writes its cycle
    timing into.  Keep this object alive while the callback may run.
    """

    def __init__(self, n_inputs: int, frames: int, slots: int, delay_blocks: int, *,
                 ports, client: int, sem: int, functions: dict, timer):
        if delay_blocks < 1 or slots < delay_blocks + 3:
            # +3: the block in flight at the worker, the one due, the one being pushed
            raise ValueError(f"a ring of {slots} slots cannot delay by {delay_blocks} blocks:"
                             f" use at least {delay_blocks + 3} slots")
        self.n_inputs, self.frames, self.slots, self.delay_blocks = (
            int(n_inputs), int(frames), int(slots), int(delay_blocks))
        self.ports = np.ascontiguousarray(ports, dtype=np.int64)
        if self.ports.shape != (self.n_inputs + N_OUT,):
            raise ValueError("one port per input channel and two outputs")
        self.in_data = np.zeros((self.slots, self.frames, self.n_inputs), np.float32)
        self.out_data = np.zeros((self.slots, self.frames, N_OUT), np.float32)
        self.in_tag = np.zeros(self.slots, np.int64)
        self.out_tag = np.full(self.slots, -1, np.int64)
        #: per slot, the worker's ``(frames, channels)`` views (built once, not per block)
        self.in_blocks = [self.in_data[s] for s in range(self.slots)]
        self.out_blocks = [self.out_data[s] for s in range(self.slots)]
        self.count = np.zeros(N_COUNTERS, np.int64)
        self.bufs = np.zeros(self.n_inputs + N_OUT, np.int64)
        self.scratch = np.zeros(N_SCRATCH, np.int64)
        self.timer = timer
        t = np.zeros(N_TABLE, np.int64)
        for name, slot in FUNCTIONS.items():
            t[slot] = int(functions[name])
        t[T_CLIENT], t[T_SEM] = int(client), int(sem)
        t[T_PORTS], t[T_BUFS] = self.ports.ctypes.data, self.bufs.ctypes.data
        t[T_N_IN], t[T_FRAMES], t[T_SLOTS], t[T_DELAY] = (
            self.n_inputs, self.frames, self.slots, self.delay_blocks)
        t[T_IN_DATA], t[T_IN_TAG] = self.in_data.ctypes.data, self.in_tag.ctypes.data
        t[T_OUT_DATA], t[T_OUT_TAG] = self.out_data.ctypes.data, self.out_tag.ctypes.data
        t[T_COUNT] = self.count.ctypes.data
        t[T_TIMES], t[T_TIMES_COUNT] = timer._t.ctypes.data, timer._count.ctypes.data
        t[T_TIMES_CAP] = timer.capacity
        t[T_SCRATCH] = self.scratch.ctypes.data
        self.table = t
        # compile (or load) the worker's kernels now, not in its first period
        scratch_count = np.zeros(N_COUNTERS, np.int64)
        _claim_block(scratch_count, self.slots)
        _release_block(scratch_count, self.in_tag[:1].copy(), self.out_tag[:1].copy(), 0)

    @property
    def arg(self) -> int:
        """The callback's ``void *arg``: the table's address."""
        return self.table.ctypes.data

    def stat(self, counter: int) -> int:
        return int(self.count[counter])
