"""RTL lowering of the residual Add: a pass of the MAP engine reading the skip tensor's bank too."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metahw.compiler.kernels import Add
from metahw.compiler.program import Buffer
from metahw.hw.amaranth.isa import ADD
from metahw.hw.amaranth.ops import MAP, lowers

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan


@lowers(MAP, Add)
def add(rp: RtlPlan, op: Add, buffers: dict[str, Buffer]) -> tuple[str, int, dict[str, Any]]:
    """input << shift plus skip << skip_shift per word, then ReLU or LeakyReLU."""
    x, skip = buffers[op.input], buffers[op.residual]
    src_frac = op.aligned_frac(buffers)
    fields: dict[str, Any] = dict(
        skip_format=skip.qformat,
        shift=src_frac - x.qformat.frac,
        skip_shift=src_frac - skip.qformat.frac,
        relu=op.relu,
    )
    if op.leaky_slope is not None:
        fields.update(
            leaky=True, scale=rp.factor_index(1 << op.leaky_frac), negative_scale=rp.factor_index(op.leaky_slope)
        )
        src_frac += op.leaky_frac
    return ADD, src_frac, fields
