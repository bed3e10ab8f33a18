"""The student network in PyTorch, for training; its weights go out as the runtime ``.npz``.

The architecture is the one written out in :mod:`edgemix.infer.weights` (the runtime's
numpy reference): a per-channel MLP shared by all channels, a masked mean/max pool over
channels (DeepSets, Zaheer et al. 2017; PointNet, Qi et al. 2017) that forms a mix
context, added back to every channel before the parameter and role heads.  Every op maps
to a TFLite builtin (FullyConnected, Mul, Add, Sum, ReduceMax, Concatenation, Maximum, Minimum),
so :mod:`export.tflite_export` can write it by hand.

Sizes default to 48 units per layer: about 15k parameters, well under the 50k budget
(32 units measured slightly worse on held-out teacher labels, 48 vs 32: trim MAE 3.6 vs
4.0 dB, fader 1.8 vs 2.0 dB).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgemix.infer.weights import WEIGHT_NAMES, Z_LIMIT, n_parameters, sizes_of

#: Default layer sizes (see the layout in edgemix.infer.weights).
DEFAULT_SIZES = {"H1": 48, "H2": 48, "K": 48, "D": 48}
#: Quantiles of the training labels (minus the skip) each output's span covers, the margin
#: added on each side (a share of that range) and the narrowest span allowed (0..1 units).
OUTPUT_QUANTILES = (0.01, 0.995)
OUTPUT_MARGIN = 0.1
MIN_SPAN_01 = 0.02
#: Where a feature stops carrying mixing information (feature units; ``None``: the
#: training set's own min or max).  The network sees each feature clipped to this range,
#: mapped onto -1..1 (:meth:`Student.fit_standardisation`), so its int8 step is the
#: range / 255: a band level's was 0.39 dB over -100..0 dB.  See docs/design-notes.md,
#: "The int8 graph".
INPUT_LIMITS = {
    # a band more than 60 dB below the channel's own power adds nothing audible to the
    # channel's sound in the mix (2.6 % of the played channels' bands lie below it; the
    # rest of the -100..-60 dB range held only the floor of channels that have not played).
    # Measured on the held-out labels: trim 1.44 -> 1.38 dB, send 0.94 -> 0.74 dB mean
    # error; -50 dB and limits on the masking and relative-loudness features cost up to
    # 0.35 dB of trim (docs/design-notes.md, "The int8 graph")
    "band*_rel_db": (-60.0, None),
}


#: The channel's absolute levels: a preamp gain of g dB moves every one of them by g.  The
#: network sees only their differences (the first layer's weights are projected so that
#: the same shift of all of them moves no hidden unit, :meth:`Student.enc1_weight`), over a
#: fixed range that no gain pushes past the -1..1 clip: what it recognises and proposes
#: does not depend on the input trim; the trim's skip reads the raw loudness.
LEVEL_FEATURES = ("loudness_st_lufs", "loudness_active_lufs", "rms_st_dbfs", "peak_st_dbfs")
LEVEL_RANGE_DB = (-100.0, 20.0)
#: Features the network does not see (standardised to a constant 0): the raw mix context
#: (each channel's band power over the others', its loudness over the others') moves with
#: every channel's preamp gain, and the teacher balances after gain staging, where those
#: raw ratios are undone; the pooled context of the level-free per-channel features
#: carries the staged mix instead.
UNSEEN_FEATURES = ("mask*", "rel_loudness_lu")


def _matching(patterns) -> np.ndarray:
    from fnmatch import fnmatchcase
    from edgemix.features import FEATURE_NAMES
    return np.array([any(fnmatchcase(n, p) for p in patterns) for n in FEATURE_NAMES])


def input_limits() -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) limit per feature of FEATURE_NAMES (-inf / +inf where none)."""
    from fnmatch import fnmatchcase
    from edgemix.features import FEATURE_NAMES
    lo = np.full(len(FEATURE_NAMES), -np.inf)
    hi = np.full(len(FEATURE_NAMES), np.inf)
    for i, name in enumerate(FEATURE_NAMES):
        for pattern, (a, b) in INPUT_LIMITS.items():
            if fnmatchcase(name, pattern):
                lo[i] = -np.inf if a is None else a
                hi[i] = np.inf if b is None else b
    return lo, hi


