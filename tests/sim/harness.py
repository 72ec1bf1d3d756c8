"""Shared test helpers: hypothesis settings and strategies, and the sim-vs-golden-vs-formula check.

METAHW_SIM_EXAMPLES sets the hypothesis examples per property test (default 30: about 400
cases over tests/sim; a benchmark run sets 100 or more for >= 1000 cases).
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from metahw.compiler.golden import execute
from metahw.compiler.program import Buffer, Program, ProgramMeta
from metahw.qformat import OVERFLOW_MODES, ROUNDING_MODES, QFormat
from metahw.sim import HardwareConfig, SimRun, Simulator, episode_cycles
from metahw.sim.episodes import differences

EXAMPLES = int(os.environ.get("METAHW_SIM_EXAMPLES", "30"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUNDINGS = st.sampled_from(ROUNDING_MODES)
OVERFLOWS = st.sampled_from(OVERFLOW_MODES)


@st.composite
def hardware(draw, max_log_lanes: int = 6) -> HardwareConfig:
    """P = 1..64 lanes in G groups, E elements per stream beat; datapath wide enough for any test program."""
    log_lanes = draw(st.integers(0, max_log_lanes))
    return HardwareConfig(
        lanes=1 << log_lanes,
        groups=1 << draw(st.integers(0, log_lanes)),
        stream_elements=draw(st.integers(1, 9)),
        operand_bits=64,
        acc_bits=64,
    )


@st.composite
def qformats(draw, bits=(2, 16), frac=(-2, 12), signed=None) -> QFormat:
    s = draw(st.booleans()) if signed is None else signed
    return QFormat(draw(st.integers(*bits)), draw(st.integers(*frac)), s)


def rand(rng: np.random.Generator, fmt: QFormat, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(fmt.min_int, fmt.max_int + 1, shape, dtype=np.int64)


def program_of(buffers: list[Buffer], ops: list, weights: dict, rounding: str, overflow: str) -> Program:
    meta = ProgramMeta("test", 1, 1, 1, rounding, overflow)
    return Program(meta, buffers, ops, {k: np.asarray(v, dtype=np.int64) for k, v in weights.items()})


def sim_problems(program: Program, inputs: dict[str, np.ndarray], hw: HardwareConfig) -> tuple[SimRun, list[str]]:
    """The simulator's run and what in it differs from golden and the cycle formulas (empty: nothing).

    Compared: every buffer and saturation count with the golden executor, the cycles of each op with
    `Kernel.cycles`, the totals with `episode_cycles`, and the lane-MACs with P x cycles.
    """
    golden = execute(program, inputs)
    run = Simulator(program, hw).run(inputs)
    problems = [f"{name} differs from golden" for name in differences(run, golden)]
    budget = episode_cycles(program, hw)
    if run.cycles != budget.cycles:
        problems.append(f"cycles per op {run.cycles} != episode_cycles {budget.cycles}")
    totals = (run.total_cycles, run.adaptation_cycles, run.query_cycles)
    if totals != (budget.total, budget.adaptation, budget.query):
        problems.append(f"total/adaptation/query cycles {totals} != {(budget.total, budget.adaptation, budget.query)}")
    buffers = program.buffer_map
    for op in program.ops:
        if run.cycles.get(op.name) != op.cycles(buffers, hw):
            problems.append(f"{op.name}: {run.cycles.get(op.name)} cycles != Kernel.cycles {op.cycles(buffers, hw)}")
        if not 0 <= run.lane_macs.get(op.name, 0) <= hw.lanes * run.cycles.get(op.name, 0):
            problems.append(f"{op.name}: {run.lane_macs.get(op.name)} lane-MACs exceed P x cycles")
    if sum(e.cycles for e in run.events) + 2 != run.total_cycles:
        problems.append(f"events sum to {sum(e.cycles for e in run.events)} cycles + 2 != {run.total_cycles}")
    return run, problems


def check(program: Program, inputs: dict[str, np.ndarray], hw: HardwareConfig) -> SimRun:
    """Sim == golden on every buffer and saturation count; cycles per op == Kernel.cycles; total == formula."""
    run, problems = sim_problems(program, inputs, hw)
    assert problems == []
    return run
