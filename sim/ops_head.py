"""Schedules of the head ops on whole buffers: Dense, Distance, Softmax, ArgMin/ArgMax, prototypes, ProtoHeadInit.

docs/microarchitecture.md §8.
"""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import (
    ArgMax,
    ArgMin,
    Dense,
    Distance,
    Kernel,
    ProtoHeadInit,
    PrototypeAccumulate,
    Softmax,
    timing,
)
from metahw.sim.mac import exact_matmul, squared_distances
from metahw.sim.machine import Instr, Machine, ceil_div, simulates
from metahw.sim.sequences import normalise, reduce_instr, softmax_rows, vector_instr


def linear(m: Machine, x: np.ndarray, x_frac: int, weight: str, bias: str | None) -> tuple[np.ndarray, np.ndarray]:
    """x W^T with the accumulators preloaded with the aligned bias: (acc [B,N], acc frac [N])."""
    w = m.read(weight, x.shape[0] * m.buffers[weight].shape[0] * x.shape[1])
    acc_frac = x_frac + m.fracs(weight)
    acc = exact_matmul(x, w.T)
    if bias is not None:
        acc = acc + np.left_shift(m.read(bias, acc.size), acc_frac - m.fracs(bias))
    return acc, acc_frac


@simulates(Dense)
def dense(m: Machine, op: Dense) -> list[Instr]:
    """REDUCE: B*N dot products of D terms, bias preloaded; PPU: ReLU, round, saturate."""
    (b, d), n = m.buffers[op.input].shape, m.buffers[op.weight].shape[0]
    acc, acc_frac = linear(m, m.read(op.input, b * n * d), m.fmt(op.input).frac, op.weight, op.bias)
    if op.relu:
        acc = np.maximum(acc, 0)
    m.write(op.output, m.requant(acc, acc_frac, m.fmt(op.output), op.output))
    return [reduce_instr(m, b * n, d)]


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


@simulates(Softmax)
def softmax(m: Machine, op: Softmax) -> list[Instr]:
    """The softmax sequence over the rows of the last axis."""
    x = m.read(op.input)
    m.reads[op.input] += x.size
    rows = x.reshape(-1, x.shape[-1])
    probs, instrs = softmax_rows(m, rows, m.fmt(op.input).frac, op.spec, m.fmt(op.output), op.output)
    m.write(op.output, probs.reshape(x.shape))
    return instrs


def _tree_select(x: np.ndarray, prefer_greater: bool) -> np.ndarray:
    """Index of the extreme of each row through a pairwise compare tree; a tie keeps the left (lower) index."""
    width = 1 << max(0, (x.shape[1] - 1).bit_length())
    sentinel = np.iinfo(np.int64).min if prefer_greater else np.iinfo(np.int64).max
    values = np.full((x.shape[0], width), sentinel, dtype=np.int64)
    values[:, : x.shape[1]] = x
    index = np.broadcast_to(np.arange(width, dtype=np.int64), values.shape)
    while values.shape[1] > 1:
        left, right = values[:, 0::2], values[:, 1::2]
        take = right > left if prefer_greater else right < left
        values = np.where(take, right, left)
        index = np.where(take, index[:, 1::2], index[:, 0::2])
    return index[:, 0]


@simulates(ArgMin, ArgMax)
def argreduce(m: Machine, op: ArgMin | ArgMax) -> list[Instr]:
    """ROWRED: ⌈N/P⌉ beats per row into the PPU's compare tree."""
    x = m.read(op.input)
    m.reads[op.input] += x.size
    rows = x.reshape(-1, x.shape[-1])
    index = _tree_select(rows, prefer_greater=isinstance(op, ArgMax))
    m.write(op.output, index.reshape(x.shape[:-1]))
    return [Instr(timing.ROWRED, rows.shape[0] * ceil_div(x.shape[-1], m.hw.lanes))]


def check_labels(op: Kernel, labels: np.ndarray, ways: int) -> None:
    """The label unit's range check: a class id outside 0..ways-1 stops the episode with an error."""
    if labels.size and (labels.min() < 0 or labels.max() >= ways):
        raise op.error(f"labels must lie in 0..{ways - 1}, got values from {labels.min()} to {labels.max()}")


def divide_by_count(values: np.ndarray, count: int, recip_frac: int) -> tuple[np.ndarray, int]:
    """The PPU's division by a static count: a frac change for 2^k, else a multiply by round(2^r / count)."""
    if count & (count - 1) == 0:
        return values, count.bit_length() - 1
    return values * (((1 << (recip_frac + 1)) + count) // (2 * count)), recip_frac


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
