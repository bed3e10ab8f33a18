"""Labels, colours and groups from roles (edgemix.roles; edgemix.automix.prep.labels)."""
from edgemix.roles import ROLES, XAIR_COLOURS, colour_of, xair_colour_of


def test_one_xair_colour_per_role():
    idx = [r.xair_colour for r in ROLES]
    assert len(set(idx)) == len(ROLES)                     # every role told apart on the desk
    assert all(0 < i < len(XAIR_COLOURS) for i in idx)     # never "OFF" (a blank strip)
    assert XAIR_COLOURS[xair_colour_of("kick")] == "RD"
    assert XAIR_COLOURS[xair_colour_of("lead_vocal")] == "YE"
    assert colour_of("kick") == "#d62728"


def test_labels_groups_and_dcas():
    from edgemix.automix.prep.labels import Relation, label_channels
    names = ["in_01", "in_02", "in_03", "in_04", "in_05", "in_06", "in_07", "in_08", "in_09"]
    roles = ["kick", "kick", "snare", "snare", "hats_overheads", "hats_overheads", "bass",
             "bass", "lead_vocal"]
    rel = [Relation("in_02", "in_01", 1.1, False),        # the outside kick mic is later
           Relation("in_04", "in_03", 0.3, True),         # snare bottom: inverted
           Relation("in_07", "in_08", -2.5, False)]       # the DI is in_07 (earlier)
    got = {c.name: c for c in label_channels(names, roles, rel)}
    assert [got[n].label for n in names] == ["Kick In", "Kick Out", "Snare Top", "Snare Bot",
                                             "OH L", "OH R", "Bass DI", "Bass Amp", "Vox"]
    assert got["in_01"].group == got["in_05"].group == "drums"
    assert got["in_01"].dca == 1 and got["in_07"].dca == 2 and got["in_09"].dca == 3
    assert got["in_02"].linked == ("in_01",) and got["in_01"].linked == ("in_02",)
    assert got["in_01"].xair_colour == 1 and got["in_01"].colour_hex == "#d62728"
    assert all(len(c.label) <= 12 for c in got.values())
    # related mics share the first one's group, whatever each was recognised as
    g = {c.name: c for c in label_channels(["a", "b"], ["guitar", "other"],
                                           [Relation("b", "a", 2.0, False)])}
    assert g["b"].group == "guitars" and g["b"].label == "b"


def test_a_persons_names_and_colours_win():
    from edgemix.automix.prep.labels import label_channels
    got = label_channels(["in_01", "in_02", "in_03"], ["guitar", "guitar", "other"],
                         given_labels={"in_02": "Rhythm"}, given_colours={"in_01": "#123456"})
    assert [c.label for c in got] == ["Gtr 1", "Rhythm", "in_03"]
    assert got[0].colour_hex == "#123456" and got[0].given == ("colour",)
    assert got[1].given == ("label",) and got[2].given == ()
    import pytest
    with pytest.raises(ValueError, match="unknown role"):
        label_channels(["a"], ["kazoo"])
