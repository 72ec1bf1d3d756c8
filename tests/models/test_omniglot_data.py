"""The Omniglot reader: zips and extracted folders, the decode cache, the fixed alphabet split."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metahw.errors import UserError
from metahw.models import data as data_module
from metahw.models.data import ALPHABET_SPLIT, OmniglotImages, load_omniglot

ALPHABET_SIZES = {
    "Balinese": 24,
    "Early_Aramaic": 22,
    "Greek": 24,
    "Japanese_(katakana)": 47,
    "Korean": 40,
    "Latin": 26,
    "Sanskrit": 42,
    "Tagalog": 17,
}
#: (alphabet, character) extracted for the folder tests: both zips, a shared alphabet, two splits.
EXTRACTED = (
    ("Greek", "character01"),
    ("Greek", "character17"),
    ("Korean", "character05"),
    ("Tagalog", "character02"),
    ("Sanskrit", "character40"),
)


def _zip_members(data_dir: Path) -> dict[tuple[str, str], dict[str, tuple[Path, str]]]:
    """Ground truth straight from the zips: {(alphabet, character): {drawing file: (zip, member)}}."""
    found: dict[tuple[str, str], dict[str, tuple[Path, str]]] = {}
    for zpath in sorted(data_dir.glob("*.zip")):
        with zipfile.ZipFile(zpath) as z:
            for name in z.namelist():
                if name.endswith(".png"):
                    _, alphabet, character, drawing = name.split("/")
                    found.setdefault((alphabet, character), {}).setdefault(drawing, (zpath, name))
    return found


def _index(images: OmniglotImages, alphabet: str, character: str) -> int:
    return list(zip(images.alphabet_of, images.character_of, strict=True)).index((alphabet, character))


def _extract(data_dir: Path, dest: Path, characters=EXTRACTED, prefix: str = "") -> Path:
    """Copy the PNGs of `characters` out of the zips into dest/<prefix>/<Alphabet>/<character>/."""
    members = _zip_members(data_dir)
    for alphabet, character in characters:
        folder = dest / prefix / alphabet / character
        folder.mkdir(parents=True)
        for drawing, (zpath, name) in members[(alphabet, character)].items():
            with zipfile.ZipFile(zpath) as z:
                (folder / drawing).write_bytes(z.read(name))
    return dest


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Exact area-averaging weights [n_out, n_in] (an independent reference for the resize)."""
    a = np.zeros((n_out, n_in))
    scale = n_in / n_out
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(lo), min(n_in, int(np.ceil(hi)))):
            a[i, j] = max(0.0, min(hi, j + 1) - max(lo, j)) / scale
    return a


# ---- the zips ------------------------------------------------------------------------------


def test_zips_give_242_characters_of_20_bright_stroke_drawings(omniglot: OmniglotImages):
    images = omniglot.images
    assert images.shape == (242, 20, 28, 28)
    assert images.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0
    # strokes are bright: a thin minority of pixels is lit, the background is 0
    assert 5 < images.mean() < 50
    assert (images == 0).mean() > 0.6
    # every single drawing has some ink, and no drawing is all ink
    per_drawing = images.reshape(242 * 20, -1)
    assert per_drawing.max(axis=1).min() > 100
    assert (per_drawing.max(axis=1) == 255).mean() > 0.95
    assert (per_drawing > 0).mean(axis=1).max() < 0.6


def test_greek_and_latin_are_read_once(omniglot: OmniglotImages, data_dir: Path):
    keys = list(zip(omniglot.alphabet_of, omniglot.character_of, strict=True))
    assert len(set(keys)) == len(keys) == 242
    assert keys == sorted(_zip_members(data_dir)), "characters must be ordered by (alphabet, character)"
    counts = {a: omniglot.alphabet_of.count(a) for a in set(omniglot.alphabet_of)}
    assert counts == ALPHABET_SIZES
    assert all(type(a) is str for a in omniglot.alphabet_of + omniglot.character_of)


