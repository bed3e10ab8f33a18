"""How automatic moves are put into words: the parameter's console label and its value in
units ("HPF 110 Hz", "trim +12.0 dB", "pan L30"), then the reason."""
from __future__ import annotations

import math

from edgemix import params as P

#: Console labels of the parameters the policies explain.
LABELS = {
    "trim_db": "trim", "hpf_hz": "HPF", "hpf_on": "HPF", "fader_db": "fader", "pan": "pan",
    "automix_on": "gain sharing", "automix_weight_db": "gain-sharing weight",
    "comp_threshold_db": "compressor threshold", "comp_ratio": "compressor ratio",
    "comp_attack_ms": "compressor attack", "comp_release_ms": "compressor release",
    "comp_makeup_db": "make-up gain", "aux1_send_db": "reverb send",
    "eq1_gain_db": "low shelf", "eq2_gain_db": "EQ band 2", "eq3_gain_db": "EQ band 3",
    "eq4_gain_db": "high shelf", "eq2_hz": "EQ band 2", "eq3_hz": "EQ band 3",
    "eq1_hz": "low shelf", "eq4_hz": "high shelf", "eq1_q": "low shelf", "eq2_q": "EQ band 2",
    "eq3_q": "EQ band 3", "eq4_q": "high shelf", "master_fader_db": "master fader",
}


def label(name: str) -> str:
    return LABELS.get(name, name)


def format_value(name: str, value: float) -> str:
    """A parameter value the way a console shows it."""
    spec = P.lookup(name)
    if spec.scale == "bool":
        return "on" if value >= 0.5 else "off"
    if name == "pan":
        pct = round(abs(value) * 100.0)
        return "C" if pct == 0 else ("L" if value < 0 else "R") + f"{pct:d}"
    if name.endswith("_hz"):
        return f"{value / 1000.0:.2g} kHz" if value >= 1000.0 else f"{value:.0f} Hz"
    if name.endswith("_db"):
        if value <= P.OFF_DB:
            return "-inf dB"
        return f"{value:+.1f} dB"
    if name.endswith("_ms"):
        return f"{value:.3g} ms"
    if name.endswith("_ratio"):
        return f"{value:.2g}:1"
    if name.endswith("_q"):
        return f"Q {value:.2g}"
    return f"{value:g}"


def sentence(name: str, value: float, reason: str) -> str:
    """``"HPF 110 Hz: 92 % of this channel's energy lies above 140 Hz"``."""
    return f"{label(name)} {format_value(name, value)}: {reason}"


def percent(x: float) -> str:
    return f"{100.0 * x:.0f} %" if math.isfinite(x) else "n/a"


def with_automation(text: str, name: str, level: float, manual: float, value: float) -> str:
    """A policy's sentence with the automation level where it applies: below full auto,
    "...; automation 50 %: blended with your +0.0 dB to -3.0 dB"; gain sharing (offered,
    never imposed) always states its level."""
    if level < 1.0:
        return (f"{text}; automation {percent(level)}: blended with your "
                f"{format_value(name, manual)} to {format_value(name, value)}")
    if name == "automix_on":
        return f"{text}; automation {percent(level)}"
    return text
