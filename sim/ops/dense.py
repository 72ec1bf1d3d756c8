"""Schedule of Dense: REDUCE dot products with the bias preloaded (docs/microarchitecture.md §8)."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import Dense
from metahw.sim.machine import Instr, Machine, simulates
from metahw.sim.sequences import linear, reduce_instr


@simulates(Dense)
def dense(m: Machine, op: Dense) -> list[Instr]:
    """REDUCE: B*N dot products of D terms, bias preloaded; PPU: ReLU, round, saturate."""
    (b, d), n = m.buffers[op.input].shape, m.buffers[op.weight].shape[0]
    acc, acc_frac = linear(m, m.read(op.input, b * n * d), m.fmt(op.input).frac, op.weight, op.bias)
    if op.relu:
        acc = np.maximum(acc, 0)
    m.write(op.output, m.requant(acc, acc_frac, m.fmt(op.output), op.output))
    return [reduce_instr(m, b * n, d)]
