"""Write the student as a TFLite FlatBuffer by hand, float32 or full-integer int8.

Built with the FlatBuffers builders generated from the official TFLite schema (the
``tflite`` package), one subgraph, builtin ops only: FULLY_CONNECTED, ADD, MUL, DIV,
MAXIMUM, MINIMUM, SUM, REDUCE_MAX, CONCATENATION, RESHAPE and, in the int8 model,
TILE, QUANTIZE / DEQUANTIZE.  I/O is float32 in both files: ``features (32, F)``, ``mask (32,)``
-> ``params (32, P)``, ``role_logits (32, R)``.

The int8 file (see :mod:`export.quantize` for the scheme): the input standardisation
``clip(x * in_scale + in_shift, -1, 1)`` and the masked-mean weights
``mask / max(sum(mask), 1)`` are computed in float32 at the very front (features of
different units cannot share one int8 scale before they are standardised), then QUANTIZE;
every FullyConnected, Mul, Sum, ReduceMax, Concatenation and Add after that runs in int8
with int8 weights (per-channel) and int32 biases; DEQUANTIZE hands the parameter head's
output back in float32 to the tail, which is float32 in both files: the skip (one affine map of the input features), the output span
and the clamp to 0..1.  The head's output has one int8 range per parameter, folded into
the head's weights and the tail (:func:`export.quantize.fold_head_ranges`).
"""
from __future__ import annotations

import flatbuffers
import numpy as np
import tflite

from edgemix.infer.base import MAX_CHANNELS
from edgemix.infer.weights import Z_LIMIT, sizes_of, validate
from export.quantize import (HEAD, activation_qparams, fold_head_ranges, quantise_bias,
                             quantise_weights_per_channel)

OP = tflite.BuiltinOperator
OPT = tflite.BuiltinOptions
ACT = tflite.ActivationFunctionType
TT = tflite.TensorType
_NP_TYPE = {TT.FLOAT32: np.float32, TT.INT32: np.int32, TT.INT8: np.int8}
#: Schema version written into the file (the current TFLite schema is version 3).
SCHEMA_VERSION = 3


