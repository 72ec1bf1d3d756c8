"""What several op schedules share (`sim/ops/`): row normalisation, softmax, the VECTOR grid pass, linear, label checks.

docs/microarchitecture.md §7 and §8.
"""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import Kernel, timing
from metahw.compiler.kernels.distance import unit_format
from metahw.compiler.kernels.softmax import SoftmaxSpec
from metahw.qformat import QFormat
from metahw.sim import sfu
from metahw.sim.mac import exact_matmul
from metahw.sim.machine import Instr, Machine, ceil_div, per_group


def reduce_instr(m: Machine, outputs: int, fan_in: int) -> Instr:
    """REDUCE (a head op: one group of P lanes): each output streams its fan-in P elements per beat."""
    beats = outputs * ceil_div(fan_in, m.hw.lanes)
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


def grid_pass(m: Machine, shape: tuple[int, ...], values_read: int, name: str, slots: int = 1) -> list[Instr]:
    """A VECTOR pass over [A0, A1, ...]: per group, one beat per (block of L along A1, rest), `slots` times over.

    `slots` G: the pass writes one image slot per beat (Flatten, `timing.segment_vector`).
    """
    m.reads[name] += values_read
    if len(shape) < 2:
        return per_group(m.hw, shape[0] if shape else 1, timing.VECTOR, 1)
    beats = slots * ceil_div(shape[1], m.hw.group_lanes) * int(np.prod(shape[2:]))
    return per_group(m.hw, shape[0], timing.VECTOR, beats)


def linear(m: Machine, x: np.ndarray, x_frac: int, weight: str, bias: str | None) -> tuple[np.ndarray, np.ndarray]:
    """x W^T with the accumulators preloaded with the aligned bias: (acc [B,N], acc frac [N])."""
    w = m.read(weight, x.shape[0] * m.buffers[weight].shape[0] * x.shape[1])
    acc_frac = x_frac + m.fracs(weight)
    acc = exact_matmul(x, w.T)
    if bias is not None:
        acc = acc + np.left_shift(m.read(bias, acc.size), acc_frac - m.fracs(bias))
    return acc, acc_frac


def check_labels(op: Kernel, labels: np.ndarray, ways: int) -> None:
    """The label unit's range check: a class id outside 0..ways-1 stops the episode with an error."""
    if labels.size and (labels.min() < 0 or labels.max() >= ways):
        raise op.error(f"labels must lie in 0..{ways - 1}, got values from {labels.min()} to {labels.max()}")


def divide_by_count(values: np.ndarray, count: int, recip_frac: int) -> tuple[np.ndarray, int]:
    """The PPU's division by a static count: a frac change for 2^k, else a multiply by round(2^r / count)."""
    if count & (count - 1) == 0:
        return values, count.bit_length() - 1
    return values * (((1 << (recip_frac + 1)) + count) // (2 * count)), recip_frac
