"""hls4ml lowering of ArgMin / ArgMax: a metahw layer (the first index of the extreme)."""

from __future__ import annotations

from metahw.compiler.kernels import ArgMax, ArgMin
from metahw.hw.hls4ml.head import Head
from metahw.hw.hls4ml.ops import HEAD, lowers
from metahw.hw.hls4ml.taps import QUERY


@lowers(HEAD, ArgMin, ArgMax)
def argreduce(h: Head, op: ArgMin | ArgMax) -> None:
    """ArgMin / ArgMax as metahw layers of the head."""
    x, rows = h.rows(op, op.input)
    t = h.add(
        "MetahwArgReduce",
        op.name,
        [x],
        h.out_shape(op.output, x.level),
        h.buffers[op.output].qformat,
        x.level == QUERY,
        op.op.lower(),
        {"n_rows": rows, "n_in": x.shape[-1]},
        ctrl=False,
    )
    h.define(op.name, op.output, t)
