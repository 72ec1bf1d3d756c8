"""RTL lowering of Distance: one REDUCE over query x reference pairs (cosine normalises both sides first)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metahw.compiler.kernels import Distance
from metahw.hw.amaranth.isa import (
    REDUCE,
    ReduceOp,
    refuse,
)
from metahw.hw.amaranth.lower_head import (
    Buffers,
    blocks,
    head_memory,
    norm,
    requantiser,
)
from metahw.hw.amaranth.ops import HEAD, lowers

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan


@lowers(HEAD, Distance)
def distance(rp: RtlPlan, op: Distance, buffers: Buffers) -> None:
    """Query x reference distances (l2, dot, cosine)."""
    q, r, out = buffers[op.queries], buffers[op.refs], buffers[op.output]
    if q.name == r.name:
        raise refuse(f"Distance '{op.name}' reads '{q.name}' as both operands (one memory read per beat)")
    (nq, dim), nr = q.shape, r.shape[0]
    rp.store(out)
    if op.metric == "cosine":
        a = norm(rp, q, op.unit_frac, "unit queries", op.name)
        b = norm(rp, r, op.unit_frac, "unit refs", op.name)
        reduce = ReduceOp(a, b, nq, nr, dim, requant=requantiser(rp, 2 * op.unit_frac, out.qformat), out=out.name)
    else:
        a, b = head_memory(rp, q), head_memory(rp, r)
        fq, fr = q.qformat.frac, r.qformat.frac
        if op.metric == "l2":
            f = max(fq, fr)
            requant = requantiser(rp, 2 * f, out.qformat)
            reduce = ReduceOp(a, b, nq, nr, dim, True, f - fq, f - fr, requant=requant, out=out.name)
        else:
            reduce = ReduceOp(a, b, nq, nr, dim, requant=requantiser(rp, fq + fr, out.qformat), out=out.name)
    rp.emit(REDUCE, nq * nr * blocks(dim, rp), reduce, op.name)
