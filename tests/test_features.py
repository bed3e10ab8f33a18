"""Streaming channel features: against a slow whole-signal reference, known signals,
block-size invariance, silence/NaN floors and no allocation in the kernel."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pyloudnorm
import pytest

from edgemix import features as F
from edgemix.features import FEATURE_NAMES, FeatureExtractor
from tests.reference.features_ref import features_ref

SR = 48000


def _session(seconds: float, seed: int = 0) -> np.ndarray:
    """Four channels that exercise gates, rings and the mix context: a tone with pauses,
    noise bursts, a low tone that enters late, and noise fading out into silence."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = np.zeros((n, 4))
    x[:, 0] = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.7 * t) > -0.3)
    x[:, 1] = 0.05 * rng.standard_normal(n) * ((t % 1.3) < 0.5)
    x[:, 2] = 0.5 * np.sin(2 * np.pi * 60 * t) * (t > 1.2) + 0.01 * rng.standard_normal(n)
    x[:, 3] = 0.2 * rng.standard_normal(n) * np.clip(1 - t / 2.5, 0, 1)
    return x.astype(np.float32)


def _per_hop(fe: FeatureExtractor, x: np.ndarray, block: int) -> list[np.ndarray]:
    snaps = []
    for i in range(0, len(x), block):
        before = fe.hops_done
        fe.process(x[i:i + block])
        if fe.hops_done != before:
            assert fe.hops_done == before + 1          # block <= hop: one hop per call
            snaps.append(fe.snapshot())
    return snaps


def test_feature_names_have_units_and_match_width():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == F.N_FEATURES
    units = ("_lufs", "_dbfs", "_db", "_ratio", "_hz", "_lu")
    assert all(n.endswith(units) for n in FEATURE_NAMES), FEATURE_NAMES


def test_against_reference_every_hop():
    x = _session(4.0)
    fe = FeatureExtractor(SR, 4)
    got = np.array(_per_hop(fe, x, 480))
    ref = features_ref(x, SR)
    assert got.shape == ref.shape
    hz = [F.F_CENT, F.F_ROLL]
    other = [i for i in range(F.N_FEATURES) if i not in hz]
    np.testing.assert_allclose(got[..., other], ref[..., other], atol=2e-3, rtol=1e-4)
    np.testing.assert_allclose(got[..., hz], ref[..., hz], rtol=1e-4, atol=0.05)
    # the session does exercise the gate both ways
    act = got[..., F.F_ACT]
    assert act.min() < 0.9 and act.max() == 1.0


def test_block_size_invariance():
    x = _session(1.25, seed=3)
    runs = {}
    for block in (1, 17, 64, 256):
        runs[block] = np.array(_per_hop(FeatureExtractor(SR, 4), x, block))
    whole = FeatureExtractor(SR, 4)
    whole.process(x)
    for block, snaps in runs.items():
        np.testing.assert_allclose(snaps, runs[256], atol=1e-6, rtol=0, err_msg=f"block {block}")
    np.testing.assert_allclose(whole.snapshot(), runs[256][-1], atol=1e-6, rtol=0)
    assert whole.sample_clock == len(x) and whole.hops_done == len(x) // 4800


def _steady(sig: np.ndarray, seconds: float = 4.0) -> np.ndarray:
    fe = FeatureExtractor(SR, sig.shape[1])
    fe.process(sig)
    return fe.snapshot()


def test_known_signals():
    n = 4 * SR
    t = np.arange(n) / SR
    rng = np.random.default_rng(1)
    x = np.stack([np.sin(2 * np.pi * 1000 * t), 0.1 * rng.standard_normal(n),
                  0.5 * np.sin(2 * np.pi * 50 * t), np.zeros(n)], 1).astype(np.float32)
    s = _steady(x)
    # A 1 kHz tone: centroid at 1 kHz, a tonal (not flat) spectrum, no LF content.
    assert abs(s[0, F.F_CENT] - 1000.0) < 10.0
    assert s[0, F.F_FLAT] < 0.01
    assert s[0, F.F_LF] < 0.01
    # Full-scale 1 kHz sine: -3.01 LUFS (BS.1770: the -0.691 offset makes a 997 Hz sine
    # read its RMS level) and peak 0 dBFS, crest 3.01 dB.
    assert abs(s[0, F.F_LACT] - 20 * np.log10(np.sqrt(0.5))) < 0.05
    assert abs(s[0, F.F_PEAK]) < 0.01
    assert abs(s[0, F.F_CREST] - 3.01) < 0.1
    # White noise: flat (geometric/arithmetic mean of band densities ~1), centroid near the
    # middle of the 20 Hz .. 20 kHz analysis range.
    assert s[1, F.F_FLAT] > 0.95
    assert 9000 < s[1, F.F_CENT] < 11000
    # 50 Hz tone: everything below 100 Hz.
    assert s[2, F.F_LF] > 0.99
    # Silence: the documented floors, finite.
    np.testing.assert_array_equal(s[3, :F.F_MASK], F.silence_row()[:F.F_MASK])
    assert np.all(np.isfinite(s))
    # The tone dominates its band against the rest of the mix; the silent channel is
    # far below everyone.
    b1k = np.searchsorted(F.BAND_EDGES_HZ, 1000.0) - 1
    assert s[0, F.F_MASK + b1k] > 20.0
    assert s[3, F.F_REL] < -60.0


