"""Lowering of the head ops and state initialisation to instructions and engine descriptors (`isa.py`).

Each op becomes the instruction sequence of docs/microarchitecture.md §8, in the simulator's
order and with its beat counts; intermediates live in scratch head memories shared by ops of
equal shape and format. What the generator cannot build is refused with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from metahw.compiler.kernels import (
    ArgMax,
    ArgMin,
    CosineAttention,
    Dense,
    Distance,
    Kernel,
    ProtoHeadInit,
    PrototypeAccumulate,
    SGDHeadStep,
    Softmax,
    SoftmaxSpec,
    timing,
)
from metahw.compiler.kernels.distance import unit_format
from metahw.compiler.kernels.sfu import constant_reciprocal
from metahw.compiler.program import Buffer
from metahw.hw.amaranth.isa import (
    EXP,
    GRADIENT,
    NORMALISE,
    OUTER,
    RECIP,
    REDUCE,
    REQUANT,
    ROWRED,
    RSQRT,
    SCAN,
    SOFTMAX,
    VECTOR,
    WIDE,
    BiasUpdate,
    ClassSums,
    ExpOp,
    PrototypeSums,
    RecipOp,
    ReduceOp,
    RequantSpec,
    RowReduce,
    RsqrtOp,
    ScanOp,
    VectorOp,
    WeightUpdate,
    refuse,
)
from metahw.qformat import QFormat
from metahw.sim.sfu import RSQRT_MANTISSA, RSQRT_NUMERATOR

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan

Buffers = dict[str, Buffer]


def _blocks(n: int, rp: RtlPlan) -> int:
    return -(-n // rp.lanes)


def _requant(rp: RtlPlan, src_frac: int, dst: QFormat) -> int:
    return rp.requant_index(RequantSpec(src_frac - dst.frac, dst))


def _source(rp: RtlPlan, buf: Buffer) -> str:
    """The head memory an op reads: one written earlier, or a read-only copy of a weight buffer."""
    if buf.name in rp.heads:
        return buf.name
    if buf.kind == "weight":
        values = tuple(int(v) for v in rp.program.weights[buf.name].reshape(-1))
        return rp.store(buf, init=values).name
    raise refuse(f"'{buf.name}' is read by a head op but no RTL memory holds it (it is not written on chip)")


def _scalar_weight(rp: RtlPlan, op: Kernel, buf: Buffer) -> int:
    """The value of a scalar weight (learning rate, attention scale): a constant PPU factor."""
    if buf.kind != "weight" or buf.shape != ():
        raise refuse(
            f"{type(op).__name__} '{op.name}' reads '{buf.name}' {buf.shape} ({buf.kind}); the RTL takes "
            f"scalar weights only here"
        )
    return int(rp.program.weights[buf.name])


def _labels(rp: RtlPlan, op: Kernel, name: str) -> str:
    if name not in rp.label_inputs:
        raise refuse(f"{type(op).__name__} '{op.name}' reads labels '{name}' that are not a streamed input")
    return name


def lower_init(rp: RtlPlan, buf: Buffer) -> None:
    """init: VECTOR copy of a state buffer's initial value (a read-only memory) into its head memory."""
    values = tuple(int(v) for v in rp.program.weights[buf.name].reshape(-1))
    state = rp.store(buf)
    rom = rp.scratch(f"{buf.name} initial value", state.rows, state.cols, buf.qformat, values)
    copy = VectorOp(REQUANT, rom, buf.name, state.rows, state.cols, _requant(rp, buf.qformat.frac, buf.qformat))
    rp.emit(VECTOR, _blocks(len(values), rp), copy, f"init {buf.name}")


def lower_head_op(rp: RtlPlan, op: Kernel, buffers: Buffers) -> None:
    """Append the instructions of one head op (or refuse it)."""
    lower = HEAD_LOWERINGS.get(type(op))
    if lower is None:
        raise refuse(f"{type(op).__name__} '{op.name}' has no RTL engine")
    lower(rp, op, buffers)


