"""Schedule of Requant: a VECTOR pass through the PPU (docs/microarchitecture.md §7)."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import Requant
from metahw.sim.machine import Instr, Machine, simulates
from metahw.sim.sequences import grid_pass


@simulates(Requant)
def requant(m: Machine, op: Requant) -> list[Instr]:
    """VECTOR pass through the PPU: ReLU, round, saturate/wrap."""
    x = m.read(op.input)
    v = np.maximum(x, 0) if op.relu else x
    m.write(op.output, m.requant(v, m.fmt(op.input).frac, m.fmt(op.output), op.output))
    return grid_pass(m, x.shape, x.size, op.input)
