"""ONNX Runtime backend: one intra-op thread, no spinning (it shares the board with audio).

Inputs and outputs are bound once to preallocated arrays (I/O binding), so a decision
copies the features into the bound buffer, runs, and finds the result in place.
"""
from __future__ import annotations

import numpy as np

from edgemix.infer.base import MAX_CHANNELS, Backend, ModelLoadError, check_io_shapes


def session_options():
    """SessionOptions for running beside an audio thread (DESIGN.md real-time rules)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only: a load failure is reported as ModelLoadError
    return so


class OnnxBackend(Backend):
    """A ``.onnx`` student (float or QDQ int8) run by ONNX Runtime on the CPU."""

    name = "onnxruntime"

    def __init__(self, path):
        super().__init__(path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelLoadError(f"{path}: onnxruntime is not installed "
                                 "(pip install 'edgemix[infer]')") from None
        try:
            self.session = ort.InferenceSession(str(path), sess_options=session_options(),
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own Fail/InvalidProtobuf/NoSuchFile types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"{path}: ONNX Runtime cannot load it ({first})") from None
        ins = {i.name: i for i in self.session.get_inputs()}
        outs = {o.name: o for o in self.session.get_outputs()}
        if set(ins) != {"features", "mask"} or set(outs) != {"params", "role_logits"}:
            raise ModelLoadError(f"{path}: inputs {sorted(ins)} / outputs {sorted(outs)}, "
                                 "expected features, mask -> params, role_logits")
        for t in list(ins.values()) + list(outs.values()):
            if t.type != "tensor(float)" or not all(isinstance(d, int) for d in t.shape):
                raise ModelLoadError(f"{path}: {t.name} is {t.type} {t.shape}, expected a "
                                     "float tensor of fixed shape")
        check_io_shapes(path, {k: v.shape for k, v in ins.items()},
                        {k: v.shape for k, v in outs.items()})
        self._features = np.zeros((MAX_CHANNELS, self.n_features), dtype=np.float32)
        self._mask = np.zeros(MAX_CHANNELS, dtype=np.float32)
        self.binding = self.session.io_binding()
        for name, arr in (("features", self._features), ("mask", self._mask)):
            self.binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr))
        for name, arr in (("params", self.params01), ("role_logits", self.role_logits)):
            self.binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(arr))
        self.predict(self._features, self._mask)

    def predict(self, features, mask):
        features, mask = self.check_inputs(features, mask)
        self._features[...] = features
        self._mask[...] = mask
        self.session.run_with_iobinding(self.binding)
        return self.params01, self.role_logits
