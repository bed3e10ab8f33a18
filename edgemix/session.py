"""The session config: one TOML file that says how a show is wired and what is locked.

A session names the sample rate and block size, the audio backend (JACK, PortAudio through
rtmixer, offline WAV stems, or the built-in synthetic session) and its device, the channels
(name, input, role, colour, automation level and the manual settings that always win), the
aux buses, the master settings and the auto-mix model.  Every parameter name and range is
read from :mod:`edgemix.params`; nothing here restates one.

A minimal file::

    [session]
    sample_rate_hz = 48000
    block_size = 64
    loudness_target_lufs = -18   # or "live", "stream", "broadcast" (the default is "live")

    [backend]
    kind = "jack"            # jack | portaudio | offline | synthetic
    auto_connect = false

    [[channels]]
    name = "Kick"
    input = 1
    role = "kick"
    automation = 1.0         # 0 = manual .. 1 = full auto
    fader_db = -3.0          # a manual setting: always wins over the policy

Errors are one line that names the file, the key and the fix, e.g.
``session.toml: channels[3].fader_db = 30: out of range, use -90 .. 10``.
"""
from __future__ import annotations

import difflib
import ipaddress
import math
import pathlib
import tomllib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from edgemix import params as P
from edgemix.roles import ROLE_BY_NAME, ROLE_NAMES

BACKENDS = ("jack", "portaudio", "offline", "synthetic")
POLICIES = ("none", "rules", "model")
MODEL_BACKENDS = ("numpy", "onnx", "tflite", "numba")
BUS_KINDS = ("reverb", "monitor")
BLOCK_SIZES = P.BLOCK_SIZES
SAMPLE_RATES_HZ = P.SAMPLE_RATES_HZ

_SECTIONS = ("session", "backend", "model", "master", "channels", "buses", "control")
_SESSION_KEYS = ("sample_rate_hz", "block_size", "name", "loudness_target_lufs")
_BACKEND_KEYS = ("kind", "device", "client_name", "auto_connect", "ring_blocks", "inputs",
                 "output", "stems_dir", "paced", "duration_s", "seed", "n_channels")
_MODEL_KEYS = ("policy", "path", "backend", "hop_ms", "align")
_CHANNEL_KEYS = ("name", "input", "role", "colour", "automation")
#: Programme loudness targets a session may name (``session.loudness_target_lufs``), LUFS
#: integrated (ITU-R BS.1770-4):
#:
#: * ``live`` -18: a live console's master near the EBU R68 alignment level (-18 dBFS), which
#:   leaves 17 dB for peaks under the -1 dBTP ceiling, and the middle of the -16 .. -20 LUFS
#:   that AES TD1004 recommends for streams and network playback (what a live show's
#:   recording and stream feed).  The default: edgemix mixes live shows.
#: * ``stream`` -16: AES TD1004's recommended target for music streams.
#: * ``broadcast`` -23: EBU R128.
LOUDNESS_TARGETS_LUFS: Mapping[str, float] = MappingProxyType(
    {"live": -18.0, "stream": -16.0, "broadcast": -23.0})
DEFAULT_LOUDNESS_TARGET_LUFS = LOUDNESS_TARGETS_LUFS["live"]
#: The range a session's loudness target may take (LUFS).
LOUDNESS_TARGET_RANGE_LUFS = (-40.0, -5.0)
#: A channel's role when the session names none: "not said" (the model policy recognises
#: such a channel's role itself; the rule policy treats it as "other").
DEFAULT_ROLE = "other"
_BUS_KEYS = ("name", "kind")
_CONTROL_KEYS = ("osc", "web", "osc_allow", "osc_rate_per_s", "scenes_dir")

#: Default ports (X-Air's own OSC port; the web page's).
OSC_PORT = 10024
WEB_PORT = 8080
#: The address servers bind to unless the session or the CLI names another.
LOCALHOST = "127.0.0.1"