class Student(nn.Module):
    """features (B, C, F), mask (B, C) -> params01 (B, C, P), role_logits (B, C, R)."""

    def __init__(self, n_features: int, n_outputs: int, n_roles: int,
                 h1: int = DEFAULT_SIZES["H1"], h2: int = DEFAULT_SIZES["H2"],
                 k: int = DEFAULT_SIZES["K"], d: int = DEFAULT_SIZES["D"]):
        super().__init__()
        # standardisation constants, fitted on the training set (not trained)
        self.register_buffer("in_scale", torch.ones(n_features))
        self.register_buffer("in_shift", torch.zeros(n_features))
        self.enc1 = nn.Linear(n_features, h1)
        self.enc2 = nn.Linear(h1, h2)
        self.ctx = nn.Linear(2 * h2, k)
        self.mix = nn.Linear(h2, d)
        self.mix_ctx = nn.Linear(k, d, bias=False)  # the mix bias lives in self.mix
        self.param_head = nn.Linear(d, n_outputs)
        self.role_head = nn.Linear(d, n_roles)
        # output skip and span (fitted, not trained; see fit_outputs)
        self.register_buffer("skip_w", torch.zeros(n_features, n_outputs))
        self.register_buffer("skip_b", torch.zeros(n_outputs))
        self.register_buffer("out_span", torch.ones(n_outputs))

    def fit_standardisation(self, features: np.ndarray, mask: np.ndarray) -> None:
        """Map each feature's range (present channels) onto -1..1, the range the network
        clips its input to (``edgemix.infer.weights.Z_LIMIT``).

        The range is the training set's exact min..max, narrowed to the feature's
        :func:`input_limits` where it has them.  A min-max rather than a z-score: with every
        feature on the same -1..1 scale one int8 scale fits them all in the quantised model
        (a z-score leaves heavy-tailed features at +-10 and coarsens the shared scale for
        the rest), and the int8 step of a feature is its range / 255 (see
        :data:`INPUT_LIMITS`).
        Level features (:data:`LEVEL_FEATURES`) get the fixed ``LEVEL_RANGE_DB``; the
        unseen ones (:data:`UNSEEN_FEATURES`) scale 0, shift 0.
        """
        rows = features[mask > 0].astype(np.float64)
        lim_lo, lim_hi = input_limits()
        lo = np.maximum(rows.min(axis=0), lim_lo)
        hi = np.minimum(rows.max(axis=0), lim_hi)
        level = _matching(LEVEL_FEATURES)
        lo[level], hi[level] = LEVEL_RANGE_DB
        half = 0.5 * (hi - lo)
        half = np.where(half > 1e-6, half, 1.0)  # a constant feature passes through centred
        scale, shift = 1.0 / half, -0.5 * (hi + lo) / half
        unseen = _matching(UNSEEN_FEATURES)
        scale[unseen], shift[unseen] = 0.0, 0.0
        self.in_scale.copy_(torch.from_numpy(scale).float())
        self.in_shift.copy_(torch.from_numpy(shift).float())

    def level_direction(self) -> torch.Tensor:
        """How the standardised input moves per dB of preamp gain: ``in_scale`` on the
        level features, 0 elsewhere (unit length)."""
        from edgemix.features import N_FEATURES
        if self.in_scale.numel() != N_FEATURES:      # a model of other inputs (tests)
            return torch.zeros_like(self.in_scale)
        v = self.in_scale * torch.from_numpy(_matching(LEVEL_FEATURES).astype(np.float32))
        return v / torch.clamp(torch.linalg.vector_norm(v), min=1e-12)

    def enc1_weight(self) -> torch.Tensor:
        """The first layer's weights with their component along :meth:`level_direction`
        removed (``W - (W v) v^T``): a gain moves no hidden unit.  A model made from
        final (int8-grid) weights (``project_enc1 = False``) keeps them as they are: the
        float files carry exactly the int8 file's weights, the projection's residue is
        the rounding's."""
        w = self.enc1.weight
        if not getattr(self, "project_enc1", True):
            return w
        v = self.level_direction()
        return w - torch.outer(w @ v, v)

    def fit_outputs(self, features: np.ndarray, mask: np.ndarray,
                    targets01: np.ndarray) -> None:
        """The skip and each output's span, from the training labels.

        Skip (a residual, He et al. 2016): the trim column gets the gain-staging answer
        ``TRIM_TARGET_LUFS - loudness_active_lufs`` (the rule policy's, from the feature the
        network sees), so the network learns only the correction (how the teacher's playing
        level differs from the snapshot's gated loudness, by role and activity).
        Span: the head's output ``u`` = 0..1 covers the central ``OUTPUT_QUANTILES`` of
        what is left for it to predict (label minus skip), widened by ``OUTPUT_MARGIN`` of
        that range on each side, within 0..1.  A narrower span is a finer int8 step (256
        steps over the span instead of the whole schema range) and puts every output on
        the same footing for training; the head's bias starts at the span's middle.
        """
        from edgemix.automix.rules import TRIM_TARGET_LUFS
        from edgemix.features import FEATURE_INDEX, FLOOR_DB
        from edgemix.params import CHANNEL_SPECS, MODEL_OUTPUTS
        trim = MODEL_OUTPUTS.index("trim_db")
        spec = CHANNEL_SPECS["trim_db"]
        span_db = spec.max - spec.min
        skip_w = np.zeros(tuple(self.skip_w.shape))
        skip_b = np.zeros(skip_w.shape[1])
        # trim01 = (TRIM_TARGET_LUFS - lact - min) / span: linear in the feature
        skip_w[FEATURE_INDEX["loudness_active_lufs"], trim] = -1.0 / span_db
        skip_b[trim] = (TRIM_TARGET_LUFS - spec.min) / span_db
        # channels that have played in the snapshot: for one that has not, the skip has
        # nothing to say, and its labels must not stretch every span
        lact = features[..., FEATURE_INDEX["loudness_active_lufs"]]
        present = (mask > 0) & (lact > FLOOR_DB) & np.isfinite(targets01).all(axis=-1)
        x = features[present].astype(np.float64)
        rest = targets01[present].astype(np.float64) - (x @ skip_w + skip_b)
        if not len(rest):   # no labelled channel (a roles-only set): the whole range
            rest = np.stack([np.zeros(skip_w.shape[1]), np.ones(skip_w.shape[1])])
        lo, hi = np.quantile(rest, OUTPUT_QUANTILES, axis=0)
        margin = OUTPUT_MARGIN * (hi - lo)
        lo = np.maximum(lo - margin, np.where(skip_w.any(axis=0), -1.0, 0.0))
        hi = np.minimum(hi + margin, 1.0)
        span = np.maximum(hi - lo, MIN_SPAN_01)
        self.skip_w.copy_(torch.from_numpy(skip_w).float())
        self.skip_b.copy_(torch.from_numpy(skip_b + lo).float())
        self.out_span.copy_(torch.from_numpy(span).float())
        with torch.no_grad():
            self.param_head.bias.fill_(0.5)

    def head(self, u: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """params01 from the head's linear output ``u``: skip + span * u, clamped to 0..1."""
        return torch.clamp(features @ self.skip_w + self.skip_b + self.out_span * u, 0.0, 1.0)

    # ---- quantisation-aware training ----------------------------------------------------
    def set_fake_quant(self, ranges: dict | None) -> None:
        """Simulate the int8 TFLite graph in ``forward`` (None: plain float32).

        ``ranges`` are calibrated activation ranges (:func:`export.quantize.calibrate`);
        activations are rounded to their int8 grid and weights to per-channel symmetric
        int8 at the same points as :mod:`export.tflite_export`, with straight-through
        gradients (Jacob et al. 2018, "Quantization and training of neural networks for
        efficient integer-arithmetic-only inference").  ``self.activations`` = "round"
        (the default) is the int8 graph; "noise" adds a uniform error of one int8 step
        instead of rounding (differentiable, so the outputs' sensitivity to the rounding
        can be trained down: Baskin et al. 2018, NICE); "float" leaves the activations
        alone (the weights stay on their int8 grid).  See export/train.py.
        """
        from export.quantize import HEAD, activation_qparams
        self.activations = "round"
        self._qparams = None if ranges is None else {
            k: activation_qparams(*v) for k, v in ranges.items() if k != HEAD}
        # the parameter head has one range per output (export.quantize.fold_head_ranges)
        self._head = None if ranges is None else tuple(
            torch.from_numpy(np.asarray(v, np.float64)).float() for v in ranges[HEAD])

    def _fq(self, name: str, x: torch.Tensor, fixed=None) -> torch.Tensor:
        q = getattr(self, "_qparams", None)
        if q is None or self.activations == "float":
            return x
        if name == "param_logits":
            # u = lo + (hi - lo) * u01, u01 on the int8 grid of 0..1 (256 steps per output)
            lo, hi = self._head
            if self.activations == "noise":
                return x + (torch.rand_like(x) - 0.5) * (hi - lo) / 255.0
            u01 = torch.clamp(torch.round((x - lo) / (hi - lo) * 255.0), 0.0, 255.0) / 255.0
            return x + (lo + (hi - lo) * u01 - x).detach()
        scale, zp = fixed if fixed is not None else q[name]
        if self.activations == "noise":
            return x + (torch.rand_like(x) - 0.5) * scale
        y = (torch.clamp(torch.round(x / scale) + zp, -128.0, 127.0) - zp) * scale
        return x + (y - x).detach()

    def _linear(self, x: torch.Tensor, layer: nn.Linear, bias=True) -> torch.Tensor:
        w = self.enc1_weight() if layer is self.enc1 else layer.weight
        if getattr(self, "_qparams", None) is not None:
            s = torch.clamp(w.detach().abs().amax(dim=1, keepdim=True) / 127.0, min=1e-30)
            w = w + (torch.clamp(torch.round(w / s), -127.0, 127.0) * s - w).detach()
        return nn.functional.linear(x, w, layer.bias if bias else None)

    def forward(self, features: torch.Tensor, mask: torch.Tensor):
        fq, lin = self._fq, self._linear
        m = mask.unsqueeze(-1)                                         # (B, C, 1)
        z = fq("z", torch.clamp(features * self.in_scale + self.in_shift, -Z_LIMIT, Z_LIMIT))
        h1 = fq("h1", torch.relu(lin(z, self.enc1)))
        h2 = fq("h2", torch.relu(lin(h1, self.enc2)))                  # (B, C, H2)
        mean_w = fq("mean_w", m / torch.clamp(m.sum(dim=1, keepdim=True), min=1.0))
        pooled_mean = fq("pool_mean", fq("h2_weighted", h2 * mean_w).sum(dim=1))  # (B, H2)
        pooled_max = (h2 * m).amax(dim=1)                              # h2 >= 0: masked max
        ctx = fq("ctx", torch.relu(lin(torch.cat([pooled_mean, pooled_max], dim=-1), self.ctx)))
        if getattr(self, "_qparams", None) is None:
            ctx_row = lin(ctx, self.mix_ctx) + self.mix.bias
            g = torch.relu(lin(h2, self.mix, bias=False) + ctx_row.unsqueeze(1))  # (B, C, D)
        else:
            # the int8 graph's fused layer: [h2, ctx] @ [mix_w; mix_ctx_w] + mix_b, one
            # weight scale per output unit over both blocks (export/tflite_export.py)
            w = torch.cat([self.mix.weight, self.mix_ctx.weight], dim=1)
            s = torch.clamp(w.detach().abs().amax(dim=1, keepdim=True) / 127.0, min=1e-30)
            w = w + (torch.clamp(torch.round(w / s), -127.0, 127.0) * s - w).detach()
            hc = torch.cat([h2, ctx.unsqueeze(1).expand(-1, h2.shape[1], -1)], dim=-1)
            g = fq("g", torch.relu(nn.functional.linear(hc, w, self.mix.bias)))
        params = self.head(fq("param_logits", lin(g, self.param_head)), features)
        return params, fq("role_logits", lin(g, self.role_head))

    @classmethod
    def from_weights(cls, weights: dict) -> "Student":
        """A Student carrying a runtime weight dict (the inverse of :meth:`export_weights`)."""
        s = sizes_of(weights)
        net = cls(s["F"], s["P"], s["R"], h1=s["H1"], h2=s["H2"], k=s["K"], d=s["D"])
        f = lambda k, transpose=False: torch.from_numpy(np.ascontiguousarray(  # noqa: E731
            np.asarray(weights[k], np.float32).T if transpose else weights[k], np.float32))
        with torch.no_grad():
            for buf in ("in_scale", "in_shift", "skip_w", "skip_b", "out_span"):
                getattr(net, buf).copy_(f(buf))
            for layer, key in (("enc1", "enc1"), ("enc2", "enc2"), ("ctx", "ctx"),
                               ("mix", "mix"), ("param_head", "param"), ("role_head", "role")):
                getattr(net, layer).weight.copy_(f(f"{key}_w", transpose=True))
                getattr(net, layer).bias.copy_(f(f"{key}_b"))
            net.mix_ctx.weight.copy_(f("mix_ctx_w", transpose=True))
        return net

    def export_weights(self, feature_names, output_names, role_names) -> dict:
        """The runtime weight dict (matrices ``(in, out)``) plus the I/O names."""
        t = lambda a: a.detach().cpu().numpy().astype(np.float32)  # noqa: E731
        w = {
            "in_scale": t(self.in_scale), "in_shift": t(self.in_shift),
            "enc1_w": t(self.enc1_weight()).T, "enc1_b": t(self.enc1.bias),
            "enc2_w": t(self.enc2.weight).T, "enc2_b": t(self.enc2.bias),
            "ctx_w": t(self.ctx.weight).T, "ctx_b": t(self.ctx.bias),
            "mix_w": t(self.mix.weight).T, "mix_ctx_w": t(self.mix_ctx.weight).T,
            "mix_b": t(self.mix.bias),
            "param_w": t(self.param_head.weight).T, "param_b": t(self.param_head.bias),
            "role_w": t(self.role_head.weight).T, "role_b": t(self.role_head.bias),
            "skip_w": t(self.skip_w), "skip_b": t(self.skip_b), "out_span": t(self.out_span),
        }
        w = {k: np.ascontiguousarray(w[k]) for k in WEIGHT_NAMES}
        w["feature_names"] = list(feature_names)
        w["output_names"] = list(output_names)
        w["role_names"] = list(role_names)
        return w


def count_parameters(weights: dict) -> int:
    """Trainable parameters of an exported weight dict."""
    return n_parameters(weights)
