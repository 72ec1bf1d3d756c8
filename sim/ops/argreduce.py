"""Schedule of ArgMin / ArgMax: ROWRED into the PPU's compare tree (docs/microarchitecture.md §8)."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import ArgMax, ArgMin, timing
from metahw.sim.machine import Instr, Machine, ceil_div, simulates


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
