"""The console engine: N channel strips, aux buses, the FX reverb, the master bus.

The engine API is small and boring (DESIGN.md contract 2)::

    c = Console(sample_rate_hz=48000, block_size=64, n_channels=16, n_aux=2)
    c.warmup()                   # compile every kernel before a stream opens
    out = c.process(block)       # (frames, n_channels) float32 -> (frames, 2) float32
    c.reset()                    # clear audio state, keep parameters

One block is one Numba call (``_console_block``): guard, input delay, every strip, the
automixer, the buses, the reverb, the master fader, the limiter and the meters.  Nothing in
it allocates.

Threads: ``process`` belongs to the audio thread.  ``set_channel``/``set_master``/``stage``
may be called from any other thread: they build a new parameter pair and publish it with a
single reference assignment (atomic under the GIL); the audio thread copies the newest pair
into its own arrays at the start of its next block and never waits (latest wins).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from edgemix import params as P
from edgemix.dsp import loudness as L
from edgemix.dsp import meters as M
from edgemix.dsp._jit import kernel
from edgemix.dsp.arena import Arena, _f32_2, _f64_1, _f64_2, _i64_1
from edgemix.dsp.gain_sharing import (AutomixState, _automix_block, _automix_idle, _automix_skip,
                                   _automix_views)
from edgemix.dsp.delay import DelayState, _delay_block, _delay_views
from edgemix.dsp.dynamics import _gain_of_db
from edgemix.dsp.limiter import S_GAIN, LimiterState, _limiter_run, _limiter_views
from edgemix.dsp.reverb import ReverbState, _reverb_block, _reverb_views
from edgemix.dsp.strip import (TICK, StripState, _guard_input, _strip_views, _strips_post_fader,
                               _strips_pre_fader, D_METER_MS, D_PEAK, D_YG, D_YL)
from edgemix.dsp.truepeak import TP_MAX, TruePeakState, _truepeak_run, _truepeak_views
from edgemix.params import MS

# The limits live in params.py (one source); the console's names for them:
from edgemix.params import CONSOLE_MAX_BLOCK as MAX_BLOCK
from edgemix.params import CONSOLE_MAX_CHANNELS as MAX_CHANNELS
from edgemix.params import CONSOLE_SAMPLE_RATE_RANGE_HZ


#: The console kernel's stages, in the order of its arena: stage ``s`` is row ``s`` of the
#: offset table (``edgemix/dsp/arena.py``), and ``Console.__init__`` allocates them in
#: this order.  To add a stage: a state type with ``allocate()``/``reset()`` and a
#: ``*_views`` helper beside its kernel, an index here, its allocation in
#: ``Console.__init__`` (and its ``reset`` in ``Console.reset``), and its call in
#: ``_console_block``.
ENGINE, STRIP, AUTOMIX, REVERB, MASTER, LIMITER, TRUEPEAK, LOUDNESS, PEAK, CORRELATION, \
    DELAY = range(11)


@dataclass
class EngineState:
    """The console's own arrays: parameters, work buffers, buses, clock and guard count."""

    p: np.ndarray        # (C, N_CH) channel parameter targets (the audio thread's copy)
    m: np.ndarray        # (N_MS,) master parameter targets
    m_prev: np.ndarray   # (N_MS,) the master targets of the previous block
    work: np.ndarray     # (block, C) float64 strip work buffer (frames, channels)
    bus: np.ndarray      # (2, block) float32 mix bus
    aux: np.ndarray      # (n_aux, block) float32 aux buses
    clock: np.ndarray    # (1,) int64 absolute sample clock
    guard: np.ndarray    # (1,) int64 input samples replaced (NaN, Inf, > 1e6)
    fs_hz: float
    n_aux: int

    @classmethod
    def allocate(cls, n_channels: int, block_size: int, n_aux: int,
                 fs_hz: float) -> "EngineState":
        m = P.master_defaults()
        return cls(p=P.channel_defaults(n_channels), m=m, m_prev=m.copy(),
                   work=np.zeros((block_size, n_channels)),
                   bus=np.zeros((2, block_size), np.float32),
                   aux=np.zeros((n_aux, block_size), np.float32),
                   clock=np.zeros(1, np.int64), guard=np.zeros(1, np.int64),
                   fs_hz=float(fs_hz), n_aux=int(n_aux))

    def reset(self) -> None:
        """Rewind the clock; the master's previous targets are the current ones."""
        self.clock[0] = 0
        self.m_prev[:] = self.m


