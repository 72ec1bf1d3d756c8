"""`metahw compile` and `metahw compare`: the fixed-point compiler and float-vs-fixed accuracy.

Both take the user's own episodes (metahw/cli/episodes.py): compile calibrates on them,
compare runs every row on them.
"""

from __future__ import annotations

import json
import time
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
)
from metahw.errors import UserError
from metahw.models.episode_sources import EpisodeShape
from metahw.outputs import exclusive, writable_file, writable_folder

if TYPE_CHECKING:
    import onnx

    from metahw.compiler.compare import Engine
    from metahw.compiler.quant_config import QuantConfig
    from metahw.models.episodes import Episode, EpisodeSet
    from metahw.models.export import EpisodeHead
    from metahw.models.learners import MetaLearner

Bits = Annotated[int, typer.Option(help="Bits of weights and activations of the embedding (2..16).")]
HeadBits = Annotated[int, typer.Option(help="Bits of the head's state and internal values (2..16).")]
Rounding = Annotated[str, typer.Option(help="half_up (ap_fixed AP_RND), truncate (AP_TRN) or half_even.")]
Overflow = Annotated[str, typer.Option(help="saturate (AP_SAT) or wrap (AP_WRAP).")]
PerChannel = Annotated[bool, typer.Option("--per-channel", help="Per-output-channel weight formats.")]
Data = Annotated[Path | None, typer.Option(help="Omniglot data (calibration uses the meta-val alphabets).")]


def _config(
    bits: int, head_bits: int, rounding: str, overflow: str, per_channel: bool, overrides: Path | None
) -> QuantConfig:
    from metahw.compiler.quant_config import QuantConfig, load_overrides

    return QuantConfig(
        bits=bits,
        head_bits=head_bits,
        rounding=rounding,
        overflow=overflow,
        per_channel=per_channel,
        overrides=load_overrides(overrides) if overrides else {},
    )


@app.command("compile")
def compile_command(
    onnx_file: Annotated[Path, typer.Argument(help="Episode exported by `metahw export`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Build folder to write.")],
    bits: Bits = 8,
    head_bits: HeadBits = 16,
    rounding: Rounding = "half_up",
    overflow: Overflow = "saturate",
    per_channel: PerChannel = False,
    overrides: Annotated[Path | None, typer.Option(help="Per-tensor format overrides (JSON or YAML).")] = None,
    queries: Annotated[
        int | None, typer.Option(min=1, help="Queries per episode the program classifies (default: ways).")
    ] = None,
    calibration_episodes: Annotated[
        int,
        typer.Option(
            min=1, help="Calibration episodes (meta-val, drawn from --images, or the first of --episodes-from)."
        ),
    ] = 32,
    data: Data = None,
    episodes_from: Annotated[
        Path | None, typer.Option("--episodes-from", help="Calibrate on the episodes of this .npz instead.")
    ] = None,
    images: Annotated[
        Path | None, typer.Option("--images", help="Calibrate on seeded episodes drawn from this image folder.")
    ] = None,
    image_shape: ImageShape = None,
    invert: Invert = None,
    mean: Mean = None,
    std: Std = None,
    resample: Resample = "box",
) -> None:
    """Compile an ONNX episode to a fixed-point Program (program.json, weights.npz, quantisation.json)."""
    from metahw.compiler.compile import (
        check_build_target,
        check_compilable,
        compile_calibrated,
        compile_episode,
        episode_shape,
        save_build,
    )
    from metahw.compiler.onnx_import import load_onnx
    from metahw.models.data import load_omniglot

    started = time.perf_counter()
    check_build_target(out)
    config = _config(bits, head_bits, rounding, overflow, per_channel, overrides)
    source = EpisodeOptions(episodes_from, images, None, image_shape, invert, mean, std, resample)
    model = load_onnx(onnx_file)
    ways, _ = episode_shape(model)
    classified = ways if queries is None else queries
    check_compilable(model, config, classified)
    with exclusive(out, "build"):
        if source.given:
            calibration = _user_calibration(model, source, classified, calibration_episodes)
            result = compile_calibrated(model, config, calibration, classified)
        else:
            split = load_omniglot(data).split("val")
            result = compile_episode(model, config, split, classified, calibration_episodes)
        save_build(result, out)
    report = result.report()
    typer.echo(
        f"wrote {out}: {len(report['ops'])} ops ({', '.join(dict.fromkeys(report['ops']))}), "
        f"{report['weight_bytes']} weight bytes, {report['macs']:,} MACs per episode, "
        f"{time.perf_counter() - started:.1f} s"
    )
    typer.echo(f"{'buffer':<28} {'kind':<10} {'shape':<18} {'format':<10} calibrated range")
    for buf in report["buffers"]:
        rng = buf["calibrated"]
        shown = f"[{rng[0]:.3g}, {rng[1]:.3g}]" if rng else ""
        typer.echo(f"{buf['name']:<28} {buf['kind']:<10} {str(tuple(buf['shape'])):<18} {buf['format']:<10} {shown}")


