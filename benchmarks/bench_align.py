"""Alignment speed: the live estimator's control-side CPU per hop, and the offline
analysis time per minute of 16 channels.

The live tracker (``edgemix/automix/prep/live.py``) runs in the control process once per
100 ms hop: it takes the hop's input (frames into Hann frames, the pair spectra updated)
and re-estimates ``PAIRS_PER_HOP`` related pairs.  The benchmark feeds 16 and 32 channels
in which every other channel is a delayed, inverted copy of its neighbour (so there are
pairs to estimate every hop, the worst case) and times one hop.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from edgemix.automix.policy import Proposal
from edgemix.automix.prep.align import find_alignments
from edgemix.automix.prep.live import AlignmentTracker

FS = 48000.0
HOP = 4800


def _programme(seconds, channels, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    x = np.empty((n, channels), np.float32)
    for c in range(0, channels, 2):
        s = rng.standard_normal(n) * np.repeat(rng.uniform(0.05, 1, n // 2400 + 1), 2400)[:n]
        x[:, c] = s
        if c + 1 < channels:
            x[:, c + 1] = -np.roll(s, 17 + c) + 0.1 * rng.standard_normal(n)
    return x


@pytest.mark.parametrize("channels", [16, 32])
def test_live_tracker_cpu_per_hop(benchmark, channels):
    x = _programme(4.0, channels)
    tr = AlignmentTracker(channels, FS)
    tr.warmup()
    for i in range(0, len(x) - HOP, HOP):      # 4 s of programme: every pair estimable
        tr.process(x[i:i + HOP])
        tr.contribute(Proposal.empty(channels))
    hop = x[-HOP:]

    def one_hop():
        tr.process(hop)
        tr.contribute(Proposal.empty(channels))
    benchmark.pedantic(one_hop, rounds=30, iterations=1, warmup_rounds=2)
    t = benchmark.stats.stats.median
    benchmark.extra_info.update(ms_per_hop=t * 1e3, share_of_hop=t / (HOP / FS))
    print(f"\nlive alignment, {channels} channels: {t * 1e3:.1f} ms per 100 ms hop "
          f"({100 * t / (HOP / FS):.1f} % of one core)")


def test_offline_analysis_per_minute_of_16_channels(benchmark):
    x = _programme(60.0, 16, seed=1)
    stems = {f"in_{c + 1:02d}": x[:, c] for c in range(16)}
    t0 = time.perf_counter()
    found = benchmark.pedantic(find_alignments, args=(stems, FS), rounds=1, iterations=1)
    t = time.perf_counter() - t0
    assert len([a for a in found if a.abstained is None]) == 8
    benchmark.extra_info.update(s_per_minute_16ch=t)
    print(f"\noffline alignment, 16 channels x 1 min: {t:.1f} s")
