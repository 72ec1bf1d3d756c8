"""The user's own episodes: an .npz of arrays, a folder of class image folders, or the one-shot runs.

Each reader returns an `EpisodeSet` (models/episodes.py), the form every command that runs
episodes takes, and checks it against the `EpisodeShape` the caller expects (a compiled
program's ways, shots, queries and image shape, or what the user asked for): a mismatch or a
malformed file is one `UserError` sentence. `write_predictions` writes what a command
predicted on each episode as JSON.

The image-folder transform (`ImageTransform`) defaults to metahw's own Omniglot preprocessing
(models/data.py `preprocess_png`): grayscale, area (box) resampling to 28x28, inverted so that
strokes are 1, divided by 255.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from metahw.atomic import write_text_atomic
from metahw.errors import UserError
from metahw.models.data import OmniglotSplit
from metahw.models.episodes import EpisodeIndex, EpisodeSampler, EpisodeSet

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
RESAMPLING = {
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class EpisodeShape:
    """What the episodes must look like: N ways, K shots, Q queries per episode, images (C, H, W); None: any."""

    ways: int | None = None
    shots: int | None = None
    queries: int | None = None
    image: tuple[int, int, int] | None = None

    def support(self) -> str:
        """The support_x shape as text, with N, K, C, H, W where not fixed."""
        fixed = self.ways is not None and self.shots is not None
        n = self.ways * self.shots if fixed else f"{self.ways or 'N'}*{self.shots or 'K'}"
        return _shape_text(n, self.image)

    def query(self) -> str:
        """The query_x shape as text, with Q, C, H, W where not fixed."""
        return _shape_text("Q" if self.queries is None else self.queries, self.image)

    def accepts(self, ways: int, shots: int, queries: int, image: tuple[int, ...]) -> bool:
        """Whether episodes of this N, K, Q and image shape fit (unfixed fields fit anything)."""
        wanted = (self.ways, self.shots, self.queries, self.image)
        return all(w is None or w == g for w, g in zip(wanted, (ways, shots, queries, tuple(image)), strict=True))


def omniglot_sampler(split: OmniglotSplit, shape: EpisodeShape, seed: int = 0) -> EpisodeSampler:
    """Seeded Omniglot episodes of `shape` (N ways, K shots, Q queries, Q a multiple of N)."""
    if shape.ways is None or shape.shots is None or shape.queries is None:
        raise ValueError("an Omniglot sampler needs the ways, shots and queries of the episodes")
    if shape.queries % shape.ways:
        raise UserError(f"the episodes have {shape.queries} queries, not a multiple of their {shape.ways} ways")
    return EpisodeSampler(split, shape.ways, shape.shots, shape.queries // shape.ways, seed=seed)


def omniglot_episodes(split: OmniglotSplit, shape: EpisodeShape, count: int, seed: int = 0) -> EpisodeSet:
    """`count` seeded episodes of `split` in `shape`: the default source of every command.

    The backends take episodes (arrays), not Omniglot: this is where the command line, the
    demo and the benchmarks draw them.
    """
    if count < 1:
        raise UserError(f"the number of episodes must be >= 1 (got {count})")
    sampler = omniglot_sampler(split, shape, seed)
    return EpisodeSet.sampled(sampler, count, f"Omniglot meta-{split.name} alphabets (seed {seed})")


def _shape_text(n: object, image: tuple[int, ...] | None) -> str:
    dims = [str(n), *(map(str, image) if image is not None else ("C", "H", "W"))]
    return "[" + ", ".join(dims) + "]"


def require_shape(shape: EpisodeShape, episodes: EpisodeSet, what: str, target: str) -> EpisodeSet:
    """`episodes` if every one fits `shape`, else a UserError naming the first misfit's shape and `shape`."""
    image = episodes.image_shape
    for e, index in enumerate(episodes.indices):
        ways = int(index.support_y.max()) + 1
        shots, queries = len(index.support) // ways, len(index.query)
        if not shape.accepts(ways, shots, queries, image):
            got = EpisodeShape(ways, shots, queries, image)
            name = episodes.names[e] if episodes.names is not None else f"episode {e}"
            raise UserError(
                f"{what} holds {ways}-way {shots}-shot episodes ({name}: support_x {got.support()}, query_x "
                f"{got.query()}), but {target} takes support_x {shape.support()} and query_x {shape.query()}."
            )
    return episodes


