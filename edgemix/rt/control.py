"""The control thread: features -> policy -> parameters, every hop, never waited on.

Every ``hop_s`` (default 0.1 s = 10 Hz, on an absolute schedule so hops do not drift) the
loop takes a feature snapshot, asks the policy for proposed channel parameters
(``policy.propose(snapshot)``, the :mod:`edgemix.automix` interface), blends the proposal
with the session's manual settings by each channel's automation level, puts every locked
(manual) parameter back, and publishes the result with ``Console.stage`` (latest wins; the
audio thread picks it up at its next block and never waits).

An exception anywhere in a hop keeps the last good parameters, is counted in ``errors`` and
its text kept in ``last_error`` (DESIGN.md: fail soft on the control path).
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np

from edgemix import params as P

log = logging.getLogger("edgemix.rt")


def proposal_to_params(result, base: np.ndarray) -> np.ndarray:
    """A policy's answer as a full ``(n_channels, N_CH)`` array in units.

    ``result`` is an array of shape ``(n, N_CH)`` or ``(n, len(MODEL_OUTPUTS))`` (the model
    head), or a tuple whose first item is one (e.g. ``(targets, explanations)``), or an
    :class:`edgemix.automix.policy.Proposal` (``values``, NaN = no opinion).  Columns and
    entries the policy does not give keep ``base``.
    """
    if isinstance(result, tuple):
        result = result[0]
    # an edgemix.automix Proposal: ``values`` with NaN where the policy has no opinion
    result = getattr(result, "values", getattr(result, "params", result))
    arr = np.asarray(result, dtype=np.float64)
    n = base.shape[0]
    if arr.shape == (n, P.N_CH):
        return np.where(np.isnan(arr), base, arr)
    if arr.shape == (n, len(P.MODEL_OUTPUTS)):
        full = base.copy()
        full[:, P.MODEL_OUTPUT_COLUMNS] = arr
        return full
    raise ValueError(f"policy proposed an array of shape {arr.shape}: expected ({n}, {P.N_CH}) "
                     f"or ({n}, {len(P.MODEL_OUTPUTS)})")


def blend(base: np.ndarray, proposal: np.ndarray, automation: np.ndarray,
          locked: np.ndarray) -> np.ndarray:
    """Mix ``proposal`` into ``base`` by each channel's automation level (0 = base, 1 =
    proposal), along each parameter's own scale (log for Hz/ms: the schema's
    ``to_norm``/``from_norm``); locked entries keep ``base`` exactly."""
    if not np.isfinite(proposal).all():
        raise ValueError("policy proposed a non-finite parameter")
    a = np.clip(np.asarray(automation, dtype=np.float64), 0.0, 1.0)
    manual, full = a == 0.0, a == 1.0
    out = np.empty_like(base)
    for j, spec in enumerate(P.CHANNEL_PARAMS):
        u = (1.0 - a) * spec.to_norm(base[:, j]) + a * spec.to_norm(proposal[:, j])
        out[:, j] = spec.from_norm(u)
        # the ends and untouched entries exactly, not through a to_norm/from_norm round trip
        out[full, j] = spec.clip(proposal[full, j])
        same = manual | (proposal[:, j] == base[:, j])
        out[same, j] = base[same, j]
    out[locked] = base[locked]
    return out


def meter_snapshot(console):
    """A feature snapshot from the console's meters (used when no FeatureExtractor runs):
    ``(n_channels, 2)`` float32 of channel peak and RMS in dBFS (floored at -120)."""
    m = console.meters
    snap = np.stack([m.channel_peak_db, m.channel_rms_db], axis=1)
    return np.maximum(np.nan_to_num(snap, nan=-120.0, neginf=-120.0), -120.0).astype(np.float32)


class ControlLoop:
    """Runs ``policy.propose`` every ``hop_s`` on its own thread and stages the result."""

    def __init__(self, console, policy, snapshot_fn, base_params: np.ndarray,
                 automation: np.ndarray, locked: np.ndarray, master_params: np.ndarray,
                 hop_s: float = 0.1):
        if hop_s <= 0:
            raise ValueError(f"control hop {hop_s} s: use a positive number (0.1 = 10 Hz)")
        self.console = console
        self.policy = policy
        self.snapshot_fn = snapshot_fn
        self.base = np.array(base_params, dtype=np.float64)
        self.automation = np.array(automation, dtype=np.float64)
        self.locked = np.array(locked, dtype=bool)
        self.master = np.array(master_params, dtype=np.float64)
        self.hop_s = float(hop_s)
        self.hops = 0
        self.updates = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_good: np.ndarray | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> bool:
        """One hop (control thread).  True when new parameters were staged."""
        self.hops += 1
        try:
            snap = self.snapshot_fn()
            proposal = proposal_to_params(self.policy.propose(snap), self.base)
            params = blend(self.base, proposal, self.automation, self.locked)
            self.console.stage(params, self.master)
        except Exception as e:  # keep the last good parameters: nothing was staged
            self.errors += 1
            self.last_error = f"{e.__class__.__name__}: {e}"
            if self.errors == 1 or self.errors % 100 == 0:
                log.warning("control hop failed (%d so far), keeping the last good "
                            "parameters: %s", self.errors, self.last_error)
            return False
        self.last_good = params
        self.updates += 1
        return True

    def _run(self) -> None:
        t_next = time.monotonic()
        while True:
            t_next += self.hop_s
            delay = t_next - time.monotonic()
            if delay < 0:  # a slow hop: skip the missed ones rather than bunch them up
                t_next = time.monotonic()
                delay = 0.0
            if self._stop.wait(delay):
                return
            self.step()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edgemix-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def stats(self) -> dict:
        return {"hops": self.hops, "updates": self.updates, "errors": self.errors,
                "last_error": self.last_error}