class _Graph:
    """Tensors, constant buffers and operators of one subgraph, then serialised."""

    def __init__(self):
        self.tensors = []      # dicts: name, shape, type, buffer, quant
        self.buffers = [b""]   # buffer 0 is the empty sentinel the schema requires
        self.ops = []          # (opcode index, inputs, outputs, options type, options fn)
        self.opcodes = []      # builtin codes in first-use order
        self.names = {}

    def tensor(self, name, shape, ttype=TT.FLOAT32, data=None, quant=None):
        """Add a tensor (constant when ``data`` is given); returns its index."""
        buf = 0
        if data is not None:
            arr = np.ascontiguousarray(np.asarray(data, dtype=_NP_TYPE[ttype]).reshape(shape))
            self.buffers.append(arr.tobytes())
            buf = len(self.buffers) - 1
        self.tensors.append({"name": name, "shape": list(shape), "type": ttype,
                             "buffer": buf, "quant": quant})
        self.names[name] = len(self.tensors) - 1
        return len(self.tensors) - 1

    def op(self, code, inputs, outputs, opt_type=OPT.NONE, opt_fn=None):
        if code not in self.opcodes:
            self.opcodes.append(code)
        self.ops.append((self.opcodes.index(code), list(inputs), list(outputs), opt_type, opt_fn))

    # ---- serialisation -------------------------------------------------------------
    @staticmethod
    def _vector(b, values, kind):
        size, prepend = {"i32": (4, b.PrependInt32), "i64": (8, b.PrependInt64),
                         "f32": (4, b.PrependFloat32), "off": (4, b.PrependUOffsetTRelative)}[kind]
        b.StartVector(size, len(values), size)
        for v in reversed(list(values)):
            prepend(v)
        return b.EndVector()

    def serialise(self, inputs, outputs, description) -> bytes:
        b = flatbuffers.Builder(1 << 16)
        buf_offs = []
        for data in self.buffers:
            if data:
                # 16-byte aligned so runtimes can map weights in place
                b.StartVector(1, len(data), 16)
                b.head -= len(data)
                b.Bytes[b.head:b.head + len(data)] = data
                vec = b.EndVector()
            tflite.BufferStart(b)
            if data:
                tflite.BufferAddData(b, vec)
            buf_offs.append(tflite.BufferEnd(b))

        tensor_offs = []
        for t in self.tensors:
            name = b.CreateString(t["name"])
            shape = self._vector(b, t["shape"], "i32")
            q_off = None
            if t["quant"] is not None:
                scale, zp, qdim = t["quant"]
                s_vec = self._vector(b, np.atleast_1d(scale).astype(float), "f32")
                z_vec = self._vector(b, np.atleast_1d(zp).astype(int), "i64")
                tflite.QuantizationParametersStart(b)
                tflite.QuantizationParametersAddScale(b, s_vec)
                tflite.QuantizationParametersAddZeroPoint(b, z_vec)
                tflite.QuantizationParametersAddQuantizedDimension(b, qdim)
                q_off = tflite.QuantizationParametersEnd(b)
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, shape)
            tflite.TensorAddType(b, t["type"])
            tflite.TensorAddBuffer(b, t["buffer"])
            tflite.TensorAddName(b, name)
            if q_off is not None:
                tflite.TensorAddQuantization(b, q_off)
            tensor_offs.append(tflite.TensorEnd(b))

        op_offs = []
        for opcode_index, ins, outs, opt_type, opt_fn in self.ops:
            in_vec = self._vector(b, ins, "i32")
            out_vec = self._vector(b, outs, "i32")
            opt = opt_fn(b) if opt_fn is not None else None
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, opcode_index)
            tflite.OperatorAddInputs(b, in_vec)
            tflite.OperatorAddOutputs(b, out_vec)
            if opt is not None:
                tflite.OperatorAddBuiltinOptionsType(b, opt_type)
                tflite.OperatorAddBuiltinOptions(b, opt)
            op_offs.append(tflite.OperatorEnd(b))

        tensors_vec = self._vector(b, tensor_offs, "off")
        ops_vec = self._vector(b, op_offs, "off")
        sg_in = self._vector(b, [self.names[n] for n in inputs], "i32")
        sg_out = self._vector(b, [self.names[n] for n in outputs], "i32")
        sg_name = b.CreateString("main")
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensors_vec)
        tflite.SubGraphAddInputs(b, sg_in)
        tflite.SubGraphAddOutputs(b, sg_out)
        tflite.SubGraphAddOperators(b, ops_vec)
        tflite.SubGraphAddName(b, sg_name)
        subgraph = tflite.SubGraphEnd(b)

        code_offs = []
        for code in self.opcodes:
            tflite.OperatorCodeStart(b)
            # builtin codes >= 127 only fit the new int32 field; the old int8 one says 127
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, 1)
            code_offs.append(tflite.OperatorCodeEnd(b))

        codes_vec = self._vector(b, code_offs, "off")
        subgraphs_vec = self._vector(b, [subgraph], "off")
        buffers_vec = self._vector(b, buf_offs, "off")
        desc = b.CreateString(description)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, SCHEMA_VERSION)
        tflite.ModelAddOperatorCodes(b, codes_vec)
        tflite.ModelAddSubgraphs(b, subgraphs_vec)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, buffers_vec)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())


# ---- builtin options -------------------------------------------------------------------
def _fc_options(act):
    def fn(b):
        tflite.FullyConnectedOptionsStart(b)
        tflite.FullyConnectedOptionsAddFusedActivationFunction(b, act)
        tflite.FullyConnectedOptionsAddKeepNumDims(b, True)
        return tflite.FullyConnectedOptionsEnd(b)
    return OPT.FullyConnectedOptions, fn


