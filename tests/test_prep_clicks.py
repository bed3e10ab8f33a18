"""Clicks and pops (edgemix.automix.prep.clicks): detection to the sample on real sampled
instruments, against essentia's ClickDetector on the same signals, and LSAR repair.

The music is a minute of a band (drums, bass, piano, guitar, strings, a lead line)
rendered by FluidSynth from a GM SoundFont (tests/soundfont.py, cached).  Clicks are
single samples at -10 dB re the channel's RMS, random sign, at random positions.

FluidSynth steps its envelopes once per 64-sample block, which leaves small discontinuities
of its own exactly on that grid (found here at 8-12 sigma, always at ``64 k - 1``): a
detection there that is not a planted click is the renderer's click, not a false alarm,
and is counted apart.
"""
from __future__ import annotations

import numpy as np
import pytest

import soundfont
from edgemix.automix.prep.clicks import (detect_clicks, interpolate_gap, matched_filter,
                                         repair_clicks)
from reference.prep_ref import ar_coefficients_ref, matched_filter_ref

SR = soundfont.SAMPLE_RATE_HZ
SECONDS = 60.0
CLICK_DB = -10.0
N_CLICKS = 60
RENDER_GRID = 64            # FluidSynth's block: its own envelope steps sit on this grid


def _skip_reason():
    return soundfont.available()


@pytest.fixture(scope="module")
def band():
    why = _skip_reason()
    if why:
        pytest.skip(why)
    parts = soundfont.render_parts(SECONDS, seed=1)
    parts["mix"] = sum(parts.values())
    return {k: v.astype(np.float64) for k, v in parts.items()}


def _plant(x, seed):
    rng = np.random.default_rng(seed)
    rms = float(np.sqrt(np.mean(x ** 2)))
    pos = np.sort(rng.choice(np.arange(4000, len(x) - 4000), N_CLICKS, replace=False))
    pos = pos[np.concatenate([[True], np.diff(pos) > 400])]      # one click per event
    y = x.copy()
    y[pos] += 10.0 ** (CLICK_DB / 20.0) * rms * rng.choice([-1.0, 1.0], len(pos))
    return y, pos


