"""The policy interface, automation levels and the limits that stop parameters chattering.

A :class:`Policy` looks at a feature snapshot (``edgemix.features``) and proposes channel
parameter targets in units, each with a sentence saying why (:class:`Proposal`).  The rule
policy (``rules.py``) and the model policy implement the same interface.

:class:`Automation` turns proposals into console targets, per channel and parameter:

1. **Blend** (:func:`blend`) the proposal with the channel's manual setting by the
   automation level ``a`` in 0..1 (0 = manual, 1 = full auto), on the parameter's own scale
   -- linear for dB and pan, logarithmic for Hz/ms/Q/ratio -- through the schema's
   ``to_norm``/``from_norm``: ``value = from_norm((1 - a) to_norm(manual) + a to_norm(auto))``.
2. **Locks win**: a parameter the user set explicitly (``set_manual(..., lock=True)``)
   is the manual value, whatever the level and the proposal.
3. **Hysteresis and slew** (:data:`LIMITS`): continuous proposals are first smoothed
   over ``SMOOTH_HOPS`` hops on the 0..1 scale; a target moves only when the blended value is
   more than a dead band away from where it is, and then by at most a maximum step per hop
   (both stated in the parameter's units; log-scale parameters in a ratio).  Switches
   (bool/choice) change only after the proposal has differed for ``SWITCH_HOLD_HOPS`` hops.

Threads: a policy and an ``Automation`` belong to the control thread; the result is handed
to the engine with ``Console.stage`` (latest wins).
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np

from edgemix import params as P

#: Hops a switch proposal must persist before the switch follows it.
SWITCH_HOLD_HOPS = 5
#: Time constant, in hops, of the exponential smoothing of continuous proposals (on the
#: schema's 0..1 scale) before the dead band: measured features jitter from hop to hop.
SMOOTH_HOPS = 5.0


@dataclass(frozen=True)
class Limit:
    """Dead band and maximum step per hop for one parameter, in its units.

    ``log=True``: both are ratios (``dead_band=1.05`` = 5 %, ``max_step=1.26`` = a third of
    an octave) applied to the value; otherwise additive in units.
    """

    dead_band: float
    max_step: float
    log: bool = False


def _limit_for(spec: P.ParamSpec) -> Limit | None:
    n = spec.name
    # A delay is stepped like a switch (held, then taken whole): the strip crossfades
    # from the old delay to the new one, so creeping through values would comb-filter.
    if spec.scale in ("bool", "choice") or n == "delay_ms":
        return None
    if n.endswith("_hz"):
        return Limit(1.05, 2.0 ** (1.0 / 3.0), log=True)       # 5 %, 1/3 octave per hop
    if n.endswith(("_ms", "_q", "_ratio")):
        return Limit(1.10, 1.25, log=True)                      # 10 %, 25 % per hop
    if n == "pan":
        return Limit(0.05, 0.10)                                 # 5 %, 10 % of a side per hop
    if n.endswith("_db"):
        return Limit(0.5, 1.0)                                   # 0.5 dB, 1 dB per hop
    return Limit(0.02 * (spec.max - spec.min), 0.05 * (spec.max - spec.min))


#: Hysteresis and slew per channel parameter (None for switches and the delay: see
#: SWITCH_HOLD_HOPS).
#: At the default 100 ms hop: gains move at most 10 dB/s, frequencies 3.3 octaves/s, pan
#: from centre to one side in 1 s.
LIMITS: Mapping[str, Limit | None] = MappingProxyType(
    {s.name: _limit_for(s) for s in P.CHANNEL_PARAMS})


@dataclass
class Proposal:
    """Proposed channel parameters in units and why.

    ``values`` ``(n_channels, params.N_CH)`` float64, NaN where the policy has no opinion
    (that parameter stays manual).  ``explanations[ch][name]`` is one sentence naming the
    parameter, the value and the reason.  ``master`` ``(params.N_MS,)``: proposed master
    parameters the same way (NaN: no opinion; a policy proposes only those the session
    leaves to it), ``master_explanations[name]`` why.
    """

    values: np.ndarray
    explanations: tuple[dict[str, str], ...]
    master: np.ndarray = field(default_factory=lambda: np.full(P.N_MS, np.nan))
    master_explanations: dict[str, str] = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return self.values.shape[0]

    @property
    def proposed(self) -> np.ndarray:
        """``(n_channels, N_CH)`` bool: where the policy made a proposal."""
        return np.isfinite(self.values)

    def value(self, channel: int, name: str) -> float:
        return float(self.values[channel, getattr(P.CH, name)])

    def model_outputs(self) -> np.ndarray:
        """The ``params.MODEL_OUTPUTS`` columns ``(n_channels, len(MODEL_OUTPUTS))``."""
        return self.values[:, P.MODEL_OUTPUT_COLUMNS].copy()

    @classmethod
    def empty(cls, n_channels: int) -> "Proposal":
        return cls(np.full((n_channels, P.N_CH), np.nan),
                   tuple({} for _ in range(n_channels)))

    @classmethod
    def from_model_outputs(cls, values: np.ndarray,
                           explanations: Sequence[dict[str, str]] | None = None) -> "Proposal":
        """A proposal from ``(n_channels, len(MODEL_OUTPUTS))`` values in units."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(P.MODEL_OUTPUTS):
            raise ValueError(f"model outputs shape {values.shape}: expected (channels, "
                             f"{len(P.MODEL_OUTPUTS)})")
        prop = cls.empty(values.shape[0])
        prop.values[:, P.MODEL_OUTPUT_COLUMNS] = values
        if explanations is not None:
            prop.explanations = tuple(dict(e) for e in explanations)
        return prop

    def set(self, channel: int, name: str, value: float, why: str) -> None:
        """Propose ``name`` (clipped to its range) with the sentence ``why``."""
        spec = P.CHANNEL_SPECS[name]
        self.values[channel, getattr(P.CH, name)] = float(spec.clip(value))
        self.explanations[channel][name] = why

    def set_master(self, name: str, value: float, why: str) -> None:
        """Propose the master parameter ``name`` (clipped to its range) with ``why``."""
        spec = P.MASTER_SPECS[name]
        self.master[getattr(P.MS, name)] = float(spec.clip(value))
        self.master_explanations[name] = why


