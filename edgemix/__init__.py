"""edgemix: real-time automatic mixing for low-power boards.

The names a script needs (loaded on first use, so ``import edgemix`` stays cheap)::

    import edgemix
    c = edgemix.Console(sample_rate_hz=48000, block_size=64, n_channels=8, n_aux=2)
    c.set_channel(0, "fader_db", -6.0)          # names and ranges: edgemix.params
    stereo = c.process(block)                    # (frames, 8) float32 -> (frames, 2)
    session = edgemix.load_session("show.toml")  # a session file, validated
    result = edgemix.mix_stems("stems/", "mix.wav")   # auto-mix a folder of stems

- :class:`Console` (:mod:`edgemix.console`): the engine, ``process``/``reset``/``set_*``.
- :func:`load_session` (:mod:`edgemix.session`): a session TOML file as a ``Session``.
- :mod:`params`: the parameter schema (``CHANNEL_SPECS``, ``MASTER_SPECS``, ``lookup``).
- :func:`mix_stems` (:mod:`edgemix.app`): a folder of stems to a mix and a report.
- :class:`UserError`: every mistake a user can fix, one line.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Console", "load_session", "params", "mix_stems", "MixResult", "UserError"]

_WHERE = {"Console": "edgemix.console", "load_session": "edgemix.session",
          "mix_stems": "edgemix.app", "MixResult": "edgemix.app",
          "UserError": "edgemix.errors"}


def __getattr__(name):
    import importlib
    if name == "params":
        return importlib.import_module("edgemix.params")
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'edgemix' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