def test_each_drawing_comes_from_its_own_png(omniglot: OmniglotImages, data_dir: Path):
    """Drawings are sorted by file name; each is the inverted, area-resized PNG (checked against numpy)."""
    members = _zip_members(data_dir)
    area = _area_matrix(105, 28)
    rng = np.random.default_rng(1)
    for c in rng.choice(242, 6, replace=False):
        key = (omniglot.alphabet_of[c], omniglot.character_of[c])
        drawings = sorted(members[key])
        assert len(drawings) == 20
        for d in rng.choice(20, 2, replace=False):
            zpath, name = members[key][drawings[d]]
            with zipfile.ZipFile(zpath) as z:
                png = z.read(name)
            assert np.array_equal(omniglot.images[c, d], data_module.preprocess_png(png))
            raw = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
            reference = area @ (255.0 - raw) @ area.T  # strokes (black, 0) become bright
            got = omniglot.images[c, d].astype(np.float64)
            assert np.corrcoef(got.ravel(), reference.ravel())[0, 1] > 0.97
            assert np.abs(got - reference).mean() < 6.0
            # and not transposed or flipped
            assert np.corrcoef(got.T.ravel(), reference.ravel())[0, 1] < 0.9
            assert np.corrcoef(got[::-1].ravel(), reference.ravel())[0, 1] < 0.9


def test_a_single_zip_can_be_given(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("METAHW_CACHE", str(tmp_path))
    small1 = load_omniglot(data_dir / "images_background_small1.zip")
    assert small1.images.shape == (136, 20, 28, 28)
    assert sorted(set(small1.alphabet_of)) == ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]


# ---- extracted folders and the cache -------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "images_background_small1"])
def test_extracted_folder_matches_the_zips(
    omniglot: OmniglotImages, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str
):
    monkeypatch.setenv("METAHW_CACHE", str(tmp_path / "cache"))
    root = _extract(data_dir, tmp_path / "omniglot", prefix=prefix)
    loaded = load_omniglot(root)
    expected_keys = sorted(EXTRACTED)
    assert list(zip(loaded.alphabet_of, loaded.character_of, strict=True)) == expected_keys
    assert loaded.images.shape == (len(EXTRACTED), 20, 28, 28)
    for i, (alphabet, character) in enumerate(expected_keys):
        assert np.array_equal(loaded.images[i], omniglot.images[_index(omniglot, alphabet, character)])


