"""hls4ml lowering of Softmax: the integer softmax as a metahw layer."""

from __future__ import annotations

from metahw.compiler.kernels import Softmax
from metahw.hw.hls4ml.head import Head, softmax_config
from metahw.hw.hls4ml.ops import HEAD, lowers
from metahw.hw.hls4ml.taps import QUERY


@lowers(HEAD, Softmax)
def softmax(h: Head, op: Softmax) -> None:
    """Softmax as metahw layers of the head."""
    x, rows = h.rows(op, op.input)
    ints, types, tables = softmax_config(op.spec, x.fmt, h.modes[0])
    t = h.add(
        "MetahwSoftmax",
        op.name,
        [x],
        h.out_shape(op.output, x.level),
        h.buffers[op.output].qformat,
        x.level == QUERY,
        "softmax",
        {"n_rows": rows, "n_in": x.shape[-1], **ints},
        types,
        tables,
    )
    h.define(op.name, op.output, t)
