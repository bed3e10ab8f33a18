"""Live alignment: polarity and delay proposed as ordinary automated parameters.

:class:`AlignmentTracker` runs in the control path (the control process of a live run, or
in-process offline), on the raw input the control loop already consumes.  It keeps, for
every pair of channels, the cross- and auto-spectra of Hann frames as exponentially
weighted sums (a 30 s memory), and every hop re-estimates a few related pairs with the
offline estimator (:func:`edgemix.automix.prep.align.estimate_pair`: the same GCC with the
phase transform, the same abstentions).  A pair's estimate is **adopted** when it has
been given (not abstained) ``CONFIRM`` times in a row within a quarter of a sample and
with the same polarity; once adopted it **stays still**: it moves only when ``CONFIRM``
estimates in a row agree on a lag more than a sample away, or on the other polarity.
Adopted pairs form groups exactly as offline (:func:`~edgemix.automix.prep.align.corrections`)
and become proposals of ``delay_ms`` and ``polarity_invert`` with a sentence each, e.g.
"polarity inverted: in_02 is inverted and 0.49 ms late against in_01, correlation -0.89".

The proposals go through the session's :class:`~edgemix.automix.policy.Automation` like
every other one: the automation level blends them, a person's setting (a lock) wins, and
the delay and the polarity are stepped like switches (held ``SWITCH_HOLD_HOPS``, then
taken whole; the strip crossfades the delay).

:func:`with_alignment` wraps a policy and its feature extractor so the control loop needs
no change: the features wrapper also feeds the tracker, the policy wrapper adds the
tracker's proposals where the policy has none.
"""
from __future__ import annotations

import math

import numpy as np

from edgemix import params as P
from edgemix.automix.policy import Proposal, as_proposal
from edgemix.automix.prep.align import (SCREEN_MIN, Alignment, PairEstimate, _tree,
                                        corrections, estimate_pair, frame_length, screen)
from edgemix.dsp._jit import kernel

#: Memory of the running spectra (seconds): long enough to be still, short enough to follow
#: a mic that was moved.
MEMORY_S = 30.0
#: Consecutive agreeing estimates that adopt (or move) a pair's alignment.
CONFIRM = 3
#: Pairs estimated per control hop: pairs not adopted yet first (round-robin), then
#: adopted pairs due for their re-check.
PAIRS_PER_HOP = 2
#: An adopted pair is re-checked this many hops after its last estimate.
RECHECK_HOPS = 10
#: The pairs are screened (``align.screen``) for candidates every this many hops.
SCREEN_HOPS = 10
#: Programme (seconds of frames where both play) before a pair is first estimated.
MIN_PROGRAMME_S = 0.9
#: More channels than this are not tracked live (the pair spectra grow with its square).
MAX_CHANNELS = 32
#: Frames whose RMS is below this (dBFS) carry no programme.
ACTIVE_DBFS = -70.0


@kernel
def _accumulate(X, act, ia, ib, G, Pw, n, gain):
    """Add this frame's spectra where both channels of a pair are active, weighted by
    ``gain`` (the running sums are kept undecayed, scaled by the tracker: a decay of every
    pair's spectra on every frame would cost more than the sums themselves):
    ``G[p] += gain conj(X[ia[p]]) X[ib[p]]``, ``Pw[c] += gain |X[c]|^2``, ``n[p] += gain``."""
    n_bins = X.shape[1]
    for c in range(X.shape[0]):
        if act[c]:
            for k in range(n_bins):
                v = X[c, k]
                Pw[c, k] += gain * (v.real * v.real + v.imag * v.imag)
    for p in range(ia.shape[0]):
        a, b = ia[p], ib[p]
        if act[a] and act[b]:
            n[p] += gain
            for k in range(n_bins):
                G[p, k] += gain * (X[a, k].conjugate() * X[b, k])


