"""Instruction sequences several head ops share: row normalisation and softmax (docs/microarchitecture.md §8)."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.distance import unit_format
from metahw.compiler.kernels.softmax import SoftmaxSpec
from metahw.qformat import QFormat
from metahw.sim import sfu
from metahw.sim.machine import Instr, Machine, ceil_div


def reduce_instr(m: Machine, outputs: int, fan_in: int) -> Instr:
    """REDUCE: groups take the outputs G at a time; each output streams its fan-in L elements per beat."""
    beats = ceil_div(outputs, m.hw.groups) * ceil_div(fan_in, m.hw.group_lanes)
    return Instr(timing.REDUCE, beats, outputs * fan_in)


def vector_instr(m: Machine, elements: int) -> Instr:
    """VECTOR: P elements per beat through the PPU."""
    return Instr(timing.VECTOR, ceil_div(elements, m.hw.lanes))


def normalise(m: Machine, x: np.ndarray, unit_frac: int, tensor: str) -> tuple[np.ndarray, list[Instr]]:
    """Norm(R, D): sum of squares per row (REDUCE), rsqrt per row (SFU), u = requantise(x * r) (VECTOR)."""
    rows, dim = x.shape
    squares = np.einsum("rd,rd->r", x, x)
    r, e = sfu.rsqrt(squares)
    units = m.requant(x * r[:, None], e[:, None], unit_format(unit_frac), tensor)
    instrs = [
        reduce_instr(m, rows, dim),
        Instr(timing.RSQRT, rows * timing.T_RSQRT),
        vector_instr(m, rows * dim),
    ]
    return units, instrs


def softmax_rows(
    m: Machine, x: np.ndarray, x_frac: int, spec: SoftmaxSpec, out: QFormat, tensor: str
) -> tuple[np.ndarray, list[Instr]]:
    """Softmax(R, N) of x [R, N]: row max (ROWRED), exp index/table/sum (EXP), reciprocal (RECIP), scaling (VECTOR)."""
    rows, n = x.shape
    peak = x.max(axis=1, keepdims=True)
    index = -m.shift(x - peak, x_frac - spec.index_frac)
    e = sfu.exp_lookup(index, spec)
    recip = sfu.softmax_reciprocal(e.sum(axis=1), spec)
    probs = m.requant(e * recip[:, None], spec.exp_frac + spec.recip_bits, out, tensor)
    instrs = [
        Instr(timing.ROWRED, rows * ceil_div(n, m.hw.lanes)),
        Instr(timing.EXP, rows * n),
        Instr(timing.RECIP, rows * timing.t_recip(spec.recip_bits)),
        vector_instr(m, rows * n),
    ]
    return probs, instrs
