"""models/episode_sources.py: the image transform, seeded image-folder episodes, and `metahw eval` on own data."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metahw.errors import UserError
from metahw.models.checkpoint import load_checkpoint
from metahw.models.data import preprocess_png
from metahw.models.episode_sources import EpisodeShape, ImageTransform, image_folder_episodes, read_npz_episodes
from metahw.models.episodes import EpisodeSampler, EpisodeSet


def _omniglot_folder(data_dir: Path, root: Path, classes: int = 6, per_class: int = 4) -> Path:
    """The first drawings of some Greek characters, copied as class folders of PNGs."""
    with zipfile.ZipFile(data_dir / "images_background_small1.zip") as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png") and "/Greek/" in n)
        for name in names:
            _, _, character, drawing = name.split("/")
            folder = root / character
            if (folder.exists() and len(list(folder.iterdir())) >= per_class) or (
                not folder.exists() and len(list(root.glob("*"))) >= classes
            ):
                continue
            folder.mkdir(parents=True, exist_ok=True)
            (folder / drawing).write_bytes(z.read(name))
    return root


def test_default_transform_is_the_omniglot_preprocessing(data_dir, tmp_path):
    folder = _omniglot_folder(data_dir, tmp_path / "greek", classes=1, per_class=3)
    for path in sorted(folder.rglob("*.png")):
        expected = preprocess_png(path.read_bytes()).astype(np.float32)[None] / np.float32(255)
        got = ImageTransform().apply(path)
        assert got.dtype == np.float32 and np.array_equal(got, expected)


def test_rgb_transform_resizes_and_normalises(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    transform = ImageTransform(3, 5, 6, invert=False, mean=(0.5, 0.25, 0.0), std=(0.5,), resample="nearest")
    got = transform.apply(tmp_path / "x.png")
    resized = np.asarray(Image.fromarray(rgb).resize((6, 5), Image.Resampling.NEAREST)).transpose(2, 0, 1)
    mean = np.array([0.5, 0.25, 0.0], np.float32)[:, None, None]
    assert got.shape == transform.shape == (3, 5, 6)
    assert np.array_equal(got, (resized.astype(np.float32) / np.float32(255) - mean) / np.float32(0.5))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"channels": 2}, "`shape` 2x28x28: C must be 1"),
        ({"height": 0}, "`shape` 1x0x28: H and W must be positive"),
        ({"mean": (0.1, 0.2)}, "`mean` needs 1 or 1 values"),
        ({"std": (0.0,)}, "`std` values must be positive"),
        ({"resample": "cubic"}, "unknown `resample` 'cubic'"),
    ],
)
def test_bad_transform_is_one_sentence(kwargs, fragment):
    with pytest.raises(UserError, match=fragment):
        ImageTransform(**kwargs)


def test_image_folder_episodes_are_seeded(data_dir, tmp_path):
    folder = _omniglot_folder(data_dir, tmp_path / "greek")
    a, b, c = (image_folder_episodes(folder, 3, 1, 2, 4, seed, ImageTransform()) for seed in (1, 1, 2))
    assert len(a) == 4 and (a.ways, a.shots, a.queries, a.image_shape) == (3, 1, 6, (1, 28, 28))
    for x, y in zip(a, b, strict=True):
        assert all(np.array_equal(getattr(x, k), getattr(y, k)) for k in ("support_x", "support_y", "query_x"))
    assert any(not np.array_equal(x.support_x, z.support_x) for x, z in zip(a, c, strict=True))
    assert a[0].support_y.tolist() == [0, 1, 2] and a[0].query_y.tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(UserError, match="need 3 classes of >= 5 images"):
        image_folder_episodes(folder, 3, 1, 4, 1, 0, ImageTransform())


def test_sampled_episode_set_is_the_sampler_sequence(omniglot):
    split = omniglot.split("test")
    episodes = EpisodeSet.sampled(EpisodeSampler(split, 5, 1, 3, seed=4), 3, "test")
    sampler = EpisodeSampler(split, 5, 1, 3, seed=4)
    for episode in episodes:
        expected = sampler.sample()
        for key in ("support_x", "support_y", "query_x", "query_y"):
            assert np.array_equal(getattr(episode, key), getattr(expected, key)), key


def _episodes_npz(split, path: Path, ways: int, episodes: int, seed: int) -> Path:
    sampler = EpisodeSampler(split, ways, 1, 2, seed=seed)
    drawn = [sampler.sample() for _ in range(episodes)]
    np.savez(
        path, **{k: np.stack([getattr(e, k) for e in drawn]) for k in ("support_x", "support_y", "query_x", "query_y")}
    )
    return path


def test_npz_reader_infers_the_shape(omniglot, tmp_path):
    path = _episodes_npz(omniglot.split("test"), tmp_path / "e.npz", 4, 3, seed=0)
    episodes = read_npz_episodes(path, EpisodeShape())
    assert (len(episodes), episodes.ways, episodes.shots, episodes.queries, episodes.labelled) == (3, 4, 1, 8, True)
    with pytest.raises(UserError, match=r"but the program takes support_x \[E, 5, 1, 28, 28\]"):
        read_npz_episodes(path, EpisodeShape(5, 1, 10, (1, 28, 28)))


def test_eval_on_own_episodes_and_predictions(omniglot, tiny_checkpoint, tmp_path, cli):
    path = _episodes_npz(omniglot.split("test"), tmp_path / "e.npz", 5, 3, seed=2)
    out = tmp_path / "predictions.json"
    result = cli("eval", tiny_checkpoint, "--episodes-from", path, "--mode", "both", "--json", "--predictions", out)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    learner = load_checkpoint(tiny_checkpoint).learner
    rows = json.loads(out.read_text())["episodes"]
    with np.load(path) as z:
        for mode in ("full", "head"):
            with torch.no_grad():
                expected = [
                    learner.logits(torch.from_numpy(sx), torch.from_numpy(sy), torch.from_numpy(qx), 5, mode)
                    .argmax(-1)
                    .tolist()
                    for sx, sy, qx in zip(z["support_x"], z["support_y"], z["query_x"])
                ]
            assert [r["predictions"][mode] for r in rows] == expected
            accuracy = np.mean([np.mean(np.array(p) == y) for p, y in zip(expected, z["query_y"], strict=True)])
            assert report["modes"][mode]["accuracy"] == pytest.approx(accuracy)
    assert (report["ways"], report["shots"], report["queries"], report["episodes"]) == (5, 1, 10, 3)
    wrong = cli("eval", tiny_checkpoint, "--episodes-from", path, "--ways", "3")
    expected = (
        "holds support_x [3, 5, 1, 28, 28] and query_x [3, 10, 1, 28, 28], but the command line (--ways, "
        "--shots, --queries) takes support_x [E, 3*K, C, H, W]"
    )
    assert wrong.code == 2 and expected in wrong.stderr


def test_eval_runs_predictions(runs, tiny_checkpoint, tmp_path, cli):
    out = tmp_path / "runs.json"
    result = cli("eval", tiny_checkpoint, "--runs", runs[0], "--json", "--predictions", out)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)["runs"]["full"]
    rows = json.loads(out.read_text())["episodes"]
    assert [r["name"] for r in rows] == ["run01", "run02"]
    for row in rows:
        wrong = sum(p != y for p, y in zip(row["predictions"]["full"], row["labels"], strict=True))
        assert report["per_run_error"][row["name"]] == 100.0 * wrong / len(row["labels"])


def test_eval_images_folder(data_dir, tiny_checkpoint, tmp_path, cli):
    folder = _omniglot_folder(data_dir, tmp_path / "greek")
    args = ("eval", tiny_checkpoint, "--images", folder, "--ways", 3, "--queries", 2, "--episodes", 3, "--json")
    first, second = (json.loads(cli(*args).stdout) for _ in range(2))
    assert first == second and first["modes"]["full"]["episodes"] == 3
    rgb = cli(*args[:-1], "--image-shape", "3x28x28")
    assert rgb.code == 2 and "holds 3-channel images, but the learner takes 1-channel images" in rgb.stderr
    few = cli("eval", tiny_checkpoint, "--images", folder)
    assert few.code == 2 and "5-way 1-shot episodes with 15 queries per class need 5 classes of >= 16" in few.stderr
