"""Live alignment (issue 13, item 3): blocks through the streaming estimator and the control
loop; converges within 2 s of programme, stays still, explains, yields to a person."""
from __future__ import annotations

import numpy as np
import pytest

from edgemix import params as P
from edgemix.automix.policy import SWITCH_HOLD_HOPS, Automation, Proposal
from edgemix.automix.prep.align import corrections, find_alignments
from edgemix.automix.prep.live import AlignmentTracker, with_alignment
from edgemix.console import Console
from edgemix.features import FeatureExtractor
from edgemix.rt.control import ControlLoop
from tests import align_signals as S

FS = S.FS
HOP = 4800          # the control loop's 100 ms hop
D_LATE = 31.4       # the bottom mic's lateness (samples)


@pytest.fixture(scope="module")
def stems():
    """Snare top, snare bottom (inverted, 31.4 samples late), and an unrelated guitar mic
    with snare bleed: 4 s, (frames, 3) float32."""
    a, b, d, inv = S.pair("snare_top_bottom", 77, seconds=4.0)
    rng = np.random.default_rng(8)
    n = len(a)
    b = -S.delay(np.asarray(S._norm(a), np.float64), D_LATE)  # exact truth for this test
    b = b + 0.1 * rng.standard_normal(n) * np.std(b)
    g = S._norm(S.guitar(n, rng)) + 0.1 * S._norm(S.delay(a.astype(np.float64), 150.0))
    return np.stack([S._norm(a), b, g], 1).astype(np.float32)


def test_the_tracker_converges_within_2_s_and_stays_still(stems):
    tr = AlignmentTracker(3, FS, ["snare 1", "snare 2", "gtr"])
    tr.warmup()
    history = []
    for i in range(0, len(stems), HOP):
        tr.process(stems[i:i + HOP])
        prop = tr.contribute(Proposal.empty(3))
        history.append(((i + HOP) / FS, prop.values.copy(), prop.explanations))
    col_d, col_p = P.CH.delay_ms, P.CH.polarity_invert
    first = next(k for k, (_, v, _) in enumerate(history) if np.isfinite(v[0, col_d]))
    t_first, v, why = history[first]
    assert t_first <= 1.5, t_first        # + the automation's switch hold: within 2 s
    lift = 1e3 * 15 / FS
    assert abs(v[0, col_d] - (1e3 * D_LATE / FS + lift)) < 1e3 * 0.25 / FS
    assert abs(v[1, col_d] - lift) < 1e-9 and v[1, col_p] == 1.0 and v[0, col_p] == 0.0
    assert np.isnan(v[2]).all()            # the guitar is nobody's pair
    assert why[1]["polarity_invert"].startswith(
        "polarity inverted: snare 2: polarity inverted and 0.65 ms late against snare 1, "
        "correlation -")
    # once converged, nothing moves
    for _, later, _ in history[first:]:
        np.testing.assert_array_equal(later[:2, [col_d, col_p]], v[:2, [col_d, col_p]])


def test_the_live_estimate_agrees_with_the_offline_one(stems):
    off = corrections(find_alignments({"snare 1": stems[:, 0], "snare 2": stems[:, 1],
                                       "gtr": stems[:, 2]}, FS), FS)
    tr = AlignmentTracker(3, FS, ["snare 1", "snare 2", "gtr"])
    for i in range(0, len(stems), HOP):
        tr.process(stems[i:i + HOP])
        prop = tr.contribute(Proposal.empty(3))
    assert set(off) == {"snare 1", "snare 2"}
    assert abs(prop.value(0, "delay_ms") - off["snare 1"][0]) < 1e3 * 0.25 / FS
    assert prop.value(1, "polarity_invert") == float(off["snare 2"][1])


def _loop(stems, level=1.0, locked=None):
    c = Console(FS, 64, 3, 2)
    policy, features = with_alignment(None, FeatureExtractor(FS, 3), 3, FS,
                                      ["snare 1", "snare 2", "gtr"])
    auto = Automation(3, level=level, locked=locked)
    loop = ControlLoop(c, policy, auto, features=features)
    targets = []
    for i in range(0, len(stems), 480):
        loop.push(np.ascontiguousarray(stems[i:i + 480]))
        if loop.advance():
            targets.append((loop.frames_in / FS, loop.automation.targets.copy()))
    return loop, targets


def test_through_the_control_loop_as_automated_parameters(stems):
    """The proposals reach the console's targets through the automation: within 2 s of
    programme, held still after, explained; at level 0 or under a person's lock they do
    not move."""
    loop, targets = _loop(stems)
    col_d, col_p = P.CH.delay_ms, P.CH.polarity_invert
    done = next(t for t, v in targets if v[1, col_p] == 1.0 and v[0, col_d] > 0)
    assert done <= 2.0, done
    final = targets[-1][1]
    for t, v in targets:
        if t >= done:
            np.testing.assert_array_equal(v[:, [col_d, col_p]], final[:, [col_d, col_p]])
    assert abs(final[0, col_d] - 1e3 * (D_LATE + 15) / FS) < 1e3 * 0.25 / FS
    assert final[2, col_d] == 0.0 and final[2, col_p] == 0.0
    assert "late against snare 1" in loop.last_explanations[1]["polarity_invert"]
    assert SWITCH_HOLD_HOPS >= 1 and loop.errors == 0
    # manual: level 0 keeps the schema defaults; a person's lock on snare 2's polarity wins
    short = stems[:int(2.5 * FS)]       # past the 1.8 s it took above
    _, manual = _loop(short, level=0.0)
    assert all(v[:, col_d].max() == 0.0 and v[:, col_p].max() == 0.0 for _, v in manual)
    locked = np.zeros((3, P.N_CH), bool)
    locked[1, col_p] = True
    _, held = _loop(short, locked=locked)
    assert held[-1][1][1, col_p] == 0.0 and held[-1][1][0, col_d] > 0.0


def test_too_many_channels_is_a_one_line_error():
    with pytest.raises(ValueError, match="align = false"):
        AlignmentTracker(64, FS)


def test_a_session_with_align_runs_it_offline_through_the_real_runner(tmp_path, stems):
    """``[model] align = true`` with no policy: the offline runner's control loop aligns
    the pair, and the console ends with the delay and the polarity set."""
    import soundfile as sf

    from edgemix.app import build_runner
    from edgemix.session import load_session
    folder = tmp_path / "stems"
    folder.mkdir()
    for i in range(stems.shape[1]):
        sf.write(folder / f"in_{i + 1:02d}.wav", stems[:, i], int(FS), subtype="FLOAT")
    cfg = tmp_path / "session.toml"
    cfg.write_text(f'[session]\nsample_rate_hz = {int(FS)}\nblock_size = 256\n'
                   f'[backend]\nkind = "offline"\ninputs = ["{folder}"]\n'
                   f'output = "{tmp_path / "mix.wav"}"\n'
                   '[model]\npolicy = "none"\nalign = true\n')
    session = load_session(cfg)
    assert session.model.align
    runner, _ = build_runner(session, rt_priority=False)
    runner.run()
    cp = runner.console.channel_params
    assert abs(cp[0, P.CH.delay_ms] - 1e3 * (D_LATE + 15) / FS) < 1e3 * 0.25 / FS
    assert cp[1, P.CH.polarity_invert] == 1.0 and cp[2, P.CH.delay_ms] == 0.0