def as_proposal(result, n_channels: int) -> Proposal:
    """Any policy's answer as a :class:`Proposal` for ``n_channels`` channels.

    ``result`` is a :class:`Proposal`, an array ``(n, N_CH)`` in units (NaN = no opinion),
    an array ``(n, len(MODEL_OUTPUTS))`` (the model head's columns), or a tuple whose first
    item is one of those and whose second (optional) is the explanations.  An infinite value
    or a wrong shape is a ``ValueError`` (the control loop counts it and keeps the last good
    parameters).
    """
    explanations = None
    if isinstance(result, tuple):
        result, explanations = result[0], (result[1] if len(result) > 1 else None)
    if isinstance(result, Proposal):
        prop = result
    else:
        arr = np.asarray(result, dtype=np.float64)
        if arr.shape == (n_channels, P.N_CH):
            prop = Proposal(arr.copy(), tuple({} for _ in range(n_channels)))
        elif arr.shape == (n_channels, len(P.MODEL_OUTPUTS)):
            prop = Proposal.from_model_outputs(arr)
        else:
            raise ValueError(f"policy proposed an array of shape {arr.shape}: expected "
                             f"({n_channels}, {P.N_CH}) or ({n_channels}, "
                             f"{len(P.MODEL_OUTPUTS)})")
        if explanations is not None and all(isinstance(e, dict) for e in explanations) \
                and len(explanations) == n_channels:
            prop.explanations = tuple(dict(e) for e in explanations)
    if prop.values.shape != (n_channels, P.N_CH):
        raise ValueError(f"policy proposed for {prop.values.shape[0]} channels: expected "
                         f"{n_channels}")
    if np.isinf(prop.values).any():
        raise ValueError("policy proposed an infinite parameter (NaN means no opinion)")
    prop.master = np.asarray(prop.master, dtype=np.float64)
    if prop.master.shape != (P.N_MS,) or np.isinf(prop.master).any():
        raise ValueError(f"policy proposed master parameters of shape {prop.master.shape}: "
                         f"expected ({P.N_MS},), finite or NaN")
    return prop


class Policy(abc.ABC):
    """Features in, proposed channel parameters (units) and explanations out.

    ``outputs``: the parameter names the policy may propose.  ``propose`` takes a
    ``(n_channels, len(FEATURE_NAMES))`` snapshot and returns a :class:`Proposal`.
    """

    outputs: tuple[str, ...] = ()

    @abc.abstractmethod
    def propose(self, features: np.ndarray) -> Proposal:
        """Proposed targets for every channel, from one feature snapshot."""