@kernel(inline="always")
def _engine_views(table, s):
    """An :class:`EngineState` in an arena, in its field order."""
    return (_f64_2(table, s, 0), _f64_1(table, s, 1), _f64_1(table, s, 2),
            _f64_2(table, s, 3), _f32_2(table, s, 4), _f32_2(table, s, 5),
            _i64_1(table, s, 6), _i64_1(table, s, 7), _f64_1(table, s, 8)[0],
            _i64_1(table, s, 9)[0])


@dataclass
class MasterState:
    """The master fader: its smoothed gain now and the one-pole coefficient per sample."""

    gain: np.ndarray   # (1,)
    a: float

    @classmethod
    def allocate(cls, fs_hz: float) -> "MasterState":
        spec = P.MASTER_SPECS["master_fader_db"]
        return cls(gain=np.zeros(1), a=1.0 - math.exp(-1000.0 / (spec.smoothing_ms * fs_hz)))

    def reset(self, m) -> None:
        """Snap the gain to the targets ``m`` (the master parameters)."""
        self.gain[0] = _master_gain_target(m)


@kernel(inline="always")
def _master_views(table, s):
    """A :class:`MasterState` in an arena, as :func:`_master_fader` takes it."""
    return _f64_1(table, s, 0), _f64_1(table, s, 1)[0]


@kernel
def _master_gain_target(m):
    return _gain_of_db(m[MS.master_fader_db])


@kernel
def _master_fader(bus, n_frames, clock, m, m_prev, mstate, a_gain):
    """Master fader in place on the bus, smoothed per sample; a change takes effect at the
    block's first tick, like every channel parameter."""
    first_tick = (TICK - clock % TICK) % TICK
    g = mstate[0]
    t = _master_gain_target(m_prev)
    t_new = _master_gain_target(m)
    for n in range(n_frames):
        if n == first_tick:
            t = t_new
        g += a_gain * (t - g)
        bus[0, n] *= g
        bus[1, n] *= g
    if abs(g - t) <= 1e-9 * t + 1e-25:  # arrived: snap (and never drift into denormals)
        g = t
    mstate[0] = g


