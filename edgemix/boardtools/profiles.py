"""Target profiles: what a board runs at, read from ``edgemix/boardtools/data/profiles/NAME.toml``
(package data: :data:`DATA` holds the profiles and the templates).

A profile fixes everything that depends on the hardware and nothing that depends on the
show: sample rate, block size and periods, audio backend, channel and aux counts, which
cores the audio and control threads are pinned to, the CPU governor, the model format the
board's inference runtime reads, and the scheduling limits the systemd unit and limits.d
file grant.  The show (channel names, roles, manual settings) lives in the session config.

Every value is checked on load; a bad one raises a one-line ``ValueError`` that names the
file, the key and the fix (``rpi4.toml: audio.block_size = 100: use a power of two from 16
to 2048, e.g. 128``).  Unknown keys are errors too, so a typo never silently falls back to a
default.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from edgemix.infer.base import MAX_CHANNELS  # a profile never asks for more strips than
from edgemix.params import MAX_AUX           # the model can look at

SAMPLE_RATES_HZ = (44100, 48000, 88200, 96000)
BACKENDS = ("jack", "portaudio")
ARCHES = ("aarch64", "x86_64")
#: Model artifact formats, in the order the bundle documents them.
#: ``tflite-int8``/``tflite-fp32`` run on ai-edge-litert, ``onnx`` on onnxruntime,
#: ``numba`` is the weights ``.npz`` run by the Numba-native backend (no runtime at all).
MODEL_FORMATS = ("tflite-int8", "tflite-fp32", "onnx", "numba")
GOVERNORS = ("", "performance", "schedutil", "ondemand", "conservative", "powersave")

_KEYS = {
    "target": ("name", "description", "arch", "raspberry_pi", "device_tree_model"),
    "audio": ("sample_rate_hz", "block_size", "periods", "backend", "n_channels", "n_aux"),
    "cpu": ("audio_cores", "control_cores", "governor"),
    "model": ("format", "fallback", "hop_ms"),
    "priorities": ("audio_rtprio", "control_nice", "memlock_mib"),
}


@dataclass(frozen=True)
class Profile:
    """One validated target profile (flat: section.key -> attribute ``key``)."""

    name: str
    description: str
    arch: str
    raspberry_pi: bool
    device_tree_model: str
    sample_rate_hz: int
    block_size: int
    periods: int
    backend: str
    n_channels: int
    n_aux: int
    audio_cores: tuple[int, ...]
    control_cores: tuple[int, ...]
    governor: str
    model_format: str
    model_fallback: str
    hop_ms: float
    audio_rtprio: int
    control_nice: int
    #: ``None`` means unlimited.
    memlock_mib: int | None
    source: str = ""

    @property
    def deadline_ms(self) -> float:
        """Time the engine has for one block: the block period."""
        return 1000.0 * self.block_size / self.sample_rate_hz

    @property
    def io_latency_ms(self) -> float:
        """Buffering latency of the audio interface: periods x block (one way)."""
        return self.periods * self.deadline_ms

    def to_dict(self) -> dict:
        d = asdict(self)
        d["audio_cores"] = list(self.audio_cores)
        d["control_cores"] = list(self.control_cores)
        return d

    def to_toml(self) -> str:
        """The profile as TOML in the layout it was read from (round-trips through load)."""
        mem = '"unlimited"' if self.memlock_mib is None else str(self.memlock_mib)

        def s(v):
            return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        return "\n".join([
            "[target]", f"name = {s(self.name)}", f"description = {s(self.description)}",
            f"arch = {s(self.arch)}", f"raspberry_pi = {str(self.raspberry_pi).lower()}",
            f"device_tree_model = {s(self.device_tree_model)}", "",
            "[audio]", f"sample_rate_hz = {self.sample_rate_hz}",
            f"block_size = {self.block_size}", f"periods = {self.periods}",
            f"backend = {s(self.backend)}", f"n_channels = {self.n_channels}",
            f"n_aux = {self.n_aux}", "",
            "[cpu]", f"audio_cores = {list(self.audio_cores)}",
            f"control_cores = {list(self.control_cores)}", f"governor = {s(self.governor)}", "",
            "[model]", f"format = {s(self.model_format)}",
            f"fallback = {s(self.model_fallback)}", f"hop_ms = {self.hop_ms:g}", "",
            "[priorities]", f"audio_rtprio = {self.audio_rtprio}",
            f"control_nice = {self.control_nice}", f"memlock_mib = {mem}", ""])


def data_dir() -> Path:
    """The board data shipped inside the package: ``profiles/`` and ``templates/``."""
    return Path(str(resources.files("edgemix.boardtools") / "data"))


def profiles_dir() -> Path:
    """Where the shipped profiles live (package data, in the tree or the wheel)."""
    return data_dir() / "profiles"


def available() -> list[str]:
    """Names of the shipped profiles."""
    return sorted(p.stem for p in profiles_dir().glob("*.toml"))


def load(name_or_path) -> Profile:
    """Load a shipped profile by name (``rpi4``) or any profile file by path."""
    p = Path(str(name_or_path))
    if p.suffix != ".toml":
        p = profiles_dir() / f"{name_or_path}.toml"
        if not p.is_file():
            raise ValueError(f"unknown target {str(name_or_path)!r}: use one of "
                             f"{', '.join(available())} or a path to a profile .toml")
    if not p.is_file():
        raise ValueError(f"{p}: no such profile file: check the path")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p.name}: not valid TOML ({e}): fix the syntax") from None
    shipped = p.resolve().parent == profiles_dir().resolve()
    return parse(data, where=p.name, source=str(p), expect_name=p.stem if shipped else None)


def parse(data: dict, where: str = "profile", source: str = "",
          expect_name: str | None = None) -> Profile:
    """Validate a profile's TOML table; ``ValueError`` naming the key and the fix.

    ``expect_name``: the name the profile must have (a shipped profile is named after its
    file; a copy such as a bundle's ``profile.toml`` keeps its target's name).
    """
    for section in data:
        if section not in _KEYS:
            raise ValueError(f"{where}: unknown section [{section}]: use "
                             + ", ".join(f"[{s}]" for s in _KEYS))
    for section, keys in _KEYS.items():
        table = data.get(section)
        if not isinstance(table, dict):
            raise ValueError(f"{where}: missing section [{section}]: add it with keys "
                             + ", ".join(keys))
        for k in table:
            if k not in keys:
                raise ValueError(f"{where}: unknown key {section}.{k}: use one of "
                                 + ", ".join(keys))
        for k in keys:
            if k not in table:
                raise ValueError(f"{where}: missing key {section}.{k}: add it to [{section}]")

    def bad(key, value, fix):
        return ValueError(f"{where}: {key} = {value!r}: {fix}")

    def get_str(section, key, choices=None):
        v = data[section][key]
        if not isinstance(v, str):
            raise bad(f"{section}.{key}", v, "use a quoted string")
        if choices is not None and v not in choices:
            raise bad(f"{section}.{key}", v, "use one of " + ", ".join(repr(c) for c in choices))
        return v

    def get_int(section, key, lo, hi, extra=""):
        v = data[section][key]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise bad(f"{section}.{key}", v, f"use a whole number from {lo} to {hi}{extra}")
        return v

    t, a, c, m, pr = (data[s] for s in _KEYS)
    name = get_str("target", "name")
    if expect_name is not None and name != expect_name:
        raise bad("target.name", name, f"must match the file name {expect_name!r}")
    arch = get_str("target", "arch", ARCHES)
    if not isinstance(t["raspberry_pi"], bool):
        raise bad("target.raspberry_pi", t["raspberry_pi"], "use true or false")
    dt_model = get_str("target", "device_tree_model")
    if t["raspberry_pi"] and not dt_model.startswith("Raspberry Pi"):
        raise bad("target.device_tree_model", dt_model,
                  "a Pi target needs the model prefix from /proc/device-tree/model, "
                  "e.g. 'Raspberry Pi 4'")

    rate = a["sample_rate_hz"]
    if rate not in SAMPLE_RATES_HZ or isinstance(rate, bool):
        raise bad("audio.sample_rate_hz", rate,
                  "use one of " + ", ".join(str(r) for r in SAMPLE_RATES_HZ))
    block = get_int("audio", "block_size", 16, 2048, ", a power of two, e.g. 128")
    if block & (block - 1):
        raise bad("audio.block_size", block, "use a power of two from 16 to 2048, e.g. 128")
    periods = get_int("audio", "periods", 2, 8)
    backend = get_str("audio", "backend", BACKENDS)
    n_ch = get_int("audio", "n_channels", 1, MAX_CHANNELS)
    n_aux = get_int("audio", "n_aux", 1, MAX_AUX)

    cores = {}
    for key in ("audio_cores", "control_cores"):
        v = c[key]
        if not isinstance(v, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 256 for x in v):
            raise bad(f"cpu.{key}", v, "use a list of CPU numbers, e.g. [3], or [] for any")
        if len(set(v)) != len(v):
            raise bad(f"cpu.{key}", v, "list each CPU once")
        cores[key] = tuple(v)
    if set(cores["audio_cores"]) & set(cores["control_cores"]):
        raise bad("cpu.control_cores", list(cores["control_cores"]),
                  "keep the control thread off the audio cores "
                  f"{list(cores['audio_cores'])}")
    governor = get_str("cpu", "governor", GOVERNORS)

    fmt = get_str("model", "format", MODEL_FORMATS)
    fallback = get_str("model", "fallback", ("",) + MODEL_FORMATS)
    if fallback == fmt:
        raise bad("model.fallback", fallback, "use a different format from model.format, or ''")
    hop = m["hop_ms"]
    if isinstance(hop, bool) or not isinstance(hop, (int, float)) or not (
            math.isfinite(hop) and 10 <= hop <= 2000):
        raise bad("model.hop_ms", hop, "use a number of milliseconds from 10 to 2000")
    if hop * rate / 1000.0 < block:
        raise bad("model.hop_ms", hop, f"must be at least one block ({1000.0 * block / rate:g} ms)")

    rtprio = get_int("priorities", "audio_rtprio", 1, 99)
    nice = get_int("priorities", "control_nice", -20, 19)
    mem = pr["memlock_mib"]
    if mem == "unlimited":
        memlock = None
    elif isinstance(mem, int) and not isinstance(mem, bool) and 64 <= mem <= 1 << 20:
        memlock = mem
    else:
        raise bad("priorities.memlock_mib", mem, 'use "unlimited" or a number of MiB >= 64')

    return Profile(
        name=name, description=get_str("target", "description"), arch=arch,
        raspberry_pi=t["raspberry_pi"], device_tree_model=dt_model,
        sample_rate_hz=rate, block_size=block, periods=periods, backend=backend,
        n_channels=n_ch, n_aux=n_aux, audio_cores=cores["audio_cores"],
        control_cores=cores["control_cores"], governor=governor, model_format=fmt,
        model_fallback=fallback, hop_ms=float(hop), audio_rtprio=rtprio, control_nice=nice,
        memlock_mib=memlock, source=source)
