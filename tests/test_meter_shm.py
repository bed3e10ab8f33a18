"""Meters in shared memory (issue 12, item 7): what the reader sees is what the console
metered, a frame is never torn, and publishing from the audio path allocates nothing."""
from __future__ import annotations

import math
import types

import numpy as np
import pytest

from edgemix.console import Console, MeterState
from edgemix.dsp.strip import D_PEAK
from edgemix.rt.meter_shm import CHANNEL_METERS, MASTER_METERS, MeterReader, MeterWriter
from tests.alloc_helpers import heap_bytes

FS = 48000


def _played(n=4, blocks=200, block=64):
    """A console that played ~0.27 s of loud, compressed tones (every meter moves)."""
    c = Console(FS, block, n, 2)
    cp = c.channel_params
    from edgemix import params as P
    cp[:, P.CH.comp_ratio] = 4.0
    cp[:, P.CH.comp_threshold_db] = -30.0
    c.stage(cp)
    t = np.arange(blocks * block) / FS
    x = np.stack([0.5 * np.sin(2 * np.pi * (200 + 100 * k) * t) for k in range(n)], 1)
    x = x.astype(np.float32)
    out = np.zeros((block, 2), np.float32)
    for i in range(blocks):
        c.process(x[i * block:(i + 1) * block], out=out)
    return c


def test_reader_sees_the_console_meters():
    c = _played()
    w = MeterWriter(c)
    r = MeterReader(w.name, c.n_channels)
    try:
        assert r.read() is None  # nothing published yet
        w.publish()
        f = r.read()
        m = c.meters
        assert f.sample_clock == c.sample_clock and f.seq == 2 and f.published_ns > 0
        assert set(f.channel) == set(CHANNEL_METERS) and set(f.master) == set(MASTER_METERS)
        np.testing.assert_allclose(f.channel["peak_db"], m.channel_peak_db)
        np.testing.assert_allclose(f.channel["rms_db"], m.channel_rms_db)
        np.testing.assert_allclose(f.channel["gain_reduction_db"],
                                   m.channel_gain_reduction_db)
        assert min(f.channel["gain_reduction_db"]) > 1.0  # the compressor worked
        np.testing.assert_allclose(f.channel["automix_gain_db"], m.automix_gain_db)
        assert f.master["true_peak_dbtp"] == pytest.approx(m.true_peak_dbtp)
        assert (f.master["peak_l_db"], f.master["peak_r_db"]) == pytest.approx(m.peak_dbfs)
        for k in ("momentary_lufs", "short_term_lufs", "integrated_lufs", "correlation",
                  "limiter_gain_reduction_db"):
            assert f.master[k] == pytest.approx(getattr(m, k)), k
        assert math.isfinite(f.master["momentary_lufs"])
        # JSON for the surfaces: finite numbers or None (silence), never NaN or inf
        j = f.to_json()
        assert j["master"]["integrated_lufs"] is None or math.isfinite(
            j["master"]["integrated_lufs"])
        assert all(v is not None for v in j["channel"]["peak_db"])
        # an unchanged sequence number returns the same frame without copying
        assert r.read() is f
        w.publish()
        assert r.read().seq == 4
    finally:
        r.close()
        w.close()


def test_silence_reads_minus_inf_and_json_none():
    c = Console(FS, 64, 2, 2)
    w = MeterWriter(c)
    r = MeterReader(w.name, 2)
    try:
        w.publish()
        f = r.read()
        assert f.channel["peak_db"] == (-math.inf, -math.inf)
        assert f.master["momentary_lufs"] == -math.inf
        j = f.to_json()
        assert j["channel"]["peak_db"] == [None, None] and j["master"]["momentary_lufs"] is None
        assert j["master"]["limiter_gain_reduction_db"] == 0.0
    finally:
        r.close()
        w.close()


