"""hls4ml lowering of CosineAttention: the Matching Networks head as a metahw layer."""

from __future__ import annotations

from metahw.compiler.kernels import CosineAttention
from metahw.compiler.kernels.distance import unit_format
from metahw.hw.hls4ml.head import Head, softmax_config, wide_type
from metahw.hw.hls4ml.ops import HEAD, lowers
from metahw.hw.hls4ml.precision import accumulator_type, exact_type, fixed
from metahw.hw.hls4ml.taps import QUERY


@lowers(HEAD, CosineAttention)
def attention(h: Head, op: CosineAttention) -> None:
    """CosineAttention as metahw layers of the head."""
    q, rows = h.rows(op, op.queries)
    s, y, scale = (h.episode(op, name) for name in (op.supports, op.labels, op.scale))
    m, d = s.shape
    unit, a = unit_format(op.unit_frac), op.attention_format
    ints, types, tables = softmax_config(op.softmax, op.logits_format, h.modes[0])
    ints |= {"n_rows": rows, "n_support": m, "n_feat": d, "n_class": op.ways}
    types |= {
        "accum_t": accumulator_type(unit, unit, d),
        "unit_t": fixed(unit, *h.modes),
        "logits_t": fixed(op.logits_format, *h.modes),
        "attention_t": fixed(a, *h.modes),
        "sum_t": exact_type(m * min(a.min_int, 0), m * a.max_int, a.frac),
    }
    for prefix, tensor in (("q", q), ("s", s)):
        types[f"{prefix}_wide_t"], ints[f"{prefix}_wide_frac"] = wide_type(tensor.fmt, d)
    t = h.add(
        "MetahwCosineAttention",
        op.name,
        [q, s, y, scale],
        h.out_shape(op.output, q.level),
        h.buffers[op.output].qformat,
        q.level == QUERY,
        "cosine_attention",
        ints,
        types,
        tables,
    )
    h.define(op.name, op.output, t)