def parse_listen(text, default_port: int, what: str = "address") -> tuple[str, int]:
    """``"[ADDR:]PORT"`` (or a bare port number) -> ``(host, port)``; the host defaults to
    127.0.0.1.  ``[::1]:10024`` for IPv6.  ValueError naming the fix.  Port 0 asks the
    system for a free port (tests)."""
    if isinstance(text, bool):
        raise ValueError(f"{what} = {text!r}: use [ADDR:]PORT, e.g. 10024 or 0.0.0.0:10024")
    if isinstance(text, int):
        host, port_s = LOCALHOST, str(text)
    else:
        s = str(text).strip()
        if not s:
            host, port_s = LOCALHOST, str(default_port)
        elif s.startswith("["):
            host, _, rest = s[1:].partition("]")
            port_s = rest[1:] if rest.startswith(":") else str(default_port)
        elif s.count(":") == 1:
            host, port_s = s.split(":")
            host = host or LOCALHOST
        elif s.isdigit():
            host, port_s = LOCALHOST, s
        else:
            host, port_s = s, str(default_port)
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"{what} = {text!r}: the port must be 0 .. 65535 "
                         "(use [ADDR:]PORT, e.g. 10024 or 0.0.0.0:10024)")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{what} = {text!r}: {host!r} is not an IP address "
                             "(use e.g. 127.0.0.1, 0.0.0.0 or 192.168.1.20)") from None
    return host, int(port_s)


class SessionError(ValueError):
    """A session file is unreadable or invalid; the message is one line naming the fix."""


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    input: int                      # 1-based input (JACK port in_N, PortAudio channel N)
    role: str = DEFAULT_ROLE
    colour: str = "#7f7f7f"
    automation: float = 1.0         # 0 = manual .. 1 = full auto
    manual: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class BusConfig:
    name: str
    kind: str                       # "reverb" (aux 1 only) or "monitor"


@dataclass(frozen=True)
class BackendConfig:
    kind: str = "synthetic"
    device: str = ""                # PortAudio device (index or name substring)
    client_name: str = "edgemix"    # JACK client name
    auto_connect: bool = False      # JACK: connect to system ports only when asked
    ring_blocks: int = 0            # JACK/PortAudio: periods of ring between input and mix
                                    # (0: the backend's own default)
    inputs: tuple[str, ...] = ()    # offline: WAV stem files (a folder is expanded)
    output: str = "mix.wav"         # offline: where the mix goes
    stems_dir: str = ""             # offline: where the processed stems go ("" = not written)
    paced: bool = False             # offline/synthetic: pace blocks in real time
    duration_s: float = 30.0        # synthetic: length of the generated session
    seed: int = 1                   # synthetic: generator seed
    n_channels: int = 0             # synthetic/live without [[channels]]: channel count


@dataclass(frozen=True)
class ModelConfig:
    policy: str = "none"            # none | rules | model
    path: str = ""
    backend: str = "numpy"
    hop_ms: float = 100.0           # control thread period
    align: bool = False             # live polarity/delay alignment (automix/prep/live.py)


@dataclass(frozen=True)
class ControlConfig:
    """The ``[control]`` section: the live control surface (``edgemix run --osc/--web``).

    ``osc``/``web``: ``(host, port)`` to listen on, or None (that server is off); a bare
    port binds 127.0.0.1.  ``osc_allow``: client addresses or networks (``"192.168.1.0/24"``)
    OSC is taken from when bound to another address than localhost (empty: anyone).
    ``osc_rate_per_s``: messages per second per OSC client before it is refused.
    ``scenes_dir``: where scenes are saved (beside the session file by default)."""

    osc: tuple[str, int] | None = None
    web: tuple[str, int] | None = None
    osc_allow: tuple[str, ...] = ()
    osc_rate_per_s: float = 2000.0
    scenes_dir: str = "scenes"

    @property
    def enabled(self) -> bool:
        return self.osc is not None or self.web is not None


