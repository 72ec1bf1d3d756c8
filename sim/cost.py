"""The closed-form episode cycle count (docs/microarchitecture.md §10) from the plan and each op's `cycles`.

It never runs the datapath: each op contributes `Kernel.cycles(buffers, hw)` and each
I/O step its formula. The simulator, which counts the beats it executes, must arrive at
exactly the same numbers (tests/sim).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from metahw.compiler.kernels import timing
from metahw.compiler.program import Program
from metahw.hardware import HardwareConfig
from metahw.sim.plan import INIT, OP, SEGMENT, STREAM_IN, STREAM_OUT, build_plan


@dataclass(frozen=True)
class CycleBudget:
    """Cycles per op name and per I/O step label, the episode total, and its two phases."""

    cycles: dict[str, int]
    total: int
    adaptation: int
    query: int


def _io(elements: int, hw: HardwareConfig, kind: str = timing.IO) -> int:
    return timing.instruction(kind, timing.ceil_div(elements, hw.stream_elements), hw)


def episode_cycles(program: Program, hw: HardwareConfig) -> CycleBudget:
    """T_START + T_DONE + state inits + stream-ins + every op's cycles + stream-outs."""
    buffers = program.buffer_map
    cycles: dict[str, int] = defaultdict(int)
    query = 0
    for step in build_plan(program, hw).steps:
        spent: dict[str, int] = {}
        if step.kind == INIT:
            size = int(np.prod(buffers[step.buffer].shape))
            spent[step.label] = timing.instruction(timing.VECTOR, timing.ceil_div(size, hw.lanes), hw)
        elif step.kind == OP:
            spent[step.op.name] = step.op.cycles(buffers, hw)
        elif step.kind == SEGMENT:
            segment = step.segment
            if segment.streamed is not None:
                per_image = int(np.prod(buffers[segment.streamed].shape)) // segment.batch
                groups = range(timing.segment_groups(segment.batch, hw))
                images = [min(hw.groups, segment.batch - g * hw.groups) for g in groups]
                spent[f"{STREAM_IN} {segment.streamed}"] = sum(_io(n * per_image, hw) for n in images)
            for op in segment.ops:
                spent[op.name] = op.cycles(buffers, hw)
        else:
            kind = timing.OUT if step.kind == STREAM_OUT else timing.IO
            spent[step.label] = _io(int(np.prod(buffers[step.buffer].shape)), hw, kind)
        for label, value in spent.items():
            cycles[label] += value
            query += value if step.query else 0
    total = timing.T_START + sum(cycles.values()) + timing.T_DONE
    return CycleBudget(dict(cycles), total, total - query, query)