def _pool(episodes: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]) -> tuple:
    """Stack (support_x, support_y, query_x, query_y) episodes into one image pool and their indices."""
    images, indices, start = [], [], 0
    for sx, sy, qx, qy in episodes:
        s, q = len(sx), len(qx)
        support, query = np.arange(start, start + s), np.arange(start + s, start + s + q)
        indices.append(EpisodeIndex(support, sy.astype(np.int64), query, None if qy is None else qy.astype(np.int64)))
        images += [sx, qx]
        start += s + q
    return np.concatenate(images).astype(np.float32, copy=False), tuple(indices)


# --- .npz -------------------------------------------------------------------------------------


def _check_array(path: Path, name: str, array: np.ndarray, kind: str, ndim: int) -> None:
    wanted = {"float": "a float", "int": "an integer"}[kind]
    ok = array.dtype.kind == "f" if kind == "float" else array.dtype.kind in "iu"
    if not ok:
        raise UserError(f"{path}: {name} must be {wanted} array, not {array.dtype}.")
    if array.ndim != ndim:
        layout = "[E, n, C, H, W]" if ndim == 5 else "[E, n]"
        raise UserError(f"{path}: {name} must be {layout} ({ndim} dimensions), not of shape {list(array.shape)}.")
    if kind == "float" and not np.isfinite(array).all():
        episode = int(np.flatnonzero(~np.isfinite(array).reshape(len(array), -1).all(axis=1))[0])
        raise UserError(f"{path}: {name} holds NaN or infinite values (first in episode {episode}).")


def _check_labels(path: Path, name: str, labels: np.ndarray, ways: int) -> None:
    bad = (labels < 0) | (labels >= ways)
    if bad.any():
        episode = int(np.flatnonzero(bad.any(axis=1))[0])
        raise UserError(
            f"{path}: {name} of episode {episode} holds {int(labels[bad][0])}, outside the class ids "
            f"0..{ways - 1} of {ways}-way episodes."
        )


