"""`metahw demo`: the end-to-end job on the shipped ProtoNet, with a short summary at the end."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import onnx
import typer

from metahw.atomic import atomic_path, write_text_atomic
from metahw.cli import app
from metahw.models.checkpoint import load_checkpoint
from metahw.models.data import load_omniglot
from metahw.models.evaluate import evaluate
from metahw.models.export import episode_head, export_episode
from metahw.models.export_check import check_export


@app.command("demo")
def demo_command(
    model: Annotated[str, typer.Option(help="Checkpoint or zoo:NAME.")] = "zoo:protonet",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's outputs.")] = Path("out/demo"),
    ways: int = 5,
    shots: int = 1,
    episodes: Annotated[int, typer.Option(help="Meta-test episodes for the float evaluation.")] = 1000,
    data: Annotated[Path | None, typer.Option(help="Omniglot data.")] = None,
    progress: bool = True,
) -> None:
    """Run the pipeline on a shipped model: evaluate in float, export the episode, check ONNX."""
    started = time.perf_counter()
    ckpt = load_checkpoint(model)
    learner = ckpt.learner
    test = load_omniglot(data).split("test")
    summary: dict = {"model": model, "algorithm": learner.algorithm, "ways": ways, "shots": shots}

    accuracy = evaluate(learner, test, ways, shots, 15, episodes, seed=0, progress=progress)
    summary["float_accuracy"] = accuracy.to_dict()

    spec = episode_head(learner, ways, shots, None)
    onnx_model = export_episode(learner, spec)
    check = check_export(onnx_model, learner, spec, test, 100, progress=progress)
    with atomic_path(out / "episode.onnx") as tmp:
        onnx.save_model(onnx_model, tmp)
    summary["onnx_check"] = check.to_dict()

    summary["seconds"] = time.perf_counter() - started
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    typer.echo(f"metahw demo: {learner.algorithm} ({model}), {ways}-way {shots}-shot on the meta-test alphabets")
    typer.echo(f"  float accuracy     {accuracy} over {accuracy.episodes} episodes")
    typer.echo(
        f"  ONNX episode       {out / 'episode.onnx'}: onnxruntime == PyTorch on {check.episodes} episodes "
        f"(max rel. error {check.max_relative_error:.1e}, predictions identical: {check.predictions_equal})"
    )
    typer.echo(f"  summary            {out / 'summary.json'} ({summary['seconds']:.0f} s)")
