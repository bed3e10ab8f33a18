"""The desk: the one live state of a mix, in the control process.

For every parameter of every channel and of the master the desk holds the value, its
owner -- the **person** or the **automation** -- and each channel's automation level; beside
them the channel's name, colour, session role, the role the model recognised and the
explanation of each automatic move.  Everything that changes a live mix goes through it:

* a **person** (OSC, the web page, a scene, the CLI): :meth:`Desk.set`.  The move takes
  ownership at once (the audio side gets the new targets immediately, not at the next
  hop) and holds until the person hands it back: :meth:`Desk.release` for one parameter or
  a parameter group (the "auto" button, :data:`GROUPS`), or the channel's automation
  level set to 1 (which hands back the whole channel);
* the **policy**: :meth:`Desk.propose`, once per control hop.  Its proposal goes through
  the channel's :class:`~edgemix.automix.policy.Automation` (blend by automation level,
  smoothing, dead band, slew, switch hold), whose locks are exactly the person-owned
  parameters: the policy moves only what is still automatic;
* **scenes** (:mod:`edgemix.rt.scenes`): ordinary person moves with ``source="scene"``.

Every change is a :class:`Change` with a sequence number (``seq``, 1, 2, ...; one per
changed value), kept in a bounded history (:meth:`changes_since`) and handed to every
listener (:meth:`add_listener`).  A client that connects or reconnects takes
:meth:`snapshot` (the whole state and the ``seq`` it is current to), then applies changes
with a larger ``seq``; ``changes_since(seq)`` is None when the history no longer reaches
back that far (take a snapshot instead).

The audio side gets the desk's targets through ``stage(channel_params, master_params)``
(the control process's mailbox, or ``Console.stage`` in-process): whole
``(n_channels, N_CH)`` / ``(N_MS,)`` arrays, latest wins, smoothed on the audio side as
any target is.  Staging happens under the desk's lock, so the mailbox keeps its single
writer whichever thread moved.

Channels are numbered from **1** in this API, as on a console, in OSC (``/ch/01``) and on
the page (``data-channel="1"``); ``"master"`` names the master bus.  Besides the schema's
parameter names (:mod:`edgemix.params`), a channel has ``"automation"`` (0..1),
``"name"`` (text), ``"colour"`` (``#rrggbb``) and ``"role"`` (a role of
:mod:`edgemix.roles`); those are always the person's.

Threads: every public method takes the desk's lock (a re-entrant lock), so the control
loop's thread and the surface thread (:mod:`edgemix.rt.surface`) may call any of them.
Listeners run on the thread that made the change, under the lock: they must only hand the
change on (``loop.call_soon_threadsafe``, as :meth:`edgemix.rt.surface.Surface.listen`
does) and never block or call the desk's mutators.

How a server attaches (the OSC server, the web server; see :mod:`edgemix.rt.surface`)::

    snap = desk.snapshot()                        # send to a new client
    desk.add_listener(fn)                         # or surface.listen(fn): fn on the loop
    try:
        change = desk.set(3, "fader_db", -6.0, source="web")   # channel 3, 1-based
    except DeskError as e:
        reply_error(str(e))                        # one line naming the fix
    desk.release(3, "fader")                       # the "auto" button of the fader group
    missed = desk.changes_since(last_seq)          # None: too old, send a snapshot
"""
from __future__ import annotations

import collections
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from edgemix import params as P
from edgemix.roles import ROLE_BY_NAME, ROLE_NAMES

log = logging.getLogger("edgemix.desk")

#: Who owns a value.
PERSON, AUTO = "person", "auto"
#: Changes the desk remembers for :meth:`Desk.changes_since` (a reconnecting client that
#: missed more than this takes a snapshot).
HISTORY = 16384
#: Channel settings beside the schema's parameters (always the person's).
CHANNEL_INFO = ("automation", "name", "colour", "role")
#: Longest channel name (X-Air's own limit is 12; the page shows more).
NAME_MAX = 32
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


class DeskError(ValueError):
    """A change the desk refuses; the message is one line that names the fix."""


def group_of(name: str) -> str:
    """The parameter group a channel parameter belongs to (its "auto" button)."""
    if name in ("trim_db", "polarity_invert"):
        return "input"
    head = name.split("_")[0]
    if re.fullmatch(r"eq\d", head):
        return "eq"
    if re.fullmatch(r"aux\d", head):
        return "sends"
    if name == "mute_on":
        return "mute"
    if head in ("hpf", "eq", "gate", "comp", "automix", "fader", "pan", "delay"):
        return head
    raise ValueError(f"{name}: no parameter group")  # a new schema prefix: name its group


