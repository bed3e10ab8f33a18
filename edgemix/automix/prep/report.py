"""The ``edgemix prep`` analysis of a set of stems, its report, and the corrected copies.

:func:`analyse` runs every check on ``(frames, channels)`` stems and returns a
:class:`PrepReport`: per channel the recognised role (the shipped model over the
streaming features, as ``edgemix mix`` recognises them), label, colour and group, the
alignment against a related mic, the clicks and the silences, each with its evidence; for
the session the mono fold and the pairs that hurt it.  :meth:`PrepReport.to_json` is the
``--json`` document, :meth:`PrepReport.to_markdown` the report for people, and
:func:`corrected` the fixed copy of one stem (clicks repaired, polarity and delay
corrected, silences gated).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from edgemix.automix.prep import clicks as _clicks
from edgemix.automix.prep import labels as _labels
from edgemix.automix.prep import mono as _mono
from edgemix.automix.prep import silences as _silences

#: Seconds of programme the role recognition waits for before its first vote, and the
#: spacing of its votes (each a feature snapshot through the model).
ROLE_WARMUP_S = 3.0
ROLE_VOTE_S = 1.0


@dataclass
class ChannelFindings:
    """Everything prep found on one channel (one stem file)."""

    name: str
    n_sides: int
    label: _labels.ChannelLabel
    recognised_role: str
    role_probability: float
    role_given: bool
    clicks: list[_clicks.Clicks]                 # one per side of the stem
    silences: _silences.Silences
    polarity_inverted: bool = False
    aligned_to: str | None = None
    delay_ms: float = 0.0
    confidence: float = 0.0
    alignment_note: str = ""
    pan: float = 0.0
    #: what the fixed copy gets: delay added (ms) and polarity flipped, from
    #: ``align.corrections`` (every earlier mic of a group delayed to meet its latest)
    correction: tuple[float, bool] = (0.0, False)

    @property
    def click_times_s(self) -> list[float]:
        t = sorted({round(float(v), 6) for c in self.clicks for v in c.times_s})
        return t


@dataclass
class PrepReport:
    sample_rate_hz: float
    seconds: float
    channels: list[ChannelFindings]
    fold: _mono.MonoFold
    pairs: list[_mono.Pair]
    analysis_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def mono_warnings(self) -> list[str]:
        aligned = {c.name: c.aligned_to for c in self.channels if c.aligned_to}
        return _mono.warnings(self.fold, self.pairs, aligned)

    def to_json(self) -> dict:
        chans = []
        for c in self.channels:
            lab = c.label
            clicks = [{"time_s": round(float(p) / self.sample_rate_hz, 6),
                       "side": k, "start_sample": int(s), "samples": int(t - s),
                       "height": float(h), "score_sigma": round(float(z), 2)}
                      for k, cl in enumerate(c.clicks)
                      for s, t, p, h, z in zip(cl.start, cl.stop, cl.peak, cl.height, cl.score)]
            sil = c.silences
            chans.append({
                "name": c.name, "label": lab.label, "role": lab.role,
                "recognised_role": c.recognised_role,
                "role_probability": round(c.role_probability, 3), "role_given": c.role_given,
                "colour": lab.colour_hex, "xair_colour": lab.xair_colour,
                "group": lab.group, "dca": lab.dca, "bus": lab.bus, "linked": list(lab.linked),
                "polarity_inverted": bool(c.polarity_inverted), "aligned_to": c.aligned_to,
                "delay_ms": round(float(c.delay_ms), 4), "confidence": round(float(c.confidence), 3),
                "alignment_note": c.alignment_note,
                "clicks_s": c.click_times_s, "clicks": clicks,
                "silent_s": [[round(float(a), 4), round(float(b), 4)] for a, b in sil.regions_s],
                "silence": {"close_dbfs": round(sil.close_dbfs, 2), "open_dbfs": round(sil.open_dbfs, 2),
                            "active_dbfs": round(sil.active_dbfs, 2),
                            "noise_dbfs": round(sil.noise_dbfs, 2),
                            "loudest_cut_dbfs": (round(sil.loudest_cut_dbfs, 2)
                                                 if math.isfinite(sil.loudest_cut_dbfs) else None),
                            "seconds": round(sil.seconds, 3)},
                "pan": round(c.pan, 3),
            })
        f = self.fold
        pair = lambda p: {"a": p.a, "b": p.b, "delay_ms": round(p.delay_ms, 4),
                          "correlation": round(p.correlation, 4)}
        return {
            "sample_rate_hz": self.sample_rate_hz, "seconds": round(self.seconds, 3),
            "analysis_s": round(self.analysis_s, 3),
            "channels": chans,
            "mono": {"correlation": round(f.correlation, 4),
                     "bands_hz": list(f.bands_hz), "loss_db": list(f.loss_db),
                     "comb_pairs": [pair(p) for p in self.pairs if p.kind == "comb"],
                     "inverted_pairs": [pair(p) for p in self.pairs if p.kind == "inverted"],
                     "warnings": self.mono_warnings},
            "notes": list(self.notes),
        }

    def findings(self) -> list[str]:
        """Every finding as a sentence with its evidence."""
        out = []
        for c in self.channels:
            who = f"{c.name} ({c.label.label})"
            if c.aligned_to:
                pol = "polarity inverted and " if c.polarity_inverted else ""
                out.append(f"{who}: {pol}{c.delay_ms:.3f} ms late against {c.aligned_to} "
                           f"(confidence {c.confidence:.2f})")
            elif c.polarity_inverted:
                out.append(f"{who}: polarity inverted (confidence {c.confidence:.2f})")
            for k, cl in enumerate(c.clicks):
                side = f" side {k + 1}" if c.n_sides > 1 else ""
                for p, s, t, z in zip(cl.peak, cl.start, cl.stop, cl.score):
                    out.append(f"{who}{side}: click at {p / self.sample_rate_hz:.4f} s "
                               f"(sample {p}, {t - s} sample{'s' if t - s > 1 else ''} damaged, "
                               f"{z:.0f} sigma over the AR residual)")
            sil = c.silences
            if len(sil):
                out.append(f"{who}: {len(sil)} silent region{'s' if len(sil) > 1 else ''}, "
                           f"{sil.seconds:.1f} s in all (below {sil.close_dbfs:.1f} dBFS, "
                           f"{sil.active_dbfs - sil.close_dbfs:.0f} dB under its playing "
                           f"level {sil.active_dbfs:.1f} dBFS; noise floor {sil.noise_dbfs:.1f} dBFS)")
        out += self.mono_warnings
        return out

    def to_markdown(self, stems_dir: str = "", fixed_dir: str | None = None) -> str:
        j = self.to_json()
        m = j["mono"]
        lines = ["# edgemix prep report", "",
                 f"Stems: `{stems_dir}`; {len(self.channels)} channels, {self.seconds:.1f} s at "
                 f"{self.sample_rate_hz:g} Hz; analysed in {self.analysis_s:.1f} s."
                 + (f" Corrected copies in `{fixed_dir}`." if fixed_dir else ""), "",
                 f"Mono: master correlation {m['correlation']:+.2f}; worst band "
                 + (f"{self.fold.worst_band[1]:.1f} dB at {self.fold.worst_band[0]:g} Hz."
                    if self.fold.bands_hz else "n/a."), "",
                 "| channel | label | role | group | DCA | colour | polarity | delay | clicks | silent |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for c, cj in zip(self.channels, j["channels"]):
            role = cj["role"] + ("" if c.role_given else f" (p={c.role_probability:.2f})")
            delay = (f"{c.delay_ms:+.3f} ms vs {c.aligned_to}" if c.aligned_to else "-")
            lines.append(f"| {c.name} | {cj['label']} | {role} | {cj['group']} | "
                         f"{cj['dca'] or '-'} | {cj['colour']} | "
                         f"{'inverted' if c.polarity_inverted else 'ok'} | {delay} | "
                         f"{len(cj['clicks_s'])} | {c.silences.seconds:.1f} s |")
        lines += ["", "## Findings", ""]
        found = self.findings()
        lines += [f"- {s}" for s in found] or ["- nothing to fix"]
        lines += ["", "## Mono fold", "", "| band | " + " | ".join(f"{b:g} Hz" for b in m["bands_hz"]) + " |",
                  "|---|" + "---|" * len(m["bands_hz"]),
                  "| loss | " + " | ".join(f"{v:+.1f} dB" for v in m["loss_db"]) + " |", ""]
        lines += ["## Groups", ""]
        groups: dict[str, list[str]] = {}
        for c in self.channels:
            groups.setdefault(c.label.group, []).append(c.label.label)
        for g in _labels.GROUPS:
            if g.name in groups:
                dca = next(c.label.dca for c in self.channels if c.label.group == g.name)
                lines.append(f"- **{g.name}**: {', '.join(groups[g.name])}"
                             + (f"; DCA {dca}" if dca else "") + f"; {g.bus}")
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------


def recognise_roles(stems: np.ndarray, sample_rate_hz: float, model=None):
    """``(roles, probabilities, features)``: the role the shipped model recognises on each
    channel, its probability, and the last feature snapshot.

    The streaming features run over the whole programme; after ``ROLE_WARMUP_S`` every
    ``ROLE_VOTE_S`` the snapshot goes through the model, and a channel's role is the one
    with the highest mean log-probability over the votes it was active in (the model's
    answer while the channel plays, not while it rests)."""
    from edgemix import features as F
    from edgemix.automix.model_policy import ModelPolicy
    from edgemix.infer import MAX_CHANNELS
    from edgemix.roles import ROLE_NAMES
    n = stems.shape[1]
    policy = model if model is not None else ModelPolicy()
    fx = F.FeatureExtractor(sample_rate_hz, n)
    act = F.FEATURE_INDEX["activity_ratio"]
    step = int(ROLE_VOTE_S * sample_rate_hz)
    start = int(ROLE_WARMUP_S * sample_rate_hz)
    logp = np.zeros((n, len(ROLE_NAMES)))
    weight = np.zeros(n)
    snap = fx.snapshot()
    pos = 0
    while pos < stems.shape[0]:
        end = min(max(pos + step, start), stems.shape[0])
        fx.process(stems[pos:end])
        pos = end
        if pos < start and pos < stems.shape[0]:
            continue
        snap = fx.snapshot()
        for c0 in range(0, n, MAX_CHANNELS):
            part = snap[c0:c0 + MAX_CHANNELS]
            _, probs = policy.predict_units(part)
            w = np.clip(part[:, act], 0.0, 1.0)
            logp[c0:c0 + len(part)] += w[:, None] * np.log(np.maximum(probs, 1e-12))
            weight[c0:c0 + len(part)] += w
    mean = logp / np.maximum(weight, 1e-9)[:, None]
    p = np.exp(mean - mean.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    best = p.argmax(axis=1)
    roles = [ROLE_NAMES[k] if weight[i] > 0 else "other" for i, k in enumerate(best)]
    return roles, [float(p[i, k]) if weight[i] > 0 else 0.0 for i, k in enumerate(best)], snap


def fold_to_stereo(sides: Sequence[np.ndarray], pans: Sequence[float]):
    """``(left, right)``: stereo stems as they are, mono stems at their pan (constant power,
    the console's law: ``cos``/``sin`` of ``(pan + 1) pi / 4``)."""
    n = len(sides[0])
    left, right = np.zeros(n), np.zeros(n)
    for s, pan in zip(sides, pans):
        if s.ndim == 2 and s.shape[1] >= 2:
            left += s[:, 0]
            right += s[:, 1]
        else:
            v = s if s.ndim == 1 else s[:, 0]
            th = (float(pan) + 1.0) * math.pi / 4.0
            left += math.cos(th) * v
            right += math.sin(th) * v
    return left, right


def analyse(names: Sequence[str], stems: Sequence[np.ndarray], sample_rate_hz: float, *,
            given_roles: Mapping[str, str] | None = None,
            given_labels: Mapping[str, str] | None = None,
            given_colours: Mapping[str, str] | None = None,
            alignments=None, model=None, progress=None) -> PrepReport:
    """Analyse stems: ``stems[i]`` is ``(frames,)`` or ``(frames, sides)`` for channel
    ``names[i]``, all of one length at ``sample_rate_hz``.

    ``given_roles``/``labels``/``colours``: a person's word per channel name (wins over
    what is recognised).  ``alignments``: a callable ``(mapping name -> mono signal,
    sample_rate_hz) -> list of Alignment`` (``edgemix.automix.prep.align.find_alignments``)
    or None to skip alignment.  ``progress``: called with a short stage name."""
    import time
    t0 = time.monotonic()
    sr = float(sample_rate_hz)
    tell = progress or (lambda stage: None)
    given_roles = dict(given_roles or {})
    arrays = [np.asarray(s, dtype=np.float64) for s in stems]
    mono_sig = np.stack([a if a.ndim == 1 else a.mean(axis=1) for a in arrays], axis=1)
    notes: list[str] = []
    tell("roles")
    try:
        rec_roles, rec_p, feats = recognise_roles(mono_sig.astype(np.float32), sr, model)
    except (OSError, ValueError) as e:             # no shipped model: a note, not a failure
        from edgemix import features as F
        rec_roles, rec_p = ["other"] * len(names), [0.0] * len(names)
        feats = np.tile(F.silence_row(), (len(names), 1))
        notes.append(f"roles not recognised ({str(e).splitlines()[0]}): give them with --params")
    roles = [given_roles.get(n, r) for n, r in zip(names, rec_roles)]
    # alignment (the align helper's estimator) between related mics
    al = {}
    if alignments is not None:
        tell("alignment")
        for a in alignments({n: mono_sig[:, i] for i, n in enumerate(names)}, sr):
            al[a.channel] = a
    corr = {}
    if al:
        from edgemix.automix.prep.align import corrections
        corr = corrections(list(al.values()))
    relations = [_labels.Relation(a.channel, a.aligned_to, a.delay_ms, a.polarity_inverted)
                 for a in al.values() if a.aligned_to and not a.abstained]
    labs = _labels.label_channels(names, roles, relations, given_labels=given_labels,
                                  given_colours=given_colours)
    from edgemix.automix.model_policy import place_pans
    pans = [p for p, _ in place_pans(roles, np.asarray(feats, dtype=np.float64))]
    chans = []
    for i, (n, a) in enumerate(zip(names, arrays)):
        tell(f"clicks {n}")
        sides = [a] if a.ndim == 1 else [a[:, k] for k in range(a.shape[1])]
        cl = [_clicks.detect_clicks(s, sr) for s in sides]
        sil = _silences.find_silences(np.sqrt(np.mean(np.stack(sides) ** 2, axis=0))
                                      if len(sides) > 1 else sides[0], sr)
        c = ChannelFindings(name=n, n_sides=len(sides), label=labs[i],
                            recognised_role=rec_roles[i], role_probability=rec_p[i],
                            role_given=n in given_roles, clicks=cl, silences=sil, pan=pans[i],
                            correction=corr.get(n, (0.0, False)))
        x = al.get(n)
        if x is not None:
            c.confidence = float(x.confidence)
            if x.abstained:
                c.alignment_note = f"no alignment: {x.abstained}"
            else:
                c.aligned_to, c.delay_ms = x.aligned_to, float(x.delay_ms)
                c.polarity_inverted = bool(x.polarity_inverted)
        chans.append(c)
    tell("mono")
    left, right = fold_to_stereo(arrays, pans)
    fold = _mono.mono_fold(left, right, sr)
    pairs = [p for p in _mono.related_pairs(list(names), mono_sig, sr) if p.kind != "related"]
    return PrepReport(sr, mono_sig.shape[0] / sr, chans, fold, pairs,
                      analysis_s=time.monotonic() - t0, notes=notes)


def corrected(signal: np.ndarray, findings: ChannelFindings, sample_rate_hz: float, *,
              gate_silences: bool = True) -> np.ndarray:
    """The fixed copy of one stem: clicks repaired (LSAR), the alignment's correction
    (a delay added and the polarity flipped, as the strip would set them), silences gated
    with fades."""
    x = np.array(signal, dtype=np.float64, copy=True)
    sides = [x] if x.ndim == 1 else [x[:, k] for k in range(x.shape[1])]
    delay_ms, flip = findings.correction
    fixed = []
    for s, cl in zip(sides, findings.clicks):
        y = _clicks.repair_clicks(s, cl) if len(cl) else s
        if flip:
            y = -y
        if delay_ms:
            y = delayed(y, delay_ms * 1e-3 * sample_rate_hz)
        fixed.append(y)
    y = fixed[0] if x.ndim == 1 else np.stack(fixed, axis=1)
    if gate_silences and len(findings.silences):
        y = _silences.gate(y, findings.silences)
    return y


def delayed(x: np.ndarray, samples: float) -> np.ndarray:
    """``x`` made ``samples`` later (fractional: a linear-phase shift in the frequency
    domain over a zero-padded length, so nothing wraps round)."""
    n = len(x)
    pad = int(math.ceil(abs(samples))) + 64
    nfft = 1 << int(math.ceil(math.log2(n + pad)))
    spec = np.fft.rfft(x, nfft)
    f = np.fft.rfftfreq(nfft)
    return np.fft.irfft(spec * np.exp(-2j * np.pi * f * samples), nfft)[:n]
