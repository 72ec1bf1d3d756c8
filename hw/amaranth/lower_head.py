"""What the head ops' RTL lowerings (`ops/<family>.py`) share, and the lowering of state initialisation.

Each head op becomes the instruction sequence of docs/microarchitecture.md §8, in the
simulator's order and with its beat counts; intermediates live in scratch head memories shared
by ops of equal shape and format. Here: the head memory an op reads, the requantiser index, the
row normalisation and softmax sequences, the linear layer's REDUCE. What the generator cannot
build is refused with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metahw.compiler.kernels import (
    Kernel,
    SoftmaxSpec,
    timing,
)
from metahw.compiler.kernels.distance import unit_format
from metahw.compiler.program import Buffer
from metahw.hw.amaranth.isa import (
    EXP,
    NORMALISE,
    RECIP,
    REDUCE,
    REQUANT,
    ROWRED,
    RSQRT,
    SOFTMAX,
    VECTOR,
    ExpOp,
    RecipOp,
    ReduceOp,
    RequantSpec,
    RowReduce,
    RsqrtOp,
    VectorOp,
    refuse,
)
from metahw.qformat import QFormat
from metahw.sim.sfu import RSQRT_MANTISSA, RSQRT_NUMERATOR

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan

Buffers = dict[str, Buffer]


def blocks(n: int, rp: RtlPlan) -> int:
    """Words of P elements that `n` elements take."""
    return -(-n // rp.lanes)


def requantiser(rp: RtlPlan, src_frac: int, dst: QFormat) -> int:
    """Index of the PPU's requantisation of a value with `src_frac` fractional bits into `dst`."""
    return rp.requant_index(RequantSpec(src_frac - dst.frac, dst))


def head_memory(rp: RtlPlan, buf: Buffer) -> str:
    """The head memory an op reads: one written earlier, or a read-only copy of a weight buffer."""
    if buf.name in rp.heads:
        return buf.name
    if buf.kind == "weight":
        values = tuple(int(v) for v in rp.program.weights[buf.name].reshape(-1))
        return rp.store(buf, init=values).name
    raise refuse(f"'{buf.name}' is read by a head op but no RTL memory holds it (it is not written on chip)")


def scalar_weight(rp: RtlPlan, op: Kernel, buf: Buffer) -> int:
    """The value of a scalar weight (learning rate, attention scale): a constant PPU factor."""
    if buf.kind != "weight" or buf.shape != ():
        raise refuse(
            f"{type(op).__name__} '{op.name}' reads '{buf.name}' {buf.shape} ({buf.kind}); the RTL takes "
            f"scalar weights only here"
        )
    return int(rp.program.weights[buf.name])


def streamed_labels(rp: RtlPlan, op: Kernel, name: str) -> str:
    """The labels input `name` an op reads (it must be streamed in)."""
    if name not in rp.label_inputs:
        raise refuse(f"{type(op).__name__} '{op.name}' reads labels '{name}' that are not a streamed input")
    return name


def lower_init(rp: RtlPlan, buf: Buffer) -> None:
    """init: VECTOR copy of a state buffer's initial value (a read-only memory) into its head memory."""
    values = tuple(int(v) for v in rp.program.weights[buf.name].reshape(-1))
    state = rp.store(buf)
    rom = rp.scratch(f"{buf.name} initial value", state.rows, state.cols, buf.qformat, values)
    copy = VectorOp(REQUANT, rom, buf.name, state.rows, state.cols, requantiser(rp, buf.qformat.frac, buf.qformat))
    rp.emit(VECTOR, blocks(len(values), rp), copy, f"init {buf.name}")


def norm(rp: RtlPlan, buf: Buffer, unit_frac: int, role: str, label: str) -> str:
    """Norm(R, D): sum of squares (REDUCE, raw into the rsqrt rows), rsqrt per row, u = x * r (VECTOR)."""
    source = head_memory(rp, buf)
    (rows, dim), fmt = buf.shape, buf.qformat
    unit = unit_format(unit_frac)
    out = rp.scratch(role, rows, dim, unit)
    peak = dim * max(fmt.min_int**2, fmt.max_int**2)
    rp.norm_rows = max(rp.norm_rows, rows)
    rp.norm_bits = max(rp.norm_bits, peak.bit_length())
    rp.emit(REDUCE, rows * blocks(dim, rp), ReduceOp(source, None, rows, 1, dim), label)
    rp.emit(RSQRT, rows * timing.T_RSQRT, RsqrtOp(rows), label)
    # the row exponent e = 31 + ceil((L - 32) / 2) over the bit lengths L a non-zero sum can have
    exps = [RSQRT_NUMERATOR // 2 - (RSQRT_MANTISSA - length) // 2 for length in (1, peak.bit_length())]
    selects = tuple(rp.requant_index(RequantSpec(e - unit_frac, unit)) for e in range(exps[0], exps[1] + 1))
    scale = VectorOp(NORMALISE, source, out, rows, dim, selects[0], exp_min=exps[0], selects=selects)
    rp.emit(VECTOR, blocks(rows * dim, rp), scale, label)
    return out


def _exp_base(rp: RtlPlan, spec: SoftmaxSpec) -> int:
    if spec not in rp.exp_bases:
        rp.exp_bases[spec] = len(rp.exp_table)
        rp.exp_table += spec.table().tolist()
        rp.exp_bits = max(rp.exp_bits, spec.exp_frac + 1)
    return rp.exp_bases[spec]


def softmax_sequence(
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
    rp.emit(ROWRED, rows * blocks(cols, rp), RowReduce(source, rows, cols, True, None), label)
    exps = rp.scratch("exp", rows, cols, QFormat(spec.exp_frac + 1, spec.exp_frac, signed=False))
    exp = ExpOp(source, exps, rows, cols, x.frac - spec.index_frac, _exp_base(rp, spec), spec.table_size)
    rp.emit(EXP, rows * cols, exp, label)
    rp.emit(RECIP, rows * timing.t_recip(spec.recip_bits), RecipOp(rows, spec.exp_frac, spec.recip_bits), label)
    requant = requantiser(rp, spec.exp_frac + spec.recip_bits, out_format)
    rp.emit(VECTOR, blocks(rows * cols, rp), VectorOp(SOFTMAX, exps, out, rows, cols, requant), label)


def linear(rp: RtlPlan, op: Kernel, x: Buffer, w: Buffer, bias: Buffer | None) -> tuple[ReduceOp, int]:
    """x W^T with the tree preloaded with the aligned bias, as (descriptor without output, acc frac)."""
    if x.name == w.name:
        raise refuse(f"{type(op).__name__} '{op.name}' reads '{x.name}' as both operands")
    a, b = head_memory(rp, x), head_memory(rp, w)
    acc_frac = x.qformat.frac + w.qformat.frac
    bias_name, shift = None, 0
    if bias is not None:
        bias_name, shift = head_memory(rp, bias), acc_frac - bias.qformat.frac
        if shift < 0:
            raise refuse(f"{type(op).__name__} '{op.name}': bias '{bias.name}' is finer than the accumulator")
    return ReduceOp(a, b, x.shape[0], w.shape[0], x.shape[1], bias=bias_name, bias_shift=shift), acc_frac
