"""Datapath widths a Program needs: multiplier operands and accumulator/PPU values, per op.

docs/microarchitecture.md §9. A value enters a multiplier as a signed `operand_bits` number
(an unsigned b-bit value needs b + 1 bits); accumulators and every PPU intermediate are
signed `acc_bits` numbers and must hold the value's exact range (docs/numerics.md §3).
`HardwareConfig.validate` compares these needs with the config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from metahw.compiler.kernels import (
    Add,
    ArgMax,
    ArgMin,
    AvgPool2d,
    Conv2d,
    CosineAttention,
    Dense,
    Distance,
    Flatten,
    GlobalAvgPool,
    Kernel,
    MaxPool2d,
    ProtoHeadInit,
    PrototypeAccumulate,
    Requant,
    SGDHeadStep,
    Softmax,
    SoftmaxSpec,
)
from metahw.compiler.kernels.distance import unit_format
from metahw.compiler.kernels.mac import checked_accumulator
from metahw.compiler.kernels.sfu import constant_reciprocal
from metahw.compiler.program import Buffer, Program
from metahw.qformat import QFormat, product_range

OPERAND, ACCUMULATOR = "operand", "accumulator"
#: the rsqrt factor r lies in [2^15, 2^16] (docs/numerics.md §4)
RSQRT_MAX = 1 << 16


@dataclass(frozen=True)
class WidthNeed:
    """`what` (naming the tensor) at op `where` needs `bits`-bit operands or accumulators (`kind`)."""

    where: str
    what: str
    kind: str
    bits: int


def signed_bits(lo: int, hi: int) -> int:
    """Two's-complement bits that hold every integer in [lo, hi]."""
    return max((-lo - 1).bit_length() if lo < 0 else 0, hi.bit_length() if hi > 0 else 0) + 1


def format_bits(fmt: QFormat) -> int:
    """Signed bits of a format's range (an unsigned b-bit format needs b + 1)."""
    return signed_bits(fmt.min_int, fmt.max_int)


Needs = Iterator[tuple[str, str, int]]


def _mac(op: Conv2d | Dense, b: Mapping[str, Buffer]) -> Needs:
    yield f"input '{op.input}' ({b[op.input].qformat})", OPERAND, format_bits(b[op.input].qformat)
    yield f"weight '{op.weight}' ({b[op.weight].qformat})", OPERAND, format_bits(b[op.weight].qformat)
    acc = max(format_bits(f) for f in op.accumulators(b))
    yield f"the accumulator of '{op.output}'", ACCUMULATOR, acc
    if isinstance(op, Conv2d) and op.post_frac():  # LeakyReLU's scaled values, then a 2x2 average's sum of 4
        leaky = op.leaky_frac if op.leaky_slope is not None else 0
        window = 4 if op.pool and op.pool_mode == "avg" else 1
        yield f"the activated, pooled accumulator of '{op.output}'", ACCUMULATOR, acc + leaky + window.bit_length() - 1


def _pool_sum(op: AvgPool2d | GlobalAvgPool, b: Mapping[str, Buffer]) -> Needs:
    x = b[op.input]
    terms = 4 if isinstance(op, AvgPool2d) else x.shape[2] * x.shape[3]
    scale = getattr(op, "scale", 1)
    yield (
        f"the window sum of '{op.input}'",
        ACCUMULATOR,
        signed_bits(terms * x.qformat.min_int * scale, terms * x.qformat.max_int * scale),
    )


def _add(op: Add, b: Mapping[str, Buffer]) -> Needs:
    f = op.aligned_frac(b)
    lo = sum(b[n].qformat.min_int << (f - b[n].qformat.frac) for n in (op.input, op.residual))
    hi = sum(b[n].qformat.max_int << (f - b[n].qformat.frac) for n in (op.input, op.residual))
    yield (
        f"the sum of '{op.input}' and '{op.residual}'",
        ACCUMULATOR,
        signed_bits(lo, hi) + (op.leaky_frac if op.leaky_slope is not None else 0),
    )


def _passthrough(op: MaxPool2d | Flatten | Requant | ArgMin | ArgMax, b: Mapping[str, Buffer]) -> Needs:
    yield f"input '{op.input}' ({b[op.input].qformat})", ACCUMULATOR, format_bits(b[op.input].qformat)


