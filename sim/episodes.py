"""Meta-test episodes through the simulator, each checked against the golden executor.

Used by `metahw simulate` and benchmarks/sim_speed.py: `simulate_episodes` takes the episodes
(an `EpisodeSet` from models/episode_sources.py: seeded Omniglot episodes of the program's
shape, `program_shape`, or the user's own; the simulator never loads data), turns them into the
program's integer inputs, simulates them, compares every buffer and saturation count with the
golden executor, and scores the predicted class ids where the labels are known.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from metahw.compiler.episode_io import program_inputs
from metahw.compiler.golden import GoldenRun, execute
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.hardware import HardwareConfig
from metahw.models.episode_sources import EpisodeShape
from metahw.models.episodes import Episode
from metahw.models.stats import AccuracySummary
from metahw.progress import track
from metahw.sim.simulator import SimRun, Simulator


@dataclass(frozen=True)
class EpisodeRuns:
    """What E simulated episodes gave: predictions, accuracy, golden agreement, one run's report, wall times."""

    #: None when the episodes carry no query labels
    accuracy: AccuracySummary | None
    episodes: int
    #: per episode, the predicted class id of every query
    predictions: list[np.ndarray]
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
    counts = [
        f"saturation of {k}"
        for k in sorted(set(golden.saturation) | set(run.saturation))
        if golden.saturation.get(k) != run.saturation.get(k)
    ]
    return values + counts


def program_shape(program: Program) -> EpisodeShape:
    """The episodes a compiled program takes: its ways, shots, queries and input image shape (C, H, W)."""
    roles, user = program.roles, "scoring a compiled episode"
    roles.require("prediction", user)
    meta = program.meta
    image = tuple(program.buffer_map[roles.require("support_images", user)].shape[1:])
    return EpisodeShape(meta.ways, meta.shots, meta.queries, image)  # type: ignore[arg-type]


def scored(predictions: list[np.ndarray], labels: list[np.ndarray | None]) -> AccuracySummary | None:
    """Accuracy over episodes of the predicted class ids, None when any episode's labels are unknown."""
    if any(y is None for y in labels):
        return None
    return AccuracySummary.of(np.array([np.mean(p == y) for p, y in zip(predictions, labels, strict=True)]))


def simulate_episodes(
    program: Program,
    hw: HardwareConfig,
    episodes: Sequence[Episode],
    progress: bool = False,
    on_first: Callable[[SimRun], None] | None = None,
) -> EpisodeRuns:
    """Simulate every episode and run the golden executor on each to compare every integer."""
    if not episodes:
        raise UserError("there are no episodes to simulate")
    prediction = program.roles.require("prediction", "scoring simulated episodes")
    simulator = Simulator(program, hw)
    predictions, labels, mismatches = [], [], []
    matched, sim_seconds, golden_seconds = 0, 0.0, 0.0
    first: SimRun | None = None
    for episode in track(episodes, len(episodes), "simulating", progress):
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
        predictions.append(run.values[prediction])
        labels.append(episode.query_y)
        started = time.perf_counter()
        differ = differences(run, execute(program, inputs))
        golden_seconds += time.perf_counter() - started
        if differ:
            mismatches.append(differ)
        else:
            matched += 1
    return EpisodeRuns(
        accuracy=scored(predictions, labels),
        episodes=len(episodes),
        predictions=predictions,
        matched=matched,
        mismatches=mismatches,
        first=first,
        sim_seconds=sim_seconds,
        golden_seconds=golden_seconds,
    )