class AlignmentTracker:
    """The streaming estimator for ``n_channels`` at ``sample_rate_hz``.

    ``process(frames)`` takes raw input ``(frames, channels)``; ``contribute(proposal)``
    writes the current proposals into a :class:`~edgemix.automix.policy.Proposal` (only
    where it has no opinion yet); ``alignments`` are the adopted pairs as
    :class:`~edgemix.automix.prep.align.Alignment`.  Control thread only.
    """

    def __init__(self, n_channels: int, sample_rate_hz: float, names=None):
        n = int(n_channels)
        if not 1 <= n <= MAX_CHANNELS:
            raise ValueError(f"live alignment tracks 1 .. {MAX_CHANNELS} channels, not {n}: "
                             "set [model] align = false for this session")
        self.n = n
        self.fs = float(sample_rate_hz)
        self.names = [str(x) for x in names] if names is not None else \
            [f"ch {i + 1}" for i in range(n)]
        self.frame = frame_length(self.fs)
        self.hop = self.frame // 2
        self.window = np.hanning(self.frame + 2)[1:-1]
        self.decay = math.exp(-self.hop / (MEMORY_S * self.fs))
        iu = np.triu_indices(n, 1)
        self.ia, self.ib = iu[0].astype(np.int64), iu[1].astype(np.int64)
        k = self.frame // 2 + 1
        self._G = np.zeros((len(self.ia), k), np.complex128)
        self._P = np.zeros((n, k))
        self._n = np.zeros(len(self.ia))
        self._buf = np.zeros((self.frame, n))
        self._fill = 0
        self._floor = self.frame * 10.0 ** (ACTIVE_DBFS / 10.0)
        self.reset()

    def warmup(self) -> None:
        """Compile (or load) the accumulation kernel and the estimator, then forget."""
        self._analyse(np.zeros((self.frame, self.n)))
        self.reset()

    def reset(self) -> None:
        """Forget everything heard and adopted."""
        self._G[:] = 0.0
        self._P[:] = 0.0
        self._n[:] = 0.0
        self._weight = 1.0
        self._fill = 0
        self._last: dict[int, PairEstimate] = {}     # the latest estimate per pair
        self._run: dict[int, list[PairEstimate]] = {}  # consecutive agreeing estimates
        self._adopted: dict[int, PairEstimate] = {}
        self._seen: dict[int, int] = {}               # hop of each pair's last estimate
        self._cands: list[int] = []
        self._hop = 0
        self.frames_seen = 0

    # ---- audio in -----------------------------------------------------------------------
    def process(self, frames: np.ndarray) -> None:
        """Feed raw input ``(frames, channels)``; analyses every complete Hann frame."""
        x = np.asarray(frames)
        pos = 0
        while pos < x.shape[0]:
            take = min(self.frame - self._fill, x.shape[0] - pos)
            self._buf[self._fill:self._fill + take] = x[pos:pos + take]
            self._fill += take
            pos += take
            if self._fill == self.frame:
                self._analyse(self._buf)
                self._buf[:self.hop] = self._buf[self.hop:]
                self._fill = self.frame - self.hop

    def _analyse(self, block: np.ndarray) -> None:
        seg = np.nan_to_num(block.T, nan=0.0, posinf=0.0, neginf=0.0) * self.window
        act = np.sum(seg * seg, axis=1) > self._floor * np.mean(self.window ** 2)
        X = np.fft.rfft(seg, axis=1)
        # exponential memory: frame k weighs decay^-k in the sums, which are scaled back
        # (and renormalised long before the weights overflow)
        self._weight /= self.decay
        if self._weight > 1e100:
            for arr in (self._G, self._P, self._n):
                arr /= self._weight
            self._weight = 1.0
        _accumulate(X, act, self.ia, self.ib, self._G, self._P, self._n, self._weight)
        self.frames_seen += 1

    # ---- decisions ----------------------------------------------------------------------
    def update(self) -> None:
        """Estimate up to ``PAIRS_PER_HOP`` pairs (call once per control hop)."""
        self._hop += 1
        if self._hop % SCREEN_HOPS == 1 or not self._cands:
            self._screen()
        todo = [p for p in self._cands if p not in self._adopted]
        todo = sorted(todo, key=lambda p: self._seen.get(p, -1))
        due = [p for p in self._cands if p in self._adopted
               and self._hop - self._seen.get(p, -1) >= RECHECK_HOPS]
        for p in (todo + due)[:PAIRS_PER_HOP]:
            self._seen[p] = self._hop
            self._estimate(p)

    def _screen(self) -> None:
        """Candidate pairs: enough programme, and a fast coherence worth a full look."""
        min_frames = MIN_PROGRAMME_S * self.fs / self.hop
        ready = np.flatnonzero(self._n / self._weight >= min_frames)
        if ready.size == 0:
            self._cands = []
            return
        q = screen(self._G[ready], self._P[self.ia[ready]], self._P[self.ib[ready]],
                   self.frame, self.fs)
        self._cands = [int(p) for p in ready[q >= SCREEN_MIN]]

    def _estimate(self, p: int) -> None:
        nf = self._n[p] / self._weight            # effective frames (decayed count)
        a, b = self.ia[p], self.ib[p]
        scale = 1.0 / max(self._n[p], 1e-300)
        spectra = (self._G[p] * scale, self._P[a] * scale, self._P[b] * scale, nf, None,
                   self.fs, self.frame)
        held = self._adopted.get(p)
        e = None
        if held is not None:   # a re-check: refine from the held lag (cheap) ...
            e = estimate_pair(*spectra, start=(held.lag_samples, held.inverted))
            if e.abstained is not None or abs(e.lag_samples - held.lag_samples) > 0.25:
                e = None       # ... and search the whole range only when it moved
        if e is None:
            e = estimate_pair(*spectra)
        self._last[p] = e
        run = self._run.setdefault(p, [])
        if e.abstained is not None:
            run.clear()
            return
        if run and (run[-1].inverted != e.inverted
                    or abs(run[-1].lag_samples - e.lag_samples) > 0.25):
            run.clear()
        run.append(e)
        if len(run) < CONFIRM:
            return
        held = self._adopted.get(p)
        if held is None or held.inverted != e.inverted or \
                abs(held.lag_samples - e.lag_samples) > 1.0:
            self._adopted[p] = e            # adopt, or move after CONFIRM agreeing
        run.clear()

    @property
    def alignments(self) -> list[Alignment]:
        """The adopted pairs as groups (the offline tree, rooted at each earliest mic)."""
        pairs = {(self.names[self.ia[p]], self.names[self.ib[p]]): e
                 for p, e in self._adopted.items()}
        return _tree(self.names, pairs, self.fs)

    def contribute(self, proposal: Proposal) -> Proposal:
        """Write ``delay_ms`` and ``polarity_invert`` for every aligned channel into
        ``proposal`` where it has no opinion, with the sentence that explains it."""
        self.update()
        found = self.alignments
        if not found:
            return proposal
        fix = corrections(found, self.fs)
        by_channel = {a.channel: a for a in found}
        index = {name: i for i, name in enumerate(self.names)}
        later: dict[str, Alignment] = {}
        for a in found:
            later.setdefault(a.aligned_to, a)
        for name, (delay_ms, invert) in fix.items():
            c = index[name]
            own = by_channel.get(name)
            if own is not None:
                why = (f"{name}: {'polarity inverted and ' if own.polarity_inverted else ''}"
                       f"{own.delay_ms:.2f} ms late against {own.aligned_to}, "
                       f"correlation {own.correlation:+.2f}")
            else:
                other = later[name]
                why = (f"{other.channel} is {other.delay_ms:.2f} ms late against {name}, "
                       f"correlation {other.correlation:+.2f}")
            for col, value, text in (
                    ("delay_ms", delay_ms, f"delay {delay_ms:.2f} ms to meet its group's "
                                           f"latest mic: {why}"),
                    ("polarity_invert", 1.0 if invert else 0.0,
                     ("polarity inverted: " if invert else "polarity kept: ") + why)):
                if not np.isfinite(proposal.values[c, getattr(P.CH, col)]):
                    proposal.set(c, col, value, text)
        return proposal


