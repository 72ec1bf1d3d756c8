"""Schedule of CosineAttention: the Matching Networks head (docs/microarchitecture.md §8)."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import CosineAttention, timing
from metahw.sim.mac import exact_matmul
from metahw.sim.machine import Instr, Machine, ceil_div, simulates
from metahw.sim.sequences import check_labels, normalise, reduce_instr, softmax_rows


@simulates(CosineAttention)
def cosine_attention(m: Machine, op: CosineAttention) -> list[Instr]:
    """Normalise both sides, cosine x scale (REDUCE), softmax over supports, class sums (OUTER)."""
    (b, d), rows = m.buffers[op.queries].shape, m.buffers[op.supports].shape[0]
    u, norm_q = normalise(m, m.read(op.queries, 2 * b * d), op.unit_frac, f"{op.name}/unit_queries")
    v, norm_s = normalise(m, m.read(op.supports, 2 * rows * d), op.unit_frac, f"{op.name}/unit_supports")
    scale = m.read(op.scale, b * rows)
    scaled = exact_matmul(u, v.T) * scale
    z = m.requant(scaled, 2 * op.unit_frac + m.fmt(op.scale).frac, op.logits_format, f"{op.name}/logits")
    a, softmax = softmax_rows(m, z, op.logits_format.frac, op.softmax, op.attention_format, f"{op.name}/attention")
    labels = m.read(op.labels, b * rows)
    check_labels(op, labels, op.ways)
    # lane l compares y_m with its class n: the lane operand is [y_m == n] (a head op: one group of P lanes)
    member = (labels[:, None] == np.arange(op.ways)[None, :]).astype(np.int64)
    p = exact_matmul(a, member)
    m.write(op.output, m.requant(p, op.attention_format.frac, m.fmt(op.output), op.output))
    class_sums = b * ceil_div(op.ways, m.hw.lanes) * rows
    return [
        *norm_q,
        *norm_s,
        reduce_instr(m, b * rows, d),
        *softmax,
        Instr(timing.OUTER, class_sums, b * op.ways * rows),
    ]
