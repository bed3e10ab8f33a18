"""Mono compatibility (edgemix.automix.prep.mono): an inverted copy reads correlation
-1 +- 0.01; a Haas double of 0.1-30 ms is found within one sample; per-band loss; the
warnings say the fix."""
from __future__ import annotations

import numpy as np
import pytest

import soundfont
from edgemix.automix.prep.mono import (MAX_LOSS_DB, Pair, correlation, mono_fold,
                                       related_pairs, warnings)

SR = 48000


@pytest.fixture(scope="module")
def instruments():
    why = soundfont.available()
    if why:
        pytest.skip(why)
    parts = soundfont.render_parts(20.0, seed=4)
    return {k: parts[k].astype(np.float64) for k in ("guitar", "piano", "strings", "lead")}


def _delayed(x, samples: float):
    """``x`` late by a fractional number of samples (an exact linear-phase shift)."""
    n = len(x)
    nfft = 1 << int(np.ceil(np.log2(n + 2048)))
    f = np.fft.rfftfreq(nfft)
    return np.fft.irfft(np.fft.rfft(x, nfft) * np.exp(-2j * np.pi * f * samples), nfft)[:n]


def test_inverted_copy_reads_minus_one(instruments):
    rng = np.random.default_rng(0)
    for name, x in instruments.items():
        noisy = x + 1e-3 * np.std(x) * rng.normal(size=len(x))     # a different mic's hiss
        r = correlation(x, -noisy)
        assert abs(r + 1.0) <= 0.01, (name, r)
        fold = mono_fold(x, -noisy, SR)
        assert abs(fold.correlation + 1.0) <= 0.01
        assert max(fold.loss_db) >= 30.0            # the fold cancels
        assert max(fold.loss_db) <= MAX_LOSS_DB
    # and it is found as an inverted pair with its fix
    x = instruments["strings"]
    pairs = related_pairs(["str", "str inv"], np.stack([x, -x], 1), SR)
    assert [p.kind for p in pairs] == ["inverted"]
    assert abs(pairs[0].correlation + 1.0) <= 0.01
    text = " ".join(warnings(None, pairs))
    assert "invert the polarity of str inv" in text


def test_haas_double_found_within_one_sample(instruments):
    """20 trials per instrument, delays log-spread 0.1 .. 30 ms, fractional."""
    rng = np.random.default_rng(1)
    names = list(instruments)
    errs = []
    for trial in range(20):
        x = instruments[names[trial % len(names)]]
        d_ms = float(np.exp(rng.uniform(np.log(0.1), np.log(30.0))))
        samples = d_ms * 1e-3 * SR
        y = _delayed(x, samples) * rng.uniform(0.5, 1.0)
        other = instruments[names[(trial + 1) % len(names)]]
        stems = np.stack([x, y, other], axis=1)
        pairs = related_pairs(["a", "b", "c"], stems, SR)
        found = [p for p in pairs if {p.a, p.b} == {"a", "b"}]
        assert len(found) == 1, (trial, d_ms, pairs)
        p = found[0]
        assert p.kind == "comb" and p.correlation > 0.9, p
        errs.append(abs(p.delay_ms * 1e-3 * SR - samples))
        assert not [q for q in pairs if "c" in (q.a, q.b)], pairs    # unrelated: never paired
    assert max(errs) <= 1.0, errs
    print("Haas delay error, samples: median %.3f max %.3f" % (np.median(errs), max(errs)))


def test_haas_double_warning_names_notches_and_fix():
    text = warnings(None, [Pair("gtr", "gtr dbl", 12.5, 0.98)])[0]
    assert "gtr dbl is gtr 12.50 ms late" in text and "Haas double" in text
    assert "notches at 40, 120, 200 Hz" in text
    assert "separate take" in text
    # mics of one source (alignment measured it): the fix is the delay
    text = warnings(None, [Pair("kick in", "kick out", 1.2, 0.7)], {"kick out": "kick in"})[0]
    assert "delay kick in by 1.20 ms" in text


def test_uncorrelated_and_centred_folds():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=SR * 4), rng.normal(size=SR * 4)
    f = mono_fold(a, b, SR)
    assert abs(f.correlation) < 0.01
    # unrelated sides: nothing lost (the lowest bands hold few bins, so more spread)
    assert all(abs(v) < (0.3 if fc >= 125 else 1.0) for fc, v in zip(f.bands_hz, f.loss_db))
    f = mono_fold(a, a, SR)
    assert f.correlation == pytest.approx(1.0)
    assert all(v == pytest.approx(-3.01, abs=0.02) for v in f.loss_db)   # coherent sum
    assert warnings(f, []) == []
    with pytest.raises(ValueError):
        mono_fold(a, b[:10], SR)


def test_live_mono_meter_reads_the_fold_at_the_staged_pans():
    """The control side's live measure: an inverted copy panned apart reads -1 and warns;
    the same copy with its polarity flipped back by the console's setting reads +1; fed
    block by block like the control loop feeds it."""
    from edgemix import params as P
    from edgemix.automix.prep.mono import LiveMono
    rng = np.random.default_rng(9)
    x = np.convolve(rng.normal(size=SR * 4), np.ones(8) / 8, "same")
    frames = np.stack([x, -x, 0.1 * rng.normal(size=len(x))], axis=1).astype(np.float32)
    params = P.channel_defaults(3)
    params[0, P.CH.pan], params[1, P.CH.pan] = -1.0, 1.0
    params[2, P.CH.mute_on] = 1.0
    m = LiveMono(SR, 3)
    for k in range(0, len(frames), 4800):
        m.process(frames[k:k + 4800], params)
    s = m.snapshot()
    assert abs(s["correlation"] + 1.0) <= 0.01
    assert s["worst_loss_db"] >= 30.0 and "mono fold loses" in s["warning"]
    assert len(s["loss_db"]) == len(s["bands_hz"])
    params[1, P.CH.polarity_invert] = 1.0
    m.reset()
    for k in range(0, len(frames), 4800):
        m.process(frames[k:k + 4800], params)
    s = m.snapshot()
    assert s["correlation"] > 0.99 and s["warning"] is None
    m.process(np.full((10, 3), np.nan, np.float32), params)      # never NaN out
    assert np.isfinite(m.snapshot()["correlation"])


def test_the_control_loop_carries_the_live_mono_meter():
    from edgemix.automix.policy import Automation
    from edgemix.console import Console
    from edgemix.rt.control import ControlLoop
    con = Console(SR, 64, 2, 1)
    loop = ControlLoop(con, None, Automation(2))
    x = np.random.default_rng(1).normal(size=(SR, 2)).astype(np.float32)
    loop._feed(x)
    s = loop.mono.snapshot()
    # both centred (the defaults): the master's sides are one signal
    assert s["correlation"] > 0.99 and s["warning"] is None and loop.errors == 0
