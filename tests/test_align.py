"""Polarity and time alignment between mics of one source (issue 13, item 2).

Synthetic pairs with exact truth (``tests/align_signals.py``: fractional delays, polarity,
zero-phase colouration, room, bleed that correlates between the mics at another lag, and
noise), 20 trials per case, at a signal-to-(bleed + noise) ratio of 10 dB; the room mic
at a direct-to-reverberant ratio of 6 dB (at 3 dB its median error is 0.08 sample: the
early reflections bias the peak of a tonal source).  The targets:

* broadband pairs (snare top/bottom, overhead against the snare, guitar close/room):
  median error <= 0.05 sample, p95 <= 0.5 sample, polarity always right;
* narrowband pairs (kick in/out, bass DI/amp): p90 <= 1 sample over the estimates given,
  confident-but-wrong <= 1 %, abstaining otherwise;
* unrelated channels (two sources, each bleeding into the other's mic at -10 dB) never
  paired.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgemix.automix.prep.align import (Alignment, analyse_pair, corrections,
                                        find_alignments)
from tests import align_signals as S
from tests import soundfont as SF

TRIALS = 20
#: Programme per trial: a narrowband source's few hundred hertz carry less delay
#: information per second than a broadband pair.
SECONDS = {"snare_top_bottom": 4.0, "overhead_snare": 4.0, "guitar_close_room": 4.0,
           "kick_in_out": 12.0, "bass_di_amp": 12.0}


def _run(case, seconds):
    out = []
    for seed in range(TRIALS):
        a, b, d, inv = S.pair(case, 1000 + seed, seconds=seconds)
        e = analyse_pair(a.astype(np.float64), b.astype(np.float64), S.FS)
        out.append((e, d, inv))
    return out


@pytest.fixture(scope="module")
def results():
    """Every case's estimates, computed once."""
    return {case: _run(case, SECONDS[case]) for case in S.CASES}


@pytest.mark.parametrize("case", S.BROADBAND)
def test_broadband_pairs_to_a_fraction_of_a_sample(results, case):
    res = results[case]
    given = [(e, d, inv) for e, d, inv in res if e.abstained is None]
    assert len(given) >= 0.75 * TRIALS, [e.abstained for e, _, _ in res]
    err = np.array([abs(e.lag_samples - d) for e, d, _ in given])
    assert np.median(err) <= 0.05, err
    assert np.percentile(err, 95) <= 0.5, err
    assert all(e.inverted == inv for e, _, inv in res if e.abstained is None)
    # an inverted pair reads a negative correlation, a straight one a positive
    assert all((e.correlation < 0) == inv for e, _, inv in given)


@pytest.mark.parametrize("case", S.NARROWBAND)
def test_narrowband_pairs_are_right_or_abstain(results, case):
    res = results[case]
    given = [(e, d, inv) for e, d, inv in res if e.abstained is None]
    wrong = [(e, d, inv) for e, d, inv in given if abs(e.lag_samples - d) > 1.0
             or e.inverted != inv]
    assert len(wrong) <= 0.01 * TRIALS, wrong
    if given:
        err = np.array([abs(e.lag_samples - d) for e, d, _ in given])
        assert np.percentile(err, 90) <= 1.0, err
    for e, _, _ in res:
        if e.abstained is not None:
            assert e.abstained.split(" ")[0] in ("ambiguous", "imprecise", "weakly")


def test_narrowband_estimates_are_given_often_enough(results):
    """Abstaining is allowed, not abstaining always: over both narrowband cases, at least
    5 % of the trials get a delay (measured: 3 of 40; at 10 dB with bleed in both mics a
    kick's or a bass's delay is rarely known to a sample from 12 s of programme)."""
    given = sum(e.abstained is None for case in S.NARROWBAND for e, _, _ in results[case])
    assert given >= 0.05 * len(S.NARROWBAND) * TRIALS


def test_unrelated_channels_are_never_paired():
    for seed in range(TRIALS):
        a, b = S.unrelated(2000 + seed)
        e = analyse_pair(a.astype(np.float64), b.astype(np.float64), S.FS)
        assert e.abstained is not None, (seed, e)


def test_find_alignments_groups_pairs_and_leaves_the_rest_alone():
    """Four stems, anonymous names: a snare pair (bottom inverted and late), a guitar
    close/room pair, and an unrelated keys channel.  Each late channel is aligned to its
    close mic; the keys get no entry; corrections delay the early mic."""
    rng = np.random.default_rng(5)
    n = int(4 * S.FS)
    snare, gtr, keys = (S._norm(f(n, rng)) for f in (S.snare, S.guitar, S.bass))
    d_snare, d_room = 23.4, 517.8
    noise = lambda: 0.02 * rng.standard_normal(n)  # noqa: E731
    far = lambda x, ms: 0.1 * S.delay(x, ms * 1e-3 * S.FS)  # noqa: E731  bleed, -20 dB
    stems = {
        "in_01": S.colour(snare, rng) + far(gtr, 4.0) + noise(),
        "in_02": -S.delay(S.colour(snare, rng), d_snare) + far(gtr, 4.3) + noise(),
        "in_03": S.colour(gtr, rng) + far(snare, 3.1) + noise(),
        "in_04": S.delay(S.colour(gtr, rng) + S.room(gtr, rng, 6.0), d_room)
        + far(snare, 8.7) + noise(),
        "in_05": np.stack([keys, keys], 1) + noise()[:, None],
    }
    got = {a.channel: a for a in find_alignments(stems, S.FS)}
    assert set(got) == {"in_02", "in_04"}, got
    sn, rm = got["in_02"], got["in_04"]
    assert sn.aligned_to == "in_01" and sn.polarity_inverted and sn.abstained is None
    assert abs(sn.delay_ms - 1e3 * d_snare / S.FS) < 0.01
    assert sn.correlation < 0 and 0 < sn.confidence <= 1
    assert rm.aligned_to == "in_03" and not rm.polarity_inverted
    assert abs(rm.delay_ms - 1e3 * d_room / S.FS) < 0.01
    fix = corrections(got.values())
    assert fix["in_02"] == (0.0, True) and fix["in_04"] == (0.0, False)
    assert abs(fix["in_01"][0] - 1e3 * d_snare / S.FS) < 0.01 and not fix["in_01"][1]
    assert abs(fix["in_03"][0] - 1e3 * d_room / S.FS) < 0.01