# --------------------------------------------------------------------------------------
# Blending


def _as_level(level, shape) -> np.ndarray:
    a = np.broadcast_to(np.asarray(level, dtype=np.float64), shape)
    if not np.all(np.isfinite(a)) or a.min() < 0.0 or a.max() > 1.0:
        raise ValueError("automation level must be within 0 (manual) .. 1 (full auto)")
    return a


def blend(manual: np.ndarray, proposal: np.ndarray, level, locked=None) -> np.ndarray:
    """Mix ``proposal`` into ``manual`` by ``level`` on each parameter's scale.

    ``manual``/``proposal`` ``(n_channels, N_CH)`` in units (NaN in ``proposal`` = no
    proposal: manual).  ``level``: scalar, ``(n_channels, 1)`` or ``(n_channels, N_CH)`` in
    0..1.  ``locked`` (bool, same shape or broadcastable): those entries are manual.
    Level 0 gives ``manual`` exactly, level 1 the proposal exactly (clipped to range).
    """
    manual = np.asarray(manual, dtype=np.float64)
    proposal = np.asarray(proposal, dtype=np.float64)
    if manual.shape != proposal.shape or manual.ndim != 2 or manual.shape[1] != P.N_CH:
        raise ValueError(f"manual {manual.shape} and proposal {proposal.shape} must both be "
                         f"(channels, {P.N_CH})")
    a = _as_level(level, manual.shape)
    out = manual.copy()
    for j, spec in enumerate(P.CHANNEL_PARAMS):
        col = proposal[:, j]
        have = np.isfinite(col)
        if not have.any():
            continue
        aj = a[:, j]
        auto = spec.clip(np.where(have, col, manual[:, j]))
        mid = spec.from_norm((1.0 - aj) * spec.to_norm(manual[:, j]) + aj * spec.to_norm(auto))
        v = np.where(aj >= 1.0, auto, np.where(aj <= 0.0, manual[:, j], mid))
        out[:, j] = np.where(have, v, manual[:, j])
    if locked is not None:
        locked = np.broadcast_to(np.asarray(locked, dtype=bool), manual.shape)
        out[locked] = manual[locked]
    return out