#: Parameter groups of a channel, each handed back to the automation as one ("auto").
GROUPS: Mapping[str, tuple[str, ...]] = {}
for _s in P.CHANNEL_PARAMS:
    GROUPS.setdefault(group_of(_s.name), ())
    GROUPS[group_of(_s.name)] += (_s.name,)
del _s


@dataclass(frozen=True)
class Change:
    """One changed value: ``seq`` (increasing by one per change), ``channel`` (1-based, or
    ``"master"``), ``param`` (a schema name or one of :data:`CHANNEL_INFO`), the new
    ``value`` (float, or text for name/colour/role), its ``owner`` after the change
    (``"person"`` or ``"auto"``), the ``source`` that made it (``"policy"``, ``"osc"``,
    ``"web"``, ``"scene"``, ``"release"``, ... possibly with a client after a colon) and the
    wall-clock time ``t`` (``time.time()``)."""

    seq: int
    channel: int | str
    param: str
    value: float | str
    owner: str
    source: str
    t: float

    def to_dict(self) -> dict:
        """JSON-friendly: the fields by name."""
        return {"seq": self.seq, "channel": self.channel, "param": self.param,
                "value": self.value, "owner": self.owner, "source": self.source,
                "t": self.t}


def _number(spec: P.ParamSpec, value, where: str) -> float:
    """A remote value for ``spec``, checked: a real number (bools for switches), finite, in
    range, a legal choice; DeskError naming the range otherwise."""
    if isinstance(value, (bool, np.bool_)):
        if spec.scale != "bool":
            raise DeskError(f"{where}{spec.name} = {value!r}: expected a number in "
                            f"{spec.min:g} .. {spec.max:g}")
        value = float(value)
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise DeskError(f"{where}{spec.name} = {value!r}: expected a number in "
                        f"{spec.min:g} .. {spec.max:g}")
    try:
        return spec.check(float(value), where=where)
    except ValueError as e:
        raise DeskError(str(e)) from None