def test_loudness_matches_pyloudnorm():
    rng = np.random.default_rng(7)
    b, a = [0.049922035, -0.095993537, 0.050612699, -0.004408786], \
        [1, -2.494956002, 2.017265875, -0.522189400]       # pink-noise filter (Kellet)
    import scipy.signal
    x = scipy.signal.lfilter(b, a, rng.standard_normal(5 * SR)) * 0.3
    s = _steady(x[:, None].astype(np.float32))
    meter = pyloudnorm.Meter(SR, filter_class="DeMan")
    # A steady signal: the gated programme loudness equals the mean loudness of its hops.
    ref = meter.integrated_loudness(x[SR:])
    assert abs(s[0, F.F_LACT] - ref) < 0.1


def test_silence_and_nan_are_finite():
    fe = FeatureExtractor(SR, 3)
    assert np.array_equal(fe.snapshot(), np.tile(F.silence_row(), (3, 1)))
    x = np.zeros((SR, 3), dtype=np.float32)
    x[100, 1] = np.nan
    x[200, 2] = np.inf
    fe.process(x)
    s = fe.snapshot()
    assert np.all(np.isfinite(s))
    np.testing.assert_array_equal(s[:, :F.F_MASK], np.tile(F.silence_row()[:F.F_MASK], (3, 1)))
    np.testing.assert_array_equal(s[:, F.F_MASK:], 0.0)     # silence vs silence: 0 dB
    fe.reset()
    assert fe.sample_clock == 0 and np.array_equal(fe.snapshot()[0], F.silence_row())


def test_bad_input_messages():
    with pytest.raises(ValueError, match="sample_rate_hz"):
        FeatureExtractor(8000, 2)
    with pytest.raises(ValueError, match="hop_ms"):
        FeatureExtractor(SR, 2, hop_ms=5)
    with pytest.raises(ValueError, match="expected"):
        FeatureExtractor(SR, 2).process(np.zeros((64, 3), np.float32))


def test_kernel_does_not_allocate():
    # NRT allocation statistics are switched on by NUMBA_NRT_STATS before Numba starts,
    # so this runs in a fresh interpreter (the on-disk cache makes it cheap).
    code = textwrap.dedent("""
        import numba
        import numpy as np
        from numba.core.runtime import rtsys
        from edgemix.features import FeatureExtractor, _feature_block

        @numba.njit
        def loop(x, n_calls, clock, st, lay, cfg, tab, itab, fftw, snap):
            for _ in range(n_calls):
                _feature_block(x, 64, clock, st, lay, cfg, tab, itab, fftw, snap)

        fe = FeatureExtractor(48000, 8)
        x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
        args = fe.kernel_args()
        loop(x, 200, *args)                      # compile and warm up, crosses hops
        counts = []
        for n_calls in (1, 500):                 # 500 blocks cross 6 hops, 250 frames
            a0 = rtsys.get_allocation_stats()
            loop(x, n_calls, *args)
            a1 = rtsys.get_allocation_stats()
            counts.append((a1.alloc - a0.alloc, a1.mi_alloc - a0.mi_alloc))
        # Passing arrays in from Python wraps each once per call; the kernel adds nothing.
        print(counts[0] == counts[1])
    """)
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True"]


def test_process_channels_first_refuses_what_would_compile_a_new_kernel():
    """A float64 or strided array must not compile a new specialisation live: one clear
    line instead (``process`` converts any float dtype)."""
    from edgemix.features import _feature_block
    fe = FeatureExtractor(SR, 3)
    fe.process_channels_first(np.zeros((3, 64), np.float32))
    n_compiled = len(_feature_block.signatures)
    for bad in (np.zeros((3, 64)), np.zeros((64, 3), np.float32).T, np.zeros((2, 64), np.float32),
                [[0.0] * 64] * 3):
        with pytest.raises(ValueError, match=r"C-contiguous float32 array of shape \(3, frames\)"):
            fe.process_channels_first(bad)
    assert len(_feature_block.signatures) == n_compiled
    fe.process(np.zeros((64, 3)))  # the converting entry point still takes float64
    assert fe.sample_clock == 128
