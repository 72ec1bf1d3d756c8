"""Meta-test episodes through the simulator, each checked against the golden executor.

Used by `metahw simulate` and benchmarks/sim_speed.py: samples seeded episodes with the
program's ways, shots and queries, turns them into the program's integer inputs, simulates
them, compares every buffer and saturation count with the golden executor, and scores the
predicted class ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from metahw.compiler.episode_io import program_inputs
from metahw.compiler.golden import GoldenRun, execute
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.models.data import OmniglotSplit
from metahw.models.episodes import EpisodeSampler
from metahw.models.stats import AccuracySummary
from metahw.progress import track
from metahw.sim.config import HardwareConfig
from metahw.sim.simulator import SimRun, Simulator

PREDICTION = "prediction"


@dataclass(frozen=True)
class EpisodeRuns:
    """What E simulated episodes gave: accuracy, golden agreement, one run's report, wall times."""

    accuracy: AccuracySummary
    episodes: int
    #: episodes in which every buffer and every saturation count equalled the golden executor's
    matched: int
    #: per mismatching episode, the tensors that differed
    mismatches: list[list[str]]
    #: the first episode's run (the schedule does not depend on the data: every episode takes its cycles)
    first: SimRun
    sim_seconds: float
    golden_seconds: float


def differences(run: SimRun, golden: GoldenRun) -> list[str]:
    """Buffers whose integers differ, and tensors whose saturation counts differ, between sim and golden."""
    values = [k for k, v in golden.values.items() if not np.array_equal(run.values.get(k), v)]
    counts = [f"saturation of {k}" for k in sorted(set(golden.saturation) | set(run.saturation))
              if golden.saturation.get(k) != run.saturation.get(k)]  # fmt: skip
    return values + counts


def episode_sampler(program: Program, split: OmniglotSplit, seed: int) -> EpisodeSampler:
    """Seeded episodes of the program's shape (its query count must be a multiple of its ways)."""
    meta = program.meta
    if PREDICTION not in program.buffer_map:
        raise UserError(f"the program has no '{PREDICTION}' output to score; it is not a compiled episode")
    if meta.queries % meta.ways:
        raise UserError(f"the program classifies {meta.queries} queries, not a multiple of its {meta.ways} ways")
    return EpisodeSampler(split, meta.ways, meta.shots, meta.queries // meta.ways, seed=seed)


def run_episodes(
    program: Program,
    hw: HardwareConfig,
    split: OmniglotSplit,
    episodes: int,
    seed: int = 0,
    progress: bool = False,
    on_first: Callable[[SimRun], None] | None = None,
) -> EpisodeRuns:
    """Simulate `episodes` seeded episodes and run the golden executor on each to compare every integer."""
    if episodes < 1:
        raise UserError(f"--episodes must be >= 1 (got {episodes})")
    simulator = Simulator(program, hw)
    sampler = episode_sampler(program, split, seed)
    accuracies, mismatches = [], []
    matched, sim_seconds, golden_seconds = 0, 0.0, 0.0
    first: SimRun | None = None
    for _ in track(range(episodes), episodes, "simulating", progress):
        episode = sampler.sample()
        inputs = program_inputs(program, episode)
        started = time.perf_counter()
        run = simulator.run(inputs)
        sim_seconds += time.perf_counter() - started
        if first is None:
            first = run
            if on_first is not None:
                on_first(run)
        elif run.total_cycles != first.total_cycles:
            raise AssertionError("simulator bug: the cycle count depends on the data")
        accuracies.append(float(np.mean(run.values[PREDICTION] == episode.query_y)))
        started = time.perf_counter()
        differ = differences(run, execute(program, inputs))
        golden_seconds += time.perf_counter() - started
        if differ:
            mismatches.append(differ)
        else:
            matched += 1
    return EpisodeRuns(
        accuracy=AccuracySummary.of(np.array(accuracies)),
        episodes=episodes,
        matched=matched,
        mismatches=mismatches,
        first=first,
        sim_seconds=sim_seconds,
        golden_seconds=golden_seconds,
    )
