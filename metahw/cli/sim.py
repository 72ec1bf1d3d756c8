"""`metahw simulate`: episodes of a compiled program on the cycle simulator, checked against golden.

The episodes are seeded Omniglot meta-test episodes, or the user's own (--episodes-from,
--images, --runs; metahw/cli/episodes.py), for the simulator, --hls and --rtl alike.
"""

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
from metahw.cli.hls import Winograd, hls_sim_command
from metahw.errors import UserError
from metahw.hardware import HardwareConfig, derive_hardware
from metahw.outputs import writable_file

if TYPE_CHECKING:
    from metahw.compiler.program import Program


def hardware_for(
    program: Program,
    lanes: int | None,
    groups: int | None,
    config: Path | None,
    dsp_lanes: int | None = None,
    winograd: bool | None = None,
) -> HardwareConfig:
    """The design `metahw build` builds from --lanes, --groups, --dsp-lanes, --winograd and a --config file.

    Every option goes through `derive_hardware`. `lanes` may be None only with a file (its lanes are used).
    """
    if lanes is None and config is None:
        raise UserError("give --lanes or a --config file with the lanes.")
    base = HardwareConfig.load(config) if config is not None else None
    return derive_hardware(program, lanes, groups, base, dsp_lanes, winograd=winograd)


def check_simulate_options(hls: bool, rtl: str | None, stall_seed: int, vcd: Path | None, hardware: dict) -> None:
    """Refuse options that the chosen engine would ignore, and a --vcd that cannot be written."""
    if hls:
        given = [option for option, value in {**hardware, "--rtl": rtl, "--vcd": vcd}.items() if value is not None]
        if stall_seed:
            given.append("--stall-seed")
        if given:
            raise UserError(
                f"{', '.join(given)} configure the cycle simulator or the RTL, not --hls (the hls4ml C "
                "simulation has no lanes, trace or stream stalls)."
            )
    if stall_seed and rtl is None:
        raise UserError("--stall-seed withholds the RTL's stream handshakes: it needs --rtl verilator.")
    if vcd is not None and rtl is not None:
        raise UserError(
            "--vcd writes the cycle simulator's trace; with --rtl the simulator is the reference and "
            "writes none (drop --vcd, or run without --rtl)."
        )
    if vcd is not None:
        writable_file(vcd, "VCD file")