def read_npz_episodes(path: str | os.PathLike, shape: EpisodeShape, target: str = "the program") -> EpisodeSet:
    """Episodes from an .npz: support_x [E, N*K, C, H, W], support_y [E, N*K], query_x [E, Q, C, H, W], query_y [E, Q].

    query_y is optional (then only predictions are known). N is `shape.ways`, else one more
    than the largest support label; every episode must hold each class exactly K times.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"`path` {path} is not a file.", ("read_npz_episodes.path",))
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{path} is not a readable .npz file ({exc}).") from None
    missing = [name for name in ("support_x", "support_y", "query_x") if name not in arrays]
    if missing:
        needs = "support_x, support_y and query_x; query_y is optional"
        raise UserError(f"{path} lacks {', '.join(missing)} (an episodes file needs {needs}).")
    sx, sy, qx, qy = (arrays.get(k) for k in ("support_x", "support_y", "query_x", "query_y"))
    _check_array(path, "support_x", sx, "float", 5)
    _check_array(path, "query_x", qx, "float", 5)
    _check_array(path, "support_y", sy, "int", 2)
    if qy is not None:
        _check_array(path, "query_y", qy, "int", 2)
    for name, array, wanted in (
        ("support_y", sy, sx.shape[:2]),
        ("query_x", qx, sx.shape[:1]),
        ("query_y", qy, qx.shape[:2]),
    ):
        if array is not None and array.shape[: len(wanted)] != wanted:
            raise UserError(
                f"{path}: {name} of shape {list(array.shape)} does not fit support_x "
                f"{list(sx.shape)} and query_x {list(qx.shape)}."
            )
    if len(sx) == 0:
        raise UserError(f"{path} holds no episodes (support_x has E = 0).")
    inferred = int(sy.max()) + 1
    n = shape.ways * shape.shots if shape.ways is not None and shape.shots is not None else sx.shape[1]
    image = shape.image or sx.shape[2:]
    wrong_ways = shape.ways is not None and shape.shots is None and inferred != shape.ways
    if wrong_ways or (sx.shape[1], qx.shape[1], sx.shape[2:], qx.shape[2:]) != (
        n,
        shape.queries or qx.shape[1],
        image,
        image,
    ):
        raise UserError(
            f"{path} holds support_x {list(sx.shape)} and query_x {list(qx.shape)}, but {target} takes "
            f"support_x [E, {shape.support()[1:]} and query_x [E, {shape.query()[1:]}."
        )
    ways = shape.ways if shape.ways is not None else inferred
    _check_labels(path, "support_y", sy, ways)
    if qy is not None:
        _check_labels(path, "query_y", qy, ways)
    counts = np.stack([np.bincount(row, minlength=ways) for row in sy])
    uneven = (counts != counts[:, :1]).any(axis=1)
    if ways < 2 or uneven.any():
        episode = int(np.flatnonzero(uneven)[0]) if uneven.any() else 0
        raise UserError(
            f"{path}: support_y of episode {episode} must hold each of at least 2 classes 0..{ways - 1} "
            f"equally often (it holds them {counts[episode].tolist()} times)."
        )
    images, indices = _pool([(sx[e], sy[e], qx[e], None if qy is None else qy[e]) for e in range(len(sx))])
    return EpisodeSet(images, indices, str(path))


# --- image folders ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageTransform:
    """How an image file becomes a float32 [C, H, W] array: resize, grayscale or RGB, invert, normalise.

    x = (p / 255 - mean) / std per channel, where p is the resized pixel (255 - p when `invert`).
    The defaults are metahw's Omniglot preprocessing: 1x28x28, box (area) resampling, inverted.
    """

    channels: int = 1
    height: int = 28
    width: int = 28
    invert: bool = True
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resample: str = "box"

    def __post_init__(self) -> None:
        shape = "x".join(map(str, self.shape))
        if self.channels not in (1, 3):
            raise UserError(f"`shape` {shape}: C must be 1 (grayscale) or 3 (RGB).", ("ImageTransform.shape",))
        if self.height < 1 or self.width < 1:
            raise UserError(f"`shape` {shape}: H and W must be positive.", ("ImageTransform.shape",))
        if self.resample not in RESAMPLING:
            raise UserError(
                f"unknown `resample` {self.resample!r}; accepted are {', '.join(RESAMPLING)}.", ("resample",)
            )
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                raise UserError(
                    f"`{name}` needs 1 or {self.channels} values (one per channel), not {len(values)}.", (name,)
                )
        if any(s <= 0 for s in self.std):
            raise UserError(f"`std` values must be positive, not {','.join(map(str, self.std))}.", ("std",))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the arrays it makes."""
        return self.channels, self.height, self.width

    def apply(self, path: Path) -> np.ndarray:
        """Decode, resize and normalise one image file."""
        try:
            with Image.open(path) as img:
                mode = "L" if self.channels == 1 else "RGB"
                pixels = img.convert(mode).resize((self.width, self.height), RESAMPLING[self.resample])
        except (OSError, UnidentifiedImageError) as exc:
            raise UserError(f"cannot read image {path} ({exc}).") from None
        array = np.asarray(pixels, dtype=np.uint8).reshape(self.height, self.width, self.channels).transpose(2, 0, 1)
        if self.invert:
            array = 255 - array
        x = array.astype(np.float32) / np.float32(255.0)
        mean = np.array(self.mean, np.float32).reshape(-1, 1, 1)
        std = np.array(self.std, np.float32).reshape(-1, 1, 1)
        return (x - mean) / std


def _class_files(root: Path) -> list[tuple[str, list[Path]]]:
    if not root.is_dir():
        raise UserError(
            f"`root` {root} is not a folder (give a folder of class subfolders of PNG/JPEG files).",
            ("image_folder_episodes.root",),
        )
    classes = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            classes.append((folder.name, files))
    if not classes:
        raise UserError(
            f"`root` {root} holds no class subfolders with PNG or JPEG files.", ("image_folder_episodes.root",)
        )
    return classes


