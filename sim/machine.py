"""The simulated machine's state and the instruction records that op schedules return.

`Machine` holds the integers of every buffer (memories are modelled by buffer, placement
lives in the plan), the overflow counters of the PPU, and the element traffic per buffer.
Each op's schedule (`sim/ops/<family>.py`, registered with `simulates`) computes its outputs with the
simulator's own datapath code and returns the instructions it issued, each with the beats it
counted from the tiles it executed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from metahw.compiler.kernels import Kernel
from metahw.compiler.program import Program
from metahw.hardware import HardwareConfig
from metahw.qformat import QFormat
from metahw.sim import ppu


@dataclass(frozen=True)
class Instr:
    """One instruction: its kind (timing.OUTER, ...), beats issued, lane-MACs done, image group (segments)."""

    kind: str
    beats: int
    lane_macs: int = 0
    group: int | None = None


class Machine:
    """Buffer contents, PPU overflow counts per tensor, and reads/writes per buffer (elements)."""

    def __init__(self, program: Program, hw: HardwareConfig, values: dict[str, np.ndarray]) -> None:
        self.program = program
        self.hw = hw
        self.buffers = program.buffer_map
        self.values = values
        self.rounding = program.meta.rounding
        self.overflow = program.meta.overflow
        self.saturation: dict[str, int] = {}
        self.reads: dict[str, int] = defaultdict(int)
        self.writes: dict[str, int] = defaultdict(int)

    def read(self, name: str, count: int = 0) -> np.ndarray:
        """Current integers of buffer `name`; `count` elements are added to its read traffic."""
        self.reads[name] += count
        return self.values[name]

    def write(self, name: str, values: np.ndarray) -> None:
        """Store an op's result (every element counts as written); a value outside the buffer is a simulator bug."""
        buf = self.buffers[name]
        if values.dtype != np.int64 or values.shape != buf.shape or not buf.holds(values):
            raise AssertionError(f"simulator bug: wrote {values.dtype}{values.shape} outside buffer '{name}'")
        self.values[name] = values
        self.writes[name] += values.size

    def fmt(self, name: str) -> QFormat:
        """Declared format of buffer `name`."""
        return self.buffers[name].qformat

    def fracs(self, name: str) -> np.ndarray:
        """Fractional bits per index of axis 0 of buffer `name` (per-channel formats)."""
        return self.buffers[name].axis0_fracs()

    def requant(self, values: np.ndarray, src_frac: int | np.ndarray, dst: QFormat, tensor: str) -> np.ndarray:
        """The PPU's round + saturate/wrap into `dst`, counting overflowed elements on `tensor`."""
        out, count = ppu.requantise(values, src_frac, dst, self.rounding, self.overflow)
        self.saturation[tensor] = self.saturation.get(tensor, 0) + count
        return out

    def shift(self, values: np.ndarray, shift: int | np.ndarray) -> np.ndarray:
        """values * 2^-shift with the program's rounding and no range limit (bounded intermediates)."""
        return ppu.shift_round(values, shift, self.rounding)


OpSchedule = Callable[[Machine, Kernel], list[Instr]]
#: kernel class -> its schedule on the simulated datapath
SCHEDULES: dict[type[Kernel], OpSchedule] = {}


def simulates(*kinds: type[Kernel]) -> Callable[[OpSchedule], OpSchedule]:
    """Register a schedule function for kernel classes."""

    def register(fn: OpSchedule) -> OpSchedule:
        for kind in kinds:
            SCHEDULES[kind] = fn
        return fn

    return register


def ceil_div(a: int, b: int) -> int:
    """⌈a/b⌉."""
    return -(-a // b)


def per_group(hw: HardwareConfig, batch: int, kind: str, beats: int, macs_per_image: int = 0) -> list[Instr]:
    """One instruction per group of G images of a segment op (the last group may be partial)."""
    groups = ceil_div(batch, hw.groups)
    return [Instr(kind, beats, macs_per_image * min(hw.groups, batch - g * hw.groups), group=g) for g in range(groups)]
