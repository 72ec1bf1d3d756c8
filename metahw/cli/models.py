"""`metahw train` and `metahw eval`: meta-train a learner, evaluate a checkpoint."""

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
    Std,
    finish,
)
from metahw.errors import UserError
from metahw.models.episode_sources import EpisodeShape, run_errors, write_predictions
from metahw.models.episodes import EpisodeSampler, EpisodeSet
from metahw.outputs import exclusive, writable_file

if TYPE_CHECKING:
    from metahw.models.learners import MetaLearner

#: The names of `metahw.models.learners.ALGORITHMS`, sorted, spelled out so that `metahw --help` does not
#: import torch (tests/cli/test_startup.py checks that they agree).
ALGORITHM_NAMES = ("anil", "fomaml", "maml", "matchingnet", "metasgd", "protomaml", "protonet", "reptile")

DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data", help="Omniglot zips or extracted folder (default: $METAHW_DATA or ../shared/data/omniglot)."
    ),
]


def _parse_hparams(items: list[str]) -> dict:
    hparams = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--hparam {item!r} is not KEY=VALUE (e.g. --hparam inner_lr=0.4).")
        try:
            hparams[key] = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(f"--hparam {key}: value {value!r} is not a number, true/false or a JSON value.") from None
    return hparams


@app.command("train")
def train_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint file to write (.pt).")],
    algo: Annotated[str | None, typer.Option("--algo", help=f"One of: {', '.join(ALGORITHM_NAMES)}.")] = None,
    ways: int = 5,
    shots: int = 1,
    queries: Annotated[int, typer.Option(help="Query examples per class in training episodes.")] = 5,
    episodes: Annotated[int, typer.Option(help="Training episodes (tasks) in total.")] = 2000,
    width: Annotated[int | None, typer.Option(help="Conv-4 channel width (default 32, or --backbone-from's).")] = None,
    depth: Annotated[int | None, typer.Option(help="Number of conv blocks (default 4, or --backbone-from's).")] = None,
    no_bn: Annotated[bool, typer.Option("--no-bn", help="Conv-4 without BatchNorm (conv bias instead).")] = False,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="No random affine warps in training.")] = False,
    meta_batch: Annotated[
        int | None, typer.Option(help="Tasks per outer step (default 1 metric, 4 gradient-based).")
    ] = None,
    lr: Annotated[float, typer.Option(help="Outer (Adam) learning rate, cosine-annealed.")] = 1e-3,
    hparam: Annotated[
        list[str], typer.Option("--hparam", help="Algorithm hyper-parameter KEY=VALUE (repeatable).")
    ] = [],  # noqa: B006
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    seed: int = 0,
    qat_bits: Annotated[
        int | None,
        typer.Option(
            help="After float training, fold BN and fine-tune with fake quantisation at this many bits (2..16)."
        ),
    ] = None,
    qat_episodes: Annotated[int | None, typer.Option(help="QAT fine-tuning episodes (default: --episodes).")] = None,
    init: Annotated[
        str | None, typer.Option(help="Start QAT from this checkpoint (or zoo:NAME) instead of training float first.")
    ] = None,
    backbone_from: Annotated[
        str | None,
        typer.Option(help="Meta-train starting from this checkpoint's (or zoo:NAME's) embedding weights."),
    ] = None,
    data: DataOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Meta-train a few-shot learner on the meta-train alphabets and write a checkpoint."""
    if init is None and algo not in ALGORITHM_NAMES:  # refused before torch is imported: a fast answer
        raise UserError(f"unknown or missing --algo {algo!r}: accepted are {', '.join(ALGORITHM_NAMES)}.")
    from metahw.models.backbone import BackboneConfig
    from metahw.models.checkpoint import load_checkpoint, save_checkpoint
    from metahw.models.data import load_omniglot
    from metahw.models.train import TrainConfig, train

    if init is not None:
        algo = load_checkpoint(init).algorithm
    shape = BackboneConfig(width=32)
    if backbone_from is not None:
        shape = load_checkpoint(backbone_from).learner.backbone_config
    no_bn = no_bn or not shape.batchnorm
    writable_file(out, "checkpoint")  # found now, not after training, when saving would fail
    cfg = TrainConfig(
        algo,
        ways,
        shots,
        queries,
        episodes,
        meta_batch,
        lr,
        shape.width if width is None else width,
        shape.depth if depth is None else depth,
        not no_bn,
        seed,
        device,
        _parse_hparams(hparam),
        qat_bits=qat_bits,
        qat_episodes=qat_episodes,
        init=init,
        augment=not no_augment,
        backbone_from=backbone_from,
    )
    cfg.validate()
    with exclusive(out, "checkpoint"):
        ckpt = train(cfg, load_omniglot(data), progress=progress)
        save_checkpoint(ckpt, out)
    m = ckpt.metrics
    typer.echo(
        f"wrote {out}: {algo}, {m['train_episodes_per_second']:.1f} episodes/s, "
        f"val {m['val']['ways']}-way {shots}-shot {100 * m['val']['accuracy']:.2f}%"
    )


@app.command("eval")
def eval_command(
    ckpt: Annotated[Path, typer.Argument(help="Checkpoint written by `metahw train`.")],
    ways: Annotated[
        int | None, typer.Option(min=2, help="Ways N (default 5; with --episodes-from: the file's).")
    ] = None,
    shots: Annotated[
        int | None, typer.Option(min=1, help="Shots K (default 1; with --episodes-from: the file's).")
    ] = None,
    queries: Annotated[int | None, typer.Option(min=1, help="Query examples per class (default 15).")] = None,
    episodes: Annotated[int | None, typer.Option(min=1, help="Episodes (default 1000; of a file: all).")] = None,
    within_alphabet: Annotated[
        bool, typer.Option("--within-alphabet", help="All N classes from one alphabet.")
    ] = False,
    mode: Annotated[
        str,
        typer.Option(
            help="full (the algorithm's own adaptation), head (frozen backbone, "
            "SGD on a linear head, as in hardware) or both."
        ),
    ] = "full",
    split: Annotated[str, typer.Option(help="train, val or test alphabets.")] = "test",
    runs: Annotated[Path | None, typer.Option(help="Score the official one-shot runs under DIR instead.")] = None,
    seed: int = 0,
    data: DataOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    episodes_from: EpisodesFrom = None,
    images: Images = None,
    image_shape: ImageShape = None,
    invert: Invert = None,
    mean: Mean = None,
    std: Std = None,
    resample: Resample = "box",
    predictions: Predictions = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Evaluate a checkpoint: mean accuracy and 95% CI over seeded episodes, or the one-shot runs."""
    import torch

    from metahw.models.checkpoint import load_checkpoint
    from metahw.models.data import load_omniglot
    from metahw.models.evaluate import evaluate, predict_episodes
    from metahw.models.learners.base import MODES

    modes = MODES if mode == "both" else (mode,)
    if any(m not in MODES for m in modes):
        raise UserError(f"unknown --mode {mode!r}: accepted are full, head, both.")
    source = EpisodeOptions(episodes_from, images, runs, image_shape, invert, mean, std, resample)
    if predictions is not None:
        writable_file(predictions, "--predictions file")
    checkpoint = load_checkpoint(ckpt)
    learner = checkpoint.learner
    torch.manual_seed(seed)
    if runs is not None:
        _eval_runs(ckpt, learner, source.load(EpisodeShape(), None, seed, "eval"), modes, as_json, predictions)
        return
    if source.given:
        chosen = _user_episodes(learner, source, ways, shots, queries, episodes, seed)
        _eval_episodes(ckpt, learner, chosen, modes, seed, as_json, progress and not as_json, predictions)
        return
    ways, shots, queries, episodes = ways or 5, shots or 1, queries or 15, episodes or 1000
    images_of = load_omniglot(data).split(split)
    sampler = EpisodeSampler(images_of, ways, shots, queries, seed=seed, within_alphabet=within_alphabet)
    results = {}
    for m in modes:
        summary = evaluate(
            learner, images_of, ways, shots, queries, episodes, seed, within_alphabet, m, progress and not as_json
        )
        results[m] = summary.to_dict()
        if not as_json:
            where = f"{split}, within alphabet" if within_alphabet else split
            shape = f"{ways}-way {shots}-shot"
            typer.echo(f"{learner.algorithm} {shape} ({m}, {where}): {summary} over {summary.episodes} episodes")
    if predictions is not None:  # the same seeded episodes again, as an EpisodeSet that keeps per-episode predictions
        chosen = EpisodeSet.sampled(sampler, episodes, f"Omniglot meta-{split} alphabets (seed {seed})")
        write_predictions(predictions, chosen, {m: predict_episodes(learner, chosen, m, False) for m in modes})
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "checkpoint": str(ckpt),
                    "algorithm": learner.algorithm,
                    "ways": ways,
                    "shots": shots,
                    "queries": queries,
                    "split": split,
                    "within_alphabet": within_alphabet,
                    "seed": seed,
                    "modes": results,
                },
                indent=2,
            )
        )


