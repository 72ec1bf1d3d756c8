"""hls4ml lowering of PrototypeAccumulate: the class means of the support memory's rows, a metahw layer."""

from __future__ import annotations

from metahw.compiler.kernels import PrototypeAccumulate
from metahw.hw.hls4ml.head import Head, count_factor
from metahw.hw.hls4ml.ops import HEAD, lowers
from metahw.hw.hls4ml.precision import exact_type


@lowers(HEAD, PrototypeAccumulate)
def prototypes(h: Head, op: PrototypeAccumulate) -> None:
    """PrototypeAccumulate as metahw layers of the head."""
    f, y = h.episode(op, op.features), h.episode(op, op.labels)
    m, d = f.shape
    factor, raw = count_factor(op.shots, op.recip_frac)
    k, out = op.shots, h.buffers[op.output]
    t = h.add(
        "MetahwPrototypeAccumulate",
        op.name,
        [f, y],
        out.shape,
        out.qformat,
        False,
        "prototypes",
        {"n_support": m, "n_feat": d, "n_class": op.ways, "factor_raw": raw},
        {"sum_t": exact_type(k * f.fmt.min_int, k * f.fmt.max_int, f.fmt.frac), "factor_t": factor},
    )
    h.define(op.name, op.output, t)
