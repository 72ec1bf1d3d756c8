"""Schedule of ProtoHeadInit: the prototypes as a linear head's weight and bias (docs/microarchitecture.md §8)."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import ProtoHeadInit
from metahw.sim.machine import Instr, Machine, simulates
from metahw.sim.sequences import reduce_instr, vector_instr


@simulates(ProtoHeadInit)
def proto_head_init(m: Machine, op: ProtoHeadInit) -> list[Instr]:
    """VECTOR W = 2c (a frac change), REDUCE b = -sum c^2."""
    c = m.read(op.prototypes)
    n, d = c.shape
    m.reads[op.prototypes] += 2 * c.size
    f = m.fmt(op.prototypes).frac
    m.write(op.weight, m.requant(c, f - 1, m.fmt(op.weight), op.weight))
    m.write(op.bias, m.requant(-np.einsum("nd,nd->n", c, c), 2 * f, m.fmt(op.bias), op.bias))
    return [vector_instr(m, n * d), reduce_instr(m, n, d)]
