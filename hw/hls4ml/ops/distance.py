"""hls4ml lowering of Distance (l2, dot, cosine): a metahw layer per query row."""

from __future__ import annotations

from metahw.compiler.kernels import Distance
from metahw.compiler.kernels.distance import unit_format
from metahw.hw.hls4ml.head import Head, wide_type
from metahw.hw.hls4ml.ops import HEAD, lowers
from metahw.hw.hls4ml.precision import fixed
from metahw.hw.hls4ml.taps import QUERY


@lowers(HEAD, Distance)
def distance(h: Head, op: Distance) -> None:
    """Distance as metahw layers of the head."""
    q, rows = h.rows(op, op.queries)
    r = h.episode(op, op.refs)
    n, d = r.shape
    ints = {"n_rows": rows, "n_refs": n, "n_feat": d}
    types = {"accum_t": fixed(op.exact_format(h.buffers))}
    if op.metric == "cosine":
        types["unit_t"] = fixed(unit_format(op.unit_frac), *h.modes)
        for prefix, tensor in (("q", q), ("r", r)):
            types[f"{prefix}_wide_t"], ints[f"{prefix}_wide_frac"] = wide_type(tensor.fmt, d)
    out = h.buffers[op.output]
    t = h.add(
        "MetahwDistance",
        op.name,
        [q, r],
        h.out_shape(op.output, q.level),
        out.qformat,
        q.level == QUERY,
        f"distance_{op.metric}",
        ints,
        types,
    )
    h.define(op.name, op.output, t)