class Desk:
    """The live state of a console of ``n_channels`` channels (see the module docstring).

    ``automation``: the :class:`~edgemix.automix.policy.Automation` of the control loop
    (its ``targets`` are the channel values, its ``locked`` the person-owned parameters,
    its ``level`` the automation levels), or None for a fresh one at the schema defaults.
    ``master_params`` ``(N_MS,)`` (default: the schema's).  ``stage(channel_params,
    master_params)`` hands targets to the audio side (None: nothing is staged, e.g. in a
    test).  ``names``, ``colours`` (``#rrggbb``), ``roles``: per channel, from the session.
    ``master_person``: master parameter names the session set (shown as the person's).
    """

    def __init__(self, n_channels: int, *, automation=None, master_params=None,
                 stage: Callable[[np.ndarray, np.ndarray], None] | None = None,
                 names: Sequence[str] | None = None, colours: Sequence[str] | None = None,
                 roles: Sequence[str] | None = None, master_person: Iterable[str] = (),
                 history: int = HISTORY):
        from edgemix.automix.policy import Automation
        n = int(n_channels)
        if n < 1:
            raise ValueError("a desk needs at least one channel")
        self.n_channels = n
        self.automation = automation if automation is not None else Automation(n)
        if self.automation.n_channels != n:
            raise ValueError(f"automation for {self.automation.n_channels} channels, the "
                             f"desk has {n}")
        self.master = np.array(P.master_defaults() if master_params is None
                               else master_params, dtype=np.float64)
        self.master_person = np.zeros(P.N_MS, dtype=bool)
        for name in master_person:
            self.master_person[getattr(P.MS, name)] = True
        self._stage = stage
        self.names = [str(x) for x in (names or [f"ch{i + 1}" for i in range(n)])]
        self.roles = [str(x) for x in (roles or ["other"] * n)]
        self.colours = [str(x).lower() for x in (colours or [
            ROLE_BY_NAME[r].colour_hex if r in ROLE_BY_NAME else "#7f7f7f" for r in self.roles])]
        if not len(self.names) == len(self.colours) == len(self.roles) == n:
            raise ValueError(f"names, colours and roles must have {n} entries each")
        #: what the model recognised per channel (role name, probability), when it says
        self.recognised: list[tuple[str, float] | None] = [None] * n
        #: the policy's sentence per automatic parameter, per channel (last hop)
        self.explanations: list[dict[str, str]] = [{} for _ in range(n)]
        self.seq = 0
        self.stage_errors = 0
        self._history: collections.deque[Change] = collections.deque(maxlen=int(history))
        self._listeners: list[tuple[Callable, bool]] = []
        self._lock = threading.RLock()

    # ---- reading ------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """The whole state, JSON-friendly, and the ``seq`` it is current to::

            {"seq": 41, "n_channels": 8,
             "channels": [{"channel": 1, "name": "Kick", "colour": "#d62728",
                           "role": "kick", "recognised_role": "kick",
                           "role_probability": 0.93, "automation": 1.0,
                           "params": {"fader_db": -3.0, ...},
                           "owner": {"fader_db": "person", ...},
                           "explanations": {"hpf_hz": "...", ...}}, ...],
             "master": {"params": {...}, "owner": {...}}}
        """
        with self._lock:
            a = self.automation
            chans = []
            for c in range(self.n_channels):
                rec = self.recognised[c]
                chans.append({
                    "channel": c + 1, "name": self.names[c], "colour": self.colours[c],
                    "role": self.roles[c],
                    "recognised_role": rec[0] if rec else None,
                    "role_probability": rec[1] if rec else None,
                    "automation": self.level(c + 1),
                    "params": {s.name: float(a.targets[c, j])
                               for j, s in enumerate(P.CHANNEL_PARAMS)},
                    "owner": {s.name: PERSON if a.locked[c, j] else AUTO
                              for j, s in enumerate(P.CHANNEL_PARAMS)},
                    "explanations": dict(self.explanations[c])})
            master = {"params": {s.name: float(self.master[j])
                                 for j, s in enumerate(P.MASTER_PARAMS)},
                      "owner": {s.name: PERSON if self.master_person[j] else AUTO
                                for j, s in enumerate(P.MASTER_PARAMS)}}
            return {"seq": self.seq, "n_channels": self.n_channels, "channels": chans,
                    "master": master}

    def get(self, channel, param: str):
        """The current value of one parameter or channel setting (float or text)."""
        with self._lock:
            c = self._channel(channel)
            if c is None:
                return float(self.master[self._master_index(param)])
            if param == "automation":
                return self.level(channel)
            if param in ("name", "colour", "role"):
                return {"name": self.names, "colour": self.colours, "role": self.roles}[param][c]
            return float(self.automation.targets[c, self._channel_index(param)])

    def owner(self, channel, param: str) -> str:
        """``"person"`` or ``"auto"`` for one parameter."""
        with self._lock:
            c = self._channel(channel)
            if c is None:
                return PERSON if self.master_person[self._master_index(param)] else AUTO
            if param in CHANNEL_INFO:
                return PERSON
            return PERSON if self.automation.locked[c, self._channel_index(param)] else AUTO

    def level(self, channel) -> float:
        """The channel's automation level (0 manual .. 1 full auto)."""
        with self._lock:
            return float(self.automation.level[self._channel(channel)].max())

    def targets(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the ``(channel, master)`` targets the audio side was last given."""
        with self._lock:
            return self.automation.targets.copy(), self.master.copy()

    def changes_since(self, seq: int) -> list[Change] | None:
        """Every change after ``seq``, in order; None when the history no longer reaches
        back to ``seq + 1`` (the client must take a :meth:`snapshot`)."""
        with self._lock:
            seq = int(seq)
            if seq >= self.seq:
                return []
            if seq < 0 or not self._history or self._history[0].seq > seq + 1:
                return None
            k = len(self._history) - (self.seq - seq)
            return list(self._history)[k:]

    # ---- listeners ----------------------------------------------------------------------
    def add_listener(self, fn: Callable, batch: bool = False) -> Callable:
        """Call ``fn(change)`` after each change (``batch=True``: ``fn(changes)`` once per
        desk operation, a tuple in ``seq`` order).  Returns ``fn`` (for
        :meth:`remove_listener`).  Runs under the desk's lock: hand on, never block."""
        with self._lock:
            self._listeners.append((fn, bool(batch)))
        return fn

    def remove_listener(self, fn: Callable) -> None:
        with self._lock:
            self._listeners = [(f, b) for f, b in self._listeners if f is not fn]

    # ---- the person -----------------------------------------------------------------------
    def set(self, channel, param: str, value, source: str = "person") -> Change | None:
        """A person's move: validate, take ownership, stage at once, echo.

        Returns the :class:`Change` (None when the value and owner were already so: nothing
        to echo).  DeskError (one line naming the fix) for an unknown channel or parameter,
        a wrong type, NaN, out of range; nothing changes then."""
        with self._lock:
            changes = self._set(channel, param, value, source)
            self._commit(changes, stage=True)
            return changes[-1] if changes else None

    def set_many(self, items: Iterable[tuple], source: str = "person") -> list[Change]:
        """Several moves as one: ``(channel, param, value)`` triples, all validated first
        (a DeskError changes nothing), then staged once."""
        with self._lock:
            items = list(items)
            for ch, param, value in items:
                self._validated(ch, param, value)
            changes: list[Change] = []
            for ch, param, value in items:
                changes += self._set(ch, param, value, source)
            self._commit(changes, stage=True)
            return changes

    def release(self, channel, what: str | None = None, source: str = "release") -> list[Change]:
        """Hand back to the automation: one parameter, a group of :data:`GROUPS`, or (None)
        the whole channel; on ``"master"`` a master parameter, or (None) all of them.  The value stays where it is until the policy's next hop moves
        it (by its slew); the echo says the owner is ``"auto"``."""
        with self._lock:
            c = self._channel(channel)
            if c is None:  # the policy may move master parameters too (its loudness target)
                names = list(P.MASTER_SPECS) if what is None else \
                    [P.MASTER_PARAMS[self._master_index(what)].name]
                changes = []
                for name in names:
                    j = getattr(P.MS, name)
                    if self.master_person[j]:
                        self.master_person[j] = False
                        changes.append(self._change("master", name, float(self.master[j]),
                                                    AUTO, source))
                self._commit(changes, stage=False)
                return changes
            if what is None:
                names = [s.name for s in P.CHANNEL_PARAMS]
            elif what in GROUPS:
                names = list(GROUPS[what])
            else:
                self._channel_index(what)
                names = [what]
            a = self.automation
            changes = []
            for name in names:
                j = getattr(P.CH, name)
                if a.locked[c, j]:
                    a.locked[c, j] = False
                    changes.append(self._change(c + 1, name, float(a.targets[c, j]), AUTO,
                                                source))
            self._commit(changes, stage=False)
            return changes

    # ---- the policy -----------------------------------------------------------------------
    def propose(self, proposal, *, recognised: Sequence[tuple[str, float]] | None = None,
                source: str = "policy") -> np.ndarray:
        """The policy's hop: ``proposal`` (an :class:`~edgemix.automix.policy.Proposal`)
        through the automation (the person-owned parameters are its locks, so they stay);
        stage the result; echo what moved.  ``recognised``: (role, probability) per
        channel.  Returns the new channel targets (a copy)."""
        with self._lock:
            a = self.automation
            before = a.targets.copy()
            new = a.step(proposal)
            changes = []
            moved = np.argwhere(new != before)
            for c, j in moved:
                changes.append(self._change(int(c) + 1, P.CHANNEL_PARAMS[j].name,
                                            float(new[c, j]), AUTO, source))
            for c, why in enumerate(getattr(proposal, "explanations", ()) or ()):
                if c < self.n_channels:
                    self.explanations[c] = {
                        k: v for k, v in why.items()
                        if k in P.CHANNEL_SPECS and not a.locked[c, getattr(P.CH, k)]
                        and a.level[c, getattr(P.CH, k)] > 0.0}
            # the policy's master moves (the loudness target's fader), where the master
            # parameter is not the person's
            proposed_master = getattr(proposal, "master", None)
            if proposed_master is not None:
                for j in np.flatnonzero(np.isfinite(proposed_master) & ~self.master_person):
                    v = float(P.MASTER_PARAMS[j].clip(proposed_master[j]))
                    if v != self.master[j]:
                        self.master[j] = v
                        changes.append(self._change("master", P.MASTER_PARAMS[j].name, v,
                                                    AUTO, source))
            if recognised is not None:
                for c, rec in enumerate(recognised[:self.n_channels]):
                    self.recognised[c] = (str(rec[0]), float(rec[1])) if rec else None
            self._commit(changes, stage=True)
            return new.copy()

    # ---- internals ----------------------------------------------------------------------
    def _channel(self, channel) -> int | None:
        """0-based index of a 1-based channel number, None for the master."""
        if isinstance(channel, str) and channel == "master":
            return None
        if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, (int, np.integer)):
            raise DeskError(f"channel {channel!r}: use a number 1 .. {self.n_channels} or "
                            "\"master\"")
        if not 1 <= int(channel) <= self.n_channels:
            raise DeskError(f"channel {channel}: this console has channels 1 .. "
                            f"{self.n_channels}")
        return int(channel) - 1

    def _channel_index(self, param: str) -> int:
        if not isinstance(param, str):
            raise DeskError(f"parameter {param!r}: use a name such as fader_db")
        if param in P.CHANNEL_SPECS:
            return getattr(P.CH, param)
        if param in P.MASTER_SPECS:
            raise DeskError(f"{param} is a master parameter: set it on \"master\"")
        self._unknown(param, list(P.CHANNEL_SPECS) + list(CHANNEL_INFO))

    def _master_index(self, param: str) -> int:
        if isinstance(param, str) and param in P.MASTER_SPECS:
            return getattr(P.MS, param)
        if isinstance(param, str) and param in P.CHANNEL_SPECS:
            raise DeskError(f"{param} is a channel parameter: set it on a channel 1 .. "
                            f"{self.n_channels}")
        self._unknown(param, list(P.MASTER_SPECS))

    @staticmethod
    def _unknown(param, names):
        import difflib
        close = difflib.get_close_matches(str(param), names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DeskError(f"unknown parameter {param!r}{hint}")

    def _validated(self, channel, param, value):
        """(index, param, checked value) or DeskError; changes nothing."""
        c = self._channel(channel)
        where = f"channel {channel}: " if c is not None else "master: "
        if c is None:
            j = self._master_index(param)
            return c, param, _number(P.MASTER_PARAMS[j], value, where)
        if param == "automation":
            if isinstance(value, (bool, np.bool_)) or not isinstance(
                    value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise DeskError(f"{where}automation = {value!r}: use 0 (manual) .. 1 (auto)")
            return c, param, float(value)
        if param == "name":
            if not isinstance(value, str) or len(value) > NAME_MAX \
                    or not value.isprintable():
                raise DeskError(f"{where}name = {value!r}: use printable text of at most "
                                f"{NAME_MAX} characters")
            return c, param, value
        if param == "colour":
            if not isinstance(value, str) or not _COLOUR.match(value):
                raise DeskError(f"{where}colour = {value!r}: use #rrggbb, e.g. \"#d62728\"")
            return c, param, value.lower()
        if param == "role":
            if value not in ROLE_BY_NAME:
                raise DeskError(f"{where}role = {value!r}: use one of {', '.join(ROLE_NAMES)}")
            return c, param, value
        j = self._channel_index(param)
        return c, param, _number(P.CHANNEL_PARAMS[j], value, where)

    def _set(self, channel, param, value, source) -> list[Change]:
        c, param, v = self._validated(channel, param, value)
        if c is None:
            j = getattr(P.MS, param)
            if self.master[j] == v and self.master_person[j]:
                return []
            self.master[j] = v
            self.master_person[j] = True
            return [self._change("master", param, v, PERSON, source)]
        if param == "automation":
            return self._set_level(c, v, source)
        if param in ("name", "colour", "role"):
            table = {"name": self.names, "colour": self.colours, "role": self.roles}[param]
            if table[c] == v:
                return []
            table[c] = v
            return [self._change(c + 1, param, v, PERSON, source)]
        a = self.automation
        j = getattr(P.CH, param)
        if a.targets[c, j] == v and a.locked[c, j]:
            return []
        a.manual[c, j] = v
        a.locked[c, j] = True
        a.targets[c, j] = v
        return [self._change(c + 1, param, v, PERSON, source)]

    def _set_level(self, c: int, level: float, source: str) -> list[Change]:
        a = self.automation
        changes = []
        if float(a.level[c].max()) != level or float(a.level[c].min()) != level:
            a.level[c, :] = level
            changes.append(self._change(c + 1, "automation", level, PERSON, source))
        if level >= 1.0:  # full auto hands the whole channel back
            for j, s in enumerate(P.CHANNEL_PARAMS):
                if a.locked[c, j]:
                    a.locked[c, j] = False
                    changes.append(self._change(c + 1, s.name, float(a.targets[c, j]), AUTO,
                                                source))
        return changes

    def _change(self, channel, param, value, owner, source) -> Change:
        self.seq += 1
        ch = Change(self.seq, channel, param, value, owner, source, time.time())
        self._history.append(ch)
        return ch

    def _commit(self, changes: list[Change], stage: bool) -> None:
        """Stage (when a value moved) and hand the changes to the listeners."""
        if not changes:
            return
        if stage and self._stage is not None:
            try:
                self._stage(self.automation.targets, self.master)
            except Exception as e:  # the audio side keeps its last targets
                self.stage_errors += 1
                log.warning("staging the desk's targets failed: %s", e)
        for fn, batch in list(self._listeners):
            try:
                if batch:
                    fn(tuple(changes))
                else:
                    for ch in changes:
                        fn(ch)
            except Exception as e:  # a broken listener must not break the desk
                log.warning("desk listener %r failed: %s", fn, e)
