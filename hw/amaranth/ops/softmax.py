"""RTL lowering of Softmax: the softmax sequence over rows (ROWRED, EXP, RECIP, VECTOR)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metahw.compiler.kernels import Softmax
from metahw.hw.amaranth.isa import (
    refuse,
)
from metahw.hw.amaranth.lower_head import (
    Buffers,
    head_memory,
    softmax_sequence,
)
from metahw.hw.amaranth.ops import HEAD, lowers

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan


@lowers(HEAD, Softmax)
def softmax(rp: RtlPlan, op: Softmax, buffers: Buffers) -> None:
    """Softmax over the rows of a 1-d or 2-d tensor."""
    x, out = buffers[op.input], buffers[op.output]
    if len(x.shape) not in (1, 2):
        raise refuse(f"Softmax '{op.name}' works on a {len(x.shape)}-d tensor (the RTL takes rows of a 1-d or 2-d one)")
    source = head_memory(rp, x)
    rp.store(out)
    shape = (1, x.shape[0]) if len(x.shape) == 1 else x.shape
    softmax_sequence(rp, source, shape, x.qformat, op.spec, out.name, out.qformat, op.name)
