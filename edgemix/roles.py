"""Instrument roles: what a channel carries, with a display colour for the channel strip.

A role is what the policies and the teacher key their targets on (loudness balance, pan,
high-pass, reverb send), what the session synthesiser generates, and what a console shows
as the channel's colour.  The order of ``ROLES`` is stable: the index of a role is its
one-hot position wherever a role is fed to a model, so append new roles at the end (before
nothing: ``other`` stays last so an unknown source always has a home).

Colours follow the common console convention of colour-coding by instrument family
(drums red/orange, bass purple, guitars green, keys blue, vocals yellow, speech white).
``xair_colour`` is the same idea in the 16-entry colour set a Behringer X-Air / X32
scribble strip shows (``/ch/NN/config/color``, an index into :data:`XAIR_COLOURS`: eight
colours, then the same eight with the text inverted), one index per role so every role is
told apart on the desk too (Maillot, "Unofficial X32/M32 OSC Remote Protocol", the
``config/color`` enum; the X-Air dialect is the same).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


#: The X-Air / X32 scribble-strip colours by index (``/config/color``): off, red, green,
#: yellow, blue, magenta, cyan, white, then the same with inverted text ("i").
XAIR_COLOURS: tuple[str, ...] = ("OFF", "RD", "GN", "YE", "BL", "MG", "CY", "WH",
                                 "OFFi", "RDi", "GNi", "YEi", "BLi", "MGi", "CYi", "WHi")


@dataclass(frozen=True)
class Role:
    """One instrument role: a short name, a display colour ``#rrggbb``, the nearest
    X-Air scribble-strip colour (an index into :data:`XAIR_COLOURS`) and a sentence."""

    name: str
    colour_hex: str
    xair_colour: int
    doc: str = ""


ROLES: tuple[Role, ...] = (
    Role("kick", "#d62728", 1, "kick drum (close mic)"),
    Role("snare", "#ff7f0e", 9, "snare drum (close mic)"),
    Role("hats_overheads", "#ffbb78", 13, "hi-hat and overhead / cymbal mics"),
    Role("bass", "#9467bd", 5, "bass guitar or synth bass (DI or amp)"),
    Role("guitar", "#2ca02c", 2, "electric or acoustic guitar"),
    Role("keys_piano", "#1f77b4", 4, "piano, electric piano, organ"),
    Role("pad", "#17becf", 6, "sustained synth pads and strings"),
    Role("lead_vocal", "#f5d000", 3, "lead singer"),
    Role("backing_vocal", "#dbdb8d", 11, "backing / harmony vocals"),
    Role("speech", "#f0f0f0", 7, "spoken word: panel, lectern, presenter mics"),
    Role("other", "#7f7f7f", 15, "anything else (percussion, FX, playback)"),
)

#: Role names in order; ``ROLE_NAMES.index(name)`` is a role's one-hot position.
ROLE_NAMES: tuple[str, ...] = tuple(r.name for r in ROLES)
N_ROLES = len(ROLES)
ROLE_INDEX: Mapping[str, int] = MappingProxyType({r.name: i for i, r in enumerate(ROLES)})
ROLE_BY_NAME: Mapping[str, Role] = MappingProxyType({r.name: r for r in ROLES})


def role_index(name: str) -> int:
    """Index of a role by name; ValueError naming the valid roles."""
    try:
        return ROLE_INDEX[name]
    except KeyError:
        raise ValueError(f"unknown role {name!r}: use one of {', '.join(ROLE_NAMES)}") from None


def colour_of(name: str) -> str:
    """Display colour ``#rrggbb`` of a role."""
    return ROLES[role_index(name)].colour_hex


def xair_colour_of(name: str) -> int:
    """X-Air scribble-strip colour index (``/ch/NN/config/color``, 0..15) of a role."""
    return ROLES[role_index(name)].xair_colour
