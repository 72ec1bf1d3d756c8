"""g++ build time of the hls4ml C simulation, hls4ml's own build (before) vs metahw's (after), and its bit-exactness.

    .venv/bin/python benchmarks/hls_build_time.py [--build BUILD | --model protonet32 --bits 8 --ways 5 --shots 1]
                                                  [--episodes 2] [--no-before] [--testbench]

The design is a `metahw compile` folder (`--build`), else the zoo checkpoint `--model` exported
N-way K-shot (N queries) and compiled like benchmarks/hls_check.py (`--bits`, head 16 bits,
half_up/saturate, calibrated on meta-val). Its hls4ml project (Vitis, io_parallel) is written
into fresh folders and its C simulation library built:

- before: hls4ml's `backend.compile()` (`build_lib.sh`: the two translation units one after
  the other at -O3, no cache);
- after, cold: `metahw.hw.hls4ml.gxx.build_library` with an empty object cache;
- after, warm: the same design written into another new folder, built again (objects from the cache).

Each library runs `--episodes` seeded meta-test episodes, every output and traced layer
compared with the golden executor (a difference stops that library's run: mismatches 1 and
the message). `--testbench` also times the project's testbench build (`run_testbench`'s
before: one `g++ -std=c++0x -O0` of both sources; after: `gxx.build_testbench`, cold and warm).
The object cache is a temporary folder (METAHW_CACHE is pointed at it while building), so
the user's cache is neither used nor filled. Prints a table and writes
benchmarks/results/hls_build_time.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from metahw.atomic import write_text_atomic
from metahw.compiler.compile import compile_episode
from metahw.compiler.episode_io import program_inputs
from metahw.compiler.program import Program
from metahw.compiler.quant_config import QuantConfig
from metahw.hw.hls4ml import HlsMismatch, HlsSimulation, ProjectOptions, build_design, build_hls_project
from metahw.hw.hls4ml.design import HlsDesign
from metahw.hw.hls4ml.gxx import build_library, build_testbench
from metahw.hw.hls4ml.project import claim_folder, hls_model
from metahw.models.checkpoint import load_checkpoint
from metahw.models.data import load_omniglot
from metahw.models.episode_sources import omniglot_episodes
from metahw.models.export import episode_head, export_episode
from metahw.sim.episodes import program_shape

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ProjectOptions().project_name


def main() -> None:
    """Time every build, check every library, write the JSON table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, default=None, help="a `metahw compile` folder (else --model ...)")
    parser.add_argument("--model", default="protonet32", help="zoo checkpoint name")
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--no-before", dest="before", action="store_false", help="skip hls4ml's own build")
    parser.add_argument("--testbench", action="store_true", help="also time the testbench build")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hls_build_time.json")
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()

    omniglot = load_omniglot(args.data)
    if args.build is not None:
        program, source = Program.load(args.build), str(args.build)
    else:
        learner = load_checkpoint(f"zoo:{args.model}").learner
        model = export_episode(learner, episode_head(learner, args.ways, args.shots, None))
        program = compile_episode(model, QuantConfig(bits=args.bits), omniglot.split("val"), args.ways).program
        source = f"zoo:{args.model} {args.ways}-way {args.shots}-shot, {args.bits}-bit"
    design = build_design(program)
    inputs = [
        program_inputs(program, e)
        for e in omniglot_episodes(omniglot.split("test"), program_shape(program), args.episodes)
    ]
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()}
    report = {"design": source, "episodes": args.episodes, "rows": [], "machine": machine}
    print(f"{source}: {args.episodes} episodes, g++ on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="metahw-build-time-") as scratch:
        scratch = Path(scratch)
        with _object_cache(scratch / "cache"):
            rows = _library_rows(design, inputs, scratch, args.before)
            if args.testbench:
                rows += _testbench_rows(program, scratch, args.before)
    for row in rows:
        report["rows"].append(row)
        mismatches = "" if row["mismatches"] is None else f"mismatches {row['mismatches']}"
        print(f"{row['what']:<12} {row['build']:<52} {row['seconds']:>7.1f} s  {mismatches}", flush=True)
    report["machine"]["load_average_after"] = os.getloadavg()
    write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


def _library_rows(design: HlsDesign, inputs: list[dict], scratch: Path, before: bool) -> list[dict]:
    """Before (hls4ml's compile), after cold, after warm: seconds and mismatches on the episodes."""
    options, rows = ProjectOptions(), []
    builds: list[tuple[str, Callable]] = []
    if before:
        builds.append(("before: hls4ml build_lib.sh (-O3, sequential)", lambda m: Path(m.config.backend.compile(m))))
    for state in ("cold", "warm"):
        after = f"after: gxx.build_library ({state} cache)"
        builds.append((after, lambda m: build_library(m.config.get_output_dir(), PROJECT, _library(m)).output))
    for index, (name, build) in enumerate(builds):
        model = hls_model(design, claim_folder(scratch / f"library{index}"), options)
        model.write()
        started = time.perf_counter()
        library = build(model)
        seconds = time.perf_counter() - started
        mismatches, message = _check(HlsSimulation(design, model, library, seconds), inputs)
        rows.append(
            {"what": "library", "build": name, "seconds": seconds, "mismatches": mismatches, "message": message}
        )
    return rows


def _testbench_rows(program: Program, scratch: Path, before: bool) -> list[dict]:
    """The testbench executable: before (one g++ -O0 of both sources), after cold and warm."""
    rows = []
    for index, name in enumerate(
        (["before: g++ -std=c++0x -O0, one command"] if before else [])
        + [f"after: gxx.build_testbench ({s} cache)" for s in ("cold", "warm")]
    ):
        folder = build_hls_project(program, scratch / f"testbench{index}", ProjectOptions(), []).folder
        started = time.perf_counter()
        if name.startswith("before"):
            command = [
                "g++",
                "-std=c++0x",
                "-O0",
                "-Ifirmware/ap_types",
                '-DWEIGHTS_DIR="firmware/weights"',
                f"{PROJECT}_test.cpp",
                f"firmware/{PROJECT}.cpp",
                "-o",
                "csim_testbench",
            ]
            subprocess.run(command, cwd=folder, check=True, capture_output=True)
        else:
            build_testbench(folder, PROJECT, "csim_testbench")
        rows.append(
            {
                "what": "testbench",
                "build": name,
                "seconds": time.perf_counter() - started,
                "mismatches": None,
                "message": None,
            }
        )
    return rows


@contextlib.contextmanager
def _object_cache(folder: Path) -> Iterator[None]:
    """Point METAHW_CACHE (the object cache's root) at `folder` for the duration."""
    saved = os.environ.get("METAHW_CACHE")
    os.environ["METAHW_CACHE"] = str(folder)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("METAHW_CACHE")
        else:
            os.environ["METAHW_CACHE"] = saved


def _library(model) -> Path:  # noqa: ANN001 - an hls4ml ModelGraph
    folder = Path(model.config.get_output_dir())
    return folder / "firmware" / f"{PROJECT}-{model.config.get_config_value('Stamp')}.so"


def _check(simulation: HlsSimulation, inputs: list[dict]) -> tuple[int, str | None]:
    """Run every episode; (0, None) when all match golden, else (1, where the first difference is)."""
    try:
        for index, episode in enumerate(inputs):
            simulation.run_episode(episode, index)
    except HlsMismatch as exc:
        return 1, str(exc)
    return 0, None


if __name__ == "__main__":
    main()