def _act_options(kind, act=ACT.NONE):
    start, add, end = {
        "add": (tflite.AddOptionsStart, tflite.AddOptionsAddFusedActivationFunction,
                tflite.AddOptionsEnd),
        "mul": (tflite.MulOptionsStart, tflite.MulOptionsAddFusedActivationFunction,
                tflite.MulOptionsEnd),
        "div": (tflite.DivOptionsStart, tflite.DivOptionsAddFusedActivationFunction,
                tflite.DivOptionsEnd)}[kind]

    def fn(b):
        start(b)
        add(b, act)
        return end(b)
    return {"add": OPT.AddOptions, "mul": OPT.MulOptions, "div": OPT.DivOptions}[kind], fn


def _reducer_options():
    def fn(b):
        tflite.ReducerOptionsStart(b)
        tflite.ReducerOptionsAddKeepDims(b, True)
        return tflite.ReducerOptionsEnd(b)
    return OPT.ReducerOptions, fn


def _concat_options(axis):
    def fn(b):
        tflite.ConcatenationOptionsStart(b)
        tflite.ConcatenationOptionsAddAxis(b, axis)
        tflite.ConcatenationOptionsAddFusedActivationFunction(b, ACT.NONE)
        return tflite.ConcatenationOptionsEnd(b)
    return OPT.ConcatenationOptions, fn


def _reshape_options(shape):
    def fn(b):
        vec = _Graph._vector(b, shape, "i32")
        tflite.ReshapeOptionsStart(b)
        tflite.ReshapeOptionsAddNewShape(b, vec)
        return tflite.ReshapeOptionsEnd(b)
    return OPT.ReshapeOptions, fn


def _maximum_options():
    def fn(b):
        tflite.MaximumMinimumOptionsStart(b)
        return tflite.MaximumMinimumOptionsEnd(b)
    return OPT.MaximumMinimumOptions, fn


