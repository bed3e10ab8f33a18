"""The live control path in its own process: the seqlock mailbox, and a paced live run
whose applied targets are exactly the offline trajectory's (same hops, same proposals)."""
from __future__ import annotations

import numpy as np

from edgemix import params as P
from edgemix.rt.control_process import (ControlProcess, _mailbox_put, _mailbox_take,
                                        control_recipe)
from edgemix.rt.offline import OfflineBackend
from edgemix.rt.runner import Runner
from edgemix.rt.synthetic import SyntheticSource
from tests.test_control_path import FS, run_offline, synthetic_session


def test_mailbox_hands_over_whole_pairs_once_and_never_a_torn_one():
    n = 3
    seq = np.zeros(1, np.int64)
    cp, mp = np.zeros((n, P.N_CH)), np.zeros(P.N_MS)
    got_cp, got_mp, seen = np.zeros((n, P.N_CH)), np.zeros(P.N_MS), np.zeros(1, np.int64)
    assert not _mailbox_take(seq, cp, mp, got_cp, got_mp, seen)  # nothing yet
    a_cp, a_mp = np.full((n, P.N_CH), 1.5), np.full(P.N_MS, -2.0)
    _mailbox_put(seq, cp, mp, a_cp, a_mp)
    assert seq[0] == 2
    assert _mailbox_take(seq, cp, mp, got_cp, got_mp, seen)
    np.testing.assert_array_equal(got_cp, a_cp)
    np.testing.assert_array_equal(got_mp, a_mp)
    assert not _mailbox_take(seq, cp, mp, got_cp, got_mp, seen)  # taken once only
    # a writer caught mid-write (odd sequence): the reader leaves it for the next block
    seq[0] += 1
    cp[:] = 9.0
    before = got_cp.copy()
    assert not _mailbox_take(seq, cp, mp, got_cp, got_mp, seen)
    np.testing.assert_array_equal(got_cp, before)
    seq[0] += 1
    assert _mailbox_take(seq, cp, mp, got_cp, got_mp, seen)
    assert (got_cp == 9.0).all()


def test_live_control_process_applies_the_offline_trajectory(tmp_path):
    """Paced synthetic input in the live arrangement (the backend does not drive the
    control path): the runner starts a control process; every target pair the audio side
    applies is one of the offline run's per-hop pairs, in order, and nearly all arrive."""
    session = synthetic_session(tmp_path, seconds=2.0, paced=True, name="proc")
    b = session.backend
    src = SyntheticSource(max(c.input for c in session.channels), FS, b.duration_s,
                          seed=b.seed)
    backend = OfflineBackend(src, FS, session.block_size, paced=True,
                             input_map=[c.input for c in session.channels])
    backend.drives_control = False
    console = session.build_console()
    runner = Runner(console, backend, base_params=session.channel_params(),
                    automation=session.automation(), locked=session.locked(),
                    master_params=session.master_params(),
                    hop_s=session.model.hop_ms / 1000.0, rt_priority=False,
                    control_recipe=control_recipe(session))
    assert isinstance(runner.control, ControlProcess)
    applied = []
    apply = console.apply_targets

    def recording(cp, mp):
        applied.append(np.array(cp))
        apply(cp, mp)
    console.apply_targets = recording
    st = runner.run()
    c = st["control"]
    assert c["process"] and c["errors"] == 0 and c["last_error"] is None
    assert c["ring_dropped_frames"] == 0
    offline = [p for _, p in run_offline(synthetic_session(tmp_path, seconds=2.0,
                                                           name="off"))[1]]
    assert len(applied) >= len(offline) - 3 and c["applied"] == len(applied)
    k = 0  # each applied pair is the next offline pair or a later one (latest wins)
    for got in applied:
        while k < len(offline) and not np.array_equal(got, offline[k]):
            k += 1
        assert k < len(offline), "an applied pair that the offline run never staged"
        k += 1
    # the console reports what it last mixed with
    np.testing.assert_array_equal(console.channel_params, applied[-1])
    assert runner.control.native_id is None  # the process has ended