@dataclass(frozen=True)
class Session:
    sample_rate_hz: int = 48000
    block_size: int = 64
    name: str = "session"
    #: the master's programme loudness target (LUFS integrated); the policies' master fader
    #: and the teacher aim at it
    loudness_target_lufs: float = DEFAULT_LOUDNESS_TARGET_LUFS
    backend: BackendConfig = BackendConfig()
    model: ModelConfig = ModelConfig()
    channels: tuple[ChannelConfig, ...] = ()
    buses: tuple[BusConfig, ...] = (BusConfig("reverb", "reverb"), BusConfig("monitor", "monitor"))
    master: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    path: str = "session.toml"
    #: False when the file lists no [[channels]] (the backend's input count decides then)
    channels_given: bool = True
    control: ControlConfig = ControlConfig()

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def n_aux(self) -> int:
        return len(self.buses)

    def channel_params(self) -> np.ndarray:
        """``(n_channels, N_CH)`` float64: schema defaults with every manual setting applied."""
        cp = P.channel_defaults(self.n_channels)
        for i, ch in enumerate(self.channels):
            for name, value in ch.manual.items():
                cp[i, getattr(P.CH, name)] = value
        return cp

    def locked(self) -> np.ndarray:
        """``(n_channels, N_CH)`` bool: True where a user's manual setting must always win."""
        lock = np.zeros((self.n_channels, P.N_CH), dtype=bool)
        for i, ch in enumerate(self.channels):
            for name in ch.manual:
                lock[i, getattr(P.CH, name)] = True
        return lock

    def master_params(self) -> np.ndarray:
        mp = P.master_defaults()
        for name, value in self.master.items():
            mp[getattr(P.MS, name)] = value
        return mp

    def automation(self) -> np.ndarray:
        """``(n_channels,)`` automation levels 0..1."""
        return np.array([c.automation for c in self.channels], dtype=np.float64)

    def build_console(self):
        """A :class:`edgemix.console.Console` for this session with every setting staged."""
        from edgemix.console import Console
        c = Console(sample_rate_hz=self.sample_rate_hz, block_size=self.block_size,
                    n_channels=self.n_channels, n_aux=self.n_aux)
        c.stage(self.channel_params(), self.master_params())
        return c


def default_session(n_channels: int = 8, **backend) -> Session:
    """A session with ``n_channels`` unnamed channels on inputs 1..N (roles 'other')."""
    chans = tuple(ChannelConfig(name=f"ch{i + 1}", input=i + 1) for i in range(n_channels))
    return Session(channels=chans, backend=BackendConfig(**backend), channels_given=False)


def with_channel_count(session: Session, n_channels: int) -> Session:
    """The session with ``n_channels`` default channels, when its file listed none."""
    import dataclasses
    if session.channels_given or session.n_channels == n_channels:
        return session
    return dataclasses.replace(session, channels=default_session(n_channels).channels)


# ---- parsing -------------------------------------------------------------------------------

#: Words in a channel's (or a stem file's) name that name its role, most specific first
#: (``backing`` before ``vocal``, ``bass`` after ``bassdrum``).
_ROLE_WORDS = (
    ("kick", ("kick", "kik", "bd", "bassdrum")),
    ("snare", ("snare", "snr", "sd")),
    ("hats_overheads", ("hat", "hh", "overhead", "oh", "cymbal", "ride", "room")),
    ("backing_vocal", ("bv", "backing", "bvox", "harmony", "choir")),
    ("lead_vocal", ("vox", "vocal", "voc", "lead", "singer")),
    ("bass", ("bass", "bs")),
    ("guitar", ("gtr", "guitar", "gt")),
    ("keys_piano", ("piano", "keys", "rhodes", "organ", "pno", "wurli")),
    ("pad", ("pad", "strings", "synth", "str")),
    ("speech", ("speech", "talk", "host", "mic", "panel", "presenter", "lectern")),
)


def guess_role(name: str) -> str:
    """A role from a channel's or stem's name (``01_Kick_In.wav`` -> kick);
    :data:`DEFAULT_ROLE` if unsure.  A word matches a key exactly, or starts with a key
    longer than three letters (``vocals`` -> lead_vocal, but ``bso`` is not bass)."""
    import re
    words = [w for w in re.split(r"[^a-z]+", name.lower()) if w]
    for role, keys in _ROLE_WORDS:
        if any(w == k or (len(k) > 3 and w.startswith(k)) for w in words for k in keys):
            return role
    return DEFAULT_ROLE


def _fail(where: str, msg: str):
    raise SessionError(f"{where}{msg}")


def _unknown(where: str, key: str, allowed) -> None:
    close = difflib.get_close_matches(key, list(allowed), n=2)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    _fail(where, f"unknown key {key!r}{hint}: remove it or use one of the documented keys")


