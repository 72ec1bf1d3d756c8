"""Episodes through Verilator and the cycle simulator side by side: `metahw simulate --rtl verilator`."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from metahw.compiler.episode_io import program_inputs
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.hw.amaranth.build import MANIFEST, build_rtl
from metahw.hw.amaranth.digests import generator_digest, program_digest
from metahw.hw.amaranth.spec import rtl_plan
from metahw.hw.amaranth.verilator import compare_with_sim, compile_testbench, run_rtl
from metahw.models.data import OmniglotSplit
from metahw.progress import StatusTracker
from metahw.sim.config import HardwareConfig
from metahw.sim.episodes import PREDICTION, episode_sampler
from metahw.sim.simulator import Simulator
from metahw.sim.widths import widest


def rtl_hardware(program: Program, hw: HardwareConfig) -> HardwareConfig:
    """The config the RTL is built with: accumulators as wide as the program needs, E dividing P."""
    return dataclasses.replace(
        hw,
        acc_bits=min(hw.acc_bits, max(2, widest(program)["accumulator"])),
        stream_elements=min(hw.stream_elements, hw.lanes),
    )


def ensure_rtl(program: Program, hw: HardwareConfig, folder: Path) -> Path:
    """Build the RTL into `folder` unless a build of this program and config by this generator is already there."""
    manifest = folder / MANIFEST
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        same = (old.get("hardware"), old.get("program_digest"), old.get("generator_digest")) == (
            hw.to_json(), program_digest(program), generator_digest())  # fmt: skip
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
    accuracy: float
    rtl_seconds: float
    build_seconds: float

    def to_dict(self) -> dict:
        """JSON-ready."""
        return dataclasses.asdict(self) | {"rtl_cycles_per_second": self.episodes * self.rtl_cycles / self.rtl_seconds}


def check_episodes(
    program: Program, hw: HardwareConfig, split: OmniglotSplit, episodes: int, folder: Path, seed: int = 0,
    stall_seed: int = 0, progress: bool = True,
) -> RtlCheck:  # fmt: skip
    """Run seeded meta-test episodes in Verilator and the simulator; raise RtlMismatch at the first difference."""
    if episodes < 1:
        raise UserError(f"--episodes must be >= 1 (got {episodes})")
    with StatusTracker(3, "RTL check", progress) as status:
        started = time.perf_counter()
        ensure_rtl(program, hw, folder)
        exe = compile_testbench(folder)
        build_seconds = time.perf_counter() - started
        status.advance(1, "RTL and Verilator testbench built")
        rp = rtl_plan(program, hw)
        sampler = episode_sampler(program, split, seed)
        samples = [sampler.sample() for _ in range(episodes)]
        inputs = [program_inputs(program, s) for s in samples]
        started = time.perf_counter()
        runs = run_rtl(exe, rp, inputs, folder / "run", seed=stall_seed)
        rtl_seconds = time.perf_counter() - started
        status.advance(1, f"{episodes} episodes run in Verilator")
        simulator = Simulator(program, hw)
        correct = 0.0
        for k, (rtl, episode, sample) in enumerate(zip(runs, inputs, samples)):
            sim = simulator.run(episode)
            compare_with_sim(rp, rtl, sim, k)
            correct += float((rtl.outputs[PREDICTION] == sample.query_y).mean())
        status.advance(1, "compared with the cycle simulator")
    return RtlCheck(episodes, len(runs), runs[0].total_cycles, sim.total_cycles, correct / episodes, rtl_seconds,
                    build_seconds)  # fmt: skip
