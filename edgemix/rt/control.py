"""The control path: input ring -> features -> policy -> automation -> parameters, per hop.

The audio thread does nothing here but :meth:`ControlLoop.push`: one kernel call that appends
the raw input block to a preallocated single-producer/single-consumer
:class:`~edgemix.rt.ring.FrameRing` (the recorder's kind).  A full ring drops the block and
counts it; the audio thread never waits (DESIGN.md, real-time rules).

:meth:`ControlLoop.advance` is the consumer.  It feeds every frame in the ring, in order, to
the feature extractor and, each time the input crosses a hop boundary of its own sample
clock (frame ``k * hop_frames``, the boundary the extractor's snapshot is taken at), runs one
:meth:`ControlLoop.step`: feature snapshot -> ``policy.propose`` ->
:class:`edgemix.automix.policy.Automation` (automation levels, locked manual settings,
smoothing, dead band, slew, switch hold) -> ``Console.stage`` (latest wins; the audio thread
picks it up at its next block).  Feeding stops exactly at each boundary before the step, so
the step sees the snapshot of exactly that hop whatever the ring held.

Who calls :meth:`advance`:

* **live** backends (JACK, PortAudio): the control thread (:meth:`start`), woken on the wall
  clock four times per hop; it steps once per hop boundary the ring has reached.
* **offline** backends (``drives_control = True``): the backend itself, synchronously,
  before each block (``Runner.step_control``).  Every step then happens before the first
  block that starts at or after its boundary, so the parameter trajectory depends only on
  the input and the policy, never on the machine's speed: live equals offline.

Both orders of events give the same sequence of staged parameters for the same input (the
hop boundaries are on the sample clock); only when each is picked up differs.

An exception anywhere in a step keeps the last good parameters, is counted in ``errors`` and
its text kept in ``last_error`` (DESIGN.md: fail soft on the control path).
"""
from __future__ import annotations

import logging
import threading
import time
from time import perf_counter_ns

import numpy as np

from edgemix import params as P
from edgemix.automix.policy import Automation, as_proposal
from edgemix.automix.prep.mono import LiveMono
from edgemix.rt import rtsched
from edgemix.rt.ring import FrameRing
from edgemix.rt.timing import StageTimer

log = logging.getLogger("edgemix.rt")

#: The input ring holds this many hops (plus one block), so a control thread that is a
#: few hops late loses nothing.
RING_HOPS = 4
#: The live control thread looks at the ring this many times per hop.
POLLS_PER_HOP = 4
#: A trim the policy wants more than this far below where it is comes down at once, not at
#: the slew's 1 dB per hop: a mic that carried only bleed (trimmed up to stage it) and now
#: plays its own source would otherwise come in up to 40 dB too loud for seconds.  A
#: safety move, as a limiter's: nothing the person set is touched.
TRIM_SNAP_DOWN_DB = 6.0
#: What :attr:`ControlLoop.timer` times per hop: ``features`` (feeding the extractor up to
#: the hop's boundary), ``inference`` (the policy's model call, when it reports one as
#: ``inference_ns``), ``policy`` (the rest of the step: proposal, automation, staging) and
#: ``control`` (the whole step: inference + policy).
CONTROL_STAGES = ("features", "inference", "policy", "control")
_FEATURES, _INFERENCE, _POLICY, _CONTROL = range(4)
#: Levels that take their first proposal whole, as an engineer sets a channel's gain and
#: fader the first time it plays, then rides them: slewing 1 dB per hop from the desk's
#: defaults would leave a mic 20 dB off for two seconds, and two copies of a show that
#: differ only in input gains would start as different mixes.
FIRST_PROPOSAL_JUMPS = ("trim_db", "fader_db")


def ring_capacity(hop_frames: int, block_size: int, ring_hops: int = RING_HOPS) -> int:
    """Frames the control path's input ring holds: ``ring_hops`` hops and one block."""
    return int(ring_hops) * int(hop_frames) + int(block_size)


def build_control_loop(console, policy, features=None, *, base_params=None, automation=None,
                       locked=None, master_params=None, hop_s: float = 0.1, ring=None):
    """The control loop a runner uses: an :class:`~edgemix.automix.policy.Automation` from
    the manual settings (``base_params``, default: the console's), the per-channel
    automation levels (default 1) and ``locked``, around ``policy`` and ``features``."""
    n = console.n_channels
    levels = np.ones(n) if automation is None else np.asarray(automation, np.float64)
    auto = Automation(n, manual=console.channel_params if base_params is None else base_params,
                      level=levels.reshape(n, 1), locked=locked)
    return ControlLoop(console, policy, auto, features=features, master_params=master_params,
                       hop_s=hop_s, ring=ring)


