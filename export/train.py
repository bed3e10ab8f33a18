"""Distillation training of the student: deterministic from a seed, CPU, one thread.

Loss per present channel: the Huber loss (delta ``HUBER_DELTA``) of each parameter's error
in *loss units* -- 1 dB for gains and thresholds, 1/3 octave for frequencies, the ratio and
time constants, 0.1 for pan (:data:`LOSS_UNITS`) -- plus ``role_weight`` x cross-entropy on
the teacher's roles.  Errors in normalised units would weigh a dB of fader (range 100 dB)
less than a dB of EQ gain (range 36 dB); in loss units a dB is a dB wherever it is, and the
Huber loss keeps the few labels no snapshot can predict (a source that has not played yet)
from dominating the fit.
Adam with a cosine learning-rate schedule, mini-batches of sessions.

Quantisation-aware epochs follow the float ones (:func:`_quantisation_aware`): the label
loss is taken on the float model with its weights on their int8 grid, plus
``qat_noise_weight`` x the squared change of its parameters, in units of the int8
tolerance, when every activation gets a uniform error of one int8 step
(:func:`int8_noise_loss`).  The int8 file is held to agree with the float files, and a
label loss alone, whether on rounded activations (straight-through, Jacob et al. 2018) or
not, never asks for that: without the noise term the int8 file stayed 0.66 dB of trim
from the float files at the 99th percentile of held-out channels (worst 2.2 dB), with it
(weight 10) 0.30 dB (worst 0.84 dB).  The label loss is on the float model, the one the
float files ship (on rounded activations instead, 50 such epochs cost about 0.6 dB of
held-out trim accuracy).
Reproducibility:
``torch.manual_seed``, ``torch.use_deterministic_algorithms(True)``, one intra-op thread,
batches drawn from a numpy Generator seeded from the same seed.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from edgemix.features import FEATURE_NAMES
from edgemix.params import MODEL_OUTPUT_SPECS, MODEL_OUTPUTS
from edgemix.roles import ROLE_NAMES
from export.dataset import Dataset
from export.model import DEFAULT_SIZES, Student


@dataclass
class TrainConfig:
    seed: int = 0
    epochs: int = 150
    batch_sessions: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-5
    role_weight: float = 1.0
    #: Quantisation-aware fine-tuning after the float epochs (0: none), at qat_lr, with
    #: activation ranges calibrated on the first qat_calibration_examples examples (None:
    #: all of them; 2048 left the context of single-channel sessions outside its range).
    qat_epochs: int = 0
    qat_lr: float = 3e-4
    qat_calibration_examples: int | None = None
    #: Weight of the int8-robustness term in the quantisation-aware epochs (module
    #: docstring; export.build_models.QAT_NOISE_WEIGHT is the shipped model's).
    qat_noise_weight: float = 0.0
    sizes: dict = field(default_factory=lambda: dict(DEFAULT_SIZES))


@dataclass
class TrainResult:
    weights: dict
    losses: list          # mean training loss per epoch
    seconds: float
    model: Student
    ranges: dict | None = None   # int8 activation ranges the QAT phase trained against


def make_deterministic(seed: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


#: Loss unit per kind of parameter (see the module docstring).
LOSS_UNITS = {"dB": 1.0, "oct": 1.0 / 3.0, "pan": 0.1}
HUBER_DELTA = 1.0


def loss_scales() -> np.ndarray:
    """Per model output: loss units per normalised unit (its schema range in loss units)."""
    out = []
    for spec in MODEL_OUTPUT_SPECS:
        if spec.scale == "log":
            out.append(math.log2(spec.max / spec.min) / LOSS_UNITS["oct"])
        else:
            out.append((spec.max - spec.min) / LOSS_UNITS["pan" if spec.name == "pan" else "dB"])
    return np.asarray(out)


def masked_loss(model: Student, x, m, y, r, role_weight: float, scales=None, outputs=None):
    """(total, parameter Huber loss in loss units, role CE) over present channels
    (``outputs``: the model's ``(params, role_logits)`` for ``x, m`` when already run)."""
    p, logits = model(x, m) if outputs is None else outputs
    if scales is None:
        scales = torch.from_numpy(loss_scales()).float()
    # a channel without teacher labels (NaN: a sampled session not taught) teaches only
    # its role
    labelled = torch.isfinite(y)
    w = m.unsqueeze(-1) * labelled
    y = torch.where(labelled, y, p.detach())
    n = torch.clamp(w.sum(), min=1.0)
    hub = torch.nn.functional.huber_loss(p * scales, y * scales, reduction="none",
                                         delta=HUBER_DELTA)
    param_loss = (hub * w).sum() / n
    present = r >= 0
    ce = torch.nn.functional.cross_entropy(logits[present], r[present]) if present.any() \
        else torch.zeros(())
    return param_loss + role_weight * ce, param_loss, ce


def train(data: Dataset, cfg: TrainConfig = TrainConfig(), progress=None) -> TrainResult:
    """Train a student on ``data``; ``progress(epoch, loss)`` is called once per epoch."""
    make_deterministic(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = Student(len(FEATURE_NAMES), len(MODEL_OUTPUTS), len(ROLE_NAMES),
                    h1=cfg.sizes["H1"], h2=cfg.sizes["H2"], k=cfg.sizes["K"], d=cfg.sizes["D"])
    model.fit_standardisation(data.features, data.mask)
    model.fit_outputs(data.features, data.mask, data.targets01)
    x_all = torch.from_numpy(np.ascontiguousarray(data.features, np.float32))
    m_all = torch.from_numpy(np.ascontiguousarray(data.mask, np.float32))
    y_all = torch.from_numpy(np.ascontiguousarray(data.targets01, np.float32))
    r_all = torch.from_numpy(np.ascontiguousarray(data.roles, np.int64))
    losses = []
    t0 = time.perf_counter()
    tensors = (x_all, m_all, y_all, r_all)
    _run_epochs(model, tensors, cfg, cfg.epochs, cfg.lr, rng, losses, progress)
    ranges = None
    if cfg.qat_epochs:
        model, ranges = _quantisation_aware(model, data, tensors, cfg, rng, losses, progress)
    model.eval()
    weights = model.export_weights(FEATURE_NAMES, MODEL_OUTPUTS, ROLE_NAMES)
    return TrainResult(weights, losses, time.perf_counter() - t0, model, ranges)


def _quantisation_aware(model, data, tensors, cfg, rng, losses, progress):
    """(the final model, the int8 activation ranges) after the quantisation-aware epochs.

    Before them every hidden unit is rescaled to use its int8 tensor's whole range
    (:func:`export.quantize.equalise`, the same function in float); after them the weights
    are rounded to their int8 grid (:func:`export.quantize.round_weights`), so the float
    files carry exactly the int8 file's weights and the two differ only by the rounding of
    activations.  Per-channel int8 rounding of the weights had been the largest single
    source of the int8 file's error (trim 0.76 dB at the 99th percentile of held-out
    channels, of 1.26 dB in all).  The ranges are calibrated again on the final weights,
    so the per-output head ranges are the exact ones of the model that ships.
    """
    from export.quantize import calibrate, equalise, round_weights
    n_cal = len(data) if cfg.qat_calibration_examples is None else min(
        cfg.qat_calibration_examples, len(data))
    cal = data.features[:n_cal], data.mask[:n_cal]
    names = FEATURE_NAMES, MODEL_OUTPUTS, ROLE_NAMES
    model = Student.from_weights(equalise(model.export_weights(*names), *cal))
    model.set_fake_quant(calibrate(model.export_weights(*names), *cal))
    model.activations = "float"  # the label loss sees the float files' model
    _run_epochs(model, tensors, cfg, cfg.qat_epochs, cfg.qat_lr, rng, losses, progress)
    model.set_fake_quant(None)
    weights = round_weights(model.export_weights(*names))
    final = Student.from_weights(weights)
    final.project_enc1 = False      # the rounded weights as they are (Student.enc1_weight)
    return final, calibrate(weights, *cal)


def int8_loss_scales() -> np.ndarray:
    """Per model output: int8 tolerance units (export.verify.INT8_TOL_UNITS) per
    normalised unit, the units :func:`export.verify.unit_errors` measures in."""
    from export.verify import INT8_TOL_UNITS
    return np.asarray([(math.log2(s.max / s.min) if s.scale == "log" else s.max - s.min)
                       / INT8_TOL_UNITS[s.name] for s in MODEL_OUTPUT_SPECS])


def int8_noise_loss(model: Student, x, m, scales, p_float) -> torch.Tensor:
    """Mean squared change of the parameters ``p_float`` (present channels, int8 tolerance
    units) when every activation gets a uniform error of one int8 step: the expected
    int8-vs-float error, with real gradients (rounding has none; Baskin et al. 2018,
    "NICE: noise injection and clamping estimation for neural network quantization")."""
    before, model.activations = model.activations, "noise"
    p_noise, _ = model(x, m)
    model.activations = before
    w = m.unsqueeze(-1)
    err = ((p_noise - p_float) * scales) ** 2
    return (err * w).sum() / (torch.clamp(m.sum(), min=1.0) * p_noise.shape[-1])


def _run_epochs(model, tensors, cfg, epochs, lr, rng, losses, progress):
    """Adam with a cosine schedule from ``lr`` to 0 over ``epochs``."""
    x_all, m_all, y_all, r_all = tensors
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    scales = torch.from_numpy(loss_scales()).float()
    noise = cfg.qat_noise_weight if getattr(model, "_qparams", None) is not None else 0.0
    noise_scales = torch.from_numpy(int8_loss_scales()).float()
    n = x_all.shape[0]
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_sessions))
    total_steps = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total_steps) / total_steps)))
    for _ in range(epochs):
        order = rng.permutation(n)
        total = 0.0
        for s in range(steps_per_epoch):
            idx = torch.from_numpy(order[s * cfg.batch_sessions:(s + 1) * cfg.batch_sessions])
            out = model(x_all[idx], m_all[idx])
            loss, _, _ = masked_loss(model, x_all[idx], m_all[idx], y_all[idx], r_all[idx],
                                     cfg.role_weight, scales, out)
            if noise:
                loss = loss + noise * int8_noise_loss(model, x_all[idx], m_all[idx],
                                                      noise_scales, out[0])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
        if progress is not None:
            progress(len(losses) - 1, losses[-1])


def predict_torch(model: Student, features: np.ndarray, mask: np.ndarray):
    """The training side's outputs for a batch (float32), used for golden I/O."""
    with torch.no_grad():
        p, r = model(torch.from_numpy(np.asarray(features, np.float32)),
                     torch.from_numpy(np.asarray(mask, np.float32)))
    return p.numpy(), r.numpy()