def _norm(name: str, x: QFormat, dim: int) -> Needs:
    yield f"'{name}' ({x})", OPERAND, format_bits(x)
    lo, hi = product_range(x, x)
    yield f"the sum of squares of '{name}'", ACCUMULATOR, signed_bits(0, dim * hi)
    yield "the rsqrt factor", OPERAND, signed_bits(0, RSQRT_MAX)
    yield f"'{name}' times its rsqrt factor", ACCUMULATOR, signed_bits(x.min_int * RSQRT_MAX, x.max_int * RSQRT_MAX)


def _softmax(what: str, x: QFormat, n: int, spec: SoftmaxSpec) -> Needs:
    shift = max(0, spec.index_frac - x.frac)
    yield f"the max-subtracted {what}", ACCUMULATOR, signed_bits((x.min_int - x.max_int) << shift, 0)
    yield f"the exp values of {what}", OPERAND, signed_bits(0, 1 << spec.exp_frac)
    yield f"the exp sum of {what}", ACCUMULATOR, signed_bits(0, n << spec.exp_frac)
    yield f"the reciprocal of the exp sum of {what}", OPERAND, signed_bits(0, 1 << spec.recip_bits)
    yield f"the scaled exp values of {what}", ACCUMULATOR, signed_bits(0, 1 << (spec.exp_frac + spec.recip_bits))


def _by_count(what: str, lo: int, hi: int, count: int, recip_frac: int) -> Needs:
    if count & (count - 1):
        factor = constant_reciprocal(count, recip_frac)
        yield f"the reciprocal of {count}", OPERAND, signed_bits(0, factor)
        yield f"{what} divided by {count}", ACCUMULATOR, signed_bits(lo * factor, hi * factor)


def _distance(op: Distance, b: Mapping[str, Buffer]) -> Needs:
    q, r = b[op.queries].qformat, b[op.refs].qformat
    dim = b[op.queries].shape[1]
    if op.metric == "l2":
        f = max(q.frac, r.frac)
        qs, rs = f - q.frac, f - r.frac
        lo, hi = (q.min_int << qs) - (r.max_int << rs), (q.max_int << qs) - (r.min_int << rs)
        yield f"the difference of '{op.queries}' and '{op.refs}'", OPERAND, signed_bits(lo, hi)
    elif op.metric == "dot":
        yield f"'{op.queries}' ({q})", OPERAND, format_bits(q)
        yield f"'{op.refs}' ({r})", OPERAND, format_bits(r)
    else:
        yield from _norm(op.queries, q, dim)
        yield from _norm(op.refs, r, dim)
        unit = unit_format(op.unit_frac)
        yield f"the unit vectors ({unit})", OPERAND, format_bits(unit)
    yield f"the exact {op.metric} distance", ACCUMULATOR, format_bits(op.exact_format(b))


def _softmax_op(op: Softmax, b: Mapping[str, Buffer]) -> Needs:
    x = b[op.input]
    yield from _softmax(f"'{op.input}'", x.qformat, x.shape[-1], op.spec)


def _prototypes(op: PrototypeAccumulate, b: Mapping[str, Buffer]) -> Needs:
    f = b[op.features].qformat
    k = op.shots
    yield f"features '{op.features}' ({f})", OPERAND, format_bits(f)
    yield f"the class sums of '{op.features}'", ACCUMULATOR, signed_bits(k * f.min_int, k * f.max_int)
    yield from _by_count("the class sums", k * f.min_int, k * f.max_int, k, op.recip_frac)


def _proto_head(op: ProtoHeadInit, b: Mapping[str, Buffer]) -> Needs:
    c = b[op.prototypes]
    yield f"prototypes '{op.prototypes}' ({c.qformat})", OPERAND, format_bits(c.qformat)
    squares = checked_accumulator(op, c.qformat, c.qformat, c.shape[1])
    yield f"minus the sum of squares of '{op.prototypes}'", ACCUMULATOR, signed_bits(-squares.max_int, 0)


