"""Role recognition over time: the model's per-hop role probabilities turned into a stable
role per channel, and the person's word on top.

The network hears one feature snapshot at a time.  Between phrases, in a drum break or a
quiet bar its features change (short-term loudness and crest drop, the activity ratio
falls) and so can its best guess, so a kick would flip to "other" and back.  A mixing
engineer does not re-label a channel because it rested for a few bars.  So:

* **Evidence only while the channel plays.**  A hop counts when the channel is playing
  near its own level: its short-term loudness within ``LISTEN_WINDOW_LU`` of its
  when-it-plays loudness (``loudness_active_lufs``) and active for at least
  ``rules.MIN_ACTIVITY`` of the last 10 s.  A quiet channel's evidence is held, not
  decayed.
* **Smoothed evidence.**  The probabilities are averaged with an exponential memory of
  ``ROLE_TAU_HOPS`` hops of playing (bias-corrected, so the first hop counts in full).
* **Hysteresis.**  The role changes only when another role's smoothed probability is
  ``ROLE_SWITCH_MARGIN`` above the current one's (a Schmitt trigger on the evidence, as
  the gate and the switches of :mod:`edgemix.automix.policy` hold theirs).
* **The person wins.**  A role the session gives (``role_hints``; the session's default
  ``"other"`` means "not given") is the channel's role whatever was heard; the recognised
  role is still tracked and reported beside it.

:meth:`RoleTracker.update` is called once per control hop by the model policy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgemix import features as F
from edgemix.automix.rules import MIN_ACTIVITY
from edgemix.roles import N_ROLES, ROLE_NAMES

#: Memory of the role evidence, in hops of playing (at the default 100 ms hop: 3 s).
ROLE_TAU_HOPS = 30.0
#: Another role must be this much more probable (smoothed) before the role changes.
ROLE_SWITCH_MARGIN = 0.15
#: A hop is evidence when the short-term loudness is within this of the playing level.
LISTEN_WINDOW_LU = 10.0


def measured(features: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: channels that have played at some time (their when-it-plays features
    hold what they sounded like then)."""
    f = np.asarray(features, dtype=np.float64)
    return f[:, F.F_LACT] > F.ABS_GATE_LUFS


def listening(features: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: channels playing near their own level now (their hop is evidence)."""
    f = np.asarray(features, dtype=np.float64)
    return (measured(f) & (f[:, F.F_ACT] >= MIN_ACTIVITY)
            & (f[:, F.F_LST] >= f[:, F.F_LACT] - LISTEN_WINDOW_LU))


@dataclass(frozen=True)
class Recognition:
    """One channel's role, as the desk, the report and the explanations show it.

    ``recognised_role``/``role_probability``: what the model heard (held, smoothed;
    None/0.0 before the channel has played).  ``session_role``: the role the person gave
    (None when not given).  ``role``: the one the mix uses (the person's when given, else
    the recognised one, else ``"other"``); ``role_source``: ``"session"``, ``"heard"`` or
    ``"none"``.
    """

    recognised_role: str | None
    role_probability: float
    session_role: str | None
    role: str
    role_source: str

    def to_dict(self) -> dict:
        return {"recognised_role": self.recognised_role,
                "role_probability": self.role_probability,
                "session_role": self.session_role, "role": self.role,
                "role_source": self.role_source}

    def phrase(self) -> str:
        """The role as one reason among others: "heard as bass (p 0.91)" or "bass as
        the session says"."""
        from edgemix.automix.reasons import name_of
        name = name_of(self.role)
        if self.role_source == "session":
            return f"{name} as the session says"
        if self.role_source == "heard":
            return f"heard as {name} (p {self.role_probability:.2f})"
        return "not heard yet"


class RoleTracker:
    """Stable roles for ``n_channels`` channels (module docstring).

    ``role_hints``: the session's role per channel (None: not given).  Threads: the
    control thread's (the model policy's ``propose``)."""

    def __init__(self, n_channels: int, role_hints=None, tau_hops: float = ROLE_TAU_HOPS,
                 margin: float = ROLE_SWITCH_MARGIN):
        n = int(n_channels)
        hints = tuple(role_hints) if role_hints else (None,) * n
        if len(hints) != n:
            raise ValueError(f"{n} channels but {len(hints)} role hints: give one role per "
                             "channel (or none)")
        self.n_channels = n
        self.hints = hints
        self.alpha = float(np.exp(-1.0 / float(tau_hops)))
        self.margin = float(margin)
        self.reset()

    def reset(self) -> None:
        """Forget all evidence (a new show)."""
        n = self.n_channels
        self._acc = np.zeros((n, N_ROLES))      # exponentially weighted sum of probabilities
        self._weight = np.zeros(n)              # ... and of the weights (bias correction)
        self._role = np.full(n, -1, dtype=np.int64)

    @property
    def evidence(self) -> np.ndarray:
        """``(n, N_ROLES)`` smoothed probabilities (zeros where nothing was heard yet)."""
        w = np.where(self._weight > 0.0, self._weight, 1.0)[:, None]
        return self._acc / w

    def update(self, probabilities: np.ndarray, playing: np.ndarray,
               played: np.ndarray | None = None) -> list[Recognition]:
        """One hop: ``probabilities`` ``(n, N_ROLES)`` from the network, ``playing``
        ``(n,)`` bool (:func:`listening`); ``played`` (:func:`measured`): a channel that
        has played but is quiet now takes this hop as its first evidence when it has none
        (a first look at a running show).  Returns each channel's :class:`Recognition`."""
        p = np.asarray(probabilities, dtype=np.float64)
        on = np.asarray(playing, dtype=bool)
        if played is not None:
            on = on | (np.asarray(played, dtype=bool) & (self._weight <= 0.0))
        if p.shape != (self.n_channels, N_ROLES) or on.shape != (self.n_channels,):
            raise ValueError(f"probabilities {p.shape} / playing {on.shape}: expected "
                             f"({self.n_channels}, {N_ROLES}) / ({self.n_channels},)")
        a = self.alpha
        self._acc[on] = a * self._acc[on] + (1.0 - a) * p[on]
        self._weight[on] = a * self._weight[on] + (1.0 - a)
        ev = self.evidence
        for c in np.flatnonzero(self._weight > 0.0):
            best = int(np.argmax(ev[c]))
            cur = int(self._role[c])
            if cur < 0 or ev[c, best] >= ev[c, cur] + self.margin:
                self._role[c] = best
        return self.recognitions()

    def recognitions(self) -> list[Recognition]:
        """Each channel's :class:`Recognition` as of the last update."""
        ev = self.evidence
        out = []
        for c in range(self.n_channels):
            k = int(self._role[c])
            heard = ROLE_NAMES[k] if k >= 0 else None
            prob = float(ev[c, k]) if k >= 0 else 0.0
            hint = self.hints[c]
            if hint is not None:
                role, source = hint, "session"
            elif heard is not None:
                role, source = heard, "heard"
            else:
                role, source = "other", "none"
            out.append(Recognition(heard, prob, hint, role, source))
        return out
