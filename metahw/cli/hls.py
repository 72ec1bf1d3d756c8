"""`metahw build` (hardware backends) and `metahw hls-sim` (episodes through the hls4ml C simulation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metahw.cli.command import app
from metahw.cli.episodes import (
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
from metahw.errors import UserError
from metahw.models.data import load_omniglot
from metahw.models.episode_sources import omniglot_sampler
from metahw.outputs import exclusive, writable_file, writable_folder

#: `--winograd/--direct`: the conv engine's algorithm (None: the config file's, else direct)
Winograd = Annotated[
    bool | None,
    typer.Option(
        "--winograd/--direct",
        help="Run every conv as Winograd F(2x2, 3x3), 16 products per 2x2 pool window and channel instead "
        "of 36 (3x3, stride 1, pooled convs only), or directly (default: the --config file's, else direct).",
    ),
]

if TYPE_CHECKING:
    from metahw.hw.hls4ml import ProjectOptions

BACKENDS = ("hls4ml", "amaranth")
#: The defaults of `metahw.hw.hls4ml.ProjectOptions`, spelled out so that `metahw --help` does not import
#: hls4ml (tests/cli/test_startup.py checks that they agree).
PROJECT_DEFAULTS = {
    "hls_backend": "vitis",
    "part": "xcvu13p-flga2577-2-e",
    "clock_period": 5.0,
    "strategy": "latency",
    "reuse_factor": 1,
}
#: MAC lanes of an Amaranth build where neither --lanes nor a --config file says
DEFAULT_LANES = 8
Data = Annotated[Path | None, typer.Option(help="Omniglot data (episodes from the meta-test alphabets).")]
HlsBackend = Annotated[str, typer.Option(help="hls4ml backend: vitis (Vitis HLS) or vivado (Vivado HLS).")]
Part = Annotated[str, typer.Option(help="FPGA part the HLS project targets.")]
ClockPeriod = Annotated[float, typer.Option(help="Target clock period in ns.")]
Strategy = Annotated[str, typer.Option(help="hls4ml strategy of the embedding layers: latency or resource.")]
ReuseFactor = Annotated[int, typer.Option(help="hls4ml reuse factor of the embedding layers.")]


def _options(
    hls_backend: str | None,
    part: str | None,
    clock_period: float | None,
    strategy: str | None,
    reuse_factor: int | None,
) -> ProjectOptions:
    """The project options given on the command line; one left out (None) keeps `ProjectOptions`' default."""
    from metahw.hw.hls4ml import ProjectOptions

    given = {
        "hls_backend": hls_backend and hls_backend.lower(),
        "part": part,
        "clock_period": clock_period,
        "strategy": strategy and strategy.lower(),
        "reuse_factor": reuse_factor,
    }
    return ProjectOptions(**{name: value for name, value in given.items() if value is not None})


