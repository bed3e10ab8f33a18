"""The Behringer X-Air (XR18/MR18) OSC dialect, for what this console has.

Sources: Behringer/Music Tribe, "X AIR Mixer Series Remote Control Protocol" (firmware
1.11+, with its Parameters.txt), and P.-G. Maillot, "Unofficial X32/M32 OSC Remote
Protocol" (the same value encodings: the fader law, ``linf``/``logf`` grids, enums).  What
the dialect does not cover here is listed in ``docs/osc.md``.

Values on the wire (the X-Air type rules): continuous parameters are floats 0.0 .. 1.0 on
a grid -- ``linf [min, max, step]``, ``logf [min, max, steps]``, and the fader ``level``
law with 1024 steps; switches and enums are int32; names are strings.  This module maps
each address to one schema parameter (:mod:`edgemix.params`) with a :class:`Codec` that
turns the wire value into the X-Air unit value and back; :class:`Binding` converts X-Air
units to the schema's (pan -100..100 -> -1..1) and clamps an X-Air value our console
cannot reach (an X-Air EQ at 20 kHz on our band 1) to the schema's range.  A value not
legal in X-Air (a float outside 0..1, NaN, a string for a fader) is a :class:`XAirError`.

Channels are ``/ch/01`` .. ``/ch/NN`` for as many channels as the console has (X-Air has
16).  Sends: ``/ch/NN/mix/07/level`` (X-Air's FX 1 send) is aux 1, the reverb;
``/ch/NN/mix/01..03/level`` (buses 1-3) are aux 2..4, where the session has them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from edgemix import params as P
from edgemix.roles import ROLE_BY_NAME, XAIR_COLOURS

#: What /xinfo and /status report: the model X-Air apps expect, a firmware they accept.
MODEL = "XR18"
FIRMWARE = "1.17"
SERVER_VERSION = "edgemix"
#: The fader ("level") law's grid: 1024 steps over 0.0 .. 1.0.
FADER_STEPS = 1024
#: Meter values on the wire: int16, 1/256 dB; silence is the most negative value.
METER_SCALE = 256.0
METER_FLOOR = -32768


class XAirError(ValueError):
    """A value or address the dialect does not accept: one line naming the fix."""


def fader_to_db(f: float) -> float:
    """X-Air/X32 fader float (0..1) -> dB, on the 1024-step grid (Maillot, "fader law"):
    four linear segments, 0.0 = -90 dB (off), 0.25 = -30, 0.5 = -10, 0.75 = 0, 1.0 = +10."""
    f = round_to_grid(f, FADER_STEPS - 1)
    if f >= 0.5:
        return f * 40.0 - 30.0
    if f >= 0.25:
        return f * 80.0 - 50.0
    if f >= 0.0625:
        return f * 160.0 - 70.0
    return f * 480.0 - 90.0


def db_to_fader(db: float) -> float:
    """dB -> the X-Air fader float on the 1024-step grid (the inverse of
    :func:`fader_to_db`; ``(int)(f * 1023.5) / 1023``, as the console rounds)."""
    d = min(max(float(db), -90.0), 10.0)
    if d < -60.0:
        f = (d + 90.0) / 480.0
    elif d < -30.0:
        f = (d + 70.0) / 160.0
    elif d < -10.0:
        f = (d + 50.0) / 80.0
    else:
        f = (d + 30.0) / 40.0
    return int(f * (FADER_STEPS - 1 + 0.5)) / (FADER_STEPS - 1)


def round_to_grid(f: float, n: int) -> float:
    """``f`` in 0..1 on the grid of ``n`` intervals (``n + 1`` values)."""
    return round(min(max(f, 0.0), 1.0) * n) / n


def _float_arg(arg, where: str) -> float:
    if isinstance(arg, bool) or not isinstance(arg, (int, float)):
        raise XAirError(f"{where}: expected a float 0.0 .. 1.0, got {_kind(arg)}")
    f = float(arg)
    if not math.isfinite(f) or not 0.0 <= f <= 1.0:
        raise XAirError(f"{where}: {arg!r} is outside 0.0 .. 1.0 (X-Air sends normalised "
                        "floats; use /edgemix/... for values in units)")
    return f


def _int_arg(arg, where: str, n: int) -> int:
    if isinstance(arg, bool) or not isinstance(arg, (int, float)) or \
            (isinstance(arg, float) and not (math.isfinite(arg) and arg.is_integer())):
        raise XAirError(f"{where}: expected an integer 0 .. {n - 1}, got {_kind(arg)}")
    i = int(arg)
    if not 0 <= i < n:
        raise XAirError(f"{where}: {i} is outside 0 .. {n - 1}")
    return i


def _kind(arg) -> str:
    if isinstance(arg, float) and not math.isfinite(arg):
        return repr(arg)
    if isinstance(arg, str):
        return f"the string {arg[:20]!r}"
    if isinstance(arg, (bytes, bytearray)):
        return "a blob"
    return f"{type(arg).__name__} {arg!r}"[:40]


class Codec:
    """Wire value <-> the X-Air unit value.  ``tag``: the OSC type sent ('f', 'i', 's')."""

    tag = "f"

    def decode(self, arg, where: str):
        raise NotImplementedError

    def encode(self, value):
        raise NotImplementedError


class Level(Codec):
    """The fader law (``level``): dB."""

    def decode(self, arg, where):
        return fader_to_db(_float_arg(arg, where))

    def encode(self, value):
        return db_to_fader(value)


@dataclass
class LinF(Codec):
    """``linf [lo, hi, step]``: a linear float grid."""

    lo: float
    hi: float
    step: float

    def __post_init__(self):
        self.n = int(round((self.hi - self.lo) / self.step))

    def decode(self, arg, where):
        return self.lo + round_to_grid(_float_arg(arg, where), self.n) * (self.hi - self.lo)

    def encode(self, value):
        return round_to_grid((value - self.lo) / (self.hi - self.lo), self.n)


@dataclass
class LogF(Codec):
    """``logf [lo, hi, steps]``: a logarithmic float grid of ``steps`` values (``lo`` may
    exceed ``hi``: the EQ's Q runs from 10 down to 0.3)."""

    lo: float
    hi: float
    steps: int

    def decode(self, arg, where):
        u = round_to_grid(_float_arg(arg, where), self.steps - 1)
        return self.lo * math.exp(u * math.log(self.hi / self.lo))

    def encode(self, value):
        v = min(max(value, min(self.lo, self.hi)), max(self.lo, self.hi))
        return round_to_grid(math.log(v / self.lo) / math.log(self.hi / self.lo),
                             self.steps - 1)


@dataclass
class Enum(Codec):
    """An int32 index into ``values`` (the X-Air unit value of each)."""

    values: tuple
    tag = "i"

    def decode(self, arg, where):
        return self.values[_int_arg(arg, where, len(self.values))]

    def encode(self, value):
        ok = [i for i, v in enumerate(self.values) if not math.isnan(v)]
        return min(ok, key=lambda i: abs(self.values[i] - value))


class Switch(Codec):
    """An int32 0/1 switch."""

    tag = "i"

    def decode(self, arg, where):
        return float(_int_arg(arg, where, 2))

    def encode(self, value):
        return 1 if value >= 0.5 else 0


@dataclass
class Binding:
    """An address bound to a schema parameter: ``desk = scale * xair (+ offset)``, or for
    ``invert`` switches ``desk = 1 - xair`` (``mix/on`` is "not muted").  ``fixed``: the
    address has one value here (a band type, the compressor's mode); setting another is a
    :class:`XAirError` with ``fixed_why``."""

    param: str | None
    codec: Codec
    scale: float = 1.0
    invert: bool = False
    fixed: float | None = None
    fixed_why: str = ""
    #: the message for an enum entry with no counterpart here (NaN in the codec's values)
    missing_why: str = "that choice is not available on this console"

    def to_desk(self, arg, where: str) -> float | None:
        """The schema value for a wire argument (None: nothing to set, a fixed value)."""
        v = self.codec.decode(arg, where)
        if math.isnan(v):
            raise XAirError(f"{where}: {self.missing_why}")
        if self.fixed is not None:
            if v != self.fixed:
                raise XAirError(f"{where}: {self.fixed_why}")
            return None
        if self.invert:
            v = 1.0 - v
        spec = P.lookup(self.param)
        return float(spec.clip(v * self.scale))

    def to_wire(self, desk_value: float | None):
        if self.fixed is not None:
            return self.codec.encode(self.fixed)
        v = 1.0 - desk_value if self.invert else desk_value / self.scale
        return self.codec.encode(v)


#: X-Air's compressor ratios (``dyn/ratio``, an enum).
DYN_RATIOS = (1.1, 1.3, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0, 20.0, 100.0)
#: ``gate/mode``: EXP2, EXP3, EXP4 are downward expanders 1:2 .. 1:4, GATE a gate (our
#: ratio 100); DUCK has no counterpart (nan never matches).
GATE_MODES = (2.0, 3.0, 4.0, 100.0, math.nan)
#: ``eq/N/type``: LCut, LShv, PEQ, VEQ, HShv, HCut; our bands have fixed types.
EQ_TYPES = ("LCut", "LShv", "PEQ", "VEQ", "HShv", "HCut")
_BAND_TYPE = {1: 1, 2: 2, 3: 2, 4: 4}
#: ``mix/NN/tap`` of a send: IN, PREEQ, POSTEQ, PRE, POST, GRP; our sends are pre or post.
TAPS = ("IN", "PREEQ", "POSTEQ", "PRE", "POST", "GRP")


def _channel_bindings(n_aux: int) -> dict[str, Binding]:
    """Address tails under ``/ch/NN/`` -> bindings."""
    b = {
        "mix/fader": Binding("fader_db", Level()),
        "mix/on": Binding("mute_on", Switch(), invert=True),
        "mix/pan": Binding("pan", LinF(-100.0, 100.0, 2.0), scale=0.01),
        "mix/lr": Binding(None, Switch(), fixed=1.0,
                          fixed_why="every channel feeds the main mix here"),
        "preamp/rtntrim": Binding("trim_db", LinF(-18.0, 18.0, 0.25)),
        "preamp/invert": Binding("polarity_invert", Switch()),
        "preamp/hpon": Binding("hpf_on", Switch()),
        "preamp/hpf": Binding("hpf_hz", LogF(20.0, 400.0, 101)),
        "eq/on": Binding("eq_on", Switch()),
        "gate/on": Binding("gate_on", Switch()),
        "gate/mode": Binding("gate_ratio", Enum(GATE_MODES),
                             missing_why="no ducker here: use 0..3 (EXP2, EXP3, EXP4, GATE)"),
        "gate/thr": Binding("gate_threshold_db", LinF(-80.0, 0.0, 0.5)),
        "gate/range": Binding("gate_range_db", LinF(3.0, 60.0, 1.0)),
        "gate/attack": Binding("gate_attack_ms", LinF(0.0, 120.0, 1.0)),
        "gate/hold": Binding("gate_hold_ms", LogF(0.02, 2000.0, 101)),
        "gate/release": Binding("gate_release_ms", LogF(5.0, 4000.0, 101)),
        "dyn/on": Binding("comp_on", Switch()),
        "dyn/mode": Binding(None, Enum((0.0, 1.0)), fixed=0.0,
                            fixed_why="the channel dynamics are a compressor (COMP); the "
                                      "expander is gate/mode"),
        "dyn/det": Binding("comp_detector_rms", Switch()),
        "dyn/env": Binding(None, Enum((0.0, 1.0)), fixed=1.0,
                           fixed_why="the detector works in the log domain (LOG) here"),
        "dyn/thr": Binding("comp_threshold_db", LinF(-60.0, 0.0, 0.5)),
        "dyn/ratio": Binding("comp_ratio", Enum(DYN_RATIOS)),
        "dyn/knee": Binding("comp_knee_db", LinF(0.0, 5.0, 1.0)),
        "dyn/mgain": Binding("comp_makeup_db", LinF(0.0, 24.0, 0.5)),
        "dyn/attack": Binding("comp_attack_ms", LinF(0.0, 120.0, 1.0)),
        "dyn/release": Binding("comp_release_ms", LogF(5.0, 4000.0, 101)),
        "dyn/mix": Binding(None, LinF(0.0, 100.0, 5.0), fixed=100.0,
                           fixed_why="the compressor has no parallel mix (100 %) here"),
        "automix/group": Binding("automix_on", Enum((0.0, 1.0, math.nan)),
                                 missing_why="there is one gain-sharing group here: use 0 "
                                             "(OFF) or 1 (X)"),
        "automix/weight": Binding("automix_weight_db", LinF(-12.0, 12.0, 0.5)),
    }
    for k in range(1, 5):
        b[f"eq/{k}/type"] = Binding(None, Enum(tuple(range(6))), fixed=float(_BAND_TYPE[k]),
                                    fixed_why=f"band {k} is a {EQ_TYPES[_BAND_TYPE[k]]} here")
        b[f"eq/{k}/f"] = Binding(f"eq{k}_hz", LogF(20.0, 20000.0, 201))
        b[f"eq/{k}/g"] = Binding(f"eq{k}_gain_db", LinF(-15.0, 15.0, 0.25))
        b[f"eq/{k}/q"] = Binding(f"eq{k}_q", LogF(10.0, 0.3, 72))
    # sends: FX 1 (mix/07) feeds our reverb (aux 1); buses 1..3 are aux 2..4
    sends = {1: "07"} | {k: f"{k - 1:02d}" for k in range(2, P.MAX_AUX + 1)}
    for k in range(1, n_aux + 1):
        b[f"mix/{sends[k]}/level"] = Binding(f"aux{k}_send_db", Level())
        b[f"mix/{sends[k]}/tap"] = Binding(
            f"aux{k}_pre", Enum(tuple(1.0 if t == "PRE" else 0.0 if t == "POST" else math.nan
                                      for t in TAPS)),
            missing_why="the sends here are PRE (3) or POST (4) fader")
    return b


#: Bindings of the master: ``/lr/...`` and the FX 1 return.
MASTER_BINDINGS: dict[str, Binding] = {
    "/lr/mix/fader": Binding("master_fader_db", Level()),
    "/lr/mix/on": Binding(None, Switch(), fixed=1.0,
                          fixed_why="there is no master mute here: pull /lr/mix/fader down"),
    "/lr/mix/pan": Binding(None, LinF(-100.0, 100.0, 2.0), fixed=0.0,
                           fixed_why="the master has no balance control here"),
    "/rtn/1/mix/fader": Binding("reverb_return_db", Level()),
}


def channel_bindings(n_aux: int) -> dict[str, Binding]:
    """The ``/ch/NN/`` tails for a console with ``n_aux`` aux buses (1..4)."""
    return _channel_bindings(max(0, min(int(n_aux), P.MAX_AUX)))


# ---- colours --------------------------------------------------------------------------

#: A display colour for each X-Air scribble-strip colour (the inverted ones the same).
_XAIR_RGB = {"OFF": (0x30, 0x30, 0x30), "RD": (0xd6, 0x27, 0x28), "GN": (0x2c, 0xa0, 0x2c),
             "YE": (0xf5, 0xd0, 0x00), "BL": (0x1f, 0x77, 0xb4), "MG": (0xc0, 0x3c, 0xc0),
             "CY": (0x17, 0xbe, 0xcf), "WH": (0xf0, 0xf0, 0xf0)}


def xair_to_hex(index: int) -> str:
    """The ``#rrggbb`` shown for X-Air colour ``index`` (0..15)."""
    r, g, b = _XAIR_RGB[XAIR_COLOURS[index].rstrip("i")]
    return f"#{r:02x}{g:02x}{b:02x}"


def hex_to_xair(colour: str, role: str | None = None) -> int:
    """The X-Air colour index for a ``#rrggbb``: the role's own index when the colour is
    the role's, else the nearest of the eight base colours."""
    if role in ROLE_BY_NAME and ROLE_BY_NAME[role].colour_hex.lower() == colour.lower():
        return ROLE_BY_NAME[role].xair_colour
    rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    names = XAIR_COLOURS[:8]
    best = min(range(8), key=lambda i: sum((a - b) ** 2 for a, b in zip(rgb, _XAIR_RGB[names[i]])))
    return best


def meter_value(db: float) -> int:
    """dB -> an X-Air meter value (int16, 1/256 dB; silence and NaN at the floor)."""
    if not math.isfinite(db):
        return METER_FLOOR if db != math.inf else 32767
    return int(min(max(round(db * METER_SCALE), METER_FLOOR), 32767))
