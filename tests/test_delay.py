"""The strips' input delay (``delay_ms``, ``edgemix/dsp/delay.py``): against the slow
reference, exactness, crossfaded (click-free) changes, and an aligned pair's null."""
from __future__ import annotations

import numpy as np

from edgemix import params as P
from edgemix.automix.prep.align import corrections, find_alignments
from edgemix.console import Console
from edgemix.dsp.delay import HALF_TAPS
from tests import align_signals as S
from tests.reference.delay_ref import delay_change, delayed

FS = 48000.0


def _bare(n_ch, block=64):
    """A console whose strips pass the input through (no filters, no dynamics), each
    channel hard left so its direct out is the delayed input."""
    c = Console(FS, block, n_ch, 2)
    c.set_master("limiter_on", 0)
    c.set_master("reverb_return_db", P.OFF_DB)
    for ch in range(n_ch):
        for name, v in (("hpf_on", 0), ("eq_on", 0), ("comp_on", 0), ("pan", -1.0)):
            c.set_channel(ch, name, v)
    return c


def _run(c, x, block, moves=None):
    """Direct outs (left) of ``x`` processed in ``block``-frame pieces; ``moves``:
    ``{frame: [(channel, delay_ms), ...]}`` staged before that frame."""
    out = np.zeros(x.shape)
    d = np.zeros((block, x.shape[1], 2), np.float32)
    for i in range(0, len(x), block):
        for ch, v in (moves or {}).get(i, ()):
            c.set_channel(ch, "delay_ms", v)
        n = min(block, len(x) - i)
        c.process(x[i:i + n], direct=d[:n])
        out[i:i + n] = d[:n, :, 0]
    return out


def _noise(n, ch, seed=0):
    return (np.random.default_rng(seed).standard_normal((n, ch)) * 0.2).astype(np.float32)


def test_delays_equal_the_slow_reference():
    ds = [0.0, 5.0, 0.4, 3.7, 14.25, 15.5, 517.81, P.MAX_DELAY_MS * FS / 1e3]
    x = _noise(2400, len(ds))
    c = _bare(len(ds))
    for ch, d in enumerate(ds):
        c.set_channel(ch, "delay_ms", d * 1e3 / FS)
    y = _run(c, x, 64)
    np.testing.assert_array_equal(y[:, 0], x[:, 0])          # 0: untouched, bit for bit
    np.testing.assert_array_equal(y[5:, 1], x[:-5, 1])       # whole samples: a copy
    for ch, d in enumerate(ds):
        np.testing.assert_allclose(y[:, ch], delayed(x[:, ch], d), atol=2e-7, err_msg=str(d))


