"""Console speed: the whole console per block, the strip chain against its peers, scaling.

Peers run in the same session on the same input:
* a plain C (``cc -O3``) implementation of the same strip chain (``peers/strip.c``);
* spotify/pedalboard running the same chain per channel (Gain, a 24 dB/oct high-pass as two
  2nd-order sections, low shelf, two peaks, high shelf, Compressor, Gain), one call per
  channel per block, the way a Python host would use it.

Run: ``./run bench`` (or ``scripts/bench.sh benchmarks/bench_console.py``).  Each ratio is
written to the benchmark's ``extra_info`` and printed.
"""
from __future__ import annotations

import ctypes
import pathlib
import shutil
import subprocess
import time

import numpy as np
import pytest

from edgemix import params as P
from edgemix.console import Console
from edgemix.dsp._jit import kernel
from edgemix.dsp.strip import (G_AUX, G_L, G_R, _guard_input, _strips_post_fader,
                                _strips_pre_fader)

FS = 48000.0
DEADLINE_S = 64 / FS

CHAIN = dict(trim_db=6.0, hpf_on=1.0, hpf_hz=80.0, hpf_slope_db_oct=24.0, eq_on=1.0,
             eq1_gain_db=-3.0, eq2_hz=300.0, eq2_gain_db=-4.0, eq3_hz=3000.0, eq3_gain_db=3.0,
             eq4_gain_db=2.0, comp_on=1.0, comp_threshold_db=-24.0, comp_ratio=4.0,
             comp_attack_ms=5.0, comp_release_ms=100.0, comp_makeup_db=3.0, fader_db=-3.0,
             aux1_send_db=-10.0, aux2_send_db=-6.0)


def _input(frames, channels, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((frames, channels)) * 0.25).astype(np.float32)


def _console(channels, block):
    c = Console(FS, block, channels, 2)
    for ch in range(channels):
        for k, v in CHAIN.items():
            c.set_channel(ch, k, v)
        c.set_channel(ch, "pan", -1.0 + 2.0 * ch / max(1, channels - 1))
    c.warmup()
    return c


def _best_of(fn, repeats=7, number=300):
    fn()
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number)
    return best


@kernel
def _strips_only(x, work, n, clock, guard, p, cur, gain, gain_t, gain_prev, coef, z, dyn, k,
                 col_class, col_band, col_log, col_alpha, gain_alpha, meter_k, fs, bus, aux,
                 direct):
    """The strip chain exactly as ``_console_block`` runs it, without the master section."""
    _guard_input(x, work, guard)
    _strips_pre_fader(work, n, clock[0], p, cur, gain, gain_t, gain_prev, coef, z, dyn, k,
                     col_class, col_band, col_log, col_alpha, gain_alpha, meter_k, fs, 2)
    bus[:, :n] = 0.0
    aux[:, :n] = 0.0
    _strips_post_fader(work, n, clock[0], gain, gain_t, gain_prev, gain_alpha, bus, aux, 2,
                      direct)
    clock[0] += n


def _strip_runner(channels, block):
    c = _console(channels, block)
    c.process(_input(block, channels))  # pick up parameters
    s = c._strip
    x = _input(block, channels)

    def run():
        _strips_only(x, c._work, block, c._clock, c._guard, c._p, s.cur, s.gain, s.gain_t,
                     s.gain_prev, s.coef, s.z, s.dyn, s.k, s.col_class, s.col_band, s.col_log,
                     s.col_alpha, s.gain_alpha, s.meter_k, FS, c._bus, c._aux, c._no_direct)
    return run, c


# ---- the C peer ---------------------------------------------------------------------------
_C_FIELDS = 65  # doubles in strip_t (see peers/strip.c)