@kernel
def _console_block(x, out, direct, n_frames, table):
    """One block of the whole console, in the order of docs/design-notes.md ("The stage
    order in one block").

    ``x`` ``(n_frames, C)`` float32 input; ``out`` ``(n_frames, 2)`` float32 master out;
    ``direct`` ``(n_frames, C, 2)`` float32 direct outs, or ``(0, C, 2)`` for none;
    ``table``: the console's :class:`~edgemix.dsp.arena.Arena` table, one stage per row
    (``ENGINE`` .. ``DELAY``), from which each stage's ``_*_views`` helper gives back
    its state type's arrays.  Everything is preallocated; nothing allocates.
    """
    p, m, m_prev, work, bus, aux, clock, guard, fs_hz, n_aux = _engine_views(table, ENGINE)
    (cur, gain, gain_t, gain_prev, coef, z, dyn, k, col_class, col_band, col_log, col_alpha,
     gain_alpha, meter_k) = _strip_views(table, STRIP)
    am_ch, am_ctl, am_gains_db = _automix_views(table, AUTOMIX)

    _guard_input(x, work, guard)
    t0 = clock[0]
    _delay_block(work, n_frames, t0, p, *_delay_views(table, DELAY))
    _strips_pre_fader(work, n_frames, t0, p, cur, gain, gain_t, gain_prev, coef, z, dyn, k,
                     col_class, col_band, col_log, col_alpha, gain_alpha, meter_k, fs_hz, n_aux)
    if _automix_idle(p, am_ch):
        _automix_skip(am_ctl, n_frames)
    else:
        _automix_block(work.T, n_frames, p, m, am_ch, am_ctl, am_gains_db)
    for n in range(n_frames):
        bus[0, n] = 0.0
        bus[1, n] = 0.0
        for a in range(n_aux):
            aux[a, n] = 0.0
    _strips_post_fader(work, n_frames, t0, gain, gain_t, gain_prev, gain_alpha, bus, aux, n_aux,
                      direct)
    # FX bus: aux 1 feeds the reverb, whose stereo return joins the mix bus
    _reverb_block(aux[0:1], bus, n_frames, m, *_reverb_views(table, REVERB))
    _master_fader(bus, n_frames, t0, m, m_prev, *_master_views(table, MASTER))
    _limiter_run(bus, n_frames, m[MS.limiter_on], m[MS.limiter_ceiling_dbtp],
                 m[MS.limiter_release_ms], fs_hz, *_limiter_views(table, LIMITER))
    master = bus[:, :n_frames]
    _truepeak_run(master, n_frames, *_truepeak_views(table, TRUEPEAK))
    L._loudness_process(master, *L._loudness_views(table, LOUDNESS))
    M._peak_process(master, *M._peak_views(table, PEAK))
    M._correlation_process(master, *M._correlation_views(table, CORRELATION))
    for n in range(n_frames):
        out[n, 0] = bus[0, n]
        out[n, 1] = bus[1, n]
    for i in range(m.shape[0]):
        m_prev[i] = m[i]
    clock[0] = t0 + n_frames


def checked_params(n_channels: int, channel_params, master_params) -> tuple:
    """``(channel, master)`` parameter arrays as the engine takes them: float64 copies of
    the right shapes, finite, clipped to the schema (ValueError naming what is wrong)."""
    cp = np.array(channel_params, dtype=np.float64)
    if cp.shape != (n_channels, P.N_CH):
        raise ValueError(f"channel parameters of shape {cp.shape}: expected "
                         f"({n_channels}, {P.N_CH})")
    mp = np.array(master_params, np.float64)
    if mp.shape != (P.N_MS,):
        raise ValueError(f"master parameters of shape {mp.shape}: expected ({P.N_MS},)")
    if not (np.isfinite(cp).all() and np.isfinite(mp).all()):
        raise ValueError("parameters must be finite numbers")
    for j, spec in enumerate(P.CHANNEL_PARAMS):
        cp[:, j] = spec.clip(cp[:, j])
    mp = np.array([spec.clip(mp[j]) for j, spec in enumerate(P.MASTER_PARAMS)])
    return cp, mp


@dataclass(frozen=True)
class Meters:
    """A snapshot of the console's meters (dB values; -inf for silence)."""

    channel_peak_db: np.ndarray            # pre-fader sample peak (IEC 60268-18 return)
    channel_rms_db: np.ndarray             # pre-fader RMS (300 ms)
    channel_gain_reduction_db: np.ndarray  # compressor + gate, >= 0
    automix_gain_db: np.ndarray            # gain-sharing gain per channel (0 = unity)
    peak_dbfs: tuple                       # master sample peak (L, R), held and falling
    true_peak_dbtp: float                  # master true peak, max since reset (BS.1770-4)
    momentary_lufs: float                  # BS.1770-4 / EBU Tech 3341 M (400 ms)
    short_term_lufs: float                 # S (3 s)
    integrated_lufs: float                 # gated I since reset
    loudness_range_lu: float               # EBU Tech 3342 LRA
    correlation: float                     # stereo correlation -1 .. +1
    limiter_gain_reduction_db: float       # now, >= 0


