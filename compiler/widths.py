"""Datapath widths a Program needs: multiplier operands and accumulator/PPU values, per op.

docs/microarchitecture.md §9. Each kernel states its own needs (`Kernel.width_needs`, the
conventions in `kernels/datapath.py`); this module collects them for a whole program.
`derive_hardware` sizes the accelerator from `widest`, and `sim.plan.check_fits` compares
every need with a given config.
"""

from __future__ import annotations

from dataclasses import dataclass

from metahw.compiler.kernels.datapath import ACCUMULATOR, OPERAND
from metahw.compiler.program import Program


@dataclass(frozen=True)
class WidthNeed:
    """`what` (naming the tensor) at op `where` needs `bits`-bit operands or accumulators (`kind`)."""

    where: str
    what: str
    kind: str
    bits: int


def width_needs(program: Program) -> list[WidthNeed]:
    """Every operand and accumulator width the program's ops need, in program order."""
    buffers = program.buffer_map
    return [
        WidthNeed(f"{op.op} '{op.name}'", what, kind, bits)
        for op in program.ops
        for what, kind, bits in op.width_needs(buffers)
    ]


def widest(program: Program) -> dict[str, int]:
    """The widest operand and accumulator the program needs: {'operand': bits, 'accumulator': bits}."""
    out = {OPERAND: 0, ACCUMULATOR: 0}
    for need in width_needs(program):
        out[need.kind] = max(out[need.kind], need.bits)
    return out
