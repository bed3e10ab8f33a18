"""The desk: one live state, the person's move wins, every change echoed with a seq."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from edgemix import params as P
from edgemix.automix.policy import Proposal
from edgemix.rt.desk import AUTO, GROUPS, PERSON, Desk, DeskError, group_of


class Staged:
    """Records what the desk hands to the audio side."""

    def __init__(self):
        self.calls = []

    def __call__(self, cp, mp):
        self.calls.append((np.array(cp), np.array(mp)))


def proposal(n, **values):
    prop = Proposal.empty(n)
    for name, v in values.items():
        prop.values[:, getattr(P.CH, name)] = v
        for e in prop.explanations:
            e[name] = f"{name} because"
    return prop


def test_every_channel_parameter_has_a_group():
    names = [n for g in GROUPS.values() for n in g]
    assert sorted(names) == sorted(P.CHANNEL_SPECS)
    assert group_of("eq3_gain_db") == "eq" and group_of("aux2_pre") == "sends"


def test_a_persons_move_is_staged_at_once_and_echoed():
    st = Staged()
    d = Desk(3, stage=st)
    seen = []
    d.add_listener(seen.append)
    ch = d.set(2, "fader_db", -6.5, source="osc")
    assert ch.seq == 1 and ch.channel == 2 and ch.value == -6.5 and ch.owner == PERSON
    assert seen == [ch]
    cp, _ = st.calls[-1]
    assert cp[1, P.CH.fader_db] == -6.5 and cp[0, P.CH.fader_db] == 0.0
    assert d.get(2, "fader_db") == -6.5 and d.owner(2, "fader_db") == PERSON
    assert d.set(2, "fader_db", -6.5) is None          # nothing new: no echo
    assert d.seq == 1


@pytest.mark.parametrize("channel, param, value", [
    (1, "fader_db", float("nan")), (1, "fader_db", 11.0), (1, "fader_db", "3"),
    (1, "mute_on", 0.5), (1, "hpf_slope_db_oct", 13.0), (1, "pan", float("inf")),
    (1, "fadr_db", 0.0), (0, "fader_db", 0.0), (4, "fader_db", 0.0), ("1", "pan", 0.0),
    ("master", "fader_db", 0.0), (1, "master_fader_db", 0.0), (1, "automation", 1.5),
    (1, "name", 3), (1, "colour", "red"), (1, "role", "drums"), (1, "fader_db", None),
    (1, "pan", True),
])
def test_bad_values_are_refused_and_change_nothing(channel, param, value):
    st = Staged()
    d = Desk(3, stage=st)
    before = d.snapshot()
    with pytest.raises(DeskError) as e:
        d.set(channel, param, value)
    assert "\n" not in str(e.value) and str(e.value)
    assert d.snapshot() == before and not st.calls


def test_the_policy_moves_only_what_is_automatic():
    st = Staged()
    d = Desk(2, stage=st)
    d.set(1, "fader_db", -20.0, source="web")
    for _ in range(30):
        new = d.propose(proposal(2, fader_db=-3.0, hpf_hz=120.0))
    assert new[0, P.CH.fader_db] == -20.0            # the person's, held
    assert new[1, P.CH.fader_db] == pytest.approx(-3.0, abs=0.6)
    assert new[0, P.CH.hpf_hz] == pytest.approx(120.0, rel=0.06)
    snap = d.snapshot()
    assert snap["channels"][0]["owner"]["fader_db"] == PERSON
    assert snap["channels"][0]["owner"]["hpf_hz"] == AUTO
    # a parameter the person owns is not explained by the policy
    assert "fader_db" not in snap["channels"][0]["explanations"]
    assert "fader_db" in snap["channels"][1]["explanations"]
    assert st.calls[-1][0][0, P.CH.fader_db] == -20.0
    policy_changes = [c for c in d.changes_since(1) if c.source == "policy"]
    assert policy_changes and all(c.owner == AUTO for c in policy_changes)
    assert not any(c.channel == 1 and c.param == "fader_db" for c in policy_changes)


def test_release_hands_a_group_back_and_the_policy_takes_over():
    d = Desk(1)
    d.set(1, "eq2_gain_db", 6.0)
    d.set(1, "eq3_gain_db", -4.0)
    d.set(1, "pan", 0.5)
    out = d.release(1, "eq")
    assert {c.param for c in out} == {"eq2_gain_db", "eq3_gain_db"}
    assert all(c.owner == AUTO for c in out)
    assert d.owner(1, "pan") == PERSON
    for _ in range(40):
        d.propose(proposal(1, eq2_gain_db=0.0, pan=-0.5))
    assert d.get(1, "eq2_gain_db") == pytest.approx(0.0, abs=0.6)
    assert d.get(1, "pan") == 0.5
    with pytest.raises(DeskError):
        d.release(1, "nonsense")


def test_automation_level_one_hands_the_channel_back():
    d = Desk(2)
    d.set(1, "fader_db", -10.0)
    d.set(1, "automation", 0.0)
    assert d.level(1) == 0.0 and d.owner(1, "fader_db") == PERSON
    out = d.set_many([(1, "automation", 1.0)])
    assert [c.param for c in out] == ["automation", "fader_db"]
    assert d.owner(1, "fader_db") == AUTO and d.level(1) == 1.0


def test_changes_since_and_a_history_that_no_longer_reaches_back():
    d = Desk(1, history=4)
    for k in range(6):
        d.set(1, "fader_db", -float(k + 1))
    assert d.seq == 6
    assert [c.seq for c in d.changes_since(3)] == [4, 5, 6]
    assert d.changes_since(6) == []
    assert d.changes_since(1) is None                  # 2 is gone: take a snapshot
    assert d.snapshot()["seq"] == 6


def test_master_and_channel_info():
    d = Desk(2, names=["Kick", "Vox"], roles=["kick", "lead_vocal"])
    d.set("master", "master_fader_db", -3.0)
    d.set(2, "name", "Lead")
    d.set(2, "colour", "#FFAA00")
    snap = d.snapshot()
    assert snap["master"]["params"]["master_fader_db"] == -3.0
    assert snap["master"]["owner"]["master_fader_db"] == PERSON
    assert snap["channels"][1]["name"] == "Lead" and snap["channels"][1]["colour"] == "#ffaa00"
    assert d.targets()[1][P.MS.master_fader_db] == -3.0
    with pytest.raises(DeskError):
        d.release("master", "fader")


def test_set_many_is_all_or_nothing():
    d = Desk(2)
    with pytest.raises(DeskError):
        d.set_many([(1, "fader_db", -3.0), (2, "pan", 2.0)])
    assert d.seq == 0 and d.get(1, "fader_db") == 0.0


def test_two_threads_keep_one_ordered_history():
    st = Staged()
    d = Desk(4, stage=st)
    batches = []
    d.add_listener(batches.append, batch=True)
    stop = threading.Event()

    def person():
        k = 0
        while not stop.is_set():
            d.set(1 + k % 4, "fader_db", -float(k % 60), source="osc")
            k += 1

    t = threading.Thread(target=person)
    t.start()
    for i in range(50):
        d.propose(proposal(4, hpf_hz=40.0 + 20 * (i % 5), pan=0.3 * math.sin(i)))
    stop.set()
    t.join()
    seqs = [c.seq for b in batches for c in b]
    assert seqs == list(range(1, d.seq + 1))
    assert all(np.isfinite(cp).all() for cp, _ in st.calls)


def test_master_proposals_only_where_no_person_set_it():
    d = Desk(1, master_person=["master_fader_db"])
    prop = proposal(1)
    prop.master = np.full(P.N_MS, np.nan)
    prop.master[P.MS.master_fader_db] = -5.0
    prop.master[P.MS.reverb_return_db] = -4.0
    d.propose(prop)
    assert d.get("master", "master_fader_db") == 0.0
    assert d.get("master", "reverb_return_db") == -4.0
    assert d.owner("master", "reverb_return_db") == AUTO
    assert [c.param for c in d.release("master", "master_fader_db")] == ["master_fader_db"]
    d.propose(prop)
    assert d.get("master", "master_fader_db") == -5.0


def test_the_recognised_role_and_explanations_reach_the_snapshot():
    d = Desk(2, roles=["other", "kick"])
    d.propose(proposal(2, hpf_hz=80.0), recognised=[("bass", 0.81), None])
    snap = d.snapshot()["channels"]
    assert (snap[0]["recognised_role"], snap[0]["role_probability"]) == ("bass", 0.81)
    assert snap[1]["recognised_role"] is None and snap[1]["role"] == "kick"
    assert snap[0]["explanations"]["hpf_hz"] == "hpf_hz because"