@app.command("build")
def build_command(
    build: Annotated[Path, typer.Argument(help="Build folder written by `metahw compile`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Project folder to write.")],
    backend: Annotated[str, typer.Option(help="Hardware backend: hls4ml or amaranth (Verilog).")] = "hls4ml",
    lanes: Annotated[
        int | None, typer.Option(help=f"amaranth: MAC lanes P, a power of two (default {DEFAULT_LANES}).")
    ] = None,
    groups: Annotated[
        int | None,
        typer.Option(
            help="amaranth: lane groups G, images the embedding runs at once (default: the largest that "
            "keeps every conv's lanes busy)."
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="amaranth: hardware config JSON (its lanes unless --lanes is given).")
    ] = None,
    dsp_lanes: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="amaranth: lanes whose multiplier maps onto a DSP block; the others multiply in LUTs "
            "(default: every lane).",
        ),
    ] = None,
    winograd: Winograd = None,
    hls_backend: Annotated[str | None, typer.Option(help="hls4ml backend: vitis (default) or vivado.")] = None,
    part: Annotated[str | None, typer.Option(help=f"hls4ml: FPGA part (default {PROJECT_DEFAULTS['part']}).")] = None,
    clock_period: Annotated[float | None, typer.Option(help="hls4ml: target clock period in ns (default 5).")] = None,
    strategy: Annotated[str | None, typer.Option(help="hls4ml: latency (default) or resource.")] = None,
    reuse_factor: Annotated[int | None, typer.Option(help="hls4ml: reuse factor of the embedding (default 1).")] = None,
    tb_episodes: Annotated[
        int | None,
        typer.Option(min=0, help="hls4ml: meta-test episodes written as testbench data (default 1; 0: none)."),
    ] = None,
    seed: int = 0,
    data: Data = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Write the whole episode as hardware: Amaranth Verilog, or an hls4ml project (Vitis HLS or Vivado HLS C++)."""
    if backend not in BACKENDS:
        raise UserError(f"unknown --backend {backend!r}; accepted are {', '.join(BACKENDS)}.")
    hls_only = {
        "--hls-backend": hls_backend,
        "--part": part,
        "--clock-period": clock_period,
        "--strategy": strategy,
        "--reuse-factor": reuse_factor,
        "--tb-episodes": tb_episodes,
    }
    amaranth_only = {
        "--lanes": lanes,
        "--groups": groups,
        "--config": config,
        "--dsp-lanes": dsp_lanes,
        "--winograd": winograd,
    }
    foreign = hls_only if backend == "amaranth" else amaranth_only
    given = [option for option, value in foreign.items() if value is not None]
    if given:
        raise UserError(
            f"{', '.join(given)} apply to the {'hls4ml' if backend == 'amaranth' else 'amaranth'} "
            f"backend, not to --backend {backend}."
        )
    if backend == "amaranth":
        from metahw.cli.rtl import build_amaranth, is_rtl_build
        from metahw.cli.sim import hardware_for
        from metahw.compiler.program import Program

        writable_folder(out, "RTL build", is_rtl_build)
        program = Program.load(build)
        lanes = DEFAULT_LANES if lanes is None and config is None else lanes
        hw = hardware_for(program, lanes, groups, config, dsp_lanes, winograd)
        with exclusive(out, "RTL build"):
            build_amaranth(program, hw, out, as_json)
        return
    from metahw.compiler.episode_io import program_inputs
    from metahw.compiler.program import Program
    from metahw.hw.hls4ml import build_hls_project
    from metahw.hw.hls4ml.project import CONFIG_FILE
    from metahw.sim.episodes import program_shape

    options = _options(hls_backend, part, clock_period, strategy, reuse_factor)
    writable_folder(out, "hls4ml project", lambda folder: (folder / CONFIG_FILE).is_file())
    program = Program.load(build)
    testbench = []
    tb_episodes = 1 if tb_episodes is None else tb_episodes
    if tb_episodes:
        sampler = omniglot_sampler(load_omniglot(data).split("test"), program_shape(program), seed)
        testbench = [program_inputs(program, sampler.sample()) for _ in range(tb_episodes)]
    with exclusive(out, "hls4ml project"):
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
    typer.echo(
        f"wrote {result.folder}: hls4ml {options.hls_backend} project, inputs image and label, {embedding} "
        f"hls4ml layers (embedding) + {head} metahw layers (head), outputs {outputs}, "
        f"{result.testbench_samples} testbench samples"
    )
    tool = {
        "vitis": "Vitis HLS (vitis-run --mode hls --tcl build_prj.tcl)",
        "vivado": "Vivado HLS (vivado_hls -f build_prj.tcl)",
    }[options.hls_backend]
    typer.echo(f"synthesis (not run by metahw): in {result.folder}, {tool}")


@app.command("hls-sim")
def hls_sim_command(
    build: Annotated[Path, typer.Argument(help="Build folder written by `metahw compile`.")],
    episodes: Annotated[
        int | None, typer.Option(min=1, help="Episodes (default 10; of a file or runs folder: all of them).")
    ] = None,
    project: Annotated[Path | None, typer.Option(help="Keep the hls4ml project here (default: temporary).")] = None,
    hls_backend: HlsBackend = PROJECT_DEFAULTS["hls_backend"],
    part: Part = PROJECT_DEFAULTS["part"],
    clock_period: ClockPeriod = PROJECT_DEFAULTS["clock_period"],
    strategy: Strategy = PROJECT_DEFAULTS["strategy"],
    reuse_factor: ReuseFactor = PROJECT_DEFAULTS["reuse_factor"],
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
    from metahw.compiler.program import Program
    from metahw.hw.hls4ml import HlsMismatch
    from metahw.hw.hls4ml.episodes import check_hls_episodes
    from metahw.hw.hls4ml.project import CONFIG_FILE

    options = _options(hls_backend, part, clock_period, strategy, reuse_factor)
    source = EpisodeOptions(episodes_from, images, runs, image_shape, invert, mean, std, resample)
    if project is not None:
        writable_folder(project, "hls4ml project", lambda folder: (folder / CONFIG_FILE).is_file())
    if predictions is not None:
        writable_file(predictions, "--predictions file")
    program = Program.load(build)
    chosen = program_episodes(program, source, episodes, seed, data)
    try:
        checked = check_hls_episodes(program, chosen, project, options, progress and not as_json)
    except HlsMismatch as exc:
        typer.echo(f"metahw: {exc}", err=True)
        raise typer.Exit(1) from None
    meta = program.meta
    report = {
        "build": str(build),
        "algorithm": meta.algorithm,
        "ways": meta.ways,
        "shots": meta.shots,
        "queries": meta.queries,
        "hls_backend": options.hls_backend,
        **checked.to_dict(),
    }
    finish(report, chosen, {"hls4ml": checked.predictions}, predictions)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    acc, episodes = checked.accuracy, checked.episodes
    typer.echo(
        f"{meta.algorithm} {meta.ways}-way {meta.shots}-shot, {meta.queries} queries per episode, "
        f"{describe(chosen)} through the hls4ml C simulation ({options.hls_backend})"
    )
    typer.echo(
        f"C simulation      g++ build {checked.compile_seconds:.1f} s; "
        f"{report['csim_episodes_per_second']:.2f} "
        f"episodes/s ({report['checked_episodes_per_second']:.2f} with the golden check)"
    )
    typer.echo(
        f"golden executor   {episodes}/{episodes} episodes identical: {checked.compared:,} integers of the "
        f"outputs and {len(checked.traced_layers)} traced layers, 0 mismatches"
    )
    if checked.unchecked:
        typer.echo(f"not compared      {', '.join(checked.unchecked)} (wider than float64 traces carry exactly)")
    shown = "not known (the episodes have no query labels)" if acc is None else str(acc)
    typer.echo(f"accuracy          {shown}")
    echo_runs(report)
