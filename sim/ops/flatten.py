"""Schedule of Flatten: the segment's VECTOR copy out of AMEM (docs/microarchitecture.md §7)."""

from __future__ import annotations

from metahw.compiler.kernels import Flatten
from metahw.compiler.kernels.flatten import flatten as flatten_values
from metahw.sim.machine import Instr, Machine, simulates
from metahw.sim.sequences import grid_pass


@simulates(Flatten)
def flatten(m: Machine, op: Flatten) -> list[Instr]:
    """VECTOR copy of the segment's result from AMEM into SMEM/QBUF (channels last for a map: AMEM's word order).

    A beat writes one image slot's L lanes: each word is read once per slot of the group.
    """
    x = m.read(op.input)
    m.write(op.output, flatten_values(x, op.channels_last))
    return grid_pass(m, x.shape, x.size, op.input, slots=m.hw.groups)
