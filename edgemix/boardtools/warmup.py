"""Compile everything a board runs before the stream opens (systemd ``ExecStartPre``).

    edgemix board warmup --profile /opt/edgemix/profile.toml \
                         [--session /opt/edgemix/session.toml]

Builds the console and the feature extractor at the profile's (or the session's) sample
rate, block size and channel count and runs one block through each, so every Numba kernel
is compiled into ``NUMBA_CACHE_DIR`` (or loaded from it), then loads the session's model
and runs one prediction, so a broken model fails here, before the show, not on the first
control hop.  Exit status 0 when everything compiled and loaded, 1 with a one-line reason
otherwise.
"""
from __future__ import annotations

import time

import numpy as np


def warm(profile, session=None) -> list[tuple[str, float]]:
    """Compile/load every kernel and the model; ``[(what, seconds), ...]``."""
    from edgemix.console import Console
    times = []
    fs = session.sample_rate_hz if session else profile.sample_rate_hz
    bs = session.block_size if session else profile.block_size
    n_ch = session.n_channels if session and session.n_channels else profile.n_channels
    n_aux = session.n_aux if session else profile.n_aux

    t = time.perf_counter()
    console = Console(sample_rate_hz=fs, block_size=bs, n_channels=n_ch, n_aux=n_aux)
    console.warmup()
    times.append(("console", time.perf_counter() - t))

    t = time.perf_counter()
    try:
        from edgemix.features import FeatureExtractor
    except ImportError:
        FeatureExtractor = None
    if FeatureExtractor is not None:
        hop = session.model.hop_ms if session else profile.hop_ms
        fx = FeatureExtractor(fs, n_ch, hop_ms=hop)
        fx.process(np.zeros((bs, n_ch), np.float32))
        fx.reset()
        times.append(("features", time.perf_counter() - t))

    if session is not None and session.model.policy == "model" and session.model.path:
        from edgemix import infer
        t = time.perf_counter()
        backend = infer.load(session.model.path)
        feats = np.zeros((infer.MAX_CHANNELS, backend.n_features), np.float32)
        mask = np.zeros(infer.MAX_CHANNELS, np.float32)
        mask[:n_ch] = 1.0
        backend.predict(feats, mask)
        times.append((f"model {backend.name}", time.perf_counter() - t))
    return times
