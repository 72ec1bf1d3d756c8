"""Episodes through Verilator and the cycle simulator side by side: `metahw simulate --rtl verilator`."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metahw.compiler.episode_io import program_inputs
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.hardware import HardwareConfig
from metahw.hw.amaranth.build import MANIFEST, build_rtl
from metahw.hw.amaranth.digests import generator_digest, program_digest
from metahw.hw.amaranth.spec import rtl_plan
from metahw.hw.amaranth.verilator import compare_with_sim, compile_testbench, run_rtl
from metahw.models.episodes import Episode
from metahw.progress import StatusTracker
from metahw.sim.episodes import scored
from metahw.sim.simulator import Simulator


def ensure_rtl(program: Program, hw: HardwareConfig, folder: Path) -> Path:
    """Build the RTL into `folder` unless a build of this program and config by this generator is already there."""
    manifest = folder / MANIFEST
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        same = (old.get("hardware"), old.get("program_digest"), old.get("generator_digest")) == (
            hw.to_json(),
            program_digest(program),
            generator_digest(),
        )
        if same:
            return folder
    build_rtl(program, hw, folder)
    return folder


@dataclass(frozen=True)
class RtlCheck:
    """What `check_episodes` measured."""

    episodes: int
    matched: int
    rtl_cycles: int
    sim_cycles: int
    #: None when the episodes carry no query labels
    accuracy: float | None
    rtl_seconds: float
    build_seconds: float
    #: per episode, the RTL's predicted class id of every query
    predictions: list[np.ndarray] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready (without the predictions)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "predictions"}
        return fields | {"rtl_cycles_per_second": self.episodes * self.rtl_cycles / self.rtl_seconds}


def check_rtl_episodes(
    program: Program,
    hw: HardwareConfig,
    episodes: Sequence[Episode],
    folder: Path,
    stall_seed: int = 0,
    progress: bool = True,
) -> RtlCheck:
    """Run the episodes in Verilator and the simulator; raise RtlMismatch at the first difference."""
    if not episodes:
        raise UserError("there are no episodes to run in Verilator")
    prediction = program.roles.require("prediction", "scoring the RTL's episodes")
    with StatusTracker(3, "RTL check", progress) as status:
        started = time.perf_counter()
        ensure_rtl(program, hw, folder)
        exe = compile_testbench(folder)
        build_seconds = time.perf_counter() - started
        status.advance(1, "RTL and Verilator testbench built")
        rp = rtl_plan(program, hw)
        labels = [e.query_y for e in episodes]
        inputs = [program_inputs(program, e) for e in episodes]
        started = time.perf_counter()
        runs = run_rtl(exe, rp, inputs, folder / "run", seed=stall_seed)
        rtl_seconds = time.perf_counter() - started
        status.advance(1, f"{len(episodes)} episodes run in Verilator")
        simulator = Simulator(program, hw)
        for k, (rtl, episode) in enumerate(zip(runs, inputs)):
            sim = simulator.run(episode)
            compare_with_sim(rp, rtl, sim, k)
        status.advance(1, "compared with the cycle simulator")
    predictions = [rtl.outputs[prediction] for rtl in runs]
    accuracy = scored(predictions, labels)
    return RtlCheck(
        len(episodes),
        len(runs),
        runs[0].total_cycles,
        sim.total_cycles,
        None if accuracy is None else accuracy.mean,
        rtl_seconds,
        build_seconds,
        predictions,
    )
