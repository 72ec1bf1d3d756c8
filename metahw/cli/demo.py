"""`metahw demo`: the end-to-end job on a shipped model, with a short summary at the end.

Steps: whole-episode ONNX export checked in onnxruntime -> 8-bit compilation (program +
quantisation report) -> Amaranth Verilog, whose synthesis and place-and-route start in the
background (metahw.app.demo) -> PyTorch float vs fixed point on the same seeded meta-test
episodes for each --sweep width (`compiler.compare`, golden executor) -> cycle
simulation checked against golden -> the Verilog checked in Verilator against the simulator ->
the synthesis result -> the report page (report/report.html) and summary.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metahw.cli.command import app
from metahw.cli.compiler import parse_bit_widths
from metahw.errors import UserError
from metahw.hardware import MAX_LANES
from metahw.hw.synth.devices import get_device
from metahw.outputs import writable_folder

if TYPE_CHECKING:
    from metahw.compiler.program import Program

#: files the demo writes first; a folder holding one of them is an earlier demo's output
DEMO_MARKERS = ("episode.onnx", "summary.json")


@app.command("demo")
def demo_command(
    model: Annotated[str, typer.Option(help="Checkpoint or zoo:NAME.")] = "zoo:protonet32",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's outputs.")] = Path("out/demo"),
    ways: Annotated[int, typer.Option(min=2, help="Ways N of the demo's episodes.")] = 5,
    shots: Annotated[int, typer.Option(min=1, help="Shots K of the demo's episodes.")] = 1,
    bits: Annotated[int, typer.Option(help="Bits of the compiled program (and of the hardware).")] = 8,
    sweep: Annotated[str, typer.Option(help="Bit widths compared with float (--bits is added).")] = "4,6,8",
    episodes: Annotated[int, typer.Option(help="Meta-test episodes for float and fixed-point accuracy.")] = 1000,
    data: Annotated[Path | None, typer.Option(help="Omniglot data.")] = None,
    lanes: Annotated[int, typer.Option(help="MAC lanes P of the generated accelerator.")] = 8,
    winograd: Annotated[
        bool | None,
        typer.Option(
            "--winograd/--direct",
            help="Winograd F(2x2, 3x3) convs, or direct ones (default: Winograd where every conv can run it).",
        ),
    ] = None,
    target: Annotated[str, typer.Option(help="FPGA for synthesis and place-and-route ('none': skip).")] = "ecp5-25k",
    sim_episodes: Annotated[
        int, typer.Option(min=1, help="Episodes through the cycle simulator (checked vs golden).")
    ] = 5,
    rtl_episodes: Annotated[
        int, typer.Option(min=1, help="Episodes through Verilator (checked vs the simulator).")
    ] = 2,
    progress: bool = True,
) -> None:
    """Run the pipeline on a shipped model: float vs fixed point, simulator, Verilator, synthesis, report page."""
    import onnx

    from metahw.app.demo import demo_hardware, hardware_stage, start_synthesis, warm_up_synthesis, write_report
    from metahw.atomic import atomic_path, write_text_atomic
    from metahw.compiler.compare import compare
    from metahw.compiler.compare_plot import plot_accuracy_vs_bits
    from metahw.compiler.compile import compile_episode, save_build
    from metahw.compiler.program import Program
    from metahw.compiler.quant_config import QuantConfig
    from metahw.models.checkpoint import load_checkpoint
    from metahw.models.data import load_omniglot
    from metahw.models.export import episode_head, export_episode
    from metahw.models.export_check import check_export

    started = time.perf_counter()
    widths = sorted(set(parse_bit_widths(sweep, "--sweep")) | set(parse_bit_widths(str(bits), "--bits")))
    target_name = None if target == "none" else target
    _check_demo_options(out, target_name, episodes, lanes)
    ckpt = load_checkpoint(model)
    warming = warm_up_synthesis(target_name)
    learner = ckpt.learner
    omniglot = load_omniglot(data)
    test, val = omniglot.split("test"), omniglot.split("val")
    summary: dict = {"model": model, "algorithm": learner.algorithm, "ways": ways, "shots": shots, "bits": bits}

    spec = episode_head(learner, ways, shots, None)
    onnx_model = export_episode(learner, spec)
    check = check_export(onnx_model, learner, spec, test, 100, progress=progress)
    with atomic_path(out / "episode.onnx") as tmp:
        onnx.save_model(onnx_model, tmp)
    summary["onnx_check"] = check.to_dict()

    config = QuantConfig(bits=bits)
    build = save_build(compile_episode(onnx_model, config, val, queries=ways), out / "build")
    program = Program.load(build)
    hw = demo_hardware(program, lanes, winograd)
    synthesis = start_synthesis(program, hw, out, target_name, warming)
    try:
        comparison = compare(
            learner, spec, onnx_model, widths, test, val, episodes, progress=progress, base_config=config
        )
        write_text_atomic(out / "compare.json", json.dumps(comparison, indent=2) + "\n")
        plot_accuracy_vs_bits(comparison, out / "accuracy_vs_bits.png")
        fixed = comparison["fixed"][str(bits)]
        floating = comparison["float"]["torch"]  # PyTorch on the same seeded episodes as every fixed-point row
        summary["float_accuracy"] = floating
        summary["fixed_point"] = fixed

        sections, rungs = hardware_stage(
            program,
            test,
            comparison,
            out,
            hw=hw,
            synthesis=synthesis,
            sim_episodes=sim_episodes,
            rtl_episodes=rtl_episodes,
            progress=progress,
        )
    except BaseException:  # no minutes of place and route for a run that has already failed
        if synthesis is not None:
            synthesis.stop()
        raise
    rungs.insert(
        0,
        {
            "rung": "onnxruntime vs PyTorch",
            "status": "pass" if check.predictions_equal else "fail",
            "episodes": check.episodes,
            "detail": f"max relative error {check.max_relative_error:.1e}",
        },
    )
    rungs.insert(
        1,
        {
            "rung": "golden executor",
            "status": "pass",
            "episodes": episodes,
            "detail": f"{100 * fixed['agreement_with_float']:.2f}% predictions as float",
        },
    )
    rungs.append(
        {
            "rung": "hls4ml C simulation",
            "status": "not run",
            "episodes": None,
            "detail": "run `metahw simulate BUILD --hls` (g++ build of about a minute, cached after)",
        }
    )
    backbone = {"checkpoint": model, "algorithm": learner.algorithm, "width": _backbone_width(program), "depth": 4}
    page = write_report(out, f"metahw demo: {learner.algorithm} ({model})", backbone, program, sections, rungs)
    summary["verification"] = rungs
    summary["report"] = str(page)

    summary["seconds"] = time.perf_counter() - started
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    acc = fixed["accuracy"]
    typer.echo(f"metahw demo: {learner.algorithm} ({model}), {ways}-way {shots}-shot on the meta-test alphabets")
    typer.echo(
        f"  float accuracy       {100 * floating['accuracy']:.2f} +- {100 * floating['ci95']:.2f} % "
        f"over {floating['episodes']} episodes"
    )
    typer.echo(
        f"  ONNX episode         {out / 'episode.onnx'}: onnxruntime == PyTorch, {check.episodes} episodes "
        f"(max rel. error {check.max_relative_error:.1e}, same predictions: {check.predictions_equal})"
    )
    label = f"{bits}-bit"
    typer.echo(f"  {label + ' program':<20} {build} ({fixed['weight_bytes']} weight bytes)")
    typer.echo(
        f"  {label + ' accuracy':<20} {100 * acc['accuracy']:.2f} +- {100 * acc['ci95']:.2f} % "
        f"(golden executor, same episodes; {100 * fixed['agreement_with_float']:.2f}% predictions as float, "
        f"{sum(fixed['saturation'].values())} saturations)"
    )
    sweep_line = ", ".join(f"{b}-bit {100 * comparison['fixed'][str(b)]['accuracy']['accuracy']:.2f} %" for b in widths)
    typer.echo(f"  {'bits sweep':<20} {sweep_line} ({out / 'accuracy_vs_bits.png'})")
    for rung in rungs:
        typer.echo(f"  {rung['rung']:<28} {rung['status']:<8} {rung['detail']}")
    typer.echo(f"  report               {page}")
    typer.echo(f"  summary              {out / 'summary.json'} ({summary['seconds']:.0f} s)")


def _check_demo_options(out: Path, target: str | None, episodes: int, lanes: int) -> None:
    """Refuse, before any work, a demo that could not finish: bad counts, an unknown target, a user's folder."""
    if episodes < 2:
        raise UserError(f"--episodes must be >= 2 for a confidence interval (got {episodes}).")
    if lanes < 1 or lanes & (lanes - 1) or lanes > MAX_LANES:
        raise UserError(f"--lanes must be a power of two in 1..{MAX_LANES} (got {lanes}).")
    if target is not None:
        get_device(target)
    writable_folder(out, "demo folder", lambda folder: any((folder / name).exists() for name in DEMO_MARKERS))


def _backbone_width(program: Program) -> int:
    return max((b.shape[0] for b in program.buffers if b.kind == "weight" and len(b.shape) == 4), default=0)
