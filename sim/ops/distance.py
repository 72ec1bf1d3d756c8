"""Schedule of Distance (l2, dot, cosine): REDUCE over query x reference pairs (docs/microarchitecture.md §8)."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import Distance
from metahw.sim.mac import exact_matmul, squared_distances
from metahw.sim.machine import Instr, Machine, simulates
from metahw.sim.sequences import normalise, reduce_instr


@simulates(Distance)
def distance(m: Machine, op: Distance) -> list[Instr]:
    """REDUCE over Q*N pairs (l2: pre-adder difference squared); cosine normalises both sides first."""
    (nq, d), nr = m.buffers[op.queries].shape, m.buffers[op.refs].shape[0]
    q, r = m.read(op.queries, nq * nr * d), m.read(op.refs, nq * nr * d)
    fq, fr = m.fmt(op.queries).frac, m.fmt(op.refs).frac
    instrs: list[Instr] = []
    if op.metric == "l2":
        f = max(fq, fr)
        acc, frac = squared_distances(np.left_shift(q, f - fq), np.left_shift(r, f - fr)), 2 * f
    elif op.metric == "dot":
        acc, frac = exact_matmul(q, r.T), fq + fr
    else:
        u, norm_q = normalise(m, q, op.unit_frac, f"{op.name}/unit_queries")
        v, norm_r = normalise(m, r, op.unit_frac, f"{op.name}/unit_refs")
        instrs = norm_q + norm_r
        acc, frac = exact_matmul(u, v.T), 2 * op.unit_frac
    m.write(op.output, m.requant(acc, frac, m.fmt(op.output), op.output))
    return [*instrs, reduce_instr(m, nq * nr, d)]
