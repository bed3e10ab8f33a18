"""What every inference backend shares: the fixed I/O contract, input checks, load errors.

DESIGN.md contract 3: features in -> normalised parameters out, fixed shapes.

- ``features``: ``(MAX_CHANNELS, N_FEATURES)`` float32, one row per console channel, in the
  units and order of :data:`edgemix.features.FEATURE_NAMES`;
- ``mask``: ``(MAX_CHANNELS,)`` float32, 1 where a channel is present, 0 where it is not.
  Any channel count up to ``MAX_CHANNELS`` works by masking; an absent channel never
  changes a present channel's outputs (the pooling is masked).
- ``params01``: ``(MAX_CHANNELS, len(MODEL_OUTPUTS))`` in 0..1, mapped to units by
  :func:`edgemix.params.denormalise_outputs`;
- ``role_logits``: ``(MAX_CHANNELS, N_ROLES)``, unnormalised log-probabilities of
  :data:`edgemix.roles.ROLES`.

Rows of absent channels are unspecified (backends may skip them); read only present rows.
"""
from __future__ import annotations

import numpy as np

#: Channels the model sees at once (``params.MODEL_MAX_CHANNELS``, one source; fewer are
#: handled by the mask).  Not the console's limit, ``params.CONSOLE_MAX_CHANNELS``.
from edgemix.params import MODEL_MAX_CHANNELS as MAX_CHANNELS  # noqa: E402


class ModelLoadError(ValueError):
    """A model file is missing, corrupt, truncated or of the wrong shape."""


def model_io() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(feature names, output parameter names, role names) the runtime expects, in order."""
    from edgemix.features import FEATURE_NAMES
    from edgemix.params import MODEL_OUTPUTS
    from edgemix.roles import ROLE_NAMES
    return tuple(FEATURE_NAMES), tuple(MODEL_OUTPUTS), tuple(ROLE_NAMES)


def expected_shapes() -> tuple[int, int, int]:
    """(N_FEATURES, N_OUTPUTS, N_ROLES)."""
    f, p, r = model_io()
    return len(f), len(p), len(r)


def check_io_shapes(path, inputs: dict, outputs: dict) -> None:
    """Raise ModelLoadError unless a model file's I/O shapes match the contract.

    ``inputs``/``outputs`` map 'features'/'mask' and 'params'/'role_logits' to shapes.
    """
    n_feat, n_out, n_roles = expected_shapes()
    want = {"features": (MAX_CHANNELS, n_feat), "mask": (MAX_CHANNELS,),
            "params": (MAX_CHANNELS, n_out), "role_logits": (MAX_CHANNELS, n_roles)}
    for name, shape in {**inputs, **outputs}.items():
        if tuple(int(d) for d in shape) != want[name]:
            raise ModelLoadError(
                f"{path}: {name} has shape {tuple(shape)}, this edgemix expects {want[name]}: "
                "rebuild the model with `python -m export.build_models`")


class Backend:
    """One loaded model.  ``predict`` is called from the control thread only.

    Subclasses set ``name`` and fill the preallocated ``params01``/``role_logits``; the
    arrays returned by :meth:`predict` are those buffers, overwritten by the next call
    (copy them to keep them).
    """

    name = "base"

    def __init__(self, path):
        self.path = str(path)
        n_feat, n_out, n_roles = expected_shapes()
        self.n_features = n_feat
        self.params01 = np.zeros((MAX_CHANNELS, n_out), dtype=np.float32)
        self.role_logits = np.zeros((MAX_CHANNELS, n_roles), dtype=np.float32)

    def check_inputs(self, features, mask):
        """Validate shapes and dtypes; return C-contiguous float32 views/copies."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        mask = np.ascontiguousarray(mask, dtype=np.float32)
        if features.shape != (MAX_CHANNELS, self.n_features):
            raise ValueError(
                f"features must have shape ({MAX_CHANNELS}, {self.n_features}), got "
                f"{features.shape}: pad absent channels with zeros and mark them in the mask")
        if mask.shape != (MAX_CHANNELS,):
            raise ValueError(f"mask must have shape ({MAX_CHANNELS},), got {mask.shape}: "
                             "use 1.0 for present and 0.0 for absent channels")
        return features, mask

    def predict(self, features, mask):
        """``(features, mask) -> (params01, role_logits)`` (see the module docstring)."""
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} {self.path}>"
