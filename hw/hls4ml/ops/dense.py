"""hls4ml lowerings of Dense: in an image chain, hls4ml `Dense` [+ `Activation(relu)`]; in the head, a metahw layer."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import Dense
from metahw.hw.hls4ml.embedding_ops import LayerList, Value, activation, output_value, weight_and_bias
from metahw.hw.hls4ml.head import Head
from metahw.hw.hls4ml.ops import EMBEDDING, HEAD, lowers
from metahw.hw.hls4ml.precision import accumulator_range, accumulator_type, dequantize, fixed, type_string
from metahw.hw.hls4ml.taps import QUERY
from metahw.qformat import QFormat


@lowers(EMBEDDING, Dense)
def dense(out: LayerList, op: Dense, name: str, values: dict[str, Value]) -> Value:
    """Dense as hls4ml layers."""
    x = values[op.input]
    weight = out.buffers[op.weight]
    n_out, n_in = weight.shape
    w_fmt, b_fmt, bias = weight_and_bias(out, op)
    acc = accumulator_range(x.fmt, w_fmt, n_in, b_fmt)
    layer = {
        "name": f"{name}_dense",
        "class_name": "Dense",
        "inputs": [x.layer],
        "n_in": n_in,
        "n_out": n_out,
        "weight_data": dequantize(out.program.weights[op.weight], weight.axis0_fracs()).T,
        "bias_data": bias,
    }
    last = out.add(layer, weight=fixed(w_fmt), bias=fixed(b_fmt) if b_fmt else None, accum=acc.type, result=acc.type)
    last, _ = activation(out, name, last, acc, op.relu, None, 0)
    out.cast(last, out.buffers[op.output].qformat)
    return output_value(out, op, last)


@lowers(HEAD, Dense)
def head_dense(h: Head, op: Dense) -> None:
    """Dense as metahw layers of the head."""
    x, rows = h.rows(op, op.input)
    w = h.episode(op, op.weight)
    n, d = w.shape
    if op.bias is not None:
        b = h.episode(op, op.bias)
    else:  # no bias: add a zero
        zero = QFormat(1, 0, signed=False)
        b = h.add(
            "MetahwConstant",
            f"{op.name}_zero_bias",
            [],
            (n,),
            zero,
            False,
            "constant",
            {"n_out": n},
            tables={"values": (np.zeros(n), type_string(fixed(zero)))},
            trace=False,
        )
    types = {"accum_t": accumulator_type(x.fmt, w.fmt, d, b.fmt if op.bias is not None else None)}
    ints = {"n_rows": rows, "n_in": d, "n_out": n, "relu": int(op.relu)}
    t = h.add(
        "MetahwDense",
        op.name,
        [x, w, b],
        h.out_shape(op.output, x.level),
        h.buffers[op.output].qformat,
        x.level == QUERY,
        "dense",
        ints,
        types,
    )
    h.define(op.name, op.output, t)