def image_folder_episodes(
    root: str | os.PathLike, ways: int, shots: int, queries: int, count: int, seed: int, transform: ImageTransform
) -> EpisodeSet:
    """`count` seeded N-way K-shot episodes with `queries` queries per class from class subfolders of images.

    The same (folder, shape, seed) always gives the same episodes: classes are drawn among
    those with at least K + Q images, then K + Q distinct images of each; only the images
    drawn are decoded.
    """
    root = Path(root)
    classes = _class_files(root)
    if ways < 2 or shots < 1 or queries < 1:
        raise UserError(f"an episode needs ways >= 2, shots >= 1, queries >= 1 (got {ways}, {shots}, {queries}).")
    eligible = [files for _, files in classes if len(files) >= shots + queries]
    if len(eligible) < ways:
        raise UserError(
            f"{ways}-way {shots}-shot episodes with {queries} queries per class need {ways} classes of "
            f">= {shots + queries} images; {root} has {len(eligible)} such classes."
        )
    rng = np.random.default_rng(seed)
    drawn: list[list[list[Path]]] = []
    for _ in range(count):
        chosen = rng.choice(len(eligible), ways, replace=False)
        drawn.append([[eligible[c][i] for i in rng.permutation(len(eligible[c]))[: shots + queries]] for c in chosen])
    decoded = {p: transform.apply(p) for p in sorted({p for episode in drawn for files in episode for p in files})}
    labels = np.arange(ways)
    episodes = [
        (
            np.stack([decoded[p] for files in ep for p in files[:shots]]),
            np.repeat(labels, shots),
            np.stack([decoded[p] for files in ep for p in files[shots:]]),
            np.repeat(labels, queries),
        )
        for ep in drawn
    ]
    images, indices = _pool(episodes)
    return EpisodeSet(images, indices, f"{root} (seed {seed})")


# --- one-shot runs ----------------------------------------------------------------------------


def runs_episodes(root: str | os.PathLike, shape: EpisodeShape, target: str = "the program") -> EpisodeSet:
    """The official one-shot runs under `root` as episodes: per run, its N training images (one per class) as
    support with labels 0..N-1 and its test items as queries; named after the runs."""
    from metahw.models.runs import read_runs  # here, not above: models.runs imports torch, the simulator needs none

    runs = read_runs(root)
    images, indices = _pool([(r.training, np.arange(len(r.training)), r.test, r.labels) for r in runs])
    episodes = EpisodeSet(images, indices, str(root), tuple(r.name for r in runs))
    return require_shape(shape, episodes, f"the runs folder {root}", target)


def run_errors(episodes: EpisodeSet, predictions: Sequence[np.ndarray]) -> dict:
    """Percent error per run and its mean over runs, as `metahw eval --runs` reports them."""
    errors = {
        name: 100.0 * float((np.asarray(p) != index.query_y).sum()) / len(index.query_y)
        for name, index, p in zip(episodes.names or (), episodes.indices, predictions, strict=True)
    }
    return {"mean_error": sum(errors.values()) / len(errors), "per_run_error": errors}


# --- predictions ------------------------------------------------------------------------------


def write_predictions(path: str | os.PathLike, episodes: EpisodeSet, predictions: Mapping[str, Sequence[np.ndarray]]):
    """Write per episode the predicted class ids of every producer (e.g. 'simulator', '8-bit'), and the true
    labels when known, as JSON, atomically: the file a user scores or inspects their own data with."""
    rows = []
    for e, index in enumerate(episodes.indices):
        row: dict = {"episode": e}
        if episodes.names is not None:
            row["name"] = episodes.names[e]
        if index.query_y is not None:
            row["labels"] = index.query_y.tolist()
        row["predictions"] = {k: np.asarray(v[e]).astype(int).tolist() for k, v in predictions.items()}
        rows.append(row)
    lines = ",\n  ".join(json.dumps(row) for row in rows)  # one episode per line
    write_text_atomic(path, f'{{"source": {json.dumps(episodes.source)},\n "episodes": [\n  {lines}\n ]}}\n')
