"""``edgemix prep``'s offline analysis time per minute of 16 channels.

Run: ``scripts/bench.sh benchmarks/bench_prep.py`` (pytest-benchmark; numbers, not
pass/fail).  The session: one minute of a band rendered by FluidSynth (tests/soundfont.py:
drums, bass, piano, guitar, strings, lead), two songs, plus a Haas double and an inverted
copy: 16 channels at 48 kHz.  Each stage is timed alone too (roles through the model, the
click search, the silences, the mono fold and pair search), and the whole analysis with
the alignment estimator where this install has it.
"""
import sys
import pathlib

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
import soundfont  # noqa: E402

from edgemix.automix.prep import clicks, mono, silences  # noqa: E402
from edgemix.automix.prep.report import analyse, recognise_roles  # noqa: E402

SECONDS = 60.0
SR = soundfont.SAMPLE_RATE_HZ


@pytest.fixture(scope="module")
def session():
    why = soundfont.available()
    if why:
        pytest.skip(why)
    a = soundfont.render_parts(SECONDS, seed=11)
    b = soundfont.render_parts(SECONDS, seed=12)
    chans = [*a.values(), *b.values()]
    g = a["guitar"]
    d = int(0.011 * SR)
    chans.append(np.concatenate([np.zeros(d, np.float32), g[:-d]]))
    chans.append(-a["strings"])
    chans += [a["drums"] * 0.5 + b["drums"] * 0.5, a["bass"] + 1e-4]
    assert len(chans) == 16
    names = [f"in_{k + 1:02d}" for k in range(16)]
    analyse(names, [c[:SR * 5] for c in chans], SR)          # compile / load the kernels
    return names, chans


def _align():
    try:
        from edgemix.automix.prep.align import find_alignments
    except ImportError:
        return None
    return find_alignments


def test_prep_analysis_16ch_per_minute(benchmark, session):
    names, chans = session
    benchmark.group = "prep: 16 channels x 1 min, 48 kHz"
    rep = benchmark.pedantic(analyse, args=(names, chans, SR),
                             kwargs={"alignments": _align()}, rounds=1, iterations=1)
    assert len(rep.channels) == 16


def test_prep_roles(benchmark, session):
    names, chans = session
    benchmark.group = "prep: 16 channels x 1 min, 48 kHz"
    x = np.stack(chans, 1)
    benchmark.pedantic(recognise_roles, args=(x, SR), rounds=1, iterations=1)


def test_prep_clicks(benchmark, session):
    names, chans = session
    benchmark.group = "prep: 16 channels x 1 min, 48 kHz"
    benchmark.pedantic(lambda: [clicks.detect_clicks(c, SR) for c in chans], rounds=1,
                       iterations=1)


def test_prep_silences(benchmark, session):
    names, chans = session
    benchmark.group = "prep: 16 channels x 1 min, 48 kHz"
    benchmark.pedantic(lambda: [silences.find_silences(c, SR) for c in chans], rounds=1,
                       iterations=1)


def test_prep_mono_pairs(benchmark, session):
    names, chans = session
    benchmark.group = "prep: 16 channels x 1 min, 48 kHz"
    x = np.stack(chans, 1).astype(np.float64)
    benchmark.pedantic(mono.related_pairs, args=(names, x, SR), rounds=1, iterations=1)
