"""LiteRT (TFLite) backend: ``ai_edge_litert`` first, ``tflite_runtime`` as the fallback.

Both the float32 and the int8 ``.tflite`` take float32 features/mask and return float32
outputs (the int8 model quantises and dequantises inside the graph), so one class runs
both.  The interpreter is built with one thread and tensors allocated once at load.
"""
from __future__ import annotations

import numpy as np

from edgemix.infer.base import Backend, ModelLoadError, check_io_shapes


def interpreter_class():
    """The TFLite Interpreter class of whichever runtime is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # needs numpy < 2
        except ImportError:
            return None
    return Interpreter


class LiteRTBackend(Backend):
    """A ``.tflite`` student run by the LiteRT interpreter."""

    name = "litert"

    def __init__(self, path):
        super().__init__(path)
        interp = interpreter_class()
        if interp is None:
            raise ModelLoadError(f"{path}: no TFLite runtime: pip install ai-edge-litert "
                                 "(or tflite-runtime with numpy < 2)")
        try:
            with open(path, "rb") as f:
                content = f.read()
        except OSError as e:
            raise ModelLoadError(f"{path}: cannot read it ({e.strerror})") from None
        try:
            # model_content: the runtime verifies the FlatBuffer before using it
            self.interpreter = interp(model_content=content, num_threads=1)
            self.interpreter.allocate_tensors()
        except Exception as e:  # ValueError/RuntimeError from the C++ side
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"{path}: LiteRT cannot load it ({first})") from None
        self._content = content  # the interpreter reads weights from this buffer
        ins = {d["name"]: d for d in self.interpreter.get_input_details()}
        outs = {d["name"]: d for d in self.interpreter.get_output_details()}
        if set(ins) != {"features", "mask"} or set(outs) != {"params", "role_logits"}:
            raise ModelLoadError(f"{path}: inputs {sorted(ins)} / outputs {sorted(outs)}, "
                                 "expected features, mask -> params, role_logits")
        for d in list(ins.values()) + list(outs.values()):
            if d["dtype"] != np.float32:
                raise ModelLoadError(f"{path}: {d['name']} is {d['dtype'].__name__}, "
                                     "expected float32 I/O")
        check_io_shapes(path, {k: v["shape"] for k, v in ins.items()},
                        {k: v["shape"] for k, v in outs.items()})
        self._in_features = ins["features"]["index"]
        self._in_mask = ins["mask"]["index"]
        self._out_params = outs["params"]["index"]
        self._out_roles = outs["role_logits"]["index"]
        q = [d.get("quantization", (0.0, 0)) for d in self.interpreter.get_tensor_details()]
        self.quantised = any(s != 0.0 for s, _ in q)
        if self.quantised:
            self.name = "litert-int8"
        self.predict(np.zeros((self.params01.shape[0], self.n_features), np.float32),
                     np.zeros(self.params01.shape[0], np.float32))

    def predict(self, features, mask):
        features, mask = self.check_inputs(features, mask)
        it = self.interpreter
        it.set_tensor(self._in_features, features)
        it.set_tensor(self._in_mask, mask)
        it.invoke()
        # tensor(i)() is a view into the interpreter's arena: copy out without allocating
        self.params01[...] = it.tensor(self._out_params)()
        self.role_logits[...] = it.tensor(self._out_roles)()
        return self.params01, self.role_logits