def _user_episodes(
    learner: MetaLearner,
    source: EpisodeOptions,
    ways: int | None,
    shots: int | None,
    queries: int | None,
    count: int | None,
    seed: int,
) -> EpisodeSet:
    """The user's episodes for a learner: drawn from --images (in the learner's channels), or a file's."""
    channels = learner.backbone_config.in_channels
    if source.images is not None:
        ways, shots, queries = ways or 5, shots or 1, queries or 15
        shape = EpisodeShape(ways, shots, ways * queries, source.transform((channels, 28, 28)).shape)
        chosen = source.load(shape, count or 1000, seed, f"{ways}-way {shots}-shot evaluation")
    else:
        total = None if ways is None or queries is None else ways * queries
        target = "the command line (--ways, --shots, --queries)"
        chosen = source.load(EpisodeShape(ways, shots, total), count, seed, target)
    if chosen.image_shape[0] != channels:
        raise UserError(
            f"{chosen.source} holds {chosen.image_shape[0]}-channel images, but the learner takes "
            f"{channels}-channel images."
        )
    return chosen


def _eval_episodes(
    ckpt: Path,
    learner: MetaLearner,
    chosen: EpisodeSet,
    modes: tuple[str, ...],
    seed: int,
    as_json: bool,
    progress: bool,
    path: Path | None,
) -> None:
    """Accuracy (when labelled) and predictions of the learner on the user's episodes, per mode."""
    from metahw.models.evaluate import accuracy_of, predict_episodes
    from metahw.models.stats import shown

    produced = {m: predict_episodes(learner, chosen, m, progress) for m in modes}
    results = {m: None if (a := accuracy_of(chosen, p)) is None else a.to_dict() for m, p in produced.items()}
    report = {
        "checkpoint": str(ckpt),
        "algorithm": learner.algorithm,
        "ways": chosen.ways,
        "shots": chosen.shots,
        "queries": chosen.queries,
        "episodes": len(chosen),
        "seed": seed,
        "modes": results,
    }
    finish(report, chosen, produced, path)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for m, result in results.items():
        shape = f"{chosen.ways}-way {chosen.shots}-shot"
        score = "no query labels: predictions only" if result is None else shown(result)
        typer.echo(f"{learner.algorithm} {shape} ({m}, {chosen.source}): {score} over {len(chosen)} episodes")


def _eval_runs(
    ckpt: Path, learner: MetaLearner, chosen: EpisodeSet, modes: tuple[str, ...], as_json: bool, path: Path | None
) -> None:
    """Mean error over the one-shot runs per mode (every run's images through the learner, as `run_error`)."""
    from metahw.models.evaluate import predict_episodes

    produced = {m: predict_episodes(learner, chosen, m, progress=False, cached=False) for m in modes}
    result = {
        "checkpoint": str(ckpt),
        "algorithm": learner.algorithm,
        "runs": {m: run_errors(chosen, p) for m, p in produced.items()},
    }
    if path is not None:
        write_predictions(path, chosen, produced)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for m, r in result["runs"].items():
        typer.echo(f"{learner.algorithm} ({m}): mean error {r['mean_error']:.2f}% over {len(chosen)} runs")
        for name, err in r["per_run_error"].items():
            typer.echo(f"  {name}: {err:.2f}%")
