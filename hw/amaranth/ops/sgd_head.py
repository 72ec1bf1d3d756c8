"""RTL lowering of SGDHeadStep: logits, softmax, gradient, then the weight (OUTER) and bias (WIDE) updates."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from metahw.compiler.kernels import SGDHeadStep
from metahw.compiler.kernels.sfu import constant_reciprocal
from metahw.hw.amaranth.isa import (
    GRADIENT,
    OUTER,
    REDUCE,
    VECTOR,
    WIDE,
    BiasUpdate,
    VectorOp,
    WeightUpdate,
)
from metahw.hw.amaranth.lower_head import (
    Buffers,
    blocks,
    linear,
    requantiser,
    scalar_weight,
    softmax_sequence,
    streamed_labels,
)
from metahw.hw.amaranth.ops import HEAD, lowers

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan


@lowers(HEAD, SGDHeadStep)
def sgd_step(rp: RtlPlan, op: SGDHeadStep, buffers: Buffers) -> None:
    """One SGD step of the linear head."""
    f, w, b = buffers[op.features], buffers[op.weight], buffers[op.bias]
    labels = streamed_labels(rp, op, op.labels)
    lr_w, lr_b = scalar_weight(rp, op, buffers[op.lr_w]), scalar_weight(rp, op, buffers[op.lr_b])
    flw, flb = buffers[op.lr_w].qformat.frac, buffers[op.lr_b].qformat.frac
    (rows, dim), ways = f.shape, w.shape[0]
    reduce, acc_frac = linear(rp, op, f, w, b)
    logits = rp.scratch("logits", rows, ways, op.logits_format)
    reduce = dataclasses.replace(reduce, requant=requantiser(rp, acc_frac, op.logits_format), out=logits)
    rp.emit(REDUCE, rows * ways * blocks(dim, rp), reduce, op.name)
    probs = rp.scratch("probabilities", rows, ways, op.prob_format)
    softmax_sequence(rp, logits, (rows, ways), op.logits_format, op.softmax, probs, op.prob_format, op.name)
    grads = rp.scratch("gradients", rows, ways, op.grad_format)
    pf, gf = op.prob_format.frac, op.grad_format.frac
    if rows & (rows - 1) == 0:
        extra, scale = rows.bit_length() - 1, 0
    else:
        extra, scale = op.recip_frac, rp.factor_index(constant_reciprocal(rows, op.recip_frac))
    gradient = VectorOp(
        GRADIENT,
        probs,
        grads,
        rows,
        ways,
        requantiser(rp, pf + extra, op.grad_format),
        scale,
        labels=labels,
        one=1 << pf,
    )
    rp.emit(VECTOR, blocks(rows * ways, rp), gradient, op.name)
    fw, fb, ff = w.qformat.frac, b.qformat.frac, f.qformat.frac
    frac_w, frac_b = max(fw, flw + gf + ff), max(fb, flb + gf)
    update_w = rp.update_index(frac_w - fw, frac_w - flw - gf - ff)
    outer = WeightUpdate(
        grads, reduce.a, reduce.b, rows, ways, dim, rp.factor_index(lr_w), update_w, requantiser(rp, frac_w, w.qformat)
    )
    rp.emit(OUTER, ways * blocks(dim, rp) * rows, outer, op.name)
    update_b = rp.update_index(frac_b - fb, frac_b - flb - gf)
    wide = BiasUpdate(
        grads, reduce.bias, rows, ways, rp.factor_index(lr_b), update_b, requantiser(rp, frac_b, b.qformat)
    )
    rp.emit(WIDE, blocks(ways, rp) * rows, wide, op.name)