@app.command("simulate")
def simulate_command(
    build: Annotated[Path, typer.Argument(help="Build folder written by `metahw compile`.")],
    lanes: Annotated[int | None, typer.Option(help="MAC lanes P (a power of two).")] = None,
    groups: Annotated[
        int | None,
        typer.Option(
            help="Lane groups G, images the embedding runs at once (default: the largest that keeps every "
            "conv's lanes busy)."
        ),
    ] = None,
    episodes: Annotated[
        int | None, typer.Option(min=1, help="Episodes (default 10; of a file or runs folder: all of them).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Hardware config JSON for the other parameters.")] = None,
    winograd: Winograd = None,
    vcd: Annotated[Path | None, typer.Option(help="Write the first episode's instruction trace as VCD.")] = None,
    seed: int = 0,
    data: Annotated[Path | None, typer.Option(help="Omniglot data (episodes from the meta-test alphabets).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    hls: Annotated[bool, typer.Option("--hls", help="Run the hls4ml C simulation instead (`metahw hls-sim`).")] = False,
    rtl: Annotated[
        str | None, typer.Option(help="Also run the generated RTL: 'verilator' (outputs and cycles vs the simulator).")
    ] = None,
    stall_seed: Annotated[int, typer.Option(help="--rtl: withhold stream handshakes at random (0: never).")] = 0,
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
    """Run episodes on the cycle simulator: accuracy, cycles, utilisation, latency, golden agreement."""
    from metahw.compiler.program import Program
    from metahw.sim.episodes import simulate_episodes
    from metahw.sim.report import run_report
    from metahw.sim.trace import write_vcd

    source = EpisodeOptions(episodes_from, images, runs, image_shape, invert, mean, std, resample)
    hardware = {"--lanes": lanes, "--groups": groups, "--config": config, "--winograd": winograd}
    check_simulate_options(hls, rtl, stall_seed, vcd, hardware)
    if predictions is not None:
        writable_file(predictions, "--predictions file")
    if hls:
        hls_sim_command(
            build,
            episodes=episodes,
            seed=seed,
            data=data,
            as_json=as_json,
            progress=progress,
            episodes_from=episodes_from,
            images=images,
            runs=runs,
            image_shape=image_shape,
            invert=invert,
            mean=mean,
            std=std,
            resample=resample,
            predictions=predictions,
        )
        return
    if lanes is None and config is None:
        raise UserError(
            "--lanes (or a --config file) is required for the cycle simulator, or give --hls for the "
            "hls4ml C simulation."
        )
    program = Program.load(build)
    if rtl is not None:
        from metahw.cli.rtl import refuse_unknown_rtl, simulate_rtl

        refuse_unknown_rtl(rtl)
        hw = hardware_for(program, lanes, groups, config, winograd=winograd)
        chosen = program_episodes(program, source, episodes, seed, data)
        simulate_rtl(program, hw, build, chosen, (seed, stall_seed), as_json, progress, predictions)
        return
    hw = hardware_for(program, lanes, groups, config, winograd=winograd)
    chosen = program_episodes(program, source, episodes, seed, data)
    on_first = (lambda run: write_vcd(run, hw.clock_mhz, vcd)) if vcd is not None else None
    sim = simulate_episodes(program, hw, chosen, progress and not as_json, on_first)
    report = run_report(program, hw, sim.first)
    meta = program.meta
    report |= {
        "build": str(build),
        "seed": seed,
        "algorithm": meta.algorithm,
        "ways": meta.ways,
        "shots": meta.shots,
        "queries": meta.queries,
        "episodes": sim.episodes,
        "accuracy": None if sim.accuracy is None else sim.accuracy.to_dict(),
        "golden_matched": sim.matched,
        "golden_mismatches": sim.mismatches,
        "sim_seconds_per_episode": sim.sim_seconds / sim.episodes,
        "sim_cycles_per_second": sim.episodes * sim.first.total_cycles / sim.sim_seconds,
    }
    finish(report, chosen, {"simulator": sim.predictions}, predictions)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print(report, hw, describe(chosen))
    if sim.matched != sim.episodes:
        typer.echo(
            f"metahw: simulator and golden executor disagree in {sim.episodes - sim.matched} episode(s): "
            f"{sim.mismatches[0]}",
            err=True,
        )
        raise typer.Exit(1)


def _print(r: dict, hw: HardwareConfig, described: str) -> None:
    from metahw.models.stats import shown

    typer.echo(f"{r['algorithm']} {r['ways']}-way {r['shots']}-shot, {r['queries']} queries per episode, {described}")
    typer.echo(
        f"hardware: P={hw.lanes} lanes ({hw.groups} group(s) of {hw.group_lanes}), {hw.operand_bits}-bit "
        f"operands, {hw.acc_bits}-bit accumulators, {hw.clock_mhz:g} MHz, {hw.device}"
    )
    typer.echo(f"{'step':<28} {'op':<20} {'cycles':>12} {'MAC util':>9}")
    for s in r["steps"]:
        util = f"{100 * s['utilisation']:.1f}%" if s["lane_macs"] else ""
        typer.echo(f"{s['name']:<28} {s['op']:<20} {s['cycles']:>12,} {util:>9}")
    acc = r["accuracy"]
    if acc is None:
        typer.echo("accuracy          not known (the episodes have no query labels)")
    else:
        typer.echo(f"accuracy          {shown(acc)}")
    echo_runs(r)
    typer.echo(
        f"cycles/episode    {r['cycles']:,} (adaptation {r['adaptation_cycles']:,}, queries "
        f"{r['query_cycles']:,} = {r['cycles_per_query']:,.0f} per query)"
    )
    typer.echo(
        f"latency           {r['latency_us']:,.1f} us per episode, {r['latency_per_query_us']:,.2f} us per "
        f"query at {hw.clock_mhz:g} MHz"
    )
    conv = 100 * r["conv_utilisation"]
    typer.echo(f"MAC utilisation   {100 * r['mac_utilisation']:.1f} % (conv layers {conv:.1f} %)")
    memory = ", ".join(f"{name} {size / 1024:.1f} KiB" for name, size in r["memory_bytes"].items())
    typer.echo(
        f"memory            {memory}; widest operand {r['widest']['operand']} bits, accumulator "
        f"{r['widest']['accumulator']} bits"
    )
    typer.echo(
        f"golden executor   {r['golden_matched']}/{r['episodes']} episodes matched bit for bit "
        "(every buffer and saturation count)"
    )
    typer.echo(
        f"simulator         {r['sim_seconds_per_episode']:.3f} s per episode, "
        f"{r['sim_cycles_per_second'] / 1e6:.1f} M simulated cycles/s"
    )
