"""hls4ml lowering of ProtoHeadInit: the weight and the bias layers of the prototypes' linear head."""

from __future__ import annotations

from metahw.compiler.kernels import ProtoHeadInit
from metahw.hw.hls4ml.head import Head
from metahw.hw.hls4ml.ops import HEAD, lowers
from metahw.hw.hls4ml.precision import exact_type


@lowers(HEAD, ProtoHeadInit)
def proto_head(h: Head, op: ProtoHeadInit) -> None:
    """ProtoHeadInit as metahw layers of the head."""
    c = h.episode(op, op.prototypes)
    n, d = c.shape
    weight, bias = h.buffers[op.weight], h.buffers[op.bias]
    w = h.add(
        "MetahwProtoHeadInit",
        f"{op.name}_weight",
        [c],
        weight.shape,
        weight.qformat,
        False,
        "proto_head_weight",
        {"n_out": n * d},
    )
    h.define(op.name, op.weight, w)
    square = max(c.fmt.min_int**2, c.fmt.max_int**2)
    b = h.add(
        "MetahwProtoHeadInit",
        f"{op.name}_bias",
        [c],
        bias.shape,
        bias.qformat,
        False,
        "proto_head_bias",
        {"n_class": n, "n_feat": d},
        {"accum_t": exact_type(-d * square, 0, 2 * c.fmt.frac)},
    )
    h.define(op.name, op.bias, b)
