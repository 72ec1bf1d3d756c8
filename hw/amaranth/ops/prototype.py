"""RTL lowering of PrototypeAccumulate: SCAN the labels into a class table, then WIDE class sums."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metahw.compiler.kernels import PrototypeAccumulate
from metahw.compiler.kernels.sfu import constant_reciprocal
from metahw.hw.amaranth.isa import (
    SCAN,
    WIDE,
    PrototypeSums,
    ScanOp,
)
from metahw.hw.amaranth.lower_head import (
    Buffers,
    blocks,
    head_memory,
    requantiser,
    streamed_labels,
)
from metahw.hw.amaranth.ops import HEAD, lowers

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan


@lowers(HEAD, PrototypeAccumulate)
def prototypes(rp: RtlPlan, op: PrototypeAccumulate, buffers: Buffers) -> None:
    """Class means of the support features."""
    labels = streamed_labels(rp, op, op.labels)
    f, out = buffers[op.features], buffers[op.output]
    features = head_memory(rp, f)
    rp.store(out)
    if op.shots & (op.shots - 1) == 0:
        extra, scale = op.shots.bit_length() - 1, 0
    else:
        extra, scale = op.recip_frac, rp.factor_index(constant_reciprocal(op.shots, op.recip_frac))
    requant = requantiser(rp, f.qformat.frac + extra, out.qformat)
    rows, dim = f.shape
    table = rp.emit(SCAN, rows, ScanOp(labels, op.ways, op.shots), op.name)
    sums = PrototypeSums(features, out.name, op.ways, op.shots, dim, table, scale, requant)
    rp.emit(WIDE, op.ways * blocks(dim, rp) * op.shots, sums, op.name)
