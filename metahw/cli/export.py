"""`metahw export`: a checkpoint's (or an imported embedding's) whole few-shot episode as ONNX, checked.

The argument is a metahw checkpoint (`.pt` or `zoo:NAME`), or an ONNX file holding an
embedding trained elsewhere (`.onnx`, with `--head`; see docs/own_model.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metahw.cli.command import app
from metahw.errors import UserError
from metahw.outputs import writable_file

if TYPE_CHECKING:
    import onnx

    from metahw.models.export import EpisodeHead

#: `metahw.models.embedding_export.HEADS`, spelled out so that `metahw --help` does not import torch and onnx
#: (tests/cli/test_startup.py checks that they agree).
EMBEDDING_HEADS = ("protonet", "matchingnet", "protomaml", "anil")


@app.command("export")
def export_command(
    model: Annotated[
        Path, typer.Argument(help="Checkpoint written by `metahw train` (or zoo:NAME), or an embedding .onnx file.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write.")],
    ways: Annotated[int, typer.Option(min=2, help="Ways N of the exported episode.")] = 5,
    shots: Annotated[int, typer.Option(min=1, help="Shots K of the exported episode.")] = 1,
    head: Annotated[
        str | None,
        typer.Option(help=f"Head for an embedding .onnx: {', '.join(EMBEDDING_HEADS)} (not for checkpoints)."),
    ] = None,
    inner_steps: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Head SGD steps unrolled in the graph (default: the learner's head-mode steps; "
            "protomaml 5, anil 10 for an embedding).",
        ),
    ] = None,
    inner_lr: Annotated[
        float | None,
        typer.Option(help="Head SGD learning rate for an embedding with --head protomaml (default 0.1) or anil (0.5)."),
    ] = None,
    attention_scale: Annotated[
        float | None, typer.Option(help="Cosine attention scale for an embedding with --head matchingnet (default 10).")
    ] = None,
    check_episodes: Annotated[
        int, typer.Option(min=0, help="Random meta-test episodes run in onnxruntime against PyTorch (0: skip).")
    ] = 100,
    tolerance: Annotated[float, typer.Option(help="Largest accepted relative logit error.")] = 1e-4,
    data: Annotated[Path | None, typer.Option(help="Omniglot data for the check.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    progress: bool = True,
) -> None:
    """Export the episode (support_x, support_y one-hot, query_x) -> (logits, prediction) to ONNX."""
    import onnx

    from metahw.atomic import atomic_path
    from metahw.compiler.compile import check_compilable
    from metahw.compiler.quant_config import QuantConfig

    show = progress and not as_json
    writable_file(out, "ONNX file")
    if not tolerance > 0:
        raise UserError(f"--tolerance must be > 0 (got {tolerance}).")
    if model.suffix.lower() == ".onnx":
        heads = (head, inner_steps, inner_lr, attention_scale)
        exported = _from_embedding(model, ways, shots, heads, check_episodes, tolerance, data, show)
    else:
        named = {"--head": head, "--inner-lr": inner_lr, "--attention-scale": attention_scale}
        given = [name for name, value in named.items() if value is not None]
        if given:
            raise UserError(f"{', '.join(given)} apply to an embedding .onnx file, not to checkpoint {model}.")
        exported = _from_checkpoint(model, ways, shots, inner_steps, check_episodes, tolerance, data, show)
    spec = exported.spec
    report = {
        "onnx": str(out),
        "algorithm": exported.algorithm,
        "head": spec.kind,
        "ways": ways,
        "shots": shots,
        "inner_steps": spec.inner_steps,
        **exported.extra,
    }
    if exported.check is not None:
        report["check"] = {**exported.check, "tolerance": tolerance}
    check_compilable(exported.model, QuantConfig(), ways)  # what export writes, compile takes
    with atomic_path(out) as tmp:
        onnx.save_model(exported.model, tmp)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(
        f"wrote {out}: {exported.algorithm} {ways}-way {shots}-shot, head {spec.kind}"
        + (f", {spec.inner_steps} SGD steps" if spec.kind == "sgd" else "")
    )
    if "check" in report:
        c = report["check"]
        on = f" ({c['images']} images)" if "images" in c else ""
        typer.echo(
            f"onnxruntime == PyTorch on {c['episodes']} episodes{on}: max relative error "
            f"{c['max_relative_error']:.2e}, predictions identical: {c['predictions_equal']}"
        )


@dataclass(frozen=True)
class _Exported:
    """A checked episode graph and what the report says about it."""

    model: onnx.ModelProto
    algorithm: str
    spec: EpisodeHead
    check: dict | None
    extra: dict


def _from_checkpoint(
    ckpt: Path,
    ways: int,
    shots: int,
    inner_steps: int | None,
    episodes: int,
    tolerance: float,
    data: Path | None,
    progress: bool,
) -> _Exported:
    from metahw.models.checkpoint import load_checkpoint
    from metahw.models.data import load_omniglot
    from metahw.models.export import episode_head, export_episode
    from metahw.models.export_check import check_export, require_passed

    learner = load_checkpoint(ckpt).learner
    spec = episode_head(learner, ways, shots, inner_steps)
    episode = export_episode(learner, spec)
    if episodes <= 0:
        return _Exported(episode, learner.algorithm, spec, None, {})
    result = check_export(episode, learner, spec, load_omniglot(data).split("test"), episodes, progress=progress)
    require_passed(result, tolerance)
    return _Exported(episode, learner.algorithm, spec, result.to_dict(), {})


def _from_embedding(
    path: Path, ways: int, shots: int, heads: tuple, episodes: int, tolerance: float, data: Path | None, progress: bool
) -> _Exported:
    from metahw.models.embedding_export import embedding_episode

    head, inner_steps, inner_lr, attention_scale = heads
    if head is None:
        raise UserError(f"an embedding .onnx file needs --head ({', '.join(EMBEDDING_HEADS)}).")
    exported = embedding_episode(
        path,
        None,
        head,
        ways,
        shots,
        inner_steps,
        inner_lr,
        attention_scale,
        episodes,
        tolerance,
        data,
        progress=progress,
    )
    check = None if exported.check is None else {**exported.check.result.to_dict(), "images": exported.check.images}
    embedding = {"input_shape": list(exported.embedding.input_shape), "feature_dim": exported.embedding.feature_dim}
    return _Exported(exported.model, exported.head, exported.spec, check, {"embedding": embedding})