@pytest.fixture(scope="session")
def c_peer(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the C peer")
    src = pathlib.Path(__file__).parent / "peers" / "strip.c"
    lib = tmp_path_factory.mktemp("peer") / "libstrip.so"
    subprocess.run([cc, "-O3", "-shared", "-fPIC", str(src), "-o", str(lib), "-lm"], check=True)
    so = ctypes.CDLL(str(lib))
    assert so.strip_size() == _C_FIELDS * 8
    return so


def _c_runner(so, channels, block):
    """State for the C strips, with the coefficients the console computed (same filters)."""
    c = _console(channels, block)
    c.process(_input(block, channels))
    s = c._strip
    st = np.zeros((channels, _C_FIELDS))
    st[:, 0:30] = s.coef.transpose(2, 0, 1).reshape(channels, 30)
    a_g = 1.0 - np.exp(-1000.0 / (20.0 * FS))
    knee = P.CHANNEL_SPECS["comp_knee_db"].default
    thr = CHAIN["comp_threshold_db"]
    st[:, 42:45] = [10 ** (CHAIN["trim_db"] / 20), 10 ** (CHAIN["trim_db"] / 20), a_g]
    st[:, 45:52] = [thr, CHAIN["comp_ratio"], knee, 10 ** ((thr - knee / 2) / 10),
                    np.exp(-1000 / (CHAIN["comp_attack_ms"] * FS)),
                    np.exp(-1000 / (CHAIN["comp_release_ms"] * FS)),
                    10 ** (CHAIN["comp_makeup_db"] / 20)]
    st[:, 55:57] = [10 ** (-20 / 1.7 / (20 * FS)), 1 - np.exp(-1000 / (300 * FS))]
    # gl, gr, tl, tr, gs[2], ts[2]: the settled gains the console computed
    gl, gr, a1, a2 = (s.gain[G_L], s.gain[G_R], s.gain[G_AUX], s.gain[G_AUX + 1])
    st[:, 57:65] = np.column_stack([gl, gr, gl, gr, a1, a2, a1, a2])
    x_cf = np.ascontiguousarray(_input(block, channels).T)
    work = np.zeros((channels, block), np.float32)
    bus = np.zeros((2, block), np.float32)
    aux = np.zeros((2, block), np.float32)
    ptr = ctypes.c_void_p
    f = so.strips_process
    args = (st.ctypes.data_as(ptr), ctypes.c_int(channels), x_cf.ctypes.data_as(ptr),
            work.ctypes.data_as(ptr), ctypes.c_int(block), bus.ctypes.data_as(ptr),
            aux.ctypes.data_as(ptr))

    def run():
        bus[:] = 0.0
        aux[:] = 0.0
        f(*args)
    return run


# ---- the pedalboard peer ------------------------------------------------------------------
def _pedalboard_runner(channels, block):
    pb = pytest.importorskip("pedalboard")
    boards = []
    for _ in range(channels):
        boards.append(pb.Pedalboard([
            pb.Gain(CHAIN["trim_db"]),
            # pedalboard's high-pass is first order: two of them are cheaper than our two
            # 2nd-order sections, which only favours the peer
            pb.HighpassFilter(CHAIN["hpf_hz"]),
            pb.HighpassFilter(CHAIN["hpf_hz"]),
            pb.LowShelfFilter(100.0, CHAIN["eq1_gain_db"], 0.707),
            pb.PeakFilter(CHAIN["eq2_hz"], CHAIN["eq2_gain_db"], 1.0),
            pb.PeakFilter(CHAIN["eq3_hz"], CHAIN["eq3_gain_db"], 1.0),
            pb.HighShelfFilter(8000.0, CHAIN["eq4_gain_db"], 0.707),
            pb.Compressor(CHAIN["comp_threshold_db"], CHAIN["comp_ratio"],
                          CHAIN["comp_attack_ms"], CHAIN["comp_release_ms"]),
            pb.Gain(CHAIN["comp_makeup_db"] + CHAIN["fader_db"]),
        ]))
    x = np.ascontiguousarray(_input(block, channels).T)
    pans = np.linspace(0, np.pi / 2, channels)
    gl, gr = np.cos(pans).astype(np.float32), np.sin(pans).astype(np.float32)
    sends = np.array([10 ** (-10 / 20), 10 ** (-6 / 20)], np.float32)
    bus = np.zeros((2, block), np.float32)
    aux = np.zeros((2, block), np.float32)

    def run():
        bus[:] = 0.0
        aux[:] = 0.0
        for ch in range(channels):
            y = boards[ch](x[ch:ch + 1], FS, reset=False)[0]
            bus[0] += gl[ch] * y
            bus[1] += gr[ch] * y
            aux[0] += sends[0] * y
            aux[1] += sends[1] * y
    return run


# ---- benchmarks ---------------------------------------------------------------------------
def test_console_32ch_64_frames(benchmark):
    """The whole console: 32 full strips, sends, reverb, limiter, meters."""
    c = _console(32, 64)
    x = _input(64, 32)
    out = np.empty((64, 2), np.float32)
    benchmark.pedantic(c.process, args=(x,), kwargs=dict(out=out), rounds=2000,
                       iterations=5, warmup_rounds=100)
    t = benchmark.stats.stats.min
    benchmark.extra_info.update(us_per_block=t * 1e6, ns_per_channel_sample=t / (32 * 64) * 1e9,
                                deadline_share=t / DEADLINE_S)
    print(f"\nconsole 32x64: {t * 1e6:.1f} us/block, {t / 2048 * 1e9:.1f} ns/channel-sample, "
          f"{100 * t / DEADLINE_S:.1f} % of the 1.33 ms deadline")


def test_console_32ch_64_frames_every_channel_delayed(benchmark):
    """The whole console with every channel's input delay in use: fractional delays of
    0.3 .. 20 ms (the full 32-tap interpolator everywhere; the worst case)."""
    c = _console(32, 64)
    for ch in range(32):
        c.set_channel(ch, "delay_ms", 0.3 + 19.7 * ch / 31 + 0.013)
    x = _input(64, 32)
    out = np.empty((64, 2), np.float32)
    benchmark.pedantic(c.process, args=(x,), kwargs=dict(out=out), rounds=2000,
                       iterations=5, warmup_rounds=100)
    t = benchmark.stats.stats.min
    benchmark.extra_info.update(us_per_block=t * 1e6, deadline_share=t / DEADLINE_S)
    print(f"\nconsole 32x64, every channel delayed: {t * 1e6:.1f} us/block, "
          f"{100 * t / DEADLINE_S:.1f} % of the 1.33 ms deadline")


def test_strip_chain_against_c_and_pedalboard(benchmark, c_peer):
    """ns per channel-sample of the strip chain; ratios to plain C -O3 and to pedalboard."""
    ours, _ = _strip_runner(32, 64)
    c_run = _c_runner(c_peer, 32, 64)
    pb_run = _pedalboard_runner(32, 64)
    t_c = _best_of(c_run)
    t_pb = _best_of(pb_run, number=50)
    benchmark.pedantic(ours, rounds=2000, iterations=5, warmup_rounds=100)
    t_ours = benchmark.stats.stats.min
    per = 32 * 64
    info = dict(ns_per_channel_sample=t_ours / per * 1e9, c_ns_per_channel_sample=t_c / per * 1e9,
                pedalboard_ns_per_channel_sample=t_pb / per * 1e9,
                ratio_to_c=t_ours / t_c, speedup_over_pedalboard=t_pb / t_ours)
    benchmark.extra_info.update(info)
    print("\nstrip chain 32x64: " + ", ".join(f"{k}={v:.2f}" for k, v in info.items()))


@pytest.mark.parametrize("channels", [1, 2, 4, 8, 16, 32, 64])
def test_scaling_over_channels(benchmark, channels):
    c = _console(channels, 64)
    x = _input(64, channels)
    out = np.empty((64, 2), np.float32)
    benchmark.pedantic(c.process, args=(x,), kwargs=dict(out=out), rounds=500, iterations=5,
                       warmup_rounds=50)
    t = benchmark.stats.stats.min
    benchmark.extra_info.update(ns_per_channel_sample=t / (channels * 64) * 1e9,
                                deadline_share=t / DEADLINE_S)


@pytest.mark.parametrize("block", [16, 32, 64, 128, 256, 512, 1024])
def test_scaling_over_block_sizes(benchmark, block):
    c = _console(32, block)
    x = _input(block, 32)
    out = np.empty((block, 2), np.float32)
    benchmark.pedantic(c.process, args=(x,), kwargs=dict(out=out), rounds=300, iterations=3,
                       warmup_rounds=30)
    t = benchmark.stats.stats.min
    benchmark.extra_info.update(ns_per_channel_sample=t / (32 * block) * 1e9,
                                deadline_share=t / (block / FS))