def test_a_writer_caught_mid_publish_leaves_the_last_frame():
    c = _played(n=2, blocks=20)
    w = MeterWriter(c)
    r = MeterReader(w.name, 2)
    try:
        w.publish()
        first = r.read()
        w._a["seq"][0] += 1            # the writer is "inside" a publish
        w._a["channel"][0, :] = 1.0    # half-written data must not be read
        assert r.read() is first and r.torn == 1
        w._a["seq"][0] += 1            # ... and it finished
        assert r.read().channel["peak_db"] == (0.0, 0.0)
    finally:
        r.close()
        w.close()


def _fake_console(n):
    """Meter arrays we control: every channel's peak and the clock carry one counter, so a
    torn frame (a copy that mixed two publishes) shows as unequal values."""
    from edgemix.dsp import loudness as L
    from edgemix.dsp.strip import D_METER_MS
    dyn = np.zeros((D_METER_MS + 1, n))
    st = MeterState(dyn, np.zeros(n), np.zeros((2, 3)), np.zeros((2, 8)),
                    np.zeros(L.N_STATE), np.zeros(4), np.ones(12), np.zeros(1, np.int64))
    return types.SimpleNamespace(n_channels=n, meter_state=lambda: st), st


def _write_until(w, st, stop):
    """The writer's loop (a forked process: no GIL shared with the reader), publishing
    about every 0.1 ms -- ten times the rate of 64-frame blocks at 48 kHz."""
    import time
    k = 0
    while not stop.is_set():
        k += 1
        st.dyn[D_PEAK, :] = float(k)
        st.clock[0] = k
        w.publish()
        time.sleep(1e-4)


def test_frames_are_never_torn_under_a_concurrent_writer():
    """A writer in another process publishes as fast as it can while this one reads: every
    frame the reader keeps is whole (one counter in every channel and the clock), and the
    reader did meet the writer mid-publish and follow it."""
    import multiprocessing as mp
    import time
    n = 2048  # a 64 kB copy: reader and writer overlap often
    console, st = _fake_console(n)
    w = MeterWriter(console)
    r = MeterReader(w.name, n)
    w.warmup()
    ctx = mp.get_context("fork")  # inherits the compiled kernels and the mapped block
    stop = ctx.Event()
    p = ctx.Process(target=_write_until, args=(w, st, stop), daemon=True)
    p.start()
    try:
        seen = set()
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            f = r.read()
            if f is None or f.sample_clock == 0:
                continue
            peaks = f.channel["peak_db"]
            assert len(set(peaks)) == 1, (f.sample_clock, sorted(set(peaks))[:3])
            assert peaks[0] == pytest.approx(20 * math.log10(f.sample_clock))
            seen.add(f.sample_clock)
        assert len(seen) > 100  # the reader did follow a moving writer
    finally:
        stop.set()
        p.join(5)
        r.close()
        w.close()


def test_publishing_from_the_audio_path_allocates_nothing():
    """The audio thread's whole per-block cost of the control process's side -- meters
    published, input pushed into the ring (full: nobody drains it here, so the drop path
    is measured), mailbox looked at -- against the console alone."""
    from edgemix.rt.control_process import ControlProcess
    c = Console(FS, 64, 8, 2)
    cp = ControlProcess(c, {"kind": "rules", "where": "", "roles": ["other"] * 8,
                            "model_path": "", "model_backend": "numba", "hop_ms": 100})
    try:
        x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32) * 0.1
        y = np.zeros((64, 2), np.float32)

        def block():
            c.process(x, out=y)
            cp.push(x)

        console_peak, _ = heap_bytes(lambda: c.process(x, out=y), 1000, warmup=50)
        peak, grown = heap_bytes(block, 1000, warmup=50)
        assert grown < 4096, grown
        # a (64, 2) float32 array alone is 512 bytes of data plus its header
        assert peak - console_peak < 512, (peak, console_peak)
        assert cp.meters.published > 2000 and cp.ring.dropped_blocks > 0
        f = MeterReader(cp.meters.name, 8).read()
        assert f.sample_clock == c.sample_clock
    finally:
        cp.stop()
