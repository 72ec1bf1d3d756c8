"""`metahw compile` and `metahw compare`: the fixed-point compiler and float-vs-fixed accuracy."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from metahw.atomic import write_text_atomic
from metahw.cli import app
from metahw.compiler.compare import compare
from metahw.compiler.compare_plot import plot_accuracy_vs_bits
from metahw.compiler.compile import compile_episode, episode_shape, save_build
from metahw.compiler.onnx_import import load_onnx
from metahw.compiler.quant_config import QuantConfig, load_overrides
from metahw.errors import UserError
from metahw.models.checkpoint import load_checkpoint
from metahw.models.data import load_omniglot
from metahw.models.export import episode_head, export_episode

Bits = Annotated[int, typer.Option(help="Bits of weights and activations of the embedding (2..16).")]
HeadBits = Annotated[int, typer.Option(help="Bits of the head's state and internal values (2..16).")]
Rounding = Annotated[str, typer.Option(help="half_up (ap_fixed AP_RND), truncate (AP_TRN) or half_even.")]
Overflow = Annotated[str, typer.Option(help="saturate (AP_SAT) or wrap (AP_WRAP).")]
PerChannel = Annotated[bool, typer.Option("--per-channel", help="Per-output-channel weight formats.")]
Data = Annotated[Path | None, typer.Option(help="Omniglot data (calibration uses the meta-val alphabets).")]


def _config(bits: int, head_bits: int, rounding: str, overflow: str, per_channel: bool, overrides: Path | None):
    return QuantConfig(bits=bits, head_bits=head_bits, rounding=rounding, overflow=overflow, per_channel=per_channel,
                       overrides=load_overrides(overrides) if overrides else {})  # fmt: skip


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
        int | None, typer.Option(help="Queries per episode the program classifies (default: ways).")
    ] = None,
    calibration_episodes: Annotated[int, typer.Option(help="Meta-val episodes for calibration.")] = 32,
    data: Data = None,
) -> None:
    """Compile an ONNX episode to a fixed-point Program (program.json, weights.npz, quantisation.json)."""
    started = time.perf_counter()
    config = _config(bits, head_bits, rounding, overflow, per_channel, overrides)
    model = load_onnx(onnx_file)
    ways, _ = episode_shape(model)
    if calibration_episodes < 1:
        raise UserError(f"--calibration-episodes must be >= 1 (got {calibration_episodes}).")
    result = compile_episode(
        model, config, load_omniglot(data).split("val"), ways if queries is None else queries, calibration_episodes
    )
    save_build(result, out)
    report = result.report()
    typer.echo(f"wrote {out}: {len(report['ops'])} ops ({', '.join(dict.fromkeys(report['ops']))}), "
               f"{report['weight_bytes']} weight bytes, {report['macs']:,} MACs per episode, "
               f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    typer.echo(f"{'buffer':<28} {'kind':<10} {'shape':<18} {'format':<10} calibrated range")
    for buf in report["buffers"]:
        rng = buf["calibrated"]
        shown = f"[{rng[0]:.3g}, {rng[1]:.3g}]" if rng else ""
        typer.echo(f"{buf['name']:<28} {buf['kind']:<10} {str(tuple(buf['shape'])):<18} {buf['format']:<10} {shown}")


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
    ways: int = 5,
    shots: int = 1,
    inner_steps: Annotated[int | None, typer.Option(help="Head SGD steps (default: the learner's).")] = None,
    episodes: Annotated[int, typer.Option(help="Meta-test episodes (the same for every row).")] = 1000,
    queries: Annotated[int, typer.Option(help="Query examples per class.")] = 15,
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
    progress: bool = True,
) -> None:
    """Same episodes through PyTorch float, onnxruntime and the golden fixed-point program per bit width."""
    widths = parse_bit_widths(bits)
    base = _config(widths[0], head_bits, rounding, overflow, per_channel, None)
    if episodes < 2:
        raise UserError(f"--episodes must be >= 2 for a confidence interval (got {episodes}).")
    learner = load_checkpoint(ckpt).learner
    spec = episode_head(learner, ways, shots, inner_steps)
    omniglot = load_omniglot(data)
    result = compare(learner, spec, export_episode(learner, spec), widths, omniglot.split("test"),
                     omniglot.split("val"), episodes, queries, seed, progress and not as_json, base)  # fmt: skip
    result["checkpoint"] = ckpt
    write_text_atomic(out / "compare.json", json.dumps(result, indent=2) + "\n")
    plot_accuracy_vs_bits(result, out / "accuracy_vs_bits.png")
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    flt = result["float"]
    typer.echo(f"{learner.algorithm} {ways}-way {shots}-shot, {episodes} meta-test episodes x {ways * queries} queries")
    typer.echo(f"{'':<12} {'accuracy':>16} {'agree w/ float':>15} {'saturated':>10}  SQNR dB per layer")
    for name in ("torch", "onnxruntime"):
        typer.echo(f"{'float ' + name[:5]:<12} {100 * flt[name]['accuracy']:>9.2f} +- {100 * flt[name]['ci95']:.2f}"
                   f" {100 * (1.0 if name == 'torch' else flt['onnxruntime_agreement']):>14.2f}%")  # fmt: skip
    for b, row in result["fixed"].items():
        acc = row["accuracy"]
        sqnr = " ".join(f"{k.split('.')[0]}:{v:.1f}" for k, v in row["sqnr_db"].items())
        saturated = sum(row["saturation"].values())
        typer.echo(f"{b + '-bit':<12} {100 * acc['accuracy']:>9.2f} +- {100 * acc['ci95']:.2f} "
                   f"{100 * row['agreement_with_float']:>14.2f}% {saturated:>10}  {sqnr}")  # fmt: skip
    typer.echo(f"wrote {out / 'compare.json'} and {out / 'accuracy_vs_bits.png'}")
