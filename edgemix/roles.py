"""Instrument roles: what a channel carries, with a display colour for the channel strip.

A role is what the policies and the teacher key their targets on (loudness balance, pan,
high-pass, reverb send), what the session synthesiser generates, and what a console shows
as the channel's colour.  The order of ``ROLES`` is stable: the index of a role is its
one-hot position wherever a role is fed to a model, so append new roles at the end (before
nothing: ``other`` stays last so an unknown source always has a home).

Colours follow the common console convention of colour-coding by instrument family
(drums red/orange, bass purple, guitars green, keys blue, vocals yellow, speech white).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class Role:
    """One instrument role: a short name, a display colour ``#rrggbb`` and a sentence."""

    name: str
    colour_hex: str
    doc: str = ""


ROLES: tuple[Role, ...] = (
    Role("kick", "#d62728", "kick drum (close mic)"),
    Role("snare", "#ff7f0e", "snare drum (close mic)"),
    Role("hats_overheads", "#ffbb78", "hi-hat and overhead / cymbal mics"),
    Role("bass", "#9467bd", "bass guitar or synth bass (DI or amp)"),
    Role("guitar", "#2ca02c", "electric or acoustic guitar"),
    Role("keys_piano", "#1f77b4", "piano, electric piano, organ"),
    Role("pad", "#17becf", "sustained synth pads and strings"),
    Role("lead_vocal", "#f5d000", "lead singer"),
    Role("backing_vocal", "#dbdb8d", "backing / harmony vocals"),
    Role("speech", "#f0f0f0", "spoken word: panel, lectern, presenter mics"),
    Role("other", "#7f7f7f", "anything else (percussion, FX, playback)"),
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
