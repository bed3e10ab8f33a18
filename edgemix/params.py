"""The parameter schema: every console parameter, once.

This module is the single source of truth (DESIGN.md contract 1).  Each parameter has a
name that carries its unit (``_db``, ``_hz``, ``_ms``, ``_s``, ``_dbtp``; ``pan`` is -1 left
.. +1 right, ``_q`` and ``_ratio`` are dimensionless, ``_on``/``_pre``/``_invert`` are
switches), a range, a scale (``lin``, ``log``, ``bool`` or ``choice``), a default and a
smoothing time.  The DSP kernels read parameters from arrays whose columns are the indices
defined here; the model's output head is normalised 0..1 through :meth:`ParamSpec.to_norm`;
config files, remote control and the explanations all read names, ranges and units from
here.  Nothing else restates a range.

Defaults are neutral: a console built with defaults passes audio at unity gain, centred,
with every processor transparent (HPF at 20 Hz, EQ gains 0 dB, ratio 1:1, gate off).

The model's output head (``MODEL_OUTPUTS``) is the subset of channel parameters the model
predicts; everything else stays with the user or the policy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterable, Mapping

import numpy as np

SCALES = ("lin", "log", "bool", "choice")

#: Gains at or below this many dB are treated as -inf (the fader's "off" position).
OFF_DB = -90.0

#: Longest per-channel input delay (``delay_ms``), and so the alignment search range.
MAX_DELAY_MS = 30.0

# --- Limits: the one place every module reads a rate, block or channel limit from ----
#: Sample rates a session runs at: the standard rates the feature extractor (and so the
#: policies and the model that listen through it) supports.  Its spectrum and K-weighting
#: need 32 kHz and up; the console alone runs at :data:`CONSOLE_SAMPLE_RATE_RANGE_HZ`.
SAMPLE_RATES_HZ = (32000, 44100, 48000, 88200, 96000)
#: The feature extractor's range (``features.FeatureExtractor``).
FEATURE_SAMPLE_RATE_RANGE_HZ = (32000.0, 192000.0)
#: The console engine's range (``console.Console``): its filters are designed at any rate.
CONSOLE_SAMPLE_RATE_RANGE_HZ = (8000.0, 384000.0)
#: Block sizes a session may ask for (JACK and most ALSA drivers use powers of two).
BLOCK_SIZES = (16, 32, 64, 128, 256, 512, 1024, 2048)
#: Largest block a console may be built for (frames); larger calls are split internally.
CONSOLE_MAX_BLOCK = 8192
#: Strips one console can hold.
CONSOLE_MAX_CHANNELS = 256
#: Channels the model sees at once (its fixed input shape; fewer are handled by the mask).
#: A session with more channels than this cannot run the model policy.
MODEL_MAX_CHANNELS = 32

#: Aux sends per channel that the schema provides columns for.  Aux 1 feeds the reverb
#: (the FX bus); aux 2.. are mono outputs such as monitor mixes.
MAX_AUX = 4


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name with unit, range, scale, default, smoothing and a sentence."""

    name: str
    min: float
    max: float
    default: float
    scale: str = "lin"
    smoothing_ms: float = 0.0
    doc: str = ""
    choices: tuple = ()

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"{self.name}: scale must be one of {SCALES}")
        if not self.min <= self.default <= self.max:
            raise ValueError(f"{self.name}: default {self.default} outside [{self.min}, {self.max}]")
        if self.scale == "log" and self.min <= 0:
            raise ValueError(f"{self.name}: a log scale needs a positive minimum")
        if self.scale == "choice" and self.default not in self.choices:
            raise ValueError(f"{self.name}: default {self.default} is not one of {self.choices}")

    def clip(self, value):
        """Clamp to the range (and snap switches and choices to a legal value)."""
        v = np.clip(np.asarray(value, dtype=np.float64), self.min, self.max)
        if self.scale == "bool":
            v = np.where(v >= 0.5, 1.0, 0.0)
        elif self.scale == "choice":
            c = np.asarray(self.choices, dtype=np.float64)
            v = c[np.argmin(np.abs(v[..., None] - c), axis=-1)]
        return v if v.ndim else float(v)

    def to_norm(self, value):
        """Map a value in units to 0..1 along the parameter's scale."""
        v = np.asarray(self.clip(value), dtype=np.float64)
        if self.scale == "log":
            u = np.log(v / self.min) / math.log(self.max / self.min)
        else:
            u = (v - self.min) / (self.max - self.min)
        return u if u.ndim else float(u)

    def from_norm(self, u):
        """Map 0..1 back to units (clamped; switches and choices snapped)."""
        u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
        if self.scale == "log":
            v = self.min * np.exp(u * math.log(self.max / self.min))
        else:
            v = self.min + u * (self.max - self.min)
        return self.clip(v)

    def check(self, value, where: str = "") -> float:
        """Validate a user-supplied value; raise ValueError naming the fix."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}{self.name} = {value!r}: expected a number") from None
        if not math.isfinite(v) or v < self.min or v > self.max:
            raise ValueError(
                f"{where}{self.name} = {value!r} is out of range: use {self.min:g} .. {self.max:g}")
        if self.scale == "choice" and v not in self.choices:
            raise ValueError(f"{where}{self.name} = {value!r}: use one of "
                             + ", ".join(f"{c:g}" for c in self.choices))
        if self.scale == "bool" and v not in (0.0, 1.0):
            raise ValueError(f"{where}{self.name} = {value!r}: use true/false (1/0)")
        return v


def _p(*args, **kw) -> ParamSpec:
    return ParamSpec(*args, **kw)


# Smoothing times: gains move over 20 ms (short enough to follow a fader, long enough that
# a 0 -> -90 dB jump is click-free); filter parameters over 50 ms at the control rate.
_GAIN_MS = 20.0
_FILTER_MS = 50.0

CHANNEL_PARAMS: tuple[ParamSpec, ...] = (
    # input stage
    _p("trim_db", -40.0, 40.0, 0.0, "lin", _GAIN_MS, "input trim (gain staging)"),
    _p("polarity_invert", 0.0, 1.0, 0.0, "bool", _GAIN_MS, "invert polarity"),
    # high-pass (RBJ cookbook HPF, Q = 1/sqrt(2) per section: Butterworth 12 / 24 dB/oct)
    _p("hpf_on", 0.0, 1.0, 1.0, "bool", _GAIN_MS, "high-pass filter in circuit"),
    _p("hpf_hz", 10.0, 1000.0, 20.0, "log", _FILTER_MS, "high-pass corner frequency"),
    _p("hpf_slope_db_oct", 12.0, 24.0, 24.0, "choice", 0.0, "high-pass slope", (12.0, 24.0)),
    # 4-band parametric EQ: 1 low shelf, 2 and 3 peaking, 4 high shelf (RBJ cookbook)
    _p("eq_on", 0.0, 1.0, 1.0, "bool", _GAIN_MS, "parametric EQ in circuit"),
    _p("eq1_hz", 20.0, 2000.0, 100.0, "log", _FILTER_MS, "band 1 (low shelf) frequency"),
    _p("eq1_gain_db", -18.0, 18.0, 0.0, "lin", _FILTER_MS, "band 1 (low shelf) gain"),
    _p("eq1_q", 0.3, 2.0, 0.707, "log", _FILTER_MS, "band 1 (low shelf) Q"),
    _p("eq2_hz", 40.0, 8000.0, 400.0, "log", _FILTER_MS, "band 2 (peaking) frequency"),
    _p("eq2_gain_db", -18.0, 18.0, 0.0, "lin", _FILTER_MS, "band 2 (peaking) gain"),
    _p("eq2_q", 0.3, 10.0, 1.0, "log", _FILTER_MS, "band 2 (peaking) Q"),
    _p("eq3_hz", 200.0, 16000.0, 2500.0, "log", _FILTER_MS, "band 3 (peaking) frequency"),
    _p("eq3_gain_db", -18.0, 18.0, 0.0, "lin", _FILTER_MS, "band 3 (peaking) gain"),
    _p("eq3_q", 0.3, 10.0, 1.0, "log", _FILTER_MS, "band 3 (peaking) Q"),
    _p("eq4_hz", 1000.0, 20000.0, 8000.0, "log", _FILTER_MS, "band 4 (high shelf) frequency"),
    _p("eq4_gain_db", -18.0, 18.0, 0.0, "lin", _FILTER_MS, "band 4 (high shelf) gain"),
    _p("eq4_q", 0.3, 2.0, 0.707, "log", _FILTER_MS, "band 4 (high shelf) Q"),
    # gate / downward expander with hysteresis and hold
    _p("gate_on", 0.0, 1.0, 0.0, "bool", _GAIN_MS, "gate/expander in circuit"),
    _p("gate_threshold_db", -90.0, 0.0, -60.0, "lin", 0.0, "gate opening threshold (dBFS)"),
    _p("gate_hysteresis_db", 0.0, 20.0, 4.0, "lin", 0.0, "close this far below the threshold"),
    _p("gate_range_db", 0.0, 90.0, 40.0, "lin", 0.0, "attenuation when closed"),
    _p("gate_ratio", 1.0, 100.0, 100.0, "log", 0.0, "expansion ratio below threshold (100 = gate)"),
    _p("gate_attack_ms", 0.05, 50.0, 0.5, "log", 0.0, "gate opening time constant"),
    _p("gate_hold_ms", 0.0, 2000.0, 50.0, "lin", 0.0, "hold open after the signal drops"),
    _p("gate_release_ms", 5.0, 4000.0, 150.0, "log", 0.0, "gate closing time constant"),
    # compressor (feed-forward, log-domain detector; Giannoulis, Massberg & Reiss 2012)
    _p("comp_on", 0.0, 1.0, 1.0, "bool", _GAIN_MS, "compressor in circuit"),
    _p("comp_threshold_db", -60.0, 0.0, -20.0, "lin", 0.0, "compressor threshold (dBFS)"),
    _p("comp_ratio", 1.0, 20.0, 1.0, "log", 0.0, "compression ratio (1 = off)"),
    _p("comp_knee_db", 0.0, 24.0, 6.0, "lin", 0.0, "soft-knee width"),
    _p("comp_attack_ms", 0.1, 200.0, 10.0, "log", 0.0, "attack time constant"),
    _p("comp_release_ms", 10.0, 2000.0, 150.0, "log", 0.0, "release time constant"),
    _p("comp_makeup_db", 0.0, 24.0, 0.0, "lin", _GAIN_MS, "make-up gain"),
    _p("comp_detector_rms", 0.0, 1.0, 0.0, "bool", 0.0, "RMS detector instead of peak"),
    _p("comp_rms_ms", 1.0, 100.0, 10.0, "log", 0.0, "RMS detector averaging time"),
    # gain-sharing automixer membership (speech)
    _p("automix_on", 0.0, 1.0, 0.0, "bool", 0.0, "channel takes part in gain sharing"),
    _p("automix_weight_db", -12.0, 12.0, 0.0, "lin", 0.0, "gain-sharing weight (priority)"),
    # output
    _p("fader_db", OFF_DB, 10.0, 0.0, "lin", _GAIN_MS, "channel fader (-90 = off)"),
    _p("mute_on", 0.0, 1.0, 0.0, "bool", _GAIN_MS, "channel mute"),
    _p("pan", -1.0, 1.0, 0.0, "lin", _GAIN_MS, "constant-power pan, -1 left .. +1 right"),
) + tuple(
    spec
    for k in range(1, MAX_AUX + 1)
    for spec in (
        _p(f"aux{k}_send_db", OFF_DB, 10.0, OFF_DB, "lin", _GAIN_MS,
           f"send level to aux {k}" + (" (the reverb)" if k == 1 else "")),
        # aux 1 (reverb) is post-fader by default, monitor sends pre-fader
        _p(f"aux{k}_pre", 0.0, 1.0, 0.0 if k == 1 else 1.0, "bool", 0.0,
           f"aux {k} send taken before the fader"),
    )
) + (
    # Time alignment between mics of one source (a fractional delay at the strip's input,
    # beside polarity).  Last in the schema, so every older column keeps its index.  A
    # change is crossfaded from the old delay to the new one over ``smoothing_ms`` (a
    # moving read pointer would sweep the pitch); 30 ms covers a room mic 10 m away.
    _p("delay_ms", 0.0, MAX_DELAY_MS, 0.0, "lin", _GAIN_MS,
       "input delay (time alignment to another mic of the same source)"),
)

MASTER_PARAMS: tuple[ParamSpec, ...] = (
    # FX bus: stereo reverb (aux 1) and its return
    _p("reverb_predelay_ms", 0.0, 200.0, 20.0, "lin", 0.0, "reverb pre-delay"),
    _p("reverb_decay_s", 0.2, 10.0, 1.8, "log", 0.0, "reverb RT60 at mid frequencies"),
    _p("reverb_damping_hz", 1000.0, 20000.0, 6000.0, "log", 0.0,
       "frequency above which the tail decays faster"),
    _p("reverb_lowcut_hz", 20.0, 1000.0, 150.0, "log", 0.0, "reverb input high-pass"),
    _p("reverb_return_db", OFF_DB, 10.0, 0.0, "lin", _GAIN_MS, "reverb return level"),
    # gain-sharing automixer (Dugan)
    _p("automix_max_open", 1.0, 64.0, 64.0, "lin", 0.0, "most mics open at once (NOM limit)"),
    _p("automix_last_hold_on", 0.0, 1.0, 1.0, "bool", 0.0, "hold the last talker's mic open"),
    _p("automix_detector_ms", 1.0, 500.0, 50.0, "log", 0.0, "level detector averaging time"),
    # master
    _p("master_fader_db", OFF_DB, 10.0, 0.0, "lin", _GAIN_MS, "master fader"),
    _p("limiter_on", 0.0, 1.0, 1.0, "bool", 0.0, "master limiter in circuit"),
    _p("limiter_ceiling_dbtp", -12.0, 0.0, -1.0, "lin", 0.0, "true-peak ceiling"),
    _p("limiter_release_ms", 1.0, 1000.0, 100.0, "log", 0.0, "limiter release time constant"),
)

#: Channel parameters the model predicts (its output head, normalised 0..1 in this order).
MODEL_OUTPUTS: tuple[str, ...] = (
    "trim_db", "hpf_hz",
    "eq1_gain_db", "eq2_hz", "eq2_gain_db", "eq3_hz", "eq3_gain_db", "eq4_gain_db",
    "comp_threshold_db", "comp_ratio", "comp_attack_ms", "comp_release_ms", "comp_makeup_db",
    "fader_db", "pan", "aux1_send_db",
)


def _index_tuple(specs: Iterable[ParamSpec], typename: str):
    """Column indices by name as a named tuple: Numba reads a global one as constants."""
    from collections import namedtuple
    names = [s.name for s in specs]
    return namedtuple(typename, names)(*range(len(names)))


#: ``CH.trim_db`` etc.: column of each channel parameter in a ``(channels, N_CH)`` array.
CH = _index_tuple(CHANNEL_PARAMS, "ChannelParamIndex")
#: ``MS.master_fader_db`` etc.: index of each master/bus parameter in an ``(N_MS,)`` array.
MS = _index_tuple(MASTER_PARAMS, "MasterParamIndex")
N_CH = len(CHANNEL_PARAMS)
N_MS = len(MASTER_PARAMS)

CHANNEL_SPECS: Mapping[str, ParamSpec] = MappingProxyType({s.name: s for s in CHANNEL_PARAMS})
MASTER_SPECS: Mapping[str, ParamSpec] = MappingProxyType({s.name: s for s in MASTER_PARAMS})
MODEL_OUTPUT_SPECS: tuple[ParamSpec, ...] = tuple(CHANNEL_SPECS[n] for n in MODEL_OUTPUTS)
#: Column in the channel parameter array of each model output.
MODEL_OUTPUT_COLUMNS = np.array([getattr(CH, n) for n in MODEL_OUTPUTS], dtype=np.int64)


def channel_defaults(n_channels: int) -> np.ndarray:
    """A ``(n_channels, N_CH)`` float64 array of defaults."""
    row = np.array([s.default for s in CHANNEL_PARAMS], dtype=np.float64)
    return np.tile(row, (n_channels, 1))


def master_defaults() -> np.ndarray:
    """An ``(N_MS,)`` float64 array of master/bus defaults."""
    return np.array([s.default for s in MASTER_PARAMS], dtype=np.float64)


def lookup(name: str) -> ParamSpec:
    """The spec for a channel or master parameter name; ValueError with close matches."""
    spec = CHANNEL_SPECS.get(name) or MASTER_SPECS.get(name)
    if spec is None:
        import difflib
        close = difflib.get_close_matches(name, list(CHANNEL_SPECS) + list(MASTER_SPECS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown parameter {name!r}{hint}")
    return spec


def normalise_outputs(values: np.ndarray) -> np.ndarray:
    """Model-output parameters in units ``(..., len(MODEL_OUTPUTS))`` -> 0..1."""
    values = np.asarray(values, dtype=np.float64)
    return np.stack([s.to_norm(values[..., i]) for i, s in enumerate(MODEL_OUTPUT_SPECS)], -1)


def denormalise_outputs(u: np.ndarray) -> np.ndarray:
    """Model outputs 0..1 ``(..., len(MODEL_OUTPUTS))`` -> parameters in units."""
    u = np.asarray(u, dtype=np.float64)
    return np.stack([s.from_norm(u[..., i]) for i, s in enumerate(MODEL_OUTPUT_SPECS)], -1)


def db_to_gain(db):
    """dB to linear amplitude, with OFF_DB and below mapping to exactly 0."""
    db = np.asarray(db, dtype=np.float64)
    g = np.where(db <= OFF_DB, 0.0, 10.0 ** (db / 20.0))
    return g if g.ndim else float(g)
