"""RTL lowering of the head's Dense: REDUCE dot products with the bias preloaded."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from metahw.compiler.kernels import Dense
from metahw.hw.amaranth.isa import (
    REDUCE,
)
from metahw.hw.amaranth.lower_head import (
    Buffers,
    blocks,
    linear,
    requantiser,
)
from metahw.hw.amaranth.ops import HEAD, lowers

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan


@lowers(HEAD, Dense)
def dense(rp: RtlPlan, op: Dense, buffers: Buffers) -> None:
    """x W^T + b [ReLU], requantised."""
    x, w, out = buffers[op.input], buffers[op.weight], buffers[op.output]
    reduce, acc_frac = linear(rp, op, x, w, buffers[op.bias] if op.bias else None)
    rp.store(out)
    requant = requantiser(rp, acc_frac, out.qformat)
    reduce = dataclasses.replace(reduce, relu=op.relu, requant=requant, out=out.name)
    rp.emit(REDUCE, x.shape[0] * w.shape[0] * blocks(x.shape[1], rp), reduce, op.name)
