"""`metahw export`: a checkpoint's whole few-shot episode as ONNX, checked against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import onnx
import typer

from metahw.atomic import atomic_path
from metahw.cli import app
from metahw.errors import UserError
from metahw.models.checkpoint import load_checkpoint
from metahw.models.data import load_omniglot
from metahw.models.export import episode_head, export_episode
from metahw.models.export_check import check_export


@app.command("export")
def export_command(
    ckpt: Annotated[Path, typer.Argument(help="Checkpoint written by `metahw train`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write.")],
    ways: int = 5,
    shots: int = 1,
    inner_steps: Annotated[
        int | None, typer.Option(help="Head SGD steps unrolled in the graph (default: the learner's head-mode steps).")
    ] = None,
    check_episodes: Annotated[
        int, typer.Option(help="Random meta-test episodes run in onnxruntime against PyTorch (0: skip).")
    ] = 100,
    tolerance: Annotated[float, typer.Option(help="Largest accepted relative logit error.")] = 1e-4,
    data: Annotated[Path | None, typer.Option(help="Omniglot data for the check.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    progress: bool = True,
) -> None:
    """Export the episode (support_x, support_y one-hot, query_x) -> (logits, prediction) to ONNX."""
    learner = load_checkpoint(ckpt).learner
    spec = episode_head(learner, ways, shots, inner_steps)
    model = export_episode(learner, spec)
    report = {
        "onnx": str(out),
        "algorithm": learner.algorithm,
        "head": spec.kind,
        "ways": ways,
        "shots": shots,
        "inner_steps": spec.inner_steps,
    }
    if check_episodes > 0:
        split = load_omniglot(data).split("test")
        result = check_export(model, learner, spec, split, check_episodes, progress=progress and not as_json)
        report["check"] = {**result.to_dict(), "tolerance": tolerance}
        if not result.passed(tolerance):
            raise UserError(
                f"onnxruntime disagrees with PyTorch: max relative error {result.max_relative_error:.2e} "
                f"(tolerance {tolerance:.0e}), {result.mismatched_predictions} predictions differ; "
                "nothing was written."
            )
    with atomic_path(out) as tmp:
        onnx.save_model(model, tmp)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(
        f"wrote {out}: {learner.algorithm} {ways}-way {shots}-shot, head {spec.kind}"
        + (f", {spec.inner_steps} SGD steps" if spec.kind == "sgd" else "")
    )
    if "check" in report:
        c = report["check"]
        typer.echo(
            f"onnxruntime == PyTorch on {c['episodes']} episodes: max relative error "
            f"{c['max_relative_error']:.2e}, predictions identical: {c['predictions_equal']}"
        )