def _sgd(op: SGDHeadStep, b: Mapping[str, Buffer]) -> Needs:
    f, w, bias = b[op.features].qformat, b[op.weight].qformat, b[op.bias].qformat
    (m, d), n = b[op.features].shape, b[op.weight].shape[0]
    yield f"features '{op.features}' ({f})", OPERAND, format_bits(f)
    yield f"head weight '{op.weight}' ({w})", OPERAND, format_bits(w)
    yield f"the logits of '{op.weight}'", ACCUMULATOR, format_bits(checked_accumulator(op, f, w, d, bias))
    yield from _softmax(f"{op.name}/logits", op.logits_format, n, op.softmax)
    p = op.prob_format
    lo, hi = p.min_int - (1 << p.frac), p.max_int
    yield "the error (probabilities minus one-hot)", ACCUMULATOR, signed_bits(lo, hi)
    yield from _by_count("the error", lo, hi, m, op.recip_frac)
    g = op.grad_format
    yield f"the gradient ({g})", OPERAND, format_bits(g)
    pmin, pmax = product_range(g, f)
    yield "the weight gradient", ACCUMULATOR, signed_bits(m * pmin, m * pmax)
    lr_w, lr_b = b[op.lr_w].qformat, b[op.lr_b].qformat
    yield f"learning rate '{op.lr_w}'", OPERAND, format_bits(lr_w)
    yield f"the update of '{op.weight}'", ACCUMULATOR, _update_bits(w, m * pmin, m * pmax, g.frac + f.frac, lr_w)
    yield f"learning rate '{op.lr_b}'", OPERAND, format_bits(lr_b)
    yield f"the update of '{op.bias}'", ACCUMULATOR, _update_bits(bias, m * g.min_int, m * g.max_int, g.frac, lr_b)


def _update_bits(param: QFormat, g_lo: int, g_hi: int, g_frac: int, lr: QFormat) -> int:
    """Signed bits of param - lr * grad with both terms aligned to the finer frac (grad in [g_lo, g_hi])."""
    frac = max(param.frac, lr.frac + g_frac)
    ps, gs = frac - param.frac, frac - lr.frac - g_frac
    steps = [a * g for a in (lr.min_int, lr.max_int) for g in (g_lo, g_hi)]
    return signed_bits((param.min_int << ps) - (max(steps) << gs), (param.max_int << ps) - (min(steps) << gs))


def _attention(op: CosineAttention, b: Mapping[str, Buffer]) -> Needs:
    q, s = b[op.queries], b[op.supports]
    dim, m = q.shape[1], s.shape[0]
    yield from _norm(op.queries, q.qformat, dim)
    yield from _norm(op.supports, s.qformat, dim)
    unit = unit_format(op.unit_frac)
    yield f"the unit vectors ({unit})", OPERAND, format_bits(unit)
    cosine = checked_accumulator(op, unit, unit, dim)
    yield "the cosine similarities", ACCUMULATOR, format_bits(cosine)
    scale = b[op.scale].qformat
    yield f"scale '{op.scale}' ({scale})", OPERAND, format_bits(scale)
    lo, hi = product_range(cosine, scale)
    yield "the scaled cosines", ACCUMULATOR, signed_bits(lo, hi)
    yield from _softmax(f"{op.name}/logits", op.logits_format, m, op.softmax)
    a = op.attention_format
    yield f"the attention ({a})", OPERAND, format_bits(a)
    yield "the class sums of the attention", ACCUMULATOR, signed_bits(m * a.min_int, m * a.max_int)


_NEEDS: dict[type[Kernel], Callable[..., Needs]] = {
    Conv2d: _mac,
    Dense: _mac,
    MaxPool2d: _passthrough,
    AvgPool2d: _pool_sum,
    GlobalAvgPool: _pool_sum,
    Add: _add,
    Flatten: _passthrough,
    Requant: _passthrough,
    ArgMin: _passthrough,
    ArgMax: _passthrough,
    Distance: _distance,
    Softmax: _softmax_op,
    PrototypeAccumulate: _prototypes,
    ProtoHeadInit: _proto_head,
    SGDHeadStep: _sgd,
    CosineAttention: _attention,
}


def width_needs(program: Program) -> list[WidthNeed]:
    """Every operand and accumulator width the program's ops need, in program order."""
    buffers = program.buffer_map
    return [
        WidthNeed(f"{op.op} '{op.name}'", what, kind, bits)
        for op in program.ops
        for what, kind, bits in _NEEDS[type(op)](op, buffers)
    ]


def widest(program: Program) -> dict[str, int]:
    """The widest operand and accumulator the program needs: {'operand': bits, 'accumulator': bits}."""
    out = {OPERAND: 0, ACCUMULATOR: 0}
    for need in width_needs(program):
        out[need.kind] = max(out[need.kind], need.bits)
    return out
