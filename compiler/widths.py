"""Datapath widths a Program needs: multiplier operands and accumulator/PPU values, per op.

docs/microarchitecture.md §9. Each kernel states its own needs (`Kernel.width_needs`, the
conventions in `kernels/datapath.py`); this module collects them for a whole program.
`derive_hardware` sizes the accelerator from `widest`, and `sim.plan.check_fits` compares
every need with a given config.
"""

from __future__ import annotations

from dataclasses import dataclass

from metahw.compiler.kernels.conv import Conv2d
from metahw.compiler.kernels.datapath import ACCUMULATOR, OPERAND
from metahw.compiler.kernels.winograd import width_needs as winograd_needs
from metahw.compiler.program import Program


@dataclass(frozen=True)
class WidthNeed:
    """`what` (naming the tensor) at op `where` needs `bits`-bit operands or accumulators (`kind`)."""

    where: str
    what: str
    kind: str
    bits: int


def width_needs(program: Program, winograd: bool = False) -> list[WidthNeed]:
    """Every operand and accumulator width the program's ops need, in program order.

    `winograd`: the convolutions run as Winograd F(2x2, 3x3) (`kernels/winograd.py`), whose
    transformed operands and 4 accumulators need more than the direct ones.
    """
    buffers = program.buffer_map
    needs = []
    for op in program.ops:
        where = f"{op.op} '{op.name}'"
        needs += [WidthNeed(where, what, kind, bits) for what, kind, bits in op.width_needs(buffers)]
        if winograd and isinstance(op, Conv2d):
            found = winograd_needs(op, buffers, program.weights)
            needs += [WidthNeed(where, what, kind, bits) for what, kind, bits in found]
    return needs


def widest(program: Program, winograd: bool = False) -> dict[str, int]:
    """The widest operand and accumulator the program needs: {'operand': bits, 'accumulator': bits}."""
    out = {OPERAND: 0, ACCUMULATOR: 0}
    for need in width_needs(program, winograd):
        out[need.kind] = max(out[need.kind], need.bits)
    return out
