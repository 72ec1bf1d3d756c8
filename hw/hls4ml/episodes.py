"""Meta-test episodes of a compiled Program through the hls4ml C simulation, each checked against golden.

`check_hls_episodes` is the library entry point behind `metahw hls-sim` (and `metahw simulate
--hls`): it builds the design, writes and compiles the hls4ml project, and runs every given
episode (seeded Omniglot episodes with the program's ways, shots and queries from
`run_hls_episodes`, or the user's own) through the C simulation, comparing every output and
traced layer with the golden executor. The first difference raises `HlsMismatch`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metahw.compiler.episode_io import program_inputs
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.hw.hls4ml.design import build_design
from metahw.hw.hls4ml.project import ProjectOptions
from metahw.hw.hls4ml.simulation import HlsSimulation
from metahw.models.episodes import Episode
from metahw.models.stats import AccuracySummary
from metahw.progress import track
from metahw.sim.episodes import scored


@dataclass(frozen=True)
class HlsEpisodeRuns:
    """What E episodes through the C simulation gave: all matched golden (else HlsMismatch was raised)."""

    episodes: int
    #: images sent through the design (support and query)
    samples: int
    #: integers compared with the golden executor (outputs and traced layers, every sample)
    compared: int
    #: layers compared on every sample besides the outputs
    traced_layers: list[str]
    #: buffers too wide to compare through hls4ml's float64 traces
    unchecked: list[str]
    #: None when the episodes carry no query labels
    accuracy: AccuracySummary | None
    compile_seconds: float
    csim_seconds: float
    golden_seconds: float
    wall_seconds: float
    project: str
    #: per episode, the C simulation's predicted class id of every query
    predictions: list[np.ndarray] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready summary, with episodes per second of the C simulation alone and of the checked run."""
        return {
            "episodes": self.episodes,
            "samples": self.samples,
            "mismatches": 0,
            "integers_compared": self.compared,
            "traced_layers": self.traced_layers,
            "unchecked_buffers": self.unchecked,
            "accuracy": None if self.accuracy is None else self.accuracy.to_dict(),
            "compile_seconds": self.compile_seconds,
            "csim_seconds": self.csim_seconds,
            "csim_episodes_per_second": self.episodes / self.csim_seconds,
            "checked_episodes_per_second": self.episodes / self.wall_seconds,
            "golden_seconds": self.golden_seconds,
            "project": self.project,
        }


def check_hls_episodes(
    program: Program,
    episodes: Sequence[Episode],
    project_dir: str | Path | None = None,
    options: ProjectOptions | None = None,
    progress: bool = False,
) -> HlsEpisodeRuns:
    """Compile `program`'s hls4ml design (into `project_dir`, else a temporary folder) and check every episode."""
    if not episodes:
        raise UserError("there are no episodes for the C simulation")
    prediction = program.roles.require("prediction", "scoring the C simulation's episodes")
    design = build_design(program)
    with tempfile.TemporaryDirectory(prefix="metahw-hls-") as scratch:
        folder = Path(project_dir) if project_dir is not None else Path(scratch) / "project"
        simulation = HlsSimulation.build(design, folder, options or ProjectOptions())
        predictions, labels, compared, csim, golden = [], [], 0, 0.0, 0.0
        started = time.perf_counter()
        for index, episode in enumerate(track(episodes, len(episodes), "hls4ml C simulation", progress)):
            result = simulation.run_episode(program_inputs(program, episode), index)
            predictions.append(result.outputs[prediction])
            labels.append(episode.query_y)
            compared += result.compared
            csim += result.csim_seconds
            golden += result.golden_seconds
        wall = time.perf_counter() - started
    meta = program.meta
    return HlsEpisodeRuns(
        episodes=len(episodes),
        samples=len(episodes) * (meta.ways * meta.shots + meta.queries),
        compared=compared,
        traced_layers=[tap.layer for tap in design.taps],
        unchecked=design.unchecked,
        accuracy=scored(predictions, labels),
        compile_seconds=simulation.compile_seconds,
        csim_seconds=csim,
        golden_seconds=golden,
        wall_seconds=wall,
        project=str(folder) if project_dir is not None else "(temporary, removed)",
        predictions=predictions,
    )
