"""Schedule of SGDHeadStep: one on-chip SGD step of the linear head (docs/microarchitecture.md §8)."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import SGDHeadStep, timing
from metahw.sim.mac import exact_matmul
from metahw.sim.machine import Instr, Machine, ceil_div, simulates
from metahw.sim.sequences import check_labels, divide_by_count, linear, reduce_instr, softmax_rows, vector_instr


def _update(m: Machine, param: str, grad: np.ndarray, grad_frac: int, lr: str) -> None:
    """PPU axpy: param <- round((param << a) - ((lr * grad) << b)), both terms aligned to the finer frac."""
    p_frac, lr_frac = m.fmt(param).frac, m.fmt(lr).frac
    frac = max(p_frac, lr_frac + grad_frac)
    value = m.read(param, grad.size)
    step = m.read(lr, grad.size) * grad
    exact = np.left_shift(value, frac - p_frac) - np.left_shift(step, frac - lr_frac - grad_frac)
    m.write(param, m.requant(exact, frac, m.fmt(param), param))


@simulates(SGDHeadStep)
def sgd_head_step(m: Machine, op: SGDHeadStep) -> list[Instr]:
    """Logits (REDUCE), softmax, error/divide/grad (VECTOR), gW + W update (OUTER), gb + b update (WIDE)."""
    (rows, dim), ways = m.buffers[op.features].shape, m.buffers[op.weight].shape[0]
    feats = m.read(op.features, rows * ways * dim)
    f_frac = m.fmt(op.features).frac
    acc, acc_frac = linear(m, feats, f_frac, op.weight, op.bias)
    logits = m.requant(acc, acc_frac, op.logits_format, f"{op.name}/logits")
    probs, softmax = softmax_rows(m, logits, op.logits_format.frac, op.softmax, op.prob_format, f"{op.name}/probs")

    labels = m.read(op.labels, rows * ways)
    check_labels(op, labels, ways)
    target = (labels[:, None] == np.arange(ways)[None, :]).astype(np.int64) << op.prob_format.frac
    scaled, extra = divide_by_count(probs - target, rows, op.recip_frac)
    grad = m.requant(scaled, op.prob_format.frac + extra, op.grad_format, f"{op.name}/grad")

    g_frac = op.grad_format.frac
    m.reads[op.features] += ways * rows * dim  # a head op: one group of P lanes
    _update(m, op.weight, exact_matmul(grad.T, feats), g_frac + f_frac, op.lr_w)
    _update(m, op.bias, grad.sum(axis=0), g_frac, op.lr_b)
    outer = ways * ceil_div(dim, m.hw.lanes) * rows
    return [
        reduce_instr(m, rows * ways, dim),
        *softmax,
        vector_instr(m, rows * ways),
        Instr(timing.OUTER, outer, ways * dim * rows),
        Instr(timing.WIDE, ceil_div(ways, m.hw.lanes) * rows, ways * rows),
    ]