class MeterState(NamedTuple):
    """Where a console keeps its meter readings (live arrays; see ``Console.meter_state``):
    the strips' dynamics rows (``strip.D_PEAK``, ``D_METER_MS``, ``D_YL``, ``D_YG``), the
    automixer's gains in dB, the master's peak, true-peak, loudness and correlation states,
    the limiter's state (``limiter.S_GAIN``) and the sample clock."""

    dyn: np.ndarray
    automix_gains_db: np.ndarray
    peak: np.ndarray
    true_peak: np.ndarray
    loudness: np.ndarray
    correlation: np.ndarray
    limiter: np.ndarray
    clock: np.ndarray


class Console:
    """A mixing console: ``n_channels`` strips, ``n_aux`` aux buses (aux 1 feeds the
    reverb), a master bus; built for one sample rate and a maximum block size."""

    def __init__(self, sample_rate_hz: float = 48000, block_size: int = 64,
                 n_channels: int = 8, n_aux: int = 2):
        lo, hi = CONSOLE_SAMPLE_RATE_RANGE_HZ
        if not (lo <= float(sample_rate_hz) <= hi):
            raise ValueError(f"sample rate {sample_rate_hz} Hz: use {lo:.0f} .. {hi:.0f}")
        if not (1 <= int(block_size) <= MAX_BLOCK) or int(block_size) != block_size:
            raise ValueError(f"block size {block_size}: use a whole number 1 .. {MAX_BLOCK}")
        if not (1 <= int(n_channels) <= MAX_CHANNELS) or int(n_channels) != n_channels:
            raise ValueError(f"{n_channels} channels: use 1 .. {MAX_CHANNELS}")
        if not (1 <= int(n_aux) <= P.MAX_AUX) or int(n_aux) != n_aux:
            raise ValueError(f"{n_aux} aux buses: use 1 .. {P.MAX_AUX}")
        self.sample_rate_hz = float(sample_rate_hz)
        self.block_size = int(block_size)
        self.n_channels = int(n_channels)
        self.n_aux = int(n_aux)
        fs, b, c = self.sample_rate_hz, self.block_size, self.n_channels

        # every stage's state, in the kernel's stage order, in one table (dsp/arena.py)
        self._arena = Arena([
            EngineState.allocate(c, b, self.n_aux, fs), StripState.allocate(c, fs),
            AutomixState.allocate(c, fs), ReverbState.allocate(fs), MasterState.allocate(fs),
            LimiterState.allocate(fs), TruePeakState.allocate(2, fs),
            L.LoudnessState.allocate(fs, 2), M.PeakState.allocate(2, fs),
            M.CorrelationState.allocate(fs), DelayState.allocate(c, fs)])
        (self._engine, self._strip, self._automix, self._reverb, self._master,
         self._limiter, self._truepeak, self._loud, self._peak_meter,
         self._corr_meter, self._delay) = self._arena.stages
        self._table = self._arena.table
        e = self._engine
        self._p, self._m, self._m_prev = e.p, e.m, e.m_prev
        self._bus, self._aux, self._clock, self._guard = e.bus, e.aux, e.clock, e.guard
        self._work = e.work
        self._tp = self._truepeak.state
        self._peak = self._peak_meter.state
        self._corr = self._corr_meter.state
        self._automix_gains_db = self._automix.gains_db
        self._staged = (self._p.copy(), self._m.copy())
        self._applied = self._staged
        self._no_direct = np.zeros((0, c, 2), np.float32)
        self._direct = self._no_direct
        self.reset()

    # ---- audio thread -------------------------------------------------------------------
    def process(self, block: np.ndarray, out: np.ndarray | None = None,
                direct: np.ndarray | None = None) -> np.ndarray:
        """Mix one block: ``(frames, n_channels)`` float32 in, ``(frames, 2)`` float32 out.

        Audio thread.  With ``out`` given (preallocated float32 ``(frames, 2)``) and a
        float32 C-contiguous input, nothing is allocated.  Any number of frames is accepted;
        more than ``block_size`` are processed in ``block_size`` pieces.

        ``direct`` (float32 ``(frames, n_channels, 2)``, C-contiguous) receives every
        channel's direct out: the processed channel after fader and pan, the stem it adds
        to the mix bus.  Without it, the buffer given to ``set_direct_outs`` is used, if any.
        """
        x = block
        if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous):
            x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"block of shape {x.shape}: expected (frames, {self.n_channels})")
        frames = x.shape[0]
        if out is None:
            out = np.empty((frames, 2), np.float32)
        elif out.shape != (frames, 2) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 array of shape ({frames}, 2)")
        staged = self._staged
        if direct is None:
            direct = self._direct  # set_direct_outs' buffer, or the empty "none"
        if direct is not self._no_direct:
            self._check_direct(direct, frames)
        if staged is not self._applied:  # latest-wins pickup; copying never allocates
            np.copyto(self._p, staged[0])
            np.copyto(self._m, staged[1])
            self._strip.targets_changed()
            self._applied = staged
        if frames <= self.block_size:
            self._run(x, out, direct, frames)
        else:
            for start in range(0, frames, self.block_size):
                n = min(self.block_size, frames - start)
                d = direct[start:start + n] if direct.shape[0] else direct
                self._run(x[start:start + n], out[start:start + n], d, n)
        return out

    def set_direct_outs(self, buffer: np.ndarray | None) -> None:
        """Write every channel's direct out (post-fader, post-pan, ``(frames, n_channels,
        2)``) into ``buffer`` on each following ``process`` call; None stops.  For taps
        that do not call ``process`` themselves (the offline backend's stem writer).
        Call it while no block is being processed."""
        if buffer is None:
            self._direct = self._no_direct
            return
        self._check_direct(buffer, 1)
        self._direct = buffer

    def _check_direct(self, buf, frames: int) -> None:
        """A direct-out buffer: C-contiguous float32 ``(>= frames, n_channels, 2)``."""
        if (not isinstance(buf, np.ndarray) or buf.dtype != np.float32
                or not buf.flags.c_contiguous or buf.ndim != 3 or buf.shape[0] < frames
                or buf.shape[1:] != (self.n_channels, 2)):
            raise ValueError(f"direct outs need a C-contiguous float32 array of shape "
                             f"({frames} or more frames, {self.n_channels}, 2)")

    def _run(self, x, out, direct, n):
        _console_block(x, out, direct, n, self._table)

    def reset(self) -> None:
        """Clear every audio state (filters, dynamics, reverb, meters, clock); keep parameters.

        Call it when no block is being processed (the audio thread, or a stopped stream).
        """
        for st in (self._strip, self._automix, self._reverb, self._limiter, self._truepeak,
                   self._loud, self._peak_meter, self._corr_meter, self._engine, self._delay):
            st.reset()
        self._master.reset(self._m)

    def warmup(self) -> None:
        """Compile (or load from Numba's cache) every kernel, then restore a clean state."""
        staged = self._staged
        self.process(np.zeros((self.block_size, self.n_channels), np.float32),
                     out=np.empty((self.block_size, 2), np.float32))
        self.reset()
        self._staged = staged

    # ---- any other thread ---------------------------------------------------------------
    def stage(self, channel_params: np.ndarray, master_params: np.ndarray | None = None) -> None:
        """Publish whole parameter arrays (latest wins).  Values are clipped to the schema.

        ``channel_params`` is ``(n_channels, params.N_CH)`` in units; ``master_params``
        ``(params.N_MS,)`` or None to keep the current ones.  Control thread.
        """
        self._staged = checked_params(self.n_channels, channel_params,
                                      self._staged[1] if master_params is None
                                      else master_params)

    def apply_targets(self, channel_params: np.ndarray, master_params: np.ndarray) -> None:
        """Audio thread, between blocks: make these (already ``checked_params``) arrays the
        targets now, without allocating; for a control path in another process, whose
        parameters arrive in shared memory (``edgemix.rt.control_process``)."""
        np.copyto(self._p, channel_params)
        np.copyto(self._m, master_params)
        self._strip.targets_changed()
        self._applied = self._staged  # an older staged pair must not override these

    def set_channel(self, channel: int, name: str, value: float) -> None:
        """Set one channel parameter by name (validated; smoothed on the audio side)."""
        if not 0 <= int(channel) < self.n_channels:
            raise ValueError(f"channel {channel}: use 0 .. {self.n_channels - 1}")
        if name not in P.CHANNEL_SPECS:
            P.lookup(name)  # raises with close matches
            raise ValueError(f"{name} is a master parameter: use set_master")
        v = P.CHANNEL_SPECS[name].check(value)
        cp, mp = self._staged
        cp = cp.copy()
        cp[int(channel), getattr(P.CH, name)] = v
        self._staged = (cp, mp)

    def set_master(self, name: str, value: float) -> None:
        """Set one master/bus parameter by name (validated)."""
        if name not in P.MASTER_SPECS:
            P.lookup(name)
            raise ValueError(f"{name} is a channel parameter: use set_channel")
        v = P.MASTER_SPECS[name].check(value)
        cp, mp = self._staged
        mp = mp.copy()
        mp[getattr(MS, name)] = v
        self._staged = (cp, mp)

    @property
    def channel_params(self) -> np.ndarray:
        """The newest channel parameter targets (a copy), ``(n_channels, N_CH)``."""
        return self._staged[0].copy()

    @property
    def master_params(self) -> np.ndarray:
        return self._staged[1].copy()

    def get(self, channel: int, name: str) -> float:
        """The newest target of one channel parameter, by name (the read twin of
        ``set_channel``)."""
        return float(self._staged[0][channel, getattr(P.CH, name)])

    # ---- read-outs ----------------------------------------------------------------------
    @property
    def latency_frames(self) -> int:
        """Frames from an input sample to the output: the limiter's lookahead (constant,
        in or out of circuit, so toggling the limiter never shifts time)."""
        return self._limiter.latency_frames

    @property
    def aux_out(self) -> np.ndarray:
        """The last block's aux buses, ``(n_aux, block_size)`` float32 (a live view)."""
        return self._aux

    @property
    def guard_count(self) -> int:
        """Input samples replaced so far because they were NaN, Inf or absurdly large."""
        return int(self._guard[0])

    @property
    def sample_clock(self) -> int:
        """Frames processed since construction or the last reset."""
        return int(self._clock[0])

    def meter_state(self) -> "MeterState":
        """The live arrays the meters are read from (by reference, for a publisher on the
        audio thread such as :class:`edgemix.rt.meter_shm.MeterWriter`; read them only
        between blocks, on the audio thread)."""
        return MeterState(self._strip.dyn, self._automix_gains_db, self._peak, self._tp,
                          self._loud.state, self._corr, self._limiter.s, self._clock)

    @property
    def meters(self) -> Meters:
        d = self._strip.dyn
        st = self._loud.state
        return Meters(
            channel_peak_db=M.lin_to_db(d[D_PEAK]),
            channel_rms_db=M.lin_to_db(d[D_METER_MS], power=True),
            channel_gain_reduction_db=d[D_YL] - d[D_YG],
            automix_gain_db=self._automix_gains_db.copy(),
            peak_dbfs=tuple(float(v) for v in M.lin_to_db(self._peak[:, M.PEAK_LEVEL])),
            true_peak_dbtp=float(M.lin_to_db(self._tp[:, TP_MAX].max())),
            momentary_lufs=float(st[L.IDX_MOMENTARY_LUFS]),
            short_term_lufs=float(st[L.IDX_SHORT_TERM_LUFS]),
            integrated_lufs=float(st[L.IDX_INTEGRATED_LUFS]),
            loudness_range_lu=float(st[L.IDX_LRA_LU]),
            correlation=float(self._corr[M.CORR_R]),
            limiter_gain_reduction_db=float(-M.lin_to_db(self._limiter.s[S_GAIN])),
        )