def test_a_change_is_a_crossfade_at_a_tick_whatever_the_block_size():
    """A new delay starts at the first control tick after it is staged and fades from the
    old delay's output to the new one's over delay_ms's smoothing time, exactly as the
    reference says, for blocks of 1, 17 and 64 frames."""
    x = _noise(3200, 2, seed=1)
    fade = int(round(P.CHANNEL_SPECS["delay_ms"].smoothing_ms * 1e-3 * FS))
    moves = {1088: [(0, 40.3 * 1e3 / FS), (1, 0.0)]}
    got = {}
    for block in (1, 17, 64):
        c = _bare(2, block)
        c.set_channel(0, "delay_ms", 2.5 * 1e3 / FS)
        c.set_channel(1, "delay_ms", 21.0 * 1e3 / FS)
        m = {((k + block - 1) // block) * block: v for k, v in moves.items()}
        got[block] = _run(c, x, block, m)
    for block in (1, 17):
        np.testing.assert_array_equal(got[block], got[64])
    # staged before frame 1088 (a multiple of 16 and of 64): the fade starts there
    np.testing.assert_allclose(got[64][:, 0], delay_change(x[:, 0], 2.5, 40.3, 1088, fade),
                               atol=2e-7)
    np.testing.assert_allclose(got[64][:, 1], delay_change(x[:, 1], 21.0, 0.0, 1088, fade),
                               atol=2e-7)


def test_a_delay_change_on_a_tone_is_click_free():
    """A 1 kHz tone whose delay jumps by 7.3 ms: the output's largest step between samples
    stays within 5 % of the tone's own (the fade's slope adds 0.2 %; a jump of the read
    pointer would be a step of up to twice the amplitude, 15 times the tone's)."""
    n = 9600
    t = np.arange(n) / FS
    x = (0.5 * np.sin(2 * np.pi * 1000 * t))[:, None].astype(np.float32)
    c = _bare(1)
    c.set_channel(0, "delay_ms", 1.0)
    y = _run(c, x, 64, {4800: [(0, 8.3)]})[:, 0]
    steady = np.abs(np.diff(x[:, 0])).max()
    assert np.abs(np.diff(y[2000:])).max() <= steady * 1.05
    assert np.all(np.isfinite(y))


def test_an_aligned_inverted_pair_nulls_below_60_db():
    """The same source twice, the second 20.37 samples late and inverted: delaying the first
    by the same amount in the strip makes the pair cancel (the strip's delay error is
    what remains); with the polarity flipped as well, the pair adds up to +6 dB."""
    rng = np.random.default_rng(3)
    n = 24000
    src = S.lowpass(rng.standard_normal(n), 0.36 * FS, order=24) * 0.1  # 17 kHz wide
    d = 20.37
    late = -S.delay(src, d)
    x = np.stack([src, late], 1).astype(np.float32)
    c = _bare(2)
    c.set_channel(1, "pan", -1.0)
    c.set_channel(0, "delay_ms", d * 1e3 / FS)
    mix = np.concatenate([c.process(x[i:i + 64]).copy() for i in range(0, n, 64)])[:, 0]
    lat = c.latency_frames
    body = slice(4000 + lat, n - 2000)
    level = 10 * np.log10(np.mean(x[4000:n - 2000, 1].astype(np.float64) ** 2))
    null = 10 * np.log10(np.mean(mix[body].astype(np.float64) ** 2))
    assert null - level <= -60.0, null - level
    c.set_channel(1, "polarity_invert", 1)
    summed = np.concatenate([c.process(x[i:i + 64]).copy() for i in range(0, n, 64)])[:, 0]
    gain = 10 * np.log10(np.mean(summed[body].astype(np.float64) ** 2)) - level
    # the pan law's -3 dB at hard left is 0 dB: two equal channels add to +6.02 dB
    assert abs(gain - 6.02) < 0.05, gain


def test_found_alignment_applied_through_the_strip_nulls_the_pair():
    """End to end: find_alignments on the pair, its corrections set on the strips, and the
    corrected pair (polarity flipped back once more, to hear the residual) cancels."""
    rng = np.random.default_rng(4)
    n = int(3 * FS)
    src = S.lowpass(S.snare(n, rng) + 0.3 * rng.standard_normal(n), 0.36 * FS, order=24) * 0.1
    d = 37.61
    stems = {"top": src, "bottom": -S.delay(src, d)}
    found = find_alignments(stems, FS)
    fix = corrections(found, FS)
    assert fix["bottom"][1] and not fix["top"][1]
    assert min(v[0] for v in fix.values()) * 1e-3 * FS >= HALF_TAPS - 1
    c = _bare(2)
    for ch, name in enumerate(stems):
        c.set_channel(ch, "delay_ms", fix[name][0])
    x = np.stack(list(stems.values()), 1).astype(np.float32)
    mix = np.concatenate([c.process(x[i:i + 64]).copy() for i in range(0, n, 64)])[:, 0]
    body = slice(int(0.5 * FS), n - 4000)
    level = 10 * np.log10(np.mean(src[body] ** 2))
    null = 10 * np.log10(np.mean(mix[body].astype(np.float64) ** 2))
    assert null - level <= -60.0, null - level