def test_corrections_follow_a_chain_to_the_latest_mic():
    links = [Alignment("b", "a", 1.0, True, 0.9, -0.8),
             Alignment("c", "b", 2.5, True, 0.9, -0.7),
             Alignment("d", "a", 0.0, False, 0.2, 0.1, "ambiguous peak")]
    fix = corrections(links)
    assert fix == {"a": (3.5, False), "b": (2.5, True), "c": (0.0, False)}


def test_bad_input_is_a_one_line_error_and_silence_is_no_pair():
    with pytest.raises(ValueError, match="sample rate"):
        find_alignments({"a": np.zeros(10)}, 0)
    with pytest.raises(ValueError, match="stem 'a'"):
        find_alignments({"a": np.zeros((2, 3, 4))}, 48000)
    assert find_alignments({}, 48000) == []
    x = np.random.default_rng(0).standard_normal(48000)
    assert find_alignments({"a": x, "b": np.zeros(48000), "c": np.full(48000, np.nan)},
                           48000) == []
    short = find_alignments({"a": x[:1000], "b": x[:1000]}, 48000)
    assert short == []


# ---- real sampled instruments (FluidSynth, General MIDI SoundFont) ----------------------
REAL_TRIALS = 8


def _real_stems(seconds):
    """Kick, snare, hats, bass and guitar rendered separately from the SoundFont (cached)."""
    rng = np.random.default_rng(13)
    drums = SF.drum_notes(seconds, rng)
    part = lambda notes, program, channel: SF.render_midi(  # noqa: E731
        SF._midi(notes, program, channel, seconds), seconds).astype(np.float64)
    return {"kick": part([n for n in drums if n[2] == 36], None, 9),
            "snare": part([n for n in drums if n[2] == 38], None, 9),
            "hats": part([n for n in drums if n[2] in (42, 49)], None, 9),
            "bass": part(SF.bass_notes(seconds, rng), 33, 0),
            "guitar": part(SF.guitar_notes(seconds, rng), 27, 2)}


#: case -> (source, bleed, window seconds, delay range in samples, mic b's extras)
REAL_CASES = {
    "snare_top_bottom": ("snare", "hats", 4.0, (3, 60), {}),
    "guitar_close_room": ("guitar", "snare", 4.0, (240, 960), {"room_drr": 10.0}),
    "kick_in_out": ("kick", "snare", 8.0, (20, 100), {"shape": lambda s: S.lowpass(s, 400.0)}),
    "bass_di_amp": ("bass", "kick", 8.0, (50, 400),
                    {"shape": lambda s: S.lowpass(np.tanh(1.5 * S._norm(s)), 2500.0)}),
}


@pytest.mark.skipif(SF.available() is not None, reason=str(SF.available()))
def test_real_sampled_instruments():
    """Mic pairs made from FluidSynth renders of GM instruments (different windows of a
    16 s part per trial; the same mic model, bleed and 10 dB SNR as the synthetic cases,
    the room mic at 10 dB DRR): never confidently wrong; the snare to the broadband
    targets, the guitar through a room to a median of 0.1 sample."""
    parts = _real_stems(16.0)
    fs = SF.SAMPLE_RATE_HZ
    for case, (src_name, bleed_name, secs, (lo, hi), extra) in REAL_CASES.items():
        n = int(secs * fs)
        errs, wrong, given = [], 0, 0
        for trial in range(REAL_TRIALS):
            rng = np.random.default_rng(3000 + trial)
            start = int(rng.uniform(0, len(parts[src_name]) - n))
            src = parts[src_name][start:start + n] + 1e-9 * rng.standard_normal(n)
            other = parts[bleed_name][start:start + n]
            d, inv = float(rng.uniform(lo, hi)), bool(rng.integers(2))
            a = S._mic(src, 0.0, rng, 10.0, other, rng.uniform(0, 100))
            b = S._mic(src, d, rng, 10.0, other, rng.uniform(0, 100), inverted=inv, **extra)
            e = analyse_pair(a, b, fs)
            if e.abstained is not None:
                continue
            given += 1
            err = abs(e.lag_samples - d)
            errs.append(err)
            wrong += err > 1.0 or e.inverted != inv
        assert wrong == 0, (case, errs)
        if case in S.BROADBAND:
            assert given >= 0.5 * REAL_TRIALS, (case, given)
            # measured: snare median 0.027 sample (4 of 8 abstained: ambiguous); the GM
            # guitar through a room at 10 dB DRR 0.061 (the synthetic guitar: 0.033)
            limit = 0.05 if case == "snare_top_bottom" else 0.1
            assert np.median(errs) <= limit and np.percentile(errs, 95) <= 0.5, (case, errs)