def test_cache_is_written_once_and_then_used(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("METAHW_CACHE", str(cache))
    root = _extract(data_dir, tmp_path / "omniglot", characters=EXTRACTED[:2])
    first = load_omniglot(root)
    assert [p.name for p in cache.iterdir() if p.suffix == ".npz"] == [p.name for p in cache.iterdir()]
    assert len(list(cache.iterdir())) == 1, "exactly one cache file and no temporary files"

    def no_decoding(_: bytes) -> np.ndarray:
        raise AssertionError("decoded a PNG although the cache is valid")

    monkeypatch.setattr(data_module, "preprocess_png", no_decoding)
    second = load_omniglot(root)
    assert np.array_equal(second.images, first.images)
    assert second.alphabet_of == first.alphabet_of and second.character_of == first.character_of
    assert all(type(a) is str for a in second.alphabet_of + second.character_of)
    with pytest.raises(AssertionError, match="decoded a PNG"):
        load_omniglot(root, use_cache=False)

    # changing a source file invalidates the cache: the changed drawing is decoded anew
    drawing = sorted((root / "Greek" / "character01").glob("*.png"))[0]
    other = sorted((root / "Greek" / "character17").glob("*.png"))[0]
    drawing.write_bytes(other.read_bytes())
    os.utime(drawing, ns=(drawing.stat().st_atime_ns, drawing.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded a PNG"):
        load_omniglot(root)
    monkeypatch.undo()
    monkeypatch.setenv("METAHW_CACHE", str(cache))
    third = load_omniglot(root)
    assert np.array_equal(third.images[0, 0], first.images[1, 0])
    assert np.array_equal(third.images[0, 1:], first.images[0, 1:])
    assert len(list(cache.glob("*.npz"))) == 2


# ---- the split -----------------------------------------------------------------------------


def test_split_alphabets_are_fixed_and_disjoint(omniglot: OmniglotImages):
    assert set(ALPHABET_SPLIT) == {"train", "val", "test"}
    splits = {name: omniglot.split(name) for name in ALPHABET_SPLIT}
    assert {n: s.num_classes for n, s in splits.items()} == {"train": 161, "val": 24, "test": 57}
    alphabets = {n: set(s.alphabet_names) for n, s in splits.items()}
    assert alphabets["train"].isdisjoint(alphabets["test"])
    assert alphabets["train"].isdisjoint(alphabets["val"])
    assert alphabets["val"].isdisjoint(alphabets["test"])
    assert set().union(*alphabets.values()) == set(ALPHABET_SIZES)
    names = {n: set(s.class_names) for n, s in splits.items()}
    assert sum(len(v) for v in names.values()) == 242
    assert set().union(*names.values()) == {
        f"{a}/{c}" for a, c in zip(omniglot.alphabet_of, omniglot.character_of, strict=True)
    }
    # no test image is also a training image (same pixels under any name)
    train_bytes = {img.tobytes() for img in splits["train"].images.reshape(-1, 28, 28)}
    assert not any(img.tobytes() in train_bytes for img in splits["test"].images.reshape(-1, 28, 28))
    # each split's images are the right characters, and alphabet ids index alphabet names
    for split in splits.values():
        for i in (0, split.num_classes - 1):
            alphabet, character = split.class_names[i].split("/")
            assert split.alphabet_names[split.alphabet_ids[i]] == alphabet
            assert np.array_equal(split.images[i], omniglot.images[_index(omniglot, alphabet, character)])


def test_rotations_give_four_times_the_classes(omniglot: OmniglotImages):
    plain = omniglot.split("train")
    rotated = omniglot.split("train", rotations=True)
    c = plain.num_classes
    assert rotated.num_classes == 4 * c == 644
    assert rotated.drawings == 20
    assert rotated.images.flags.c_contiguous
    for k in range(4):
        block = rotated.images[k * c : (k + 1) * c]
        assert np.array_equal(block, np.rot90(plain.images, k, axes=(2, 3)))
        assert np.array_equal(rotated.alphabet_ids[k * c : (k + 1) * c], plain.alphabet_ids)
        assert rotated.class_names[k * c] == f"{plain.class_names[0]}/rot{90 * k}"
    assert len(set(rotated.class_names)) == 644
    # rotating is never applied to the held-out split unless asked for, and never mixes splits
    test_rotated = omniglot.split("test", rotations=True)
    assert {n.rsplit("/", 1)[0] for n in test_rotated.class_names}.isdisjoint(
        {n.rsplit("/", 1)[0] for n in rotated.class_names}
    )


# ---- bad input -----------------------------------------------------------------------------


def test_bad_paths_raise_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("METAHW_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="not found"):
        load_omniglot(tmp_path / "does-not-exist")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UserError, match="not a zip"):
        load_omniglot(text)
    bad_zip = tmp_path / "broken.zip"
    bad_zip.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(UserError, match="not a readable zip"):
        load_omniglot(bad_zip)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no Omniglot"):
        load_omniglot(empty)


def test_characters_need_two_drawings(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("METAHW_CACHE", str(tmp_path / "cache"))
    root = _extract(data_dir, tmp_path / "omniglot", characters=EXTRACTED[:1])
    for png in sorted((root / "Greek" / "character01").glob("*.png"))[1:]:
        png.unlink()
    with pytest.raises(UserError, match="at least 2 drawings"):
        load_omniglot(root)


def test_unknown_or_absent_split_raises_user_error(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("METAHW_CACHE", str(tmp_path / "cache"))
    greek_only = load_omniglot(_extract(data_dir, tmp_path / "omniglot", characters=EXTRACTED[:2]))
    assert greek_only.split("val").num_classes == 2
    with pytest.raises(UserError, match="no train alphabets"):
        greek_only.split("train")
    with pytest.raises(UserError, match="unknown split"):
        greek_only.split("validation")
