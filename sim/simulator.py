"""The controller: run a Program's plan for one episode and report values, cycles, traffic, utilisation.

`Simulator(program, hw)` validates the config and builds the plan once; `run(inputs)`
executes one episode: state init, stream-ins, segments group by group, head ops,
stream-outs (docs/microarchitecture.md §5), timing every instruction as
T_ISSUE + beats + depth and laying them out one after another from cycle T_START.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from metahw.compiler.golden import check_inputs
from metahw.compiler.kernels import timing
from metahw.compiler.program import Program
from metahw.hardware import HardwareConfig
from metahw.sim import ops  # noqa: F401 - register the op schedules
from metahw.sim.machine import SCHEDULES, Instr, Machine, ceil_div
from metahw.sim.plan import INIT, OP, SEGMENT, STREAM_IN, STREAM_OUT, Plan, Step, build_plan, check_fits


@dataclass(frozen=True)
class Event:
    """One executed instruction: start cycle, length, the step or op it belongs to, and what it did."""

    start: int
    cycles: int
    label: str
    kind: str
    beats: int
    group: int | None
    query: bool


@dataclass(frozen=True)
class SimRun:
    """Everything one simulated episode produced.

    `values` and `saturation` are keyed like the golden executor's; `cycles` maps each op
    name and each I/O step label ('init X', 'stream_in X', 'stream_out X') to its cycles;
    `traffic` maps each buffer to (elements read, elements written).
    """

    values: dict[str, np.ndarray]
    saturation: dict[str, int]
    cycles: dict[str, int]
    lane_macs: dict[str, int]
    total_cycles: int
    adaptation_cycles: int
    query_cycles: int
    traffic: dict[str, tuple[int, int]]
    events: list[Event]
    lanes: int

    def utilisation(self, label: str | None = None) -> float:
        """MAC-array utilisation of one op (lane-MACs / (P x its cycles)), or of the whole episode."""
        if label is None:
            return sum(self.lane_macs.values()) / (self.lanes * self.total_cycles)
        return self.lane_macs.get(label, 0) / (self.lanes * self.cycles[label])


class Simulator:
    """A Program on a HardwareConfig: validated and planned once, then run episode by episode."""

    def __init__(self, program: Program, hw: HardwareConfig) -> None:
        check_fits(program, hw)
        self.program = program
        self.hw = hw
        self.plan: Plan = build_plan(program, hw)

    def run(self, inputs: Mapping[str, np.ndarray]) -> SimRun:
        """Simulate one episode on the integer `inputs` (the program's input buffers)."""
        program, hw = self.program, self.hw
        values = dict(program.weights)
        values.update(check_inputs(program, inputs))
        machine = Machine(program, hw, values)
        timeline = _Timeline(hw)
        for step in self.plan.steps:
            self._step(machine, timeline, step)
        saturation = {b.name: 0 for b in program.buffers if b.kind not in ("input", "weight")}
        saturation.update(machine.saturation)
        total = timeline.now + timing.T_DONE
        query = sum(e.cycles for e in timeline.events if e.query)
        names = set(machine.reads) | set(machine.writes)
        return SimRun(
            values=dict(machine.values),
            saturation=saturation,
            cycles=dict(timeline.cycles),
            lane_macs=dict(timeline.lane_macs),
            total_cycles=total,
            adaptation_cycles=total - query,
            query_cycles=query,
            traffic={n: (machine.reads.get(n, 0), machine.writes.get(n, 0)) for n in sorted(names)},
            events=timeline.events,
            lanes=hw.lanes,
        )

    def _step(self, machine: Machine, timeline: _Timeline, step: Step) -> None:
        hw = self.hw
        if step.kind == INIT:
            init = self.program.weights[step.buffer]
            machine.values[step.buffer] = init.copy()
            machine.writes[step.buffer] += init.size
            timeline.emit(step.label, Instr(timing.VECTOR, ceil_div(init.size, hw.lanes)), step.query)
        elif step.kind == STREAM_IN:
            size = machine.values[step.buffer].size
            machine.writes[step.buffer] += size
            timeline.emit(step.label, Instr(timing.IO, ceil_div(size, hw.stream_elements)), step.query)
        elif step.kind == STREAM_OUT:
            size = machine.values[step.buffer].size
            machine.reads[step.buffer] += size
            timeline.emit(step.label, Instr(timing.OUT, ceil_div(size, hw.stream_elements)), step.query)
        elif step.kind == OP:
            for instr in SCHEDULES[type(step.op)](machine, step.op):
                timeline.emit(step.op.name, instr, step.query)
        elif step.kind == SEGMENT:
            self._segment(machine, timeline, step)
        else:
            raise AssertionError(f"unknown plan step {step.kind!r}")

    def _segment(self, machine: Machine, timeline: _Timeline, step: Step) -> None:
        """Each op of the segment computes every group at once; the instructions run group by group."""
        segment, hw = step.segment, self.hw
        by_group: dict[int, list[tuple[str, Instr]]] = defaultdict(list)
        if segment.streamed is not None:
            images = machine.values[segment.streamed]
            per_image = images.size // segment.batch
            machine.writes[segment.streamed] += images.size
            for g in range(ceil_div(segment.batch, hw.groups)):
                count = min(hw.groups, segment.batch - g * hw.groups) * per_image
                io = Instr(timing.IO, ceil_div(count, hw.stream_elements), group=g)
                by_group[g].append((f"{STREAM_IN} {segment.streamed}", io))
        for op in segment.ops:
            for instr in SCHEDULES[type(op)](machine, op):
                by_group[instr.group].append((op.name, instr))
        for g in sorted(by_group):
            for label, instr in by_group[g]:
                timeline.emit(label, instr, step.query)


class _Timeline:
    """Lays instructions out back to back and sums cycles and lane-MACs per label."""

    def __init__(self, hw: HardwareConfig) -> None:
        self.hw = hw
        self.now = timing.T_START
        self.events: list[Event] = []
        self.cycles: dict[str, int] = defaultdict(int)
        self.lane_macs: dict[str, int] = defaultdict(int)

    def emit(self, label: str, instr: Instr, query: bool) -> None:
        cycles = timing.instruction(instr.kind, instr.beats, self.hw)
        self.events.append(Event(self.now, cycles, label, instr.kind, instr.beats, instr.group, query))
        self.now += cycles
        self.cycles[label] += cycles
        self.lane_macs[label] += instr.lane_macs


def simulate(program: Program, hw: HardwareConfig, inputs: Mapping[str, np.ndarray]) -> SimRun:
    """Validate, plan and run one episode (use `Simulator` to run many episodes of one program)."""
    return Simulator(program, hw).run(inputs)