def recognised_roles(policy):
    """(role, probability) per channel from a policy that recognises roles (the model
    policy's :meth:`~edgemix.automix.model_policy.ModelPolicy.recognition` after
    ``propose``: the held role, not a single hop's guess), else None."""
    recognition = getattr(policy, "recognition", None)
    if callable(recognition):
        recs = recognition()
        if not recs:
            return None
        return [(r["recognised_role"], r["role_probability"]) if r["recognised_role"]
                else None for r in recs]
    roles = getattr(policy, "roles", None)
    probs = getattr(policy, "role_probabilities", None)
    if not roles or probs is None or len(probs) != len(roles):
        return None
    return [(r, float(np.max(p))) for r, p in zip(roles, probs)]


def meter_snapshot(console):
    """A feature snapshot from the console's meters (used when no FeatureExtractor runs):
    ``(n_channels, 2)`` float32 of channel peak and RMS in dBFS (floored at -120)."""
    m = console.meters
    snap = np.stack([m.channel_peak_db, m.channel_rms_db], axis=1)
    return np.maximum(np.nan_to_num(snap, nan=-120.0, neginf=-120.0), -120.0).astype(np.float32)


class ControlLoop:
    """Features and policy for ``console``, one step per hop of the input's sample clock.

    ``policy``: any object with ``propose(snapshot)`` returning what
    :func:`~edgemix.automix.policy.as_proposal` accepts, or None (features only).
    ``automation``: the :class:`~edgemix.automix.policy.Automation` holding the manual
    settings, locks and levels.  ``features``: an object with ``process((frames, channels))``,
    ``snapshot()``, ``reset()`` and ``hop_frames`` (a
    :class:`~edgemix.features.FeatureExtractor`), or None: the console's meters are the
    snapshot and the hop is ``hop_s``.

    Threads: :meth:`push` is the audio thread's; :meth:`advance`, :meth:`step` and
    :meth:`reset` belong to one consumer (the control thread, or an offline backend's
    thread); :meth:`stats` may be read from anywhere.
    """

    def __init__(self, console, policy, automation: Automation, *, features=None,
                 master_params: np.ndarray | None = None, hop_s: float = 0.1,
                 ring_hops: int = RING_HOPS, ring: FrameRing | None = None):
        if features is not None:
            hop_frames = int(features.hop_frames)
        else:
            if not hop_s > 0:
                raise ValueError(f"control hop {hop_s} s: use a positive number (0.1 = 10 Hz)")
            hop_frames = max(1, int(round(hop_s * console.sample_rate_hz)))
        if automation.n_channels != console.n_channels:
            raise ValueError(f"automation for {automation.n_channels} channels, the console "
                             f"has {console.n_channels}: make them agree")
        self.console = console
        self.policy = policy
        self.features = features
        self.automation = automation
        self.master = np.array(console.master_params if master_params is None
                               else master_params, dtype=np.float64)
        self.hop_frames = hop_frames
        self.hop_s = hop_frames / console.sample_rate_hz
        self.ring = ring if ring is not None else FrameRing(
            ring_capacity(hop_frames, console.block_size, ring_hops), console.n_channels)
        self._nothing = np.zeros((0, 0), np.float32)  # the ring's second part: none here
        self.frames_in = 0        # frames consumed from the ring (fed to the features)
        self.hops = 0
        self.updates = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_good: np.ndarray | None = None
        self.last_explanations: list[dict[str, str]] | None = None
        #: the master parameters' sentences of the last hop (the loudness target's move)
        self.last_master_explanations: dict[str, str] = {}
        #: per channel, the policy's recognised role and probability beside the role in
        #: use (``policy.recognition()``), None for a policy that does not recognise roles
        self.last_recognition: list[dict] | None = None
        self._proposed: np.ndarray | None = None   # parameters proposed at least once
        #: the live mono fold of the inputs at the staged gains and pans, for the desk and
        #: the web surface: ``mono.snapshot()`` (edgemix/automix/prep/mono.py)
        self.mono = LiveMono(console.sample_rate_hz, console.n_channels)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rt_status = "not requested"
        #: the live :class:`~edgemix.rt.desk.Desk` when a control surface runs
        #: (:meth:`attach_desk`): proposals then go through it
        self.desk = None
        #: per-hop stage timings (:data:`CONTROL_STAGES`), kept by the loop itself
        self.timer = StageTimer(CONTROL_STAGES, 1 << 14)

    def attach_desk(self, desk) -> None:
        """Route every hop through ``desk`` (built on this loop's ``automation``): the
        desk blends, keeps the person's parameters, stages and echoes the moves."""
        if desk.automation is not self.automation:
            raise ValueError("the desk must be built on this control loop's automation")
        self.desk = desk

    # ---- audio thread -------------------------------------------------------------------
    def push(self, x: np.ndarray) -> bool:
        """Audio thread: append the raw input block ``(frames, channels)`` float32
        C-contiguous.  Never waits; False when the ring was full (dropped and counted)."""
        return self.ring.push(x, self._nothing)

    # ---- consumer -----------------------------------------------------------------------
    def warmup(self) -> None:
        """Compile the ring's push kernel for the audio thread's blocks (before a stream)."""
        self.ring.warmup(self.console.n_channels)

    def reset(self) -> None:
        """Empty the ring, rewind the hop clock, forget features and proposals (no stream
        may be running)."""
        self.ring.idx[:] = 0
        self.frames_in = 0
        if self.features is not None:
            self.features.reset()
        self.automation.reset()
        self.timer.reset()
        self._proposed = None
        target = getattr(self.policy, "master_target", None)
        if target is not None:
            target.reset()

    def advance(self) -> int:
        """Feed everything in the ring to the features, stepping at each hop boundary
        crossed; return the number of steps taken."""
        steps = 0
        while True:
            regions = self.ring.read_regions()
            if not regions:
                return steps
            for view in regions:
                done = 0
                while done < view.shape[0]:
                    to_hop = self.hop_frames - self.frames_in % self.hop_frames
                    k = min(to_hop, view.shape[0] - done)
                    self._feed(view[done:done + k])
                    done += k
                    self.frames_in += k
                    self.ring.advance(k)
                    if k == to_hop:
                        self.step()
                        steps += 1

    def _feed(self, frames: np.ndarray) -> None:
        try:
            self.mono.process(frames, self.last_good)
        except Exception as e:  # a meter: never the hop's business
            self._failed(e)
        if self.features is None:
            return
        t0 = perf_counter_ns()
        try:
            self.features.process(frames)
        except Exception as e:  # the frames are lost to the features; the clock goes on
            self._failed(e)
        self.timer.add(_FEATURES, perf_counter_ns() - t0)

    def step(self) -> bool:
        """One hop: snapshot -> policy -> automation -> stage.  True when staged."""
        self.hops += 1
        if self.policy is None:
            self.timer.end()
            return False
        t0 = perf_counter_ns()
        try:
            return self._step()
        finally:
            total = perf_counter_ns() - t0
            inference = min(int(getattr(self.policy, "inference_ns", 0)), total)
            timer = self.timer
            timer.add(_INFERENCE, inference)
            timer.add(_POLICY, total - inference)
            timer.add(_CONTROL, total)
            timer.end()

    def _step(self) -> bool:
        n = self.console.n_channels
        try:
            snap = self.features.snapshot() if self.features is not None \
                else meter_snapshot(self.console)
            proposal = as_proposal(self.policy.propose(snap), n)
            self._first_proposals_jump(proposal)
            self._snap_trims_down(proposal)
            self._propose_master(snap, proposal)
            if self.desk is not None:
                params = self.desk.propose(proposal, recognised=recognised_roles(self.policy))
                self.master = np.array(self.desk.master, dtype=np.float64)
            else:
                params = self.automation.step(proposal)
                have = np.isfinite(proposal.master)
                self.master[have] = proposal.master[have]
                self.console.stage(params, self.master)
        except Exception as e:  # keep the last good parameters: nothing was staged
            self._failed(e)
            return False
        self.last_good = params
        self.last_explanations = self._explanations(proposal)
        self.last_master_explanations = dict(proposal.master_explanations)
        recognition = getattr(self.policy, "recognition", None)
        self.last_recognition = recognition() if callable(recognition) else None
        self.updates += 1
        return True

    def _first_proposals_jump(self, proposal) -> None:
        """Where a ``FIRST_PROPOSAL_JUMPS`` level is proposed for the first time, its
        target starts at the proposal blended with the person's setting by the automation
        level (locked parameters stay the person's); the hop's step then holds it."""
        from edgemix.automix.policy import blend
        a = self.automation
        if self._proposed is None or self._proposed.shape != a.targets.shape:
            self._proposed = np.zeros(a.targets.shape, dtype=bool)
        first = np.zeros(a.targets.shape, dtype=bool)
        for name in FIRST_PROPOSAL_JUMPS:
            j = getattr(P.CH, name)
            first[:, j] = np.isfinite(proposal.values[:, j]) & ~self._proposed[:, j] \
                & ~a.locked[:, j]
        if first.any():
            want = blend(a.manual, np.where(first, proposal.values, np.nan), a.level, a.locked)
            a.targets[first] = want[first]
            a._smooth[first] = np.nan  # noqa: SLF001 (restart the smoothing at the proposal)
        self._proposed |= np.isfinite(proposal.values)

    def _snap_trims_down(self, proposal) -> None:
        """Trims proposed ``TRIM_SNAP_DOWN_DB`` or more below their target start there
        (target and smoothing reset), where the automation is full and the person has not
        set the trim; the hop's step then holds them."""
        a = self.automation
        j = P.CH.trim_db
        want = proposal.values[:, j]
        snap = (np.isfinite(want) & (want < a.targets[:, j] - TRIM_SNAP_DOWN_DB)
                & ~a.locked[:, j] & (a.level[:, j] >= 1.0))
        if snap.any():
            a.targets[snap, j] = want[snap]
            a._smooth[snap, j] = np.nan  # noqa: SLF001 (restart the smoothing at the proposal)

    def _propose_master(self, snap, proposal) -> None:
        """The policy's master target (``policy.master_target``, a
        :class:`~edgemix.automix.master.MasterLoudness`: the master fader toward the
        session's loudness target) from this snapshot and the channel targets now on the
        console."""
        target = getattr(self.policy, "master_target", None)
        if target is None or self.features is None:
            return
        got = target.propose(snap, self.automation.targets,
                             float(self.master[P.MS.master_fader_db]))
        if got is not None:
            proposal.set_master("master_fader_db", got[0], got[1])

    def _explanations(self, proposal) -> list[dict[str, str]]:
        """The proposal's sentences for the parameters automation may move (level above 0,
        not locked): a manual setting is not explained by the policy.  Where the level is
        below full auto the sentence says so and what the blend with the person's setting
        gives (:func:`edgemix.automix.explain.with_automation`); gain sharing always says
        its level (it is offered, and the level is the person's say in it)."""
        from edgemix.automix.explain import with_automation
        a = self.automation
        out = []
        for c, why in enumerate(proposal.explanations):
            row = {}
            for name, text in why.items():
                if name not in P.CHANNEL_SPECS:
                    continue
                j = getattr(P.CH, name)
                if a.level[c, j] <= 0.0 or a.locked[c, j]:
                    continue
                row[name] = with_automation(text, name, a.level[c, j], a.manual[c, j],
                                            a.targets[c, j])
            out.append(row)
        return out

    def _failed(self, e: Exception) -> None:
        self.errors += 1
        self.last_error = f"{e.__class__.__name__}: {e}"
        if self.errors == 1 or self.errors % 100 == 0:
            log.warning("control hop failed (%d so far), keeping the last good "
                        "parameters: %s", self.errors, self.last_error)

    # ---- live: the control thread -------------------------------------------------------
    def _run(self) -> None:
        self.poll(self._stop)

    def poll(self, stop, after=None) -> None:
        """Advance ``POLLS_PER_HOP`` times per hop on the wall clock until ``stop`` (an
        Event) is set; ``after()`` runs after each look (the control process publishes its
        counters there)."""
        poll_s = self.hop_s / POLLS_PER_HOP
        t_next = time.monotonic()
        while True:
            t_next += poll_s
            delay = t_next - time.monotonic()
            if delay < 0:  # a slow step: skip the missed polls rather than bunch them up
                t_next = time.monotonic()
                delay = 0.0
            if stop.wait(delay):
                return
            self.advance()
            if after is not None:
                after()

    def start(self, rt_priority: int | None = None) -> None:
        """Start the control thread (live backends); at SCHED_FIFO ``rt_priority`` if given.

        The runner leaves ``rt_priority`` out and sets the thread's priority itself once it
        knows the audio thread's (:mod:`edgemix.rt.rtsched`: below the audio thread, above
        ordinary processes, because this thread holds the GIL the audio callback needs for
        milliseconds per hop and must not be preempted by a busy process meanwhile).
        """
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edgemix-control", daemon=True)
        self._thread.start()
        if rt_priority is not None:
            self.rt_status = rtsched.set_fifo(rt_priority, self._thread.native_id)

    @property
    def native_id(self) -> int | None:
        """The control thread's kernel thread id while it runs (for its scheduling)."""
        return self._thread.native_id if self._thread is not None else None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def stats(self) -> dict:
        return {"hops": self.hops, "updates": self.updates, "errors": self.errors,
                "timing": self.timer.summary(),
                "rt": self.rt_status,
                "last_error": self.last_error, "hop_frames": self.hop_frames,
                "ring_capacity_frames": self.ring.capacity,
                "ring_dropped_frames": self.ring.dropped_frames,
                "ring_dropped_blocks": self.ring.dropped_blocks}