def _num(where, key, value, lo=None, hi=None, integer=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(where, f"{key} = {value!r}: expected a number")
    if integer and (not float(value).is_integer()):
        _fail(where, f"{key} = {value!r}: expected a whole number")
    if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        _fail(where, f"{key} = {value!r}: out of range, use {lo:g} .. {hi:g}")
    return int(value) if integer else float(value)


def _str(where, key, value) -> str:
    if not isinstance(value, str):
        _fail(where, f"{key} = {value!r}: expected a string in quotes")
    return value


def _choice(where, key, value, choices) -> str:
    value = _str(where, key, value)
    if value not in choices:
        _fail(where, f"{key} = {value!r}: use one of {', '.join(choices)}")
    return value


def _bool(where, key, value) -> bool:
    if not isinstance(value, bool):
        _fail(where, f"{key} = {value!r}: use true or false")
    return value


def _param(where: str, name: str, value, specs: Mapping[str, P.ParamSpec]) -> float:
    """Validate one parameter against the schema; error text reads the range from it."""
    spec = specs[name]
    if isinstance(value, bool):
        value = 1.0 if value else 0.0
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(where, f"{name} = {value!r}: expected a number in {spec.min:g} .. {spec.max:g}")
    v = float(value)
    if v < spec.min or v > spec.max:
        _fail(where, f"{name} = {value!r}: out of range, use {spec.min:g} .. {spec.max:g}")
    if spec.scale == "choice" and v not in spec.choices:
        _fail(where, f"{name} = {value!r}: use one of " + ", ".join(f"{c:g}" for c in spec.choices))
    if spec.scale == "bool" and v not in (0.0, 1.0):
        _fail(where, f"{name} = {value!r}: use true or false")
    return v


def _device(where, value) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        _fail(where, f"device = {value!r}: use a device name (substring) or an index")
    return str(value)


def _table(where, key, value) -> dict:
    if not isinstance(value, dict):
        _fail(where, f"{key} must be a table ([{key}])")
    return value


def parse_session(data: Mapping[str, Any], path: str = "session.toml") -> Session:
    """Validate a parsed TOML document and build a :class:`Session`."""
    f = f"{path}: "
    for key in data:
        if key not in _SECTIONS:
            _unknown(f, key, _SECTIONS)

    s = _table(f, "session", data.get("session", {}))
    for key in s:
        if key not in _SESSION_KEYS:
            _unknown(f + "session.", key, _SESSION_KEYS)
    fs = s.get("sample_rate_hz", 48000)
    if fs not in SAMPLE_RATES_HZ or isinstance(fs, bool):
        _fail(f, f"session.sample_rate_hz = {fs!r}: use one of "
                 + ", ".join(str(r) for r in SAMPLE_RATES_HZ))
    bs = s.get("block_size", 64)
    if bs not in BLOCK_SIZES or isinstance(bs, bool):
        _fail(f, f"session.block_size = {bs!r}: use one of " + ", ".join(map(str, BLOCK_SIZES)))
    name = _str(f + "session.", "name", s.get("name", pathlib.Path(path).stem))
    target = s.get("loudness_target_lufs", DEFAULT_LOUDNESS_TARGET_LUFS)
    if isinstance(target, str):
        if target not in LOUDNESS_TARGETS_LUFS:
            _fail(f, f"session.loudness_target_lufs = {target!r}: use a number of LUFS or "
                     f"one of {', '.join(LOUDNESS_TARGETS_LUFS)}")
        target = LOUDNESS_TARGETS_LUFS[target]
    target = _num(f + "session.", "loudness_target_lufs", target, *LOUDNESS_TARGET_RANGE_LUFS)

    b = _table(f, "backend", data.get("backend", {}))
    for key in b:
        if key not in _BACKEND_KEYS:
            _unknown(f + "backend.", key, _BACKEND_KEYS)
    w = f + "backend."
    inputs = b.get("inputs", [])
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
        _fail(w, f"inputs = {inputs!r}: use a folder or a list of WAV file names")
    base = pathlib.Path(path).parent
    inputs = tuple(str(base / x) for x in inputs)
    output = _str(w, "output", b.get("output", "mix.wav"))
    output = str(base / output) if output else ""  # "" = do not write the mix
    stems_dir = _str(w, "stems_dir", b.get("stems_dir", ""))
    stems_dir = str(base / stems_dir) if stems_dir else ""
    backend = BackendConfig(
        kind=_choice(w, "kind", b.get("kind", "synthetic"), BACKENDS),
        device=_device(w, b.get("device", "")),
        client_name=_str(w, "client_name", b.get("client_name", "edgemix")),
        auto_connect=_bool(w, "auto_connect", b.get("auto_connect", False)),
        ring_blocks=_num(w, "ring_blocks", b.get("ring_blocks", 0), 0, 256, integer=True),
        inputs=inputs,
        output=output,
        stems_dir=stems_dir,
        paced=_bool(w, "paced", b.get("paced", False)),
        duration_s=_num(w, "duration_s", b.get("duration_s", 30.0), 0.01, 86400.0),
        seed=_num(w, "seed", b.get("seed", 1), 0, 2 ** 31 - 1, integer=True),
        n_channels=_num(w, "n_channels", b.get("n_channels", 0), 0, 256, integer=True),
    )
    if not backend.client_name.strip():
        _fail(w, "client_name is empty: use a name such as \"edgemix\"")

    m = _table(f, "model", data.get("model", {}))
    for key in m:
        if key not in _MODEL_KEYS:
            _unknown(f + "model.", key, _MODEL_KEYS)
    w = f + "model."
    model = ModelConfig(
        policy=_choice(w, "policy", m.get("policy", "none"), POLICIES),
        path=str(base / m["path"]) if _str(w, "path", m.get("path", "")) else "",
        backend=_choice(w, "backend", m.get("backend", "numpy"), MODEL_BACKENDS),
        hop_ms=_num(w, "hop_ms", m.get("hop_ms", 100.0), 10.0, 10000.0),
        align=_bool(w, "align", m.get("align", False)),
    )
    if model.policy == "model" and not model.path:
        _fail(w, "policy = \"model\" needs path = \"models/<file>\"")

    ms = _table(f, "master", data.get("master", {}))
    master = {}
    for key, value in ms.items():
        if key not in P.MASTER_SPECS:
            _unknown(f + "master.", key, P.MASTER_SPECS)
        master[key] = _param(f + "master.", key, value, P.MASTER_SPECS)

    raw_buses = data.get("buses")
    if raw_buses is None:
        buses = Session.buses
    else:
        if not isinstance(raw_buses, list) or not raw_buses:
            _fail(f, "buses must be a list of [[buses]] tables (1 .. "
                     f"{P.MAX_AUX}); leave it out for the default reverb + monitor")
        if len(raw_buses) > P.MAX_AUX:
            _fail(f, f"buses: {len(raw_buses)} buses, use at most {P.MAX_AUX}")
        buses = []
        for i, bus in enumerate(raw_buses):
            w = f + f"buses[{i}]."
            bus = _table(f, f"buses[{i}]", bus)
            for key in bus:
                if key not in _BUS_KEYS:
                    _unknown(w, key, _BUS_KEYS)
            kind = _choice(w, "kind", bus.get("kind", "reverb" if i == 0 else "monitor"),
                           BUS_KINDS)
            if (kind == "reverb") != (i == 0):
                _fail(w, f"kind = {kind!r}: aux 1 (buses[0]) feeds the reverb and the others "
                         "are monitor buses")
            buses.append(BusConfig(_str(w, "name", bus.get("name", f"aux{i + 1}")), kind))
        buses = tuple(buses)

    raw_ch = data.get("channels")
    if raw_ch is None:
        n = backend.n_channels or 8
        channels = default_session(n).channels
        channels_given = False
    else:
        if not isinstance(raw_ch, list) or not raw_ch:
            _fail(f, "channels must be a list of [[channels]] tables")
        channels = []
        seen_inputs: dict[int, int] = {}
        for i, ch in enumerate(raw_ch):
            w = f + f"channels[{i}]."
            ch = _table(f, f"channels[{i}]", ch)
            manual = {}
            for key, value in ch.items():
                if key in _CHANNEL_KEYS:
                    continue
                if key in P.CHANNEL_SPECS:
                    manual[key] = _param(w, key, value, P.CHANNEL_SPECS)
                elif key in P.MASTER_SPECS:
                    _fail(w, f"{key} is a master parameter: move it to [master]")
                else:
                    _unknown(w, key, _CHANNEL_KEYS + tuple(P.CHANNEL_SPECS))
            inp = _num(w, "input", ch.get("input", i + 1), 1, 256, integer=True)
            if inp in seen_inputs:
                _fail(w, f"input = {inp}: already used by channels[{seen_inputs[inp]}], "
                         "give each channel its own input")
            seen_inputs[inp] = i
            role = ch.get("role", DEFAULT_ROLE)
            if role not in ROLE_BY_NAME:
                _fail(w, f"role = {role!r}: use one of {', '.join(ROLE_NAMES)}")
            colour = _str(w, "colour", ch.get("colour", ROLE_BY_NAME[role].colour_hex))
            if not (len(colour) == 7 and colour[0] == "#"
                    and all(c in "0123456789abcdefABCDEF" for c in colour[1:])):
                _fail(w, f"colour = {colour!r}: use #rrggbb, e.g. \"#d62728\"")
            channels.append(ChannelConfig(
                name=_str(w, "name", ch.get("name", f"ch{i + 1}")), input=inp, role=role,
                colour=colour, automation=_num(w, "automation", ch.get("automation", 1.0), 0.0, 1.0),
                manual=MappingProxyType(manual)))
        channels = tuple(channels)
        channels_given = True
        if backend.n_channels and backend.n_channels != len(channels):
            _fail(f, f"backend.n_channels = {backend.n_channels} but {len(channels)} "
                     "[[channels]] are listed: drop n_channels or make them agree")

    control = parse_control(_table(f, "control", data.get("control", {})), f, base)
    return Session(sample_rate_hz=int(fs), block_size=int(bs), name=name,
                   loudness_target_lufs=target, backend=backend,
                   model=model, channels=channels, buses=buses,
                   master=MappingProxyType(master), path=str(path),
                   channels_given=channels_given, control=control)


def parse_control(c: Mapping[str, Any], f: str = "", base=pathlib.Path(".")) -> ControlConfig:
    """Validate a ``[control]`` table (``f``: the file's prefix for messages)."""
    w = f + "control."
    for key in c:
        if key not in _CONTROL_KEYS:
            _unknown(w, key, _CONTROL_KEYS)

    def listen(key, default_port):
        value = c.get(key, False)
        if value is False:
            return None
        if value is True:
            value = default_port
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            _fail(w, f"{key} = {value!r}: use \"[ADDR:]PORT\" (e.g. \"0.0.0.0:{default_port}\"), "
                     f"a port, or false")
        try:
            return parse_listen(value, default_port, key)
        except ValueError as e:
            _fail(w, str(e))

    allow = c.get("osc_allow", [])
    if isinstance(allow, str):
        allow = [allow]
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        _fail(w, f"osc_allow = {allow!r}: use a list of addresses or networks, "
                 "e.g. [\"192.168.1.0/24\"]")
    for a in allow:
        try:
            ipaddress.ip_network(a, strict=False)
        except ValueError:
            _fail(w, f"osc_allow: {a!r} is not an address or network (e.g. 192.168.1.7 "
                     "or 192.168.1.0/24)")
    scenes = _str(w, "scenes_dir", c.get("scenes_dir", "scenes"))
    return ControlConfig(
        osc=listen("osc", OSC_PORT), web=listen("web", WEB_PORT), osc_allow=tuple(allow),
        osc_rate_per_s=_num(w, "osc_rate_per_s", c.get("osc_rate_per_s", 2000.0), 1.0, 1e6),
        scenes_dir=str(pathlib.Path(base) / scenes) if scenes else str(base))


def load_session(path) -> Session:
    """Read and validate a session TOML file (SessionError with one line on any problem)."""
    p = pathlib.Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SessionError(f"{p}: no such file: check the path or write one "
                           "(see `edgemix run --help`)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SessionError(f"{p}: cannot read it ({e.__class__.__name__}): "
                           "check the file and its permissions") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SessionError(f"{p}: not valid TOML ({e}): fix the syntax") from None
    return parse_session(data, str(p))