def _on_grid(p):
    return np.abs(((np.asarray(p) + 1 + RENDER_GRID // 2) % RENDER_GRID) - RENDER_GRID // 2) <= 1


def _score(found, planted):
    """(hits, false alarms, renderer clicks): hits within +-1 sample."""
    found = np.asarray(found, dtype=np.int64)
    hit = np.array([np.any(np.abs(found - p) <= 1) for p in planted])
    near = np.array([np.any(np.abs(planted - q) <= 1) for q in found], dtype=bool) \
        if len(found) else np.zeros(0, bool)
    grid = _on_grid(found) & ~near if len(found) else np.zeros(0, bool)
    return int(hit.sum()), int((~near & ~grid).sum()), int(grid.sum())


def essentia_clicks(x):
    """essentia's ClickDetector at its defaults over frames of 512 (hop 256): absolute
    click start times (seconds) -> samples."""
    import essentia
    import essentia.standard as es
    essentia.log.infoActive = False
    cd = es.ClickDetector(sampleRate=SR, frameSize=512, hopSize=256)
    starts = []
    for frame in es.FrameGenerator(x.astype(np.float32), frameSize=512, hopSize=256,
                                   startFromZero=True):
        s, _ = cd(frame)
        starts.extend(s)
    v = np.unique(np.round(np.asarray(starts) * SR).astype(np.int64))
    return v[np.concatenate([[True], np.diff(v) > 2])] if len(v) else v


def test_clicks_on_sampled_band_beat_essentia(band):
    """Recall >= 0.9 and precision >= 0.95 over the stems, every click located to +-1
    sample; at most 1 false alarm per minute on the band's mix (music with drum onsets);
    essentia's ClickDetector on the same signals: we beat its recall at no more false
    alarms."""
    try:
        import essentia  # noqa: F401
        have_essentia = True
    except ImportError:        # x86-64 wheels only: the comparison needs them
        have_essentia = False
    rows = {}
    hits = planted_total = fa_stems = 0
    ess_hits = ess_fa = 0
    for k, (name, x) in enumerate(band.items()):
        clean = detect_clicks(x, SR)
        y, pos = _plant(x, 100 + k)
        c = detect_clicks(y, SR)
        h, fa, grid = _score(c.peak, pos)
        fa_clean = _score(clean.peak, np.zeros(0, np.int64))[1]
        rows[name] = dict(recall=h / len(pos), fa=fa, fa_clean=fa_clean, grid=grid)
        if have_essentia:
            eh, efa, _ = _score(essentia_clicks(y), pos)
            rows[name].update(ess_recall=eh / len(pos), ess_fa=efa)
        if name == "mix":
            continue
        hits += h
        planted_total += len(pos)
        fa_stems += fa
        if have_essentia:
            ess_hits += eh
            ess_fa += efa
    print({k: {a: round(b, 3) for a, b in v.items()} for k, v in rows.items()})
    recall = hits / planted_total
    precision = hits / max(hits + fa_stems, 1)
    assert recall >= 0.9, rows
    assert precision >= 0.95, rows
    # the mix: music with drum onsets, clean and with clicks
    minutes = SECONDS / 60.0
    assert rows["mix"]["fa_clean"] / minutes <= 1.0, rows["mix"]
    assert rows["mix"]["fa"] / minutes <= 1.0, rows["mix"]
    for name in ("bass", "piano", "guitar", "strings", "lead"):   # tonal: all of them
        assert rows[name]["recall"] >= 0.95, (name, rows[name])
    if not have_essentia:
        pytest.skip("essentia is not installed (pip install -e '.[oracle]'; x86-64 wheels only):"
                    f" our recall {recall:.2f}, precision {precision:.2f}, not compared")
    assert recall > ess_hits / planted_total, rows
    assert fa_stems <= ess_fa, rows


def test_drum_onsets_do_not_fire():
    """A synthetic kit over a quiet pad, 4 hits a second: snares/hats as exponentially
    decaying noise with instant attacks, kicks as a falling sine with a 1 ms attack (a
    beater's rise; a sine switched on within 0.5 ms is itself a click): at most one false
    alarm in a minute; a click planted in a decay is found."""
    rng = np.random.default_rng(7)
    n = int(SECONDS * SR)
    t = np.arange(n) / SR
    x = 0.02 * np.sin(2 * np.pi * 220 * t) + 0.01 * np.sin(2 * np.pi * 331 * t)
    hit_len = int(0.3 * SR)
    env = np.exp(-np.arange(hit_len) / (0.04 * SR))
    rise = int(0.001 * SR)
    attack = np.ones(hit_len)
    attack[:rise] = 0.5 - 0.5 * np.cos(np.pi * np.arange(rise) / rise)
    for k, start in enumerate(range(SR // 8, n - hit_len, SR // 4)):
        if k % 2:
            burst = 0.3 * rng.normal(size=hit_len) * env                    # snare/hat
        else:
            f = 60.0 + 40.0 * np.exp(-np.arange(hit_len) / (0.01 * SR))      # kick sweep
            burst = 0.8 * np.sin(2 * np.pi * np.cumsum(f) / SR) * env * attack
        x[start:start + hit_len] += burst
    assert len(detect_clicks(x, SR)) <= SECONDS / 60.0
    y = x.copy()
    p = SR // 8 + 5 * (SR // 4) + int(0.2 * SR)       # late in a kick's decay
    y[p] += 0.3 * float(np.sqrt(np.mean(x ** 2)))
    c = detect_clicks(y, SR)
    assert np.any(np.abs(c.peak - p) <= 1), c.peak


def test_repair_restores_the_music():
    """LSAR interpolation (Janssen et al. 1986) over a click's samples: on an AR(2)
    resonance the repaired samples are within 1 % of the clean ones; a 12-sample pop on a
    piano-like tone comes back within -30 dB of the error it had."""
    rng = np.random.default_rng(3)
    n = 20000
    t = np.arange(n) / SR
    x = sum(a * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for a, f in
            ((0.3, 220.0), (0.15, 440.0), (0.08, 660.0), (0.05, 1320.0)))
    x += 1e-4 * rng.normal(size=n)
    y = x.copy()
    y[9000] += 0.4
    y[12000:12012] += 0.3 * rng.normal(size=12)
    c = detect_clicks(y, SR)
    assert len(c) == 2
    assert c.start[0] <= 9000 < c.stop[0]
    assert c.start[1] <= 12000 and c.stop[1] >= 12011
    fixed = repair_clicks(y, c)
    assert np.max(np.abs(fixed[8990:9010] - x[8990:9010])) < 0.01 * 0.4
    err_before = np.sum((y[12000:12012] - x[12000:12012]) ** 2)
    err_after = np.sum((fixed[11995:12017] - x[11995:12017]) ** 2)
    assert 10 * np.log10(err_after / err_before) < -30.0
    # untouched outside the damaged spans, and the input is never modified
    keep = np.ones(n, bool)
    for s, e in zip(c.start, c.stop):
        keep[s:e] = False
    assert np.array_equal(fixed[keep], y[keep])
    z = y.copy()
    interpolate_gap(z, 100, 100)          # an empty gap changes nothing
    assert np.array_equal(z, y)


def test_kernels_match_reference():
    """The AR fit (Levinson on the windowed autocorrelation) and the residual /
    matched-filter kernels against slow obvious versions (tests/reference/prep_ref.py)."""
    rng = np.random.default_rng(5)
    x = np.convolve(rng.normal(size=6000), [1.0, 0.6, -0.3, 0.2], mode="same")
    e, m, a, norms = matched_filter(x, SR, order=12)
    a_ref = ar_coefficients_ref(x, 1024, 12)
    assert np.allclose(a, a_ref, atol=1e-8)
    e_ref, m_ref, norms_ref = matched_filter_ref(x, a_ref, 512)
    assert np.allclose(e, e_ref, atol=1e-10)
    assert np.allclose(m, m_ref, atol=1e-10)
    assert np.allclose(norms, norms_ref, atol=1e-12)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="one channel"):
        detect_clicks(np.zeros((10, 2)), SR)
    with pytest.raises(ValueError, match="NaN"):
        detect_clicks(np.array([0.0, np.nan] * 100), SR)
    assert len(detect_clicks(np.zeros(50), SR)) == 0
    assert len(detect_clicks(np.zeros(SR), SR)) == 0          # digital silence: nothing
