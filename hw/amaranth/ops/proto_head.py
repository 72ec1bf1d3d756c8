"""RTL lowering of ProtoHeadInit: W = 2c (VECTOR), b = -sum c^2 (REDUCE)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metahw.compiler.kernels import ProtoHeadInit
from metahw.hw.amaranth.isa import (
    REDUCE,
    REQUANT,
    VECTOR,
    ReduceOp,
    VectorOp,
)
from metahw.hw.amaranth.lower_head import (
    Buffers,
    blocks,
    head_memory,
    requantiser,
)
from metahw.hw.amaranth.ops import HEAD, lowers

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan


@lowers(HEAD, ProtoHeadInit)
def proto_head_init(rp: RtlPlan, op: ProtoHeadInit, buffers: Buffers) -> None:
    """The prototypes' linear head: weight and bias."""
    c, w, b = buffers[op.prototypes], buffers[op.weight], buffers[op.bias]
    source = head_memory(rp, c)
    rp.store(w)
    rp.store(b)
    (n, dim), f = c.shape, c.qformat.frac
    double = VectorOp(REQUANT, source, w.name, n, dim, requantiser(rp, f - 1, w.qformat))
    rp.emit(VECTOR, blocks(n * dim, rp), double, op.name)
    squares = ReduceOp(
        source, None, n, 1, dim, scale=rp.factor_index(-1), requant=requantiser(rp, 2 * f, b.qformat), out=b.name
    )
    rp.emit(REDUCE, n * blocks(dim, rp), squares, op.name)