# ---- the student graph -----------------------------------------------------------------
def _build(weights: dict, ranges: dict | None) -> _Graph:
    """The student graph; int8 body when calibration ``ranges`` are given, else float32."""
    validate(weights)
    s = sizes_of(weights)
    c = MAX_CHANNELS
    q8 = ranges is not None
    if q8:
        ranges = {**ranges, "role_logits_q": ranges["role_logits"]}
        # one int8 range per parameter-head output, folded into the head and the float
        # tail so the head's single per-tensor range is 0..1 (export/quantize.py)
        weights = fold_head_ranges(weights, *ranges[HEAD])
        ranges[HEAD] = (0.0, 1.0)
    g = _Graph()
    F32, I8, I32 = TT.FLOAT32, TT.INT8, TT.INT32

    def act(name, shape, fixed=None):
        """An activation tensor: float32, or int8 with calibrated (or fixed) qparams."""
        if not q8:
            return g.tensor(name, shape)
        scale, zp = fixed if fixed is not None else activation_qparams(*ranges[name])
        return g.tensor(name, shape, I8, quant=(scale, zp, 0))

    def scale_of(idx):
        return g.tensors[idx]["quant"][0]

    def dense(x, wname, bname, out, out_shape, fused):
        """FULLY_CONNECTED with weights (out, in) as TFLite wants them."""
        w = np.asarray(weights[wname], np.float64).T  # stored (in, out)
        n_out, n_in = w.shape
        if q8:
            wq, ws = quantise_weights_per_channel(w)
            wi = g.tensor(wname, [n_out, n_in], I8, wq, quant=(ws, np.zeros(n_out), 0))
        else:
            wi = g.tensor(wname, [n_out, n_in], F32, w)
        bi = -1  # optional bias omitted
        if bname is not None:
            b = np.asarray(weights[bname], np.float64)
            if q8:
                bq, bs = quantise_bias(b, scale_of(x), ws)
                bi = g.tensor(bname, [n_out], I32, bq, quant=(bs, np.zeros(n_out), 0))
            else:
                bi = g.tensor(bname, [n_out], F32, b)
        yi = act(out, out_shape)
        g.op(OP.FULLY_CONNECTED, [x, wi, bi], [yi], *_fc_options(fused))
        return yi

    # float front: standardisation and the masked-mean weights (see the module docstring)
    feats = g.tensor("features", [c, s["F"]])
    mask = g.tensor("mask", [c])
    sc = g.tensor("in_scale", [s["F"]], F32, weights["in_scale"])
    sh = g.tensor("in_shift", [s["F"]], F32, weights["in_shift"])
    zs = g.tensor("z_scaled", [c, s["F"]])
    g.op(OP.MUL, [feats, sc], [zs], *_act_options("mul"))
    zu = g.tensor("z_unclipped", [c, s["F"]])
    g.op(OP.ADD, [zs, sh], [zu], *_act_options("add"))
    # clipped to -1..1 (edgemix/infer/weights.py): MAXIMUM and MINIMUM with scalar constants
    z_lo = g.tensor("z_lo", [1, 1], F32, [[-Z_LIMIT]])
    z_hi = g.tensor("z_hi", [1, 1], F32, [[Z_LIMIT]])
    zl = g.tensor("z_lower", [c, s["F"]])
    g.op(OP.MAXIMUM, [zu, z_lo], [zl], *_maximum_options())
    zf = g.tensor("z_float" if q8 else "z", [c, s["F"]])
    g.op(OP.MINIMUM, [zl, z_hi], [zf], *_maximum_options())
    col_shape = g.tensor("shape_col", [2], I32, [c, 1])
    mcol = g.tensor("mask_col", [c, 1])
    g.op(OP.RESHAPE, [mask, col_shape], [mcol], *_reshape_options([c, 1]))
    axis0 = g.tensor("axis0", [1], I32, [0])
    msum = g.tensor("mask_sum", [1, 1])
    g.op(OP.SUM, [mcol, axis0], [msum], *_reducer_options())
    one = g.tensor("one", [1, 1], F32, [[1.0]])
    mden = g.tensor("mask_den", [1, 1])
    g.op(OP.MAXIMUM, [msum, one], [mden], *_maximum_options())
    mw = g.tensor("mean_w_float" if q8 else "mean_w", [c, 1])
    g.op(OP.DIV, [mcol, mden], [mw], *_act_options("div"))

    if q8:
        z = act("z", [c, s["F"]])
        g.op(OP.QUANTIZE, [zf], [z])
        mean_w = act("mean_w", [c, 1])
        g.op(OP.QUANTIZE, [mw], [mean_w])
        mask_q = act("mask_q", [c, 1], fixed=activation_qparams(0.0, 1.0))
        g.op(OP.QUANTIZE, [mcol], [mask_q])
        mask_for_max = mask_q
    else:
        z, mean_w, mask_for_max = zf, mw, mcol

    h1 = dense(z, "enc1_w", "enc1_b", "h1", [c, s["H1"]], ACT.RELU)
    h2 = dense(h1, "enc2_w", "enc2_b", "h2", [c, s["H2"]], ACT.RELU)
    hw = act("h2_weighted", [c, s["H2"]])
    g.op(OP.MUL, [h2, mean_w], [hw], *_act_options("mul"))
    pmean = act("pool_mean", [1, s["H2"]])
    g.op(OP.SUM, [hw, axis0], [pmean], *_reducer_options())
    hm = act("h2_masked", [c, s["H2"]])
    g.op(OP.MUL, [h2, mask_for_max], [hm], *_act_options("mul"))
    pmax = act("pool_max", [1, s["H2"]])
    g.op(OP.REDUCE_MAX, [hm, axis0], [pmax], *_reducer_options())
    pool = act("pool", [1, 2 * s["H2"]])
    g.op(OP.CONCATENATION, [pmean, pmax], [pool], *_concat_options(1))
    ctx = dense(pool, "ctx_w", "ctx_b", "ctx", [1, s["K"]], ACT.RELU)
    if q8:
        # g = relu([h2, ctx] @ [mix_w; mix_ctx_w] + mix_b): one FullyConnected on h2 beside
        # the context tiled to every row, so neither h2 @ mix_w nor the context row is
        # rounded to int8 on its own before they are added (the two largest int8 error
        # sources of the unfused graph, measured by quantising one tensor at a time);
        # h2 and ctx share one scale, so the Concatenation is exact
        mult = g.tensor("tile_rows", [2], I32, [c, 1])
        ctx_t = act("ctx_tiled", [c, s["K"]], fixed=g.tensors[ctx]["quant"][:2])
        g.op(OP.TILE, [ctx, mult], [ctx_t])
        hc = act("h2_ctx", [c, s["H2"] + s["K"]], fixed=g.tensors[h2]["quant"][:2])
        g.op(OP.CONCATENATION, [h2, ctx_t], [hc], *_concat_options(1))
        weights = {**weights, "mix_cat_w": np.concatenate([weights["mix_w"],
                                                           weights["mix_ctx_w"]], axis=0)}
        gg = dense(hc, "mix_cat_w", "mix_b", "g", [c, s["D"]], ACT.RELU)
    else:
        ctx_row = dense(ctx, "mix_ctx_w", "mix_b", "ctx_row", [1, s["D"]], ACT.NONE)
        g_ch = dense(h2, "mix_w", None, "g_ch", [c, s["D"]], ACT.NONE)
        gg = act("g", [c, s["D"]])
        g.op(OP.ADD, [g_ch, ctx_row], [gg], *_act_options("add", ACT.RELU))
    plog = dense(gg, "param_w", "param_b", "param_logits", [c, s["P"]], ACT.NONE)
    if q8:
        sig = g.tensor("param_u", [c, s["P"]])
        g.op(OP.DEQUANTIZE, [plog], [sig])
        r_q = dense(gg, "role_w", "role_b", "role_logits_q", [c, s["R"]], ACT.NONE)
        roles = g.tensor("role_logits", [c, s["R"]])
        g.op(OP.DEQUANTIZE, [r_q], [roles])
    else:
        sig = plog
        dense(gg, "role_w", "role_b", "role_logits", [c, s["R"]], ACT.NONE)
    # float tail in both files: the skip from the raw features (an affine map of the input,
    # kept float32 like the standardisation so the loudness-matching answer is exact), the
    # output span, and the clamp to 0..1 (edgemix/infer/weights.py)
    skw = g.tensor("skip_w", [s["P"], s["F"]], F32, np.asarray(weights["skip_w"]).T)
    skb = g.tensor("skip_b", [s["P"]], F32, weights["skip_b"])
    skip = g.tensor("skip", [c, s["P"]])
    g.op(OP.FULLY_CONNECTED, [feats, skw, skb], [skip], *_fc_options(ACT.NONE))
    span = g.tensor("out_span", [s["P"]], F32, weights["out_span"])
    spanned = g.tensor("params_spanned", [c, s["P"]])
    g.op(OP.MUL, [sig, span], [spanned], *_act_options("mul"))
    total = g.tensor("params_sum", [c, s["P"]])
    g.op(OP.ADD, [spanned, skip], [total], *_act_options("add"))
    zero = g.tensor("zero", [1, 1], F32, [[0.0]])
    lower = g.tensor("params_lower", [c, s["P"]])
    g.op(OP.MAXIMUM, [total, zero], [lower], *_maximum_options())
    params = g.tensor("params", [c, s["P"]])
    g.op(OP.MINIMUM, [lower, one], [params], *_maximum_options())
    return g


def build_tflite(weights: dict, ranges: dict | None = None) -> bytes:
    """The ``.tflite`` bytes: float32, or int8 when calibration ``ranges`` are given."""
    kind = "int8" if ranges is not None else "float32"
    g = _build(weights, ranges)
    return g.serialise(["features", "mask"], ["params", "role_logits"],
                       f"edgemix student ({kind})")


def write_tflite(path, weights: dict, ranges: dict | None = None) -> None:
    with open(path, "wb") as f:
        f.write(build_tflite(weights, ranges))