def onnx_image_shape(model: onnx.ModelProto) -> tuple[int, int, int]:
    """(C, H, W) of an exported episode's images, read from its support_x input."""
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return dims[1], dims[2], dims[3]


def _user_calibration(model: onnx.ModelProto, source: EpisodeOptions, queries: int, count: int) -> EpisodeSet:
    """The user's calibration episodes: drawn from --images like meta-val ones, or the first of --episodes-from."""
    from metahw.compiler.compile import episode_shape

    ways, shots = episode_shape(model)
    per_class = max(1, min(queries // ways, 5))  # as compile_episode draws meta-val episodes
    image = onnx_image_shape(model)
    if source.images is not None:
        return source.load(EpisodeShape(ways, shots, ways * per_class, image), count, 0, "the ONNX episode")
    episodes = source.load(EpisodeShape(ways, shots, None, image), None, 0, "the ONNX episode")
    return episodes.first(count)


def parse_bit_widths(text: str, option: str = "--bits") -> list[int]:
    """Sorted distinct bit widths from a comma list like '4,6,8' (each in 2..16), else a UserError naming `option`."""
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UserError(f"{option} {text!r} is not a comma-separated list of integers (e.g. 4,6,8,16).") from None
    if not values or any(not 2 <= v <= 16 for v in values):
        raise UserError(f"{option} {text!r}: every width must be in 2..16.")
    return values


@app.command("compare")
def compare_command(
    ckpt: Annotated[str, typer.Argument(help="Checkpoint or zoo:NAME.")],
    bits: Annotated[str, typer.Option(help="Comma-separated bit widths.")] = "4,6,8,16",
    ways: Annotated[int | None, typer.Option(min=2, help="Ways N (default 5; with a file or runs: theirs).")] = None,
    shots: Annotated[int | None, typer.Option(min=1, help="Shots K (default 1; with a file or runs: theirs).")] = None,
    inner_steps: Annotated[int | None, typer.Option(min=0, help="Head SGD steps (default: the learner's).")] = None,
    episodes: Annotated[
        int | None, typer.Option(help="Episodes, the same for every row (default 1000; of a file or runs: all).")
    ] = None,
    queries: Annotated[int | None, typer.Option(min=1, help="Query examples per class (default 15).")] = None,
    head_bits: HeadBits = 16,
    rounding: Rounding = "half_up",
    overflow: Overflow = "saturate",
    per_channel: PerChannel = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for compare.json and accuracy_vs_bits.png.")] = Path(
        "out/compare"
    ),
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
    engine: Annotated[
        str,
        typer.Option(
            help="What runs the fixed-point rows: golden (the golden executor) or simulator (the cycle "
            "simulator of the design `metahw build` builds, with --lanes; it also reports cycles per episode)."
        ),
    ] = "golden",
    lanes: Annotated[
        int | None, typer.Option(help="--engine simulator: MAC lanes P (default: the --config file's, else 8).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="--engine simulator: hardware config JSON for the other parameters (memory sizes, ...)."),
    ] = None,
    progress: bool = True,
) -> None:
    """Same episodes through PyTorch float, onnxruntime and the fixed-point program per bit width."""
    from metahw.atomic import write_text_atomic
    from metahw.compiler.compare import compare_episodes, omniglot_comparison
    from metahw.compiler.compare_plot import plot_accuracy_vs_bits
    from metahw.models.checkpoint import load_checkpoint
    from metahw.models.data import load_omniglot
    from metahw.models.export import episode_head, export_episode

    widths = parse_bit_widths(bits)
    fixed_engine = _engine(engine, lanes, config)
    base = _config(widths[0], head_bits, rounding, overflow, per_channel, None)
    source = EpisodeOptions(episodes_from, images, runs, image_shape, invert, mean, std, resample)
    count = 1000 if episodes is None and (not source.given or images is not None) else episodes
    if count is not None and count < 2:
        raise UserError(f"--episodes must be >= 2 for a confidence interval (got {count}).")
    writable_folder(out, "comparison folder", lambda folder: (folder / "compare.json").is_file())
    if predictions is not None:
        writable_file(predictions, "--predictions file")
    learner = load_checkpoint(ckpt).learner
    if source.given:
        spec, model, chosen, calibration = _user_comparison(
            learner, source, ways, shots, queries, inner_steps, count, seed, data
        )
    else:
        spec = episode_head(learner, ways or 5, shots or 1, inner_steps)
        model = export_episode(learner, spec)
        omniglot = load_omniglot(data)
        chosen, calibration = omniglot_comparison(
            spec, omniglot.split("test"), omniglot.split("val"), count, queries or 15, seed
        )
    result = compare_episodes(
        learner, spec, model, widths, chosen, calibration, progress and not as_json, base, fixed_engine
    )
    produced = result.pop("predictions")
    result |= {"seed": seed, "checkpoint": ckpt}
    if not source.given:
        result["queries_per_class"] = queries or 15
    finish(result, chosen, produced, predictions)
    write_text_atomic(out / "compare.json", json.dumps(result, indent=2) + "\n")
    if chosen.labelled:
        plot_accuracy_vs_bits(result, out / "accuracy_vs_bits.png")
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print_comparison(result, learner.algorithm, describe(chosen), out, chosen.labelled)


def _engine(name: str, lanes: int | None, config: Path | None) -> Engine:
    """The fixed-point engine named by --engine (with --lanes and --config), checked before anything runs."""
    from metahw.compiler.compare import GOLDEN
    from metahw.hardware import HardwareConfig
    from metahw.sim.engine import simulator_engine

    if name == "golden":
        if lanes is not None or config is not None:
            raise UserError("--lanes and --config set the simulated design: give them with --engine simulator.")
        return GOLDEN
    if name == "simulator":
        base = HardwareConfig.load(config) if config is not None else HardwareConfig(lanes=lanes or 8)
        return simulator_engine(lanes or base.lanes, base)
    raise UserError(f"unknown --engine {name!r}: accepted are golden and simulator.")


def _user_comparison(
    learner: MetaLearner,
    source: EpisodeOptions,
    ways: int | None,
    shots: int | None,
    queries: int | None,
    inner_steps: int | None,
    count: int | None,
    seed: int,
    data: Path | None,
) -> tuple[EpisodeHead, onnx.ModelProto, EpisodeSet, list[Episode] | EpisodeSet]:
    """Head, exported episode, episodes and calibration episodes of a comparison on the user's data.

    --images draws episodes of the exported shape; a file's or the runs' shape sets the export's.
    The runs calibrate on meta-val as `metahw compile` does; the user's own data on its first 32 episodes.
    """
    from metahw.compiler.compile import calibration_episodes
    from metahw.models.data import load_omniglot
    from metahw.models.episode_sources import require_shape
    from metahw.models.export import episode_head, export_episode

    if source.images is not None:
        spec = episode_head(learner, ways or 5, shots or 1, inner_steps)
        model = export_episode(learner, spec)
        shape = EpisodeShape(spec.ways, spec.shots, spec.ways * (queries or 15), onnx_image_shape(model))
        chosen = source.load(shape, count, seed, "the exported episode")
    else:
        wanted = EpisodeShape(ways, shots, None if ways is None or queries is None else ways * queries)
        loaded = source.load(wanted, count, seed, "the command line (--ways, --shots, --queries)")
        spec = episode_head(learner, loaded.ways, loaded.shots, inner_steps)
        model = export_episode(learner, spec)
        shape = EpisodeShape(spec.ways, spec.shots, loaded.queries, onnx_image_shape(model))
        chosen = require_shape(shape, loaded, loaded.source, "the exported episode")
    if source.runs is None:
        return spec, model, chosen, chosen.first(32)
    per_class = max(1, min(chosen.queries // spec.ways, 5))
    val = load_omniglot(data).split("val")
    return spec, model, chosen, calibration_episodes(val, spec.ways, spec.shots, per_class, seed=seed)


def _print_comparison(result: dict, algorithm: str, described: str, out: Path, labelled: bool) -> None:
    def shown(acc: dict | None) -> str:
        if acc is None:
            return f"{'n/a':>16}"
        if acc["ci95"] is None:
            return f"{100 * acc['accuracy']:>9.2f}{'':>7}"
        return f"{100 * acc['accuracy']:>9.2f} +- {100 * acc['ci95']:.2f}"

    flt = result["float"]
    typer.echo(f"{algorithm} {result['ways']}-way {result['shots']}-shot, {described} x {result['queries']} queries")
    typer.echo(f"{'':<12} {'accuracy':>16} {'agree w/ float':>15} {'saturated':>10}  SQNR dB per layer")
    for name in ("torch", "onnxruntime"):
        agree = 1.0 if name == "torch" else flt["onnxruntime_agreement"]
        typer.echo(f"{'float ' + name[:5]:<12} {shown(flt[name])} {100 * agree:>14.2f}%")
    for b, row in result["fixed"].items():
        sqnr = " ".join(f"{k.split('.')[0]}:{v:.1f}" for k, v in row["sqnr_db"].items())
        saturated = sum(row["saturation"].values())
        typer.echo(
            f"{b + '-bit':<12} {shown(row['accuracy'])} "
            f"{100 * row['agreement_with_float']:>14.2f}% {saturated:>10}  {sqnr}"
        )
    for b, row in result["fixed"].items():
        whole = row.get("whole_episode")
        if whole is not None:
            check = "equals" if whole["equal"] else "DIFFERS FROM (a simulator bug: please report it)"
            typer.echo(
                f"{b}-bit on the {row['engine']}: {whole['cycles']:,} cycles per episode; the first episode run "
                f"whole {check} the split run (embedding per image, head per episode)"
            )
    echo_runs(result)
    plot = f" and {out / 'accuracy_vs_bits.png'}" if labelled else " (no plot: the episodes have no query labels)"
    typer.echo(f"wrote {out / 'compare.json'}{plot}")
