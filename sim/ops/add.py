"""Schedule of the residual Add: a VECTOR pass per group of G images (docs/microarchitecture.md §7)."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import Add
from metahw.sim.machine import Instr, Machine, simulates
from metahw.sim.sequences import grid_pass


@simulates(Add)
def add(m: Machine, op: Add) -> list[Instr]:
    """VECTOR: both operands read per beat from their banks, aligned by shifts, added, activated, requantised."""
    f = op.aligned_frac(m.buffers)
    a, r = m.read(op.input), m.read(op.residual)
    total = np.left_shift(a, f - m.fmt(op.input).frac) + np.left_shift(r, f - m.fmt(op.residual).frac)
    if op.relu:
        total = np.maximum(total, 0)
    elif op.leaky_slope is not None:
        total, f = np.where(total < 0, total * op.leaky_slope, total << op.leaky_frac), f + op.leaky_frac
    m.reads[op.residual] += r.size
    m.write(op.output, m.requant(total, f, m.fmt(op.output), op.output))
    return grid_pass(m, a.shape, a.size, op.input)
