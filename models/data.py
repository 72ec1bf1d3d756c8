"""Omniglot reader: the official zips (or an extracted folder) to one cached uint8 array.

Images are 105x105 1-bit PNGs with black strokes; we area-resize them to 28x28 and invert
them so that strokes are bright (uint8 255, i.e. 1.0 once scaled). The decoded array is
cached on disk, keyed by the source files' names, sizes and modification times, so that
after the first run loading costs one `np.load` and sampling an episode costs only
array indexing.

The split into meta-train / meta-val / meta-test is by *alphabet* (never by drawing), fixed
in `ALPHABET_SPLIT` and documented in the README.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from metahw.atomic import atomic_path
from metahw.errors import UserError

IMAGE_SIZE = 28
CACHE_FORMAT = 1

#: The fixed split by alphabet of the 8 background alphabets shipped in ../shared/data.
#: meta-train: 161 characters (x4 rotations = 644 classes); meta-val: 24; meta-test: 57.
ALPHABET_SPLIT: dict[str, tuple[str, ...]] = {
    "train": ("Balinese", "Early_Aramaic", "Japanese_(katakana)", "Latin", "Sanskrit"),
    "val": ("Greek",),
    "test": ("Korean", "Tagalog"),
}
SPLITS = tuple(ALPHABET_SPLIT)


def preprocess_png(data: bytes) -> np.ndarray:
    """Decode one Omniglot PNG to a 28x28 uint8 array with strokes = 255 (area resampling)."""
    with Image.open(io.BytesIO(data)) as img:
        gray = img.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    return 255 - np.asarray(gray, dtype=np.uint8)


def default_data_dir() -> Path:
    """Where Omniglot is looked for when no path is given: $METAHW_DATA, else ../shared/data/omniglot.

    The relative default is tried beside the current directory and beside the source tree.
    """
    env = os.environ.get("METAHW_DATA")
    if env:
        return Path(env)
    candidates = [
        Path.cwd().parent / "shared" / "data" / "omniglot",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot",
    ]
    return next((c for c in candidates if c.exists()), candidates[0])


def _source_files(root: Path) -> list[Path]:
    if not root.exists():
        raise UserError(
            f"Omniglot data not found at {root}: pass `path` or set METAHW_DATA to a folder "
            "holding the Omniglot zips or the extracted <Alphabet>/characterNN/*.png tree.",
            ("load_omniglot.path",),
        )
    if root.is_file():
        if root.suffix != ".zip":
            raise UserError(f"{root} is not a zip file or a folder of Omniglot images.")
        return [root]
    zips = sorted(root.glob("*.zip"))
    return zips if zips else sorted(root.rglob("*.png"))


def _iter_pngs(files: list[Path]) -> Iterable[tuple[str, str, str, bytes]]:
    """Yield (alphabet, character, drawing file name, png bytes) from zips or loose files."""
    for path in files:
        if path.suffix == ".zip":
            try:
                archive = zipfile.ZipFile(path)
            except zipfile.BadZipFile as exc:
                raise UserError(f"{path} is not a readable zip file ({exc}).") from None
            with archive:
                for name in sorted(archive.namelist()):
                    parts = name.split("/")
                    if name.endswith(".png") and len(parts) >= 3:
                        yield parts[-3], parts[-2], parts[-1], archive.read(name)
        else:
            yield path.parts[-3], path.parts[-2], path.name, path.read_bytes()


@dataclass(frozen=True)
class OmniglotImages:
    """All characters found at a data path: images [C, D, 28, 28] uint8, strokes = 255."""

    images: np.ndarray
    alphabet_of: tuple[str, ...]  # alphabet name of each character
    character_of: tuple[str, ...]  # character folder name of each character

    def split(self, name: str, rotations: bool = False) -> OmniglotSplit:
        """The characters of one split ('train'|'val'|'test'), optionally with 4 rotations as classes."""
        if name not in ALPHABET_SPLIT:
            raise UserError(f"unknown split {name!r}: accepted are {', '.join(SPLITS)}.")
        wanted = ALPHABET_SPLIT[name]
        index = [i for i, a in enumerate(self.alphabet_of) if a in wanted]
        if not index:
            raise UserError(
                f"no {name} alphabets ({', '.join(wanted)}) in the Omniglot data given; "
                "the fixed split needs the background alphabets listed in the README."
            )
        images = self.images[index]
        alphabets = [self.alphabet_of[i] for i in index]
        names = [f"{self.alphabet_of[i]}/{self.character_of[i]}" for i in index]
        if rotations:
            images = np.concatenate([np.rot90(images, k, axes=(2, 3)) for k in range(4)])
            alphabets = alphabets * 4
            names = [f"{n}/rot{90 * k}" for k in range(4) for n in names]
        alphabet_names = tuple(sorted(set(alphabets)))
        alphabet_ids = np.array([alphabet_names.index(a) for a in alphabets], dtype=np.int64)
        return OmniglotSplit(name, np.ascontiguousarray(images), alphabet_ids, alphabet_names, tuple(names))


@dataclass(frozen=True)
class OmniglotSplit:
    """The classes of one split: images [C, D, 28, 28] uint8 and each class's alphabet id."""

    name: str
    images: np.ndarray
    alphabet_ids: np.ndarray
    alphabet_names: tuple[str, ...]
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """Number of classes (characters, times 4 with rotations)."""
        return int(self.images.shape[0])

    @property
    def drawings(self) -> int:
        """Drawings (examples) per class."""
        return int(self.images.shape[1])


def _cache_key(files: list[Path]) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{IMAGE_SIZE}".encode())
    for f in files:
        st = f.stat()
        digest.update(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def cache_dir() -> Path:
    """Folder of decoded-data caches: $METAHW_CACHE, else ~/.cache/metahw."""
    return Path(os.environ.get("METAHW_CACHE", Path.home() / ".cache" / "metahw"))


def load_omniglot(path: str | os.PathLike | None = None, use_cache: bool = True) -> OmniglotImages:
    """Read every character under `path` (zips read in place, or an extracted tree), cached.

    Alphabets present in several zips (Greek and Latin are in both minimal splits) are
    read once. Characters are ordered by (alphabet, character) and drawings by file name,
    so the result is the same whatever the order of the sources.
    """
    root = Path(path) if path is not None else default_data_dir()
    files = _source_files(root)
    if not files:
        raise UserError(f"no Omniglot zips or PNG files under {root}.")
    cache_file = cache_dir() / f"omniglot-{_cache_key(files)}.npz"
    if use_cache and cache_file.exists():
        with np.load(cache_file) as z:
            names = (tuple(map(str, z["alphabet_of"])), tuple(map(str, z["character_of"])))  # str, not np.str_
            return OmniglotImages(z["images"], *names)

    drawings: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for alphabet, character, drawing, data in _iter_pngs(files):
        per_char = drawings.setdefault((alphabet, character), {})
        if drawing not in per_char:
            per_char[drawing] = preprocess_png(data)
    if not drawings:
        raise UserError(f"no Omniglot images (<Alphabet>/<character>/<drawing>.png) under {root}.")
    keys = sorted(drawings)
    per_class = min(len(drawings[k]) for k in keys)
    if per_class < 2:
        raise UserError(f"every character needs at least 2 drawings; some under {root} have {per_class}.")
    images = np.stack([np.stack([drawings[k][d] for d in sorted(drawings[k])[:per_class]]) for k in keys])
    result = OmniglotImages(images, tuple(k[0] for k in keys), tuple(k[1] for k in keys))
    if use_cache:
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh, images=images, alphabet_of=np.array(result.alphabet_of), character_of=np.array(result.character_of)
            )
    return result