class AlignedFeatures:
    """A feature extractor that also feeds an :class:`AlignmentTracker` (the control loop
    hands it every raw input frame)."""

    def __init__(self, features, tracker: AlignmentTracker):
        self.features = features
        self.tracker = tracker
        self.hop_frames = features.hop_frames

    def process(self, frames):
        self.features.process(frames)
        self.tracker.process(frames)

    def snapshot(self):
        return self.features.snapshot()

    def reset(self):
        self.features.reset()
        self.tracker.reset()


class AlignedPolicy:
    """A policy (or none) whose proposals gain the tracker's delay and polarity.

    ``feeding(features)`` wraps the feature extractor of the same control loop, so the
    tracker hears the input (build both where the control loop is built)."""

    def __init__(self, policy, tracker: AlignmentTracker):
        self.policy = policy
        self.tracker = tracker
        self.outputs = tuple(getattr(policy, "outputs", ())) + ("delay_ms", "polarity_invert")

    @classmethod
    def for_channels(cls, policy, n_channels: int, sample_rate_hz: float, names=None):
        return cls(policy, AlignmentTracker(n_channels, sample_rate_hz, names))

    def feeding(self, features) -> "AlignedFeatures":
        self.tracker.warmup()
        return AlignedFeatures(features, self.tracker)

    def propose(self, snapshot):
        n = self.tracker.n
        prop = Proposal.empty(n) if self.policy is None else \
            as_proposal(self.policy.propose(snapshot), n)
        return self.tracker.contribute(prop)


def with_alignment(policy, features, n_channels: int, sample_rate_hz: float, names=None):
    """``(policy, features)`` wrapped so the control loop also aligns the channels."""
    aligned = AlignedPolicy.for_channels(policy, n_channels, sample_rate_hz, names)
    return aligned, aligned.feeding(features)
