"""Labels, colours and groups from roles (edgemix.roles; edgemix.automix.prep.labels)."""
from edgemix.roles import ROLES, XAIR_COLOURS, colour_of, xair_colour_of


def test_one_xair_colour_per_role():
    idx = [r.xair_colour for r in ROLES]
    assert len(set(idx)) == len(ROLES)                     # every role told apart on the desk
    assert all(0 < i < len(XAIR_COLOURS) for i in idx)     # never "OFF" (a blank strip)
    assert XAIR_COLOURS[xair_colour_of("kick")] == "RD"
    assert XAIR_COLOURS[xair_colour_of("lead_vocal")] == "YE"
    assert colour_of("kick") == "#d62728"
