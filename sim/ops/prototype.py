"""Schedule of PrototypeAccumulate: SCAN the labels, then WIDE class sums (docs/microarchitecture.md §8)."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import PrototypeAccumulate, timing
from metahw.sim.machine import Instr, Machine, ceil_div, simulates
from metahw.sim.sequences import check_labels, divide_by_count


@simulates(PrototypeAccumulate)
def prototypes(m: Machine, op: PrototypeAccumulate) -> list[Instr]:
    """SCAN labels into a per-class index table, then WIDE: K beats per (class, block of P columns)."""
    f = m.buffers[op.features]
    rows, dim = f.shape
    labels = m.read(op.labels, rows)
    check_labels(op, labels, op.ways)
    counts = np.bincount(labels, minlength=op.ways)
    if np.any(counts != op.shots):
        raise op.error(f"each class must occur {op.shots} time(s) in the labels, got counts {counts.tolist()}")
    table = np.argsort(labels, kind="stable").reshape(op.ways, op.shots)
    sums = m.read(op.features, rows * dim)[table].sum(axis=1)
    scaled, extra = divide_by_count(sums, op.shots, op.recip_frac)
    m.write(op.output, m.requant(scaled, f.qformat.frac + extra, m.fmt(op.output), op.output))
    wide = op.ways * ceil_div(dim, m.hw.lanes) * op.shots
    return [Instr(timing.SCAN, rows), Instr(timing.WIDE, wide, rows * dim)]
