"""Labels, colours and groups for a console's channels, from the roles recognised on them.

* **Labels** the way engineers write scribble strips (at most ``MAX_LABEL`` characters, the
  X-Air's): one source, one word ("Kick", "Snare", "Bass", "Vox"); two mics on one source,
  told apart by what the alignment measured -- the later of two kick mics is the outside
  one ("Kick In", "Kick Out"), the inverted or later snare mic the bottom ("Snare Top",
  "Snare Bot"), the later bass channel the amp ("Bass DI", "Bass Amp"), the later guitar
  mic the room; an overhead pair is "OH L"/"OH R"; otherwise numbered ("Gtr 1", "Gtr 2").
* **Colours**: the role's, as ``#rrggbb`` and as the X-Air scribble-strip index
  (:mod:`edgemix.roles`).
* **Groups** (:data:`GROUPS`): drums, bass, guitars, keys, vocals, speech, each with a
  suggested bus; the first four groups present get DCAs 1-4 (an X-Air has four).  Mics
  related by alignment are linked and share the group of the first.

A person's word wins: a label or colour given for a channel is kept as given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from edgemix.roles import ROLE_BY_NAME, role_index

#: The longest scribble-strip name an X-Air shows.
MAX_LABEL = 12
#: DCAs a desk offers (an X-Air has four).
N_DCAS = 4


@dataclass(frozen=True)
class Group:
    """A group of roles and what to set up for it."""

    name: str
    roles: tuple[str, ...]
    bus: str


GROUPS: tuple[Group, ...] = (
    Group("drums", ("kick", "snare", "hats_overheads"),
          "stereo drum bus (one compressor glues the kit; one fader for the kit)"),
    Group("bass", ("bass",), "bass bus when DI and amp are both used (one fader, one compressor)"),
    Group("guitars", ("guitar",), "guitar bus (one fader for the section)"),
    Group("keys", ("keys_piano", "pad"), "keys bus (one fader for the section)"),
    Group("vocals", ("lead_vocal", "backing_vocal"),
          "vocal bus (shared compression and reverb send)"),
    Group("speech", ("speech",), "gain-sharing automixer (automix_on) and one speech fader"),
    Group("other", ("other",), "none: set up by hand"),
)
GROUP_OF_ROLE: dict[str, str] = {r: g.name for g in GROUPS for r in g.roles}

#: The label of a role's single channel, and the stem used to number several.
BASE_LABEL = {"kick": "Kick", "snare": "Snare", "hats_overheads": "OH", "bass": "Bass",
              "guitar": "Gtr", "keys_piano": "Keys", "pad": "Pad", "lead_vocal": "Vox",
              "backing_vocal": "BV", "speech": "Mic", "other": "Ch"}
#: Two mics on one source: (the earlier / upright one, the later / inverted one).
PAIR_WORDS = {"kick": ("In", "Out"), "snare": ("Top", "Bot"), "bass": ("DI", "Amp"),
              "guitar": ("Close", "Room"), "hats_overheads": ("L", "R")}


@dataclass(frozen=True)
class ChannelLabel:
    """What prep suggests for one channel."""

    name: str
    label: str
    role: str
    colour_hex: str
    xair_colour: int
    group: str
    dca: int | None
    bus: str
    linked: tuple[str, ...] = ()
    given: tuple[str, ...] = ()          # which fields the person gave ("label", "colour")


@dataclass(frozen=True)
class Relation:
    """Channel ``name`` is ``delay_ms`` late against ``aligned_to`` (mics of one source),
    ``inverted`` when its polarity is opposite."""

    name: str
    aligned_to: str
    delay_ms: float
    inverted: bool


def label_channels(names: Sequence[str], roles: Sequence[str],
                   relations: Sequence[Relation] = (), *,
                   given_labels: Mapping[str, str] | None = None,
                   given_colours: Mapping[str, str] | None = None) -> list[ChannelLabel]:
    """Labels, colours and groups for channels ``names`` recognised as ``roles``.

    ``relations``: mics of one source (from the alignment); ``given_labels`` /
    ``given_colours``: what a person set (channel name -> label / ``#rrggbb``), kept."""
    if len(names) != len(roles):
        raise ValueError(f"{len(names)} channels but {len(roles)} roles")
    for r in roles:
        role_index(r)
    given_labels = dict(given_labels or {})
    given_colours = dict(given_colours or {})
    rel = {r.name: r for r in relations if r.name in names and r.aligned_to in names}
    role_of = dict(zip(names, roles))
    # related mics: a link both ways, and the second joins the first's group
    links: dict[str, list[str]] = {n: [] for n in names}
    group = {n: GROUP_OF_ROLE[role_of[n]] for n in names}
    for r in rel.values():
        links[r.name].append(r.aligned_to)
        links[r.aligned_to].append(r.name)
        group[r.name] = group[r.aligned_to]
    labels = _labels(names, roles, rel)
    present = [g.name for g in GROUPS if g.name != "other" and g.name in group.values()]
    dca = {g: k + 1 for k, g in enumerate(present[:N_DCAS])}
    bus = {g.name: g.bus for g in GROUPS}
    out = []
    for n, role in zip(names, roles):
        spec = ROLE_BY_NAME[role]
        given = tuple(f for f, d in (("label", given_labels), ("colour", given_colours)) if n in d)
        out.append(ChannelLabel(
            name=n, label=given_labels.get(n, labels[n]), role=role,
            colour_hex=given_colours.get(n, spec.colour_hex), xair_colour=spec.xair_colour,
            group=group[n], dca=dca.get(group[n]), bus=bus[group[n]],
            linked=tuple(links[n]), given=given))
    return out


def _labels(names, roles, rel: Mapping[str, Relation]) -> dict[str, str]:
    by_role: dict[str, list[str]] = {}
    for n, r in zip(names, roles):
        by_role.setdefault(r, []).append(n)
    out = {}
    for role, chans in by_role.items():
        base = BASE_LABEL[role]
        if role == "other":            # nothing better to say than its own name
            for n in chans:
                out[n] = n[:MAX_LABEL]
            continue
        if len(chans) == 1:
            out[chans[0]] = base
            continue
        if len(chans) == 2 and role in PAIR_WORDS:
            a, b = chans
            first, second = PAIR_WORDS[role]
            if role == "hats_overheads":     # a pair of overheads: left, right
                out[a], out[b] = f"{base} {first}", f"{base} {second}"
                continue
            r = rel.get(b) or rel.get(a)
            if r is not None and {r.name, r.aligned_to} == {a, b}:
                # the later (for a snare, the inverted) mic takes the second word
                later = r.name if r.delay_ms >= 0 or (role == "snare" and r.inverted) \
                    else r.aligned_to
                earlier = a if later == b else b
                out[earlier], out[later] = f"{base} {first}", f"{base} {second}"
                continue
        for k, n in enumerate(chans):
            out[n] = f"{base} {k + 1}"[:MAX_LABEL]
    return out
