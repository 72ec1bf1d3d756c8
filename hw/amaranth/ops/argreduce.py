"""RTL lowering of ArgMin / ArgMax: ROWRED rows into the compare tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metahw.compiler.kernels import ArgMax, ArgMin
from metahw.hw.amaranth.isa import (
    ROWRED,
    RowReduce,
    refuse,
)
from metahw.hw.amaranth.lower_head import (
    Buffers,
    blocks,
    head_memory,
)
from metahw.hw.amaranth.ops import HEAD, lowers

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan


@lowers(HEAD, ArgMin, ArgMax)
def argreduce(rp: RtlPlan, op: ArgMin | ArgMax, buffers: Buffers) -> None:
    """Row index of the min or max per row."""
    x, out = buffers[op.input], buffers[op.output]
    if len(x.shape) != 2:
        raise refuse(f"{type(op).__name__} '{op.name}' reduces a {len(x.shape)}-d tensor (the RTL reduces rows)")
    source = head_memory(rp, x)
    rp.store(out)
    rows, cols = x.shape
    reduce = RowReduce(source, rows, cols, isinstance(op, ArgMax), out.name)
    rp.emit(ROWRED, rows * blocks(cols, rp), reduce, op.name)
