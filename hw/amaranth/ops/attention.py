"""RTL lowering of CosineAttention: normalise, scaled cosine (REDUCE), softmax, class sums (OUTER)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metahw.compiler.kernels import CosineAttention
from metahw.hw.amaranth.isa import (
    OUTER,
    REDUCE,
    ClassSums,
    ReduceOp,
)
from metahw.hw.amaranth.lower_head import (
    Buffers,
    blocks,
    norm,
    requantiser,
    scalar_weight,
    softmax_sequence,
    streamed_labels,
)
from metahw.hw.amaranth.ops import HEAD, lowers

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan


@lowers(HEAD, CosineAttention)
def attention(rp: RtlPlan, op: CosineAttention, buffers: Buffers) -> None:
    """The Matching Networks head's instruction sequence."""
    q, s, out = buffers[op.queries], buffers[op.supports], buffers[op.output]
    labels = streamed_labels(rp, op, op.labels)
    scale = buffers[op.scale]
    factor = scalar_weight(rp, op, scale)
    (nq, dim), ns = q.shape, s.shape[0]
    a = norm(rp, q, op.unit_frac, "unit queries", op.name)
    b = norm(rp, s, op.unit_frac, "unit supports", op.name)
    logits = rp.scratch("logits", nq, ns, op.logits_format)
    requant = requantiser(rp, 2 * op.unit_frac + scale.qformat.frac, op.logits_format)
    reduce = ReduceOp(a, b, nq, ns, dim, scale=rp.factor_index(factor), requant=requant, out=logits)
    rp.emit(REDUCE, nq * ns * blocks(dim, rp), reduce, op.name)
    attention = rp.scratch("attention", nq, ns, op.attention_format)
    softmax_sequence(rp, logits, (nq, ns), op.logits_format, op.softmax, attention, op.attention_format, op.name)
    rp.store(out)
    sums = ClassSums(
        attention, labels, out.name, nq, ns, op.ways, requantiser(rp, op.attention_format.frac, out.qformat)
    )
    rp.emit(OUTER, nq * blocks(op.ways, rp) * ns, sums, op.name)
