"""The episode-source options every command that runs episodes shares: --episodes-from, --images, --runs.

`EpisodeOptions` holds what the user gave and loads it (models/episode_sources.py) into an
`EpisodeSet` of the expected shape; without any of the three, commands keep sampling seeded
Omniglot episodes exactly as before. `finish` adds the one-shot runs' errors to a report and
writes --predictions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metahw.cli.command import flag
from metahw.errors import UserError
from metahw.models.data import load_omniglot
from metahw.models.episode_sources import (
    EpisodeShape,
    ImageTransform,
    image_folder_episodes,
    omniglot_episodes,
    read_npz_episodes,
    require_shape,
    run_errors,
    runs_episodes,
    write_predictions,
)

if TYPE_CHECKING:
    import numpy as np

    from metahw.compiler.program import Program
    from metahw.models.episodes import EpisodeSet

EpisodesFrom = Annotated[
    Path | None,
    typer.Option("--episodes-from", help="Episodes from an .npz (support_x, support_y, query_x, query_y optional)."),
]
Images = Annotated[
    Path | None, typer.Option("--images", help="Draw seeded episodes from a folder of class subfolders of images.")
]
Runs = Annotated[Path | None, typer.Option("--runs", help="Score the official one-shot runs under DIR.")]
Predictions = Annotated[
    Path | None, typer.Option("--predictions", help="Write per episode the predicted class ids (and labels) as JSON.")
]
ImageShape = Annotated[
    str | None,
    typer.Option(help="--images: CxHxW to decode to, C 1 (grayscale) or 3 (RGB) (default: the model's, else 1x28x28)."),
]
Invert = Annotated[
    bool | None, typer.Option("--invert/--no-invert", help="--images: 255 - pixel (default: for 1 channel only).")
]
Mean = Annotated[str | None, typer.Option(help="--images: subtract, after /255 (one value or one per channel).")]
Std = Annotated[str | None, typer.Option(help="--images: then divide by (one value or one per channel).")]
Resample = Annotated[str, typer.Option(help="--images: box (area), bilinear, bicubic, lanczos or nearest.")]


def _floats(text: str | None, option: str, default: tuple[float, ...]) -> tuple[float, ...]:
    if text is None:
        return default
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        example = "e.g. 0.5 or 0.485,0.456,0.406"
        raise UserError(f"{option} {text!r} is not a comma-separated list of numbers ({example}).") from None


def parse_image_shape(text: str) -> tuple[int, int, int]:
    """(C, H, W) from 'CxHxW' (e.g. 3x32x32), else a UserError."""
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--image-shape {text!r} is not CxHxW (e.g. 1x28x28 or 3x32x32).") from None
    return c, h, w


@dataclass(frozen=True)
class EpisodeOptions:
    """The episode-source options of one command; at most one of episodes_from, images and runs."""

    episodes_from: Path | None = None
    images: Path | None = None
    runs: Path | None = None
    image_shape: str | None = None
    invert: bool | None = None
    mean: str | None = None
    std: str | None = None
    resample: str = "box"

    def __post_init__(self) -> None:
        given = [name for name in ("episodes_from", "images", "runs") if getattr(self, name) is not None]
        if len(given) > 1:
            got = ", ".join(map(flag, given))
            raise UserError(f"give at most one of --episodes-from, --images and --runs (got {got}).")
        transform = (self.image_shape, self.invert, self.mean, self.std)
        if self.images is None and (any(v is not None for v in transform) or self.resample != "box"):
            raise UserError("--image-shape, --invert, --mean, --std and --resample apply to --images only.")

    @property
    def given(self) -> bool:
        """Whether the user named their own episodes."""
        return any(v is not None for v in (self.episodes_from, self.images, self.runs))

    def transform(self, image: tuple[int, int, int] | None) -> ImageTransform:
        """The --images transform; its shape defaults to `image` (the model's input), else 1x28x28."""
        c, h, w = parse_image_shape(self.image_shape) if self.image_shape else image or (1, 28, 28)
        invert = self.invert if self.invert is not None else c == 1
        return ImageTransform(
            c, h, w, invert, _floats(self.mean, "--mean", (0.0,)), _floats(self.std, "--std", (1.0,)), self.resample
        )

    def load(self, shape: EpisodeShape, count: int | None, seed: int, target: str) -> EpisodeSet:
        """The user's episodes in `shape` (ways, shots and queries must be known for --images).

        --images draws `count` episodes; a file or runs folder gives all of its episodes, or its first `count`.
        """
        if count is not None and count < 1:
            raise UserError(f"--episodes must be >= 1 (got {count})")
        if self.images is not None:
            ways, shots, queries = shape.ways, shape.shots, shape.queries
            if queries % ways:
                raise UserError(
                    f"{target} classifies {queries} queries, not a multiple of its {ways} ways, so "
                    "--images cannot draw the same number of queries from every class."
                )
            transform = self.transform(shape.image)
            drawn = image_folder_episodes(self.images, ways, shots, queries // ways, count, seed, transform)
            return require_shape(shape, drawn, f"--images {self.images}", target)
        if self.episodes_from is not None:
            episodes = read_npz_episodes(self.episodes_from, shape, target)
        else:
            episodes = runs_episodes(self.runs, shape, target)
        if count is None:
            return episodes
        if count > len(episodes):
            raise UserError(f"--episodes {count} exceeds the {len(episodes)} episodes of {episodes.source}.")
        return episodes.first(count)


def program_episodes(
    program: Program, options: EpisodeOptions, count: int | None, seed: int, data: Path | None, default_count: int = 10
) -> EpisodeSet:
    """The episodes a command runs a compiled program on: the user's, else seeded Omniglot meta-test episodes."""
    from metahw.sim.episodes import program_shape

    if options.given:
        return options.load(
            program_shape(program), count if options.images is None else count or default_count, seed, "the program"
        )
    split = load_omniglot(data).split("test")
    return omniglot_episodes(split, program_shape(program), default_count if count is None else count, seed)


def describe(episodes: EpisodeSet) -> str:
    """'N meta-test episodes' for the default source, else 'N episodes from SOURCE'."""
    if episodes.source.startswith("Omniglot meta-test"):
        return f"{len(episodes)} meta-test episodes"
    return f"{len(episodes)} episodes from {episodes.source}"


def finish(
    report: dict, episodes: EpisodeSet, predictions: Mapping[str, Sequence[np.ndarray]], path: Path | None
) -> dict:
    """Add the source (and, for one-shot runs, each producer's errors) to `report`; write --predictions."""
    report["source"] = episodes.source
    if episodes.names is not None:
        report["runs"] = {producer: run_errors(episodes, p) for producer, p in predictions.items()}
    if path is not None:
        write_predictions(path, episodes, predictions)
    return report


def echo_runs(report: dict) -> None:
    """The one-shot runs' mean error and per-run errors, as `metahw eval --runs` prints them."""
    for producer, runs in report.get("runs", {}).items():
        typer.echo(f"{producer}: mean error {runs['mean_error']:.2f}% over {len(runs['per_run_error'])} runs")
        for name, err in runs["per_run_error"].items():
            typer.echo(f"  {name}: {err:.2f}%")
