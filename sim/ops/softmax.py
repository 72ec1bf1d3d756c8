"""Schedule of Softmax: the softmax sequence over the rows of the last axis (docs/microarchitecture.md §8)."""

from __future__ import annotations

from metahw.compiler.kernels import Softmax
from metahw.sim.machine import Instr, Machine, simulates
from metahw.sim.sequences import softmax_rows


@simulates(Softmax)
def softmax(m: Machine, op: Softmax) -> list[Instr]:
    """The softmax sequence over the rows of the last axis."""
    x = m.read(op.input)
    m.reads[op.input] += x.size
    rows = x.reshape(-1, x.shape[-1])
    probs, instrs = softmax_rows(m, rows, m.fmt(op.input).frac, op.spec, m.fmt(op.output), op.output)
    m.write(op.output, probs.reshape(x.shape))
    return instrs
