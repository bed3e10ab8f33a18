"""Silences (edgemix.automix.prep.silences): boundaries within 10 ms of the truth, nothing
above the close threshold ever cut, bleed counted as silence, gating with fades."""
from __future__ import annotations

import numpy as np
import pytest

from edgemix.automix.prep.silences import (MIN_SILENCE_MS, POST_PAD_MS, PRE_PAD_MS, WINDOW_MS,
                                           find_silences, frame_levels_dbfs, gate)

SR = 48000


def _session(rng, bursts, seconds=12.0, noise_dbfs=-72.0, bleed=None):
    """Noise at ``noise_dbfs``, a source playing in ``bursts`` (onset/offset seconds,
    1 ms ramps) at about -20 dBFS, optionally bleed (another source 35 dB down) all the way."""
    n = int(seconds * SR)
    x = 10 ** (noise_dbfs / 20) * rng.normal(size=n)
    if bleed is not None:
        x += bleed
    ramp = int(0.001 * SR)
    for a, b in bursts:
        i, j = int(a * SR), int(b * SR)
        env = np.ones(j - i)
        env[:ramp] = np.linspace(0, 1, ramp)
        env[-ramp:] = np.linspace(1, 0, ramp)
        # a voice-like source: a tone with vibrato and breathy noise
        t = np.arange(j - i) / SR
        tone = 0.1 * np.sin(2 * np.pi * (220 + 3 * np.sin(2 * np.pi * 5 * t)) * t)
        x[i:j] += env * (tone + 0.02 * rng.normal(size=j - i))
    return x


def _truth(bursts, seconds):
    """The silent regions the padding rules give for exact onsets/offsets."""
    pre, post, mn = PRE_PAD_MS / 1e3, POST_PAD_MS / 1e3, MIN_SILENCE_MS / 1e3
    edges, t = [], 0.0
    for a, b in bursts:
        edges.append((t, a - pre))
        t = b + post
    edges.append((t, seconds))
    return [(max(a, 0.0), min(b, seconds)) for a, b in edges if b - a >= mn]


@pytest.mark.parametrize("trial", range(20))
def test_boundaries_within_10_ms_and_nothing_loud_cut(trial):
    rng = np.random.default_rng(trial)
    seconds = 12.0
    starts = np.sort(rng.uniform(0.3, seconds - 1.5, 4))
    bursts = []
    for s in starts:
        if bursts and s < bursts[-1][1] + 0.3:
            continue
        bursts.append((float(s), float(s + rng.uniform(0.2, 1.2))))
    bleed = None
    if trial % 2:   # bleed: a snare-like source 35 dB under the channel's own, throughout
        t = np.arange(int(seconds * SR)) / SR
        bleed = 10 ** (-55 / 20) * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 2 * t) > 0.7)
    x = _session(rng, bursts, seconds, bleed=bleed)
    sil = find_silences(x, SR)
    truth = _truth(bursts, seconds)
    assert len(sil) == len(truth), (sil.regions_s, truth)
    err = np.abs(sil.regions_s - np.asarray(truth))
    assert err.max() <= 0.010, (err.max(), sil.regions_s, truth)
    # no frame above the close threshold is cut: recomputed independently, frame by frame
    lev, hop, win = frame_levels_dbfs(x, SR)
    cut = np.zeros(len(x), bool)
    for s, e in sil.samples():
        cut[s:e] = True
    for k in np.flatnonzero(lev > sil.close_dbfs):
        lo, hi = max(k * hop - win // 2, 0), min(k * hop - win // 2 + win, len(x))
        assert not cut[lo:hi].any(), (k, lev[k], sil.close_dbfs)
    assert sil.loudest_cut_dbfs < sil.close_dbfs
    assert sil.open_dbfs > sil.close_dbfs


def test_gate_fades_inside_the_silence_and_keeps_the_rest():
    rng = np.random.default_rng(1)
    bursts = [(1.0, 2.0), (4.0, 5.5)]
    x = _session(rng, bursts, 7.0)
    sil = find_silences(x, SR)
    y = gate(x, sil)
    keep = np.ones(len(x), bool)
    for s, e in sil.samples():
        keep[s:e] = False
        mid = (s + e) // 2
        assert np.all(y[mid - 100:mid + 100] == 0.0)
        # the fade: monotone, from the signal to zero, within the region
        f = int(0.010 * SR)
        g = y[s:s + f] / np.where(x[s:s + f] == 0, 1, x[s:s + f])
        assert np.all(np.diff(g) <= 1e-12) and g[0] > 0.99 and g[-1] < 0.01
    assert np.array_equal(y[keep], x[keep])
    # a stereo stem gates both sides alike
    y2 = gate(np.stack([x, -x], axis=1), sil)
    assert np.array_equal(y2[:, 0], y) and np.array_equal(y2[:, 1], -y)


def test_a_channel_that_always_plays_has_no_silence():
    rng = np.random.default_rng(2)
    t = np.arange(10 * SR) / SR
    # a sustained part with dynamics: quiet verse 15 dB under the chorus
    level = np.where((t % 5) < 2.5, 10 ** (-15 / 20), 1.0)
    x = 0.1 * level * np.sin(2 * np.pi * 110 * t) + 1e-4 * rng.normal(size=len(t))
    assert len(find_silences(x, SR)) == 0
    assert WINDOW_MS <= 10.0        # boundaries can only be as fine as the frame


def test_digital_silence_and_bad_input():
    sil = find_silences(np.zeros(SR * 2), SR)
    assert len(sil) == 1 and sil.regions_s[0, 0] == 0.0 and sil.regions_s[0, 1] == 2.0
    with pytest.raises(ValueError, match="one channel"):
        find_silences(np.zeros((10, 2)), SR)
    with pytest.raises(ValueError, match="NaN"):
        find_silences(np.array([np.nan] * 100), SR)