def limit_step(previous: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Apply :data:`LIMITS` (dead band, then maximum step) to continuous parameters.

    ``previous``/``target`` ``(n_channels, N_CH)``; switch columns are returned as targets
    (their hold is stateful: see :class:`Automation`).
    """
    out = np.array(target, dtype=np.float64, copy=True)
    for j, spec in enumerate(P.CHANNEL_PARAMS):
        lim = LIMITS[spec.name]
        if lim is None:
            continue
        y, x = previous[:, j], target[:, j]
        if lim.log:
            ly, lx = np.log(y), np.log(x)
            d = lx - ly
            step = np.clip(d, -math.log(lim.max_step), math.log(lim.max_step))
            moved = np.exp(ly + step)
            out[:, j] = np.where(np.abs(d) <= math.log(lim.dead_band), y, moved)
        else:
            d = x - y
            # A fader going to or coming from "off" is not rate limited in dB (-90 dB is a
            # mute, not a level): it snaps.
            off = (x <= P.OFF_DB) | (y <= P.OFF_DB) if spec.name.endswith("_send_db") or \
                spec.name == "fader_db" else np.zeros_like(d, dtype=bool)
            moved = y + np.clip(d, -lim.max_step, lim.max_step)
            out[:, j] = np.where(off, x, np.where(np.abs(d) <= lim.dead_band, y, moved))
    return out


@dataclass
class Automation:
    """Manual settings, locks and automation levels for a console; turns proposals into
    targets with :func:`blend` and the hysteresis/slew :data:`LIMITS`.

    ``manual`` starts at the schema defaults (or ``manual=``); ``level`` is per channel and
    parameter (default 1.0 = full auto).  ``targets`` is the last output (what the console
    was told), the state the limits act on.
    """

    n_channels: int
    manual: np.ndarray | None = None
    level: np.ndarray | float = 1.0
    locked: np.ndarray | None = None
    targets: np.ndarray = field(init=False)
    _hold: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        n = int(self.n_channels)
        if n < 1:
            raise ValueError("n_channels must be at least 1")
        self.manual = P.channel_defaults(n) if self.manual is None else \
            np.array(self.manual, dtype=np.float64)
        if self.manual.shape != (n, P.N_CH):
            raise ValueError(f"manual must be ({n}, {P.N_CH})")
        self.level = np.array(_as_level(self.level, (n, P.N_CH)), dtype=np.float64)
        self.locked = np.zeros((n, P.N_CH), dtype=bool) if self.locked is None else \
            np.array(np.broadcast_to(self.locked, (n, P.N_CH)), dtype=bool)
        self.reset()

    def reset(self) -> None:
        """Forget every proposal so far: targets back to the manual settings, no smoothing
        history, no switch held (manual settings, locks and levels are kept)."""
        n = int(self.n_channels)
        self.targets = self.manual.copy()
        self._hold = np.zeros((n, P.N_CH), dtype=np.int64)
        self._smooth = np.full((n, P.N_CH), np.nan)       # smoothed proposal, 0..1 scale

    def set_manual(self, channel: int, name: str, value: float, lock: bool = True) -> None:
        """The user's own setting; with ``lock`` (default) automation never changes it."""
        spec = P.CHANNEL_SPECS.get(name)
        if spec is None:
            P.lookup(name)                       # ValueError naming close matches
            raise ValueError(f"{name!r} is a master parameter, not a channel parameter")
        j = getattr(P.CH, spec.name)
        self.manual[channel, j] = spec.check(value, where=f"channel {channel}: ")
        if lock:
            self.locked[channel, j] = True
            self.targets[channel, j] = self.manual[channel, j]

    def unlock(self, channel: int, name: str) -> None:
        self.locked[channel, getattr(P.CH, P.lookup(name).name)] = False

    def set_level(self, level: float, channel: int | None = None, name: str | None = None):
        """Automation level 0..1 for everything, a channel, a parameter, or one of each."""
        lv = float(_as_level(level, ()))
        rows = slice(None) if channel is None else channel
        cols = slice(None) if name is None else getattr(P.CH, P.lookup(name).name)
        self.level[rows, cols] = lv

    def step(self, proposal: Proposal, jump: bool = False) -> np.ndarray:
        """One control hop: blend, lock, limit.  Returns the new ``(n, N_CH)`` targets.

        ``jump=True`` skips the hysteresis and slew (a one-shot "apply now")."""
        if proposal.values.shape != self.manual.shape:
            raise ValueError(f"proposal for {proposal.values.shape[0]} channels, automation "
                             f"has {self.n_channels}")
        values = proposal.values
        if not jump:
            values = self._smoothed(values)
        want = blend(self.manual, values, self.level, self.locked)
        if jump:
            new = want
        else:
            new = limit_step(self.targets, want)
            # Switches: follow a changed proposal only after it has held SWITCH_HOLD_HOPS.
            for j, spec in enumerate(P.CHANNEL_PARAMS):
                if LIMITS[spec.name] is not None:
                    continue
                differs = want[:, j] != self.targets[:, j]
                self._hold[:, j] = np.where(differs, self._hold[:, j] + 1, 0)
                go = self._hold[:, j] >= SWITCH_HOLD_HOPS
                new[:, j] = np.where(go, want[:, j], self.targets[:, j])
                self._hold[go, j] = 0
        # Locked parameters are the user's, immediately.
        new[self.locked] = self.manual[self.locked]
        self.targets = new
        return new.copy()

    def _smoothed(self, values: np.ndarray) -> np.ndarray:
        """Exponential smoothing of continuous proposals on the 0..1 scale (a parameter
        proposed for the first time, or again after a gap, starts at its proposal)."""
        a = math.exp(-1.0 / SMOOTH_HOPS)
        out = np.array(values, dtype=np.float64, copy=True)
        for j, spec in enumerate(P.CHANNEL_PARAMS):
            if LIMITS[spec.name] is None:
                continue
            col = values[:, j]
            have = np.isfinite(col)
            u = spec.to_norm(np.where(have, col, spec.default))
            prev = self._smooth[:, j]
            s = np.where(np.isfinite(prev), a * prev + (1.0 - a) * u, u)
            self._smooth[:, j] = np.where(have, s, np.nan)
            out[:, j] = np.where(have, spec.from_norm(s), np.nan)
        return out