def _prototypes(rp: RtlPlan, op: PrototypeAccumulate, buffers: Buffers) -> None:
    labels = _labels(rp, op, op.labels)
    f, out = buffers[op.features], buffers[op.output]
    features = _source(rp, f)
    rp.store(out)
    if op.shots & (op.shots - 1) == 0:
        extra, scale = op.shots.bit_length() - 1, 0
    else:
        extra, scale = op.recip_frac, rp.factor_index(constant_reciprocal(op.shots, op.recip_frac))
    requant = _requant(rp, f.qformat.frac + extra, out.qformat)
    rows, dim = f.shape
    table = rp.emit(SCAN, rows, ScanOp(labels, op.ways, op.shots), op.name)
    sums = PrototypeSums(features, out.name, op.ways, op.shots, dim, table, scale, requant)
    rp.emit(WIDE, op.ways * _blocks(dim, rp) * op.shots, sums, op.name)


def _norm(rp: RtlPlan, buf: Buffer, unit_frac: int, role: str, label: str) -> str:
    """Norm(R, D): sum of squares (REDUCE, raw into the rsqrt rows), rsqrt per row, u = x * r (VECTOR)."""
    source = _source(rp, buf)
    (rows, dim), fmt = buf.shape, buf.qformat
    unit = unit_format(unit_frac)
    out = rp.scratch(role, rows, dim, unit)
    peak = dim * max(fmt.min_int**2, fmt.max_int**2)
    rp.norm_rows = max(rp.norm_rows, rows)
    rp.norm_bits = max(rp.norm_bits, peak.bit_length())
    rp.emit(REDUCE, rows * _blocks(dim, rp), ReduceOp(source, None, rows, 1, dim), label)
    rp.emit(RSQRT, rows * timing.T_RSQRT, RsqrtOp(rows), label)
    # the row exponent e = 31 + ceil((L - 32) / 2) over the bit lengths L a non-zero sum can have
    exps = [RSQRT_NUMERATOR // 2 - (RSQRT_MANTISSA - length) // 2 for length in (1, peak.bit_length())]
    selects = tuple(rp.requant_index(RequantSpec(e - unit_frac, unit)) for e in range(exps[0], exps[1] + 1))
    scale = VectorOp(NORMALISE, source, out, rows, dim, selects[0], exp_min=exps[0], selects=selects)
    rp.emit(VECTOR, _blocks(rows * dim, rp), scale, label)
    return out


def _exp_base(rp: RtlPlan, spec: SoftmaxSpec) -> int:
    if spec not in rp.exp_bases:
        rp.exp_bases[spec] = len(rp.exp_table)
        rp.exp_table += spec.table().tolist()
        rp.exp_bits = max(rp.exp_bits, spec.exp_frac + 1)
    return rp.exp_bases[spec]


def _softmax(
    rp: RtlPlan,
    source: str,
    shape: tuple[int, int],
    x: QFormat,
    spec: SoftmaxSpec,
    out: str,
    out_format: QFormat,
    label: str,
) -> None:
    """Softmax(R, N): row max (ROWRED), exp + row sums (EXP), reciprocals (RECIP), p = e * r (VECTOR)."""
    rows, cols = shape
    rp.softmax_rows = max(rp.softmax_rows, rows)
    rp.emit(ROWRED, rows * _blocks(cols, rp), RowReduce(source, rows, cols, True, None), label)
    exps = rp.scratch("exp", rows, cols, QFormat(spec.exp_frac + 1, spec.exp_frac, signed=False))
    exp = ExpOp(source, exps, rows, cols, x.frac - spec.index_frac, _exp_base(rp, spec), spec.table_size)
    rp.emit(EXP, rows * cols, exp, label)
    rp.emit(RECIP, rows * timing.t_recip(spec.recip_bits), RecipOp(rows, spec.exp_frac, spec.recip_bits), label)
    requant = _requant(rp, spec.exp_frac + spec.recip_bits, out_format)
    rp.emit(VECTOR, _blocks(rows * cols, rp), VectorOp(SOFTMAX, exps, out, rows, cols, requant), label)


def _distance(rp: RtlPlan, op: Distance, buffers: Buffers) -> None:
    q, r, out = buffers[op.queries], buffers[op.refs], buffers[op.output]
    if q.name == r.name:
        raise refuse(f"Distance '{op.name}' reads '{q.name}' as both operands (one memory read per beat)")
    (nq, dim), nr = q.shape, r.shape[0]
    rp.store(out)
    if op.metric == "cosine":
        a = _norm(rp, q, op.unit_frac, "unit queries", op.name)
        b = _norm(rp, r, op.unit_frac, "unit refs", op.name)
        reduce = ReduceOp(a, b, nq, nr, dim, requant=_requant(rp, 2 * op.unit_frac, out.qformat), out=out.name)
    else:
        a, b = _source(rp, q), _source(rp, r)
        fq, fr = q.qformat.frac, r.qformat.frac
        if op.metric == "l2":
            f = max(fq, fr)
            requant = _requant(rp, 2 * f, out.qformat)
            reduce = ReduceOp(a, b, nq, nr, dim, True, f - fq, f - fr, requant=requant, out=out.name)
        else:
            reduce = ReduceOp(a, b, nq, nr, dim, requant=_requant(rp, fq + fr, out.qformat), out=out.name)
    rp.emit(REDUCE, nq * nr * _blocks(dim, rp), reduce, op.name)


def _argreduce(rp: RtlPlan, op: ArgMin | ArgMax, buffers: Buffers) -> None:
    x, out = buffers[op.input], buffers[op.output]
    if len(x.shape) != 2:
        raise refuse(f"{type(op).__name__} '{op.name}' reduces a {len(x.shape)}-d tensor (the RTL reduces rows)")
    source = _source(rp, x)
    rp.store(out)
    rows, cols = x.shape
    reduce = RowReduce(source, rows, cols, isinstance(op, ArgMax), out.name)
    rp.emit(ROWRED, rows * _blocks(cols, rp), reduce, op.name)


def _linear(rp: RtlPlan, op: Kernel, x: Buffer, w: Buffer, bias: Buffer | None) -> tuple[ReduceOp, int]:
    """x W^T with the tree preloaded with the aligned bias, as (descriptor without output, acc frac)."""
    if x.name == w.name:
        raise refuse(f"{type(op).__name__} '{op.name}' reads '{x.name}' as both operands")
    a, b = _source(rp, x), _source(rp, w)
    acc_frac = x.qformat.frac + w.qformat.frac
    bias_name, shift = None, 0
    if bias is not None:
        bias_name, shift = _source(rp, bias), acc_frac - bias.qformat.frac
        if shift < 0:
            raise refuse(f"{type(op).__name__} '{op.name}': bias '{bias.name}' is finer than the accumulator")
    return ReduceOp(a, b, x.shape[0], w.shape[0], x.shape[1], bias=bias_name, bias_shift=shift), acc_frac


def _dense(rp: RtlPlan, op: Dense, buffers: Buffers) -> None:
    x, w, out = buffers[op.input], buffers[op.weight], buffers[op.output]
    reduce, acc_frac = _linear(rp, op, x, w, buffers[op.bias] if op.bias else None)
    rp.store(out)
    requant = _requant(rp, acc_frac, out.qformat)
    reduce = dataclasses.replace(reduce, relu=op.relu, requant=requant, out=out.name)
    rp.emit(REDUCE, x.shape[0] * w.shape[0] * _blocks(x.shape[1], rp), reduce, op.name)


def _softmax_op(rp: RtlPlan, op: Softmax, buffers: Buffers) -> None:
    x, out = buffers[op.input], buffers[op.output]
    if len(x.shape) not in (1, 2):
        raise refuse(f"Softmax '{op.name}' works on a {len(x.shape)}-d tensor (the RTL takes rows of a 1-d or 2-d one)")
    source = _source(rp, x)
    rp.store(out)
    shape = (1, x.shape[0]) if len(x.shape) == 1 else x.shape
    _softmax(rp, source, shape, x.qformat, op.spec, out.name, out.qformat, op.name)


def _proto_head_init(rp: RtlPlan, op: ProtoHeadInit, buffers: Buffers) -> None:
    c, w, b = buffers[op.prototypes], buffers[op.weight], buffers[op.bias]
    source = _source(rp, c)
    rp.store(w)
    rp.store(b)
    (n, dim), f = c.shape, c.qformat.frac
    double = VectorOp(REQUANT, source, w.name, n, dim, _requant(rp, f - 1, w.qformat))
    rp.emit(VECTOR, _blocks(n * dim, rp), double, op.name)
    squares = ReduceOp(
        source, None, n, 1, dim, scale=rp.factor_index(-1), requant=_requant(rp, 2 * f, b.qformat), out=b.name
    )
    rp.emit(REDUCE, n * _blocks(dim, rp), squares, op.name)


def _sgd(rp: RtlPlan, op: SGDHeadStep, buffers: Buffers) -> None:
    f, w, b = buffers[op.features], buffers[op.weight], buffers[op.bias]
    labels = _labels(rp, op, op.labels)
    lr_w, lr_b = _scalar_weight(rp, op, buffers[op.lr_w]), _scalar_weight(rp, op, buffers[op.lr_b])
    flw, flb = buffers[op.lr_w].qformat.frac, buffers[op.lr_b].qformat.frac
    (rows, dim), ways = f.shape, w.shape[0]
    reduce, acc_frac = _linear(rp, op, f, w, b)
    logits = rp.scratch("logits", rows, ways, op.logits_format)
    reduce = dataclasses.replace(reduce, requant=_requant(rp, acc_frac, op.logits_format), out=logits)
    rp.emit(REDUCE, rows * ways * _blocks(dim, rp), reduce, op.name)
    probs = rp.scratch("probabilities", rows, ways, op.prob_format)
    _softmax(rp, logits, (rows, ways), op.logits_format, op.softmax, probs, op.prob_format, op.name)
    grads = rp.scratch("gradients", rows, ways, op.grad_format)
    pf, gf = op.prob_format.frac, op.grad_format.frac
    if rows & (rows - 1) == 0:
        extra, scale = rows.bit_length() - 1, 0
    else:
        extra, scale = op.recip_frac, rp.factor_index(constant_reciprocal(rows, op.recip_frac))
    gradient = VectorOp(
        GRADIENT, probs, grads, rows, ways, _requant(rp, pf + extra, op.grad_format), scale, labels=labels, one=1 << pf
    )
    rp.emit(VECTOR, _blocks(rows * ways, rp), gradient, op.name)
    fw, fb, ff = w.qformat.frac, b.qformat.frac, f.qformat.frac
    frac_w, frac_b = max(fw, flw + gf + ff), max(fb, flb + gf)
    update_w = rp.update_index(frac_w - fw, frac_w - flw - gf - ff)
    outer = WeightUpdate(
        grads, reduce.a, reduce.b, rows, ways, dim, rp.factor_index(lr_w), update_w, _requant(rp, frac_w, w.qformat)
    )
    rp.emit(OUTER, ways * _blocks(dim, rp) * rows, outer, op.name)
    update_b = rp.update_index(frac_b - fb, frac_b - flb - gf)
    wide = BiasUpdate(grads, reduce.bias, rows, ways, rp.factor_index(lr_b), update_b, _requant(rp, frac_b, b.qformat))
    rp.emit(WIDE, _blocks(ways, rp) * rows, wide, op.name)


def _attention(rp: RtlPlan, op: CosineAttention, buffers: Buffers) -> None:
    q, s, out = buffers[op.queries], buffers[op.supports], buffers[op.output]
    labels = _labels(rp, op, op.labels)
    scale = buffers[op.scale]
    factor = _scalar_weight(rp, op, scale)
    (nq, dim), ns = q.shape, s.shape[0]
    a = _norm(rp, q, op.unit_frac, "unit queries", op.name)
    b = _norm(rp, s, op.unit_frac, "unit supports", op.name)
    logits = rp.scratch("logits", nq, ns, op.logits_format)
    requant = _requant(rp, 2 * op.unit_frac + scale.qformat.frac, op.logits_format)
    reduce = ReduceOp(a, b, nq, ns, dim, scale=rp.factor_index(factor), requant=requant, out=logits)
    rp.emit(REDUCE, nq * ns * _blocks(dim, rp), reduce, op.name)
    attention = rp.scratch("attention", nq, ns, op.attention_format)
    _softmax(rp, logits, (nq, ns), op.logits_format, op.softmax, attention, op.attention_format, op.name)
    rp.store(out)
    sums = ClassSums(attention, labels, out.name, nq, ns, op.ways, _requant(rp, op.attention_format.frac, out.qformat))
    rp.emit(OUTER, nq * _blocks(op.ways, rp) * ns, sums, op.name)


#: every head op the RTL builds, and its lowering to instructions of the head engines
HEAD_LOWERINGS: dict[type[Kernel], Callable[..., None]] = {
    PrototypeAccumulate: _prototypes,
    Distance: _distance,
    ArgMin: _argreduce,
    ArgMax: _argreduce,
    Dense: _dense,
    Softmax: _softmax_op,
    ProtoHeadInit: _proto_head_init,
    SGDHeadStep: _sgd,
    CosineAttention: _attention,
}
