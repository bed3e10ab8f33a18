"""The numpy reference backend: the network written out in float64 numpy, slow and obvious.

It is the oracle the other backends are compared with at run time; the training side's
golden I/O (``models/golden.npz``) is the oracle it is compared with in the tests.
"""
from __future__ import annotations

from edgemix.infer.base import MAX_CHANNELS, Backend, check_io_shapes
from edgemix.infer.weights import forward_reference, load_weights, sizes_of


class NumpyBackend(Backend):
    """Reference forward pass from a weights ``.npz``."""

    name = "numpy"

    def __init__(self, path):
        super().__init__(path)
        self.weights = load_weights(path)
        s = sizes_of(self.weights)
        check_io_shapes(path, {"features": (MAX_CHANNELS, s["F"])},
                        {"params": (MAX_CHANNELS, s["P"]), "role_logits": (MAX_CHANNELS, s["R"])})

    def predict(self, features, mask):
        features, mask = self.check_inputs(features, mask)
        p, r = forward_reference(self.weights, features, mask)
        self.params01[...] = p
        self.role_logits[...] = r
        return self.params01, self.role_logits
