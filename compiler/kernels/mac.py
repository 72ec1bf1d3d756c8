"""MAC-array helpers shared by the kernels that accumulate products: exact accumulator formats."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metahw.compiler.kernels.datapath import ACCUMULATOR, OPERAND, Needs, format_bits
from metahw.qformat import QFormat, accumulator_format

if TYPE_CHECKING:
    from collections.abc import Mapping

    from metahw.compiler.kernels.base import Kernel
    from metahw.compiler.kernels.conv import Conv2d
    from metahw.compiler.kernels.dense import Dense
    from metahw.compiler.program import Buffer


def checked_accumulator(op: Kernel, a: QFormat, b: QFormat, fan_in: int, bias: QFormat | None = None) -> QFormat:
    """`accumulator_format`, with a width the int64 datapath cannot hold reported as the op's UserError."""
    try:
        return accumulator_format(a, b, fan_in, bias)
    except ValueError as exc:
        raise op.error(str(exc)) from None


def channel_accumulators(op: Kernel, x: QFormat, w: Buffer, bias: Buffer | None, fan_in: int) -> list[QFormat]:
    """Exact accumulator format of each output channel (index along axis 0 of `w`, per-channel fracs honoured)."""
    fracs = w.axis0_fracs()
    bias_fracs = bias.axis0_fracs() if bias is not None else None
    formats = []
    for i, fw in enumerate(fracs):
        wf = QFormat(w.qformat.bits, int(fw), w.qformat.signed)
        bf = None if bias is None else QFormat(bias.qformat.bits, int(bias_fracs[i]), bias.qformat.signed)
        formats.append(checked_accumulator(op, x, wf, fan_in, bf))
    return formats


def mac_needs(op: Conv2d | Dense, buffers: Mapping[str, Buffer]) -> Needs:
    """A MAC op's operands (input and weight) and its widest channel accumulator."""
    x, w = buffers[op.input].qformat, buffers[op.weight].qformat
    yield f"input '{op.input}' ({x})", OPERAND, format_bits(x)
    yield f"weight '{op.weight}' ({w})", OPERAND, format_bits(w)
    yield f"the accumulator of '{op.output}'", ACCUMULATOR, max(format_bits(f) for f in op.accumulators(buffers))
