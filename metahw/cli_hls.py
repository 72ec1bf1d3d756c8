"""`metahw build` (hardware backends) and `metahw hls-sim` (episodes through the hls4ml C simulation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from metahw.cli import app
from metahw.cli_episodes import (
    EpisodeOptions,
    EpisodesFrom,
    Images,
    ImageShape,
    Invert,
    Mean,
    Predictions,
    Resample,
    Runs,
    Std,
    describe,
    echo_runs,
    finish,
    program_episodes,
)
from metahw.compiler.episode_io import program_inputs
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.hw.hls4ml import HlsMismatch, ProjectOptions, build_hls_project
from metahw.hw.hls4ml.episodes import check_hls_episodes
from metahw.models.data import load_omniglot
from metahw.sim.episodes import episode_sampler

BACKENDS = ("hls4ml", "amaranth")
Data = Annotated[Path | None, typer.Option(help="Omniglot data (episodes from the meta-test alphabets).")]
HlsBackend = Annotated[str, typer.Option(help="hls4ml backend: vitis (Vitis HLS) or vivado (Vivado HLS).")]
Part = Annotated[str, typer.Option(help="FPGA part the HLS project targets.")]
ClockPeriod = Annotated[float, typer.Option(help="Target clock period in ns.")]
Strategy = Annotated[str, typer.Option(help="hls4ml strategy of the embedding layers: latency or resource.")]
ReuseFactor = Annotated[int, typer.Option(help="hls4ml reuse factor of the embedding layers.")]


def _options(hls_backend: str, part: str, clock_period: float, strategy: str, reuse_factor: int) -> ProjectOptions:
    return ProjectOptions(hls_backend=hls_backend.lower(), part=part, clock_period=clock_period,
                          strategy=strategy.lower(), reuse_factor=reuse_factor)  # fmt: skip


@app.command("build")
def build_command(
    build: Annotated[Path, typer.Argument(help="Build folder written by `metahw compile`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Project folder to write.")],
    backend: Annotated[str, typer.Option(help="Hardware backend: hls4ml or amaranth (Verilog).")] = "hls4ml",
    lanes: Annotated[int, typer.Option(help="amaranth: MAC lanes P (a power of two).")] = 8,
    config: Annotated[
        Path | None, typer.Option(help="amaranth: hardware config JSON for the other parameters.")
    ] = None,
    hls_backend: HlsBackend = "vitis",
    part: Part = "xcvu13p-flga2577-2-e",
    clock_period: ClockPeriod = 5.0,
    strategy: Strategy = "latency",
    reuse_factor: ReuseFactor = 1,
    tb_episodes: Annotated[int, typer.Option(help="Meta-test episodes written as testbench data (0: none).")] = 1,
    seed: int = 0,
    data: Data = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Write the whole episode as hardware: Amaranth Verilog, or an hls4ml project (Vitis HLS or Vivado HLS C++)."""
    if backend == "amaranth":
        from metahw.cli_rtl import build_amaranth
        from metahw.cli_sim import hardware_for

        program = Program.load(build)
        build_amaranth(program, hardware_for(program, lanes, 1, config), out, as_json)
        return
    if backend not in BACKENDS:
        raise UserError(f"unknown --backend {backend!r}; accepted are {', '.join(BACKENDS)}.")
    if tb_episodes < 0:
        raise UserError(f"--tb-episodes must be >= 0 (got {tb_episodes}).")
    options = _options(hls_backend, part, clock_period, strategy, reuse_factor)
    program = Program.load(build)
    testbench = []
    if tb_episodes:
        sampler = episode_sampler(program, load_omniglot(data).split("test"), seed)
        testbench = [program_inputs(program, sampler.sample()) for _ in range(tb_episodes)]
    result = build_hls_project(program, out, options, testbench)
    design = result.design
    report = {
        "project": str(result.folder),
        "hls_backend": options.hls_backend,
        "part": options.part,
        "layers": {layer["name"]: layer["class_name"] for layer in design.layers},
        "outputs": {o.layer: o.buffer for o in design.outputs},
        "testbench_samples": result.testbench_samples,
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    head = sum(layer["class_name"].startswith("Metahw") for layer in design.layers)
    embedding = len(design.layers) - head - len(design.inputs)
    outputs = ", ".join(o.buffer for o in design.outputs)
    typer.echo(f"wrote {result.folder}: hls4ml {options.hls_backend} project, inputs image and label, {embedding} "
               f"hls4ml layers (embedding) + {head} metahw layers (head), outputs {outputs}, "
               f"{result.testbench_samples} testbench samples")  # fmt: skip
    tool = {"vitis": "Vitis HLS (vitis-run --mode hls --tcl build_prj.tcl)", "vivado": "Vivado HLS (vivado_hls -f "
            "build_prj.tcl)"}[options.hls_backend]  # fmt: skip
    typer.echo(f"synthesis (not run by metahw): in {result.folder}, {tool}")


@app.command("hls-sim")
def hls_sim_command(
    build: Annotated[Path, typer.Argument(help="Build folder written by `metahw compile`.")],
    episodes: Annotated[
        int | None, typer.Option(help="Episodes (default 10; of a file or runs folder: all of them).")
    ] = None,
    project: Annotated[Path | None, typer.Option(help="Keep the hls4ml project here (default: temporary).")] = None,
    hls_backend: HlsBackend = "vitis",
    part: Part = "xcvu13p-flga2577-2-e",
    clock_period: ClockPeriod = 5.0,
    strategy: Strategy = "latency",
    reuse_factor: ReuseFactor = 1,
    seed: int = 0,
    data: Data = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    episodes_from: EpisodesFrom = None,
    images: Images = None,
    runs: Runs = None,
    image_shape: ImageShape = None,
    invert: Invert = None,
    mean: Mean = None,
    std: Std = None,
    resample: Resample = "box",
    predictions: Predictions = None,
    progress: bool = True,
) -> None:
    """Run episodes through the hls4ml C simulation (g++) and compare every output with golden."""
    options = _options(hls_backend, part, clock_period, strategy, reuse_factor)
    source = EpisodeOptions(episodes_from, images, runs, image_shape, invert, mean, std, resample)
    program = Program.load(build)
    chosen = program_episodes(program, source, episodes, seed, data)
    try:
        checked = check_hls_episodes(program, chosen, project, options, progress and not as_json)
    except HlsMismatch as exc:
        typer.echo(f"metahw: {exc}", err=True)
        raise typer.Exit(1) from None
    meta = program.meta
    report = {"build": str(build), "algorithm": meta.algorithm, "ways": meta.ways, "shots": meta.shots,
              "queries": meta.queries, "hls_backend": options.hls_backend, **checked.to_dict()}  # fmt: skip
    finish(report, chosen, {"hls4ml": checked.predictions}, predictions)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    acc, episodes = checked.accuracy, checked.episodes
    typer.echo(f"{meta.algorithm} {meta.ways}-way {meta.shots}-shot, {meta.queries} queries per episode, "
               f"{describe(chosen)} through the hls4ml C simulation ({options.hls_backend})")  # fmt: skip
    typer.echo(f"C simulation      g++ build {checked.compile_seconds:.1f} s; "
               f"{report['csim_episodes_per_second']:.2f} "
               f"episodes/s ({report['checked_episodes_per_second']:.2f} with the golden check)")  # fmt: skip
    typer.echo(f"golden executor   {episodes}/{episodes} episodes identical: {checked.compared:,} integers of the "
               f"outputs and {len(checked.traced_layers)} traced layers, 0 mismatches")  # fmt: skip
    if checked.unchecked:
        typer.echo(f"not compared      {', '.join(checked.unchecked)} (wider than float64 traces carry exactly)")
    shown = "not known (the episodes have no query labels)" if acc is None else str(acc)
    typer.echo(f"accuracy          {shown}")
    echo_runs(report)
