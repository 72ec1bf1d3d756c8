"""`metahw simulate` on the user's own episodes: --episodes-from, --images, --runs and --predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from metahw.compiler.compile import compile_episode, save_build
from metahw.compiler.episode_io import program_inputs
from metahw.compiler.golden import execute
from metahw.compiler.program import Program
from metahw.compiler.quant_config import QuantConfig
from metahw.models.episode_sources import omniglot_episodes
from metahw.models.runs import read_runs
from metahw.sim.episodes import program_shape
from tests.compiler.onnx_fixtures import tiny_episode_model
from tests.models.omniglot_runs import write_runs


@pytest.fixture(scope="module")
def build(lowered, tmp_path_factory):
    """A tiny 3-way 2-shot ProtoNet program with 6 queries, 1x28x28 images."""
    return save_build(lowered("protonet"), tmp_path_factory.mktemp("own") / "build")


def _npz(path, episodes, labels: bool = True, **override):
    arrays = {
        "support_x": np.stack([e.support_x for e in episodes]),
        "support_y": np.stack([e.support_y for e in episodes]),
        "query_x": np.stack([e.query_x for e in episodes]),
    }
    if labels:
        arrays["query_y"] = np.stack([e.query_y for e in episodes])
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _golden_predictions(program, episodes):
    return [execute(program, program_inputs(program, e)).values["prediction"].tolist() for e in episodes]


def _one_line_error(result, *fragments):
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metahw: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_npz_round_trip_gives_the_omniglot_numbers_and_predictions(cli, build, test_split, tmp_path):
    program = Program.load(build)
    episodes = list(omniglot_episodes(test_split, program_shape(program), 2, seed=0))
    default = json.loads(cli("simulate", build, "--lanes", 8, "--episodes", 2, "--json").stdout)
    npz = _npz(tmp_path / "episodes.npz", episodes)
    out = tmp_path / "predictions.json"
    result = cli("simulate", build, "--lanes", 8, "--episodes-from", npz, "--json", "--predictions", out)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["episodes"] == 2 and report["golden_matched"] == 2 and report["source"] == str(npz)
    assert report["accuracy"] == default["accuracy"] and report["cycles"] == default["cycles"]
    written = json.loads(out.read_text())
    assert written["source"] == str(npz)
    expected = _golden_predictions(program, episodes)
    assert [row["predictions"]["simulator"] for row in written["episodes"]] == expected
    assert [row["labels"] for row in written["episodes"]] == [e.query_y.tolist() for e in episodes]
    assert [row["episode"] for row in written["episodes"]] == [0, 1]


def test_npz_without_labels_reports_predictions_only(cli, build, test_split, tmp_path):
    program = Program.load(build)
    episodes = list(omniglot_episodes(test_split, program_shape(program), 2, seed=5))
    npz = _npz(tmp_path / "unlabelled.npz", episodes, labels=False)
    out = tmp_path / "p.json"
    result = cli(
        "simulate", build, "--lanes", 8, "--episodes-from", npz, "--episodes", 1, "--predictions", out, "--no-progress"
    )
    assert result.code == 0, result.stderr
    assert "accuracy          not known (the episodes have no query labels)" in result.stdout
    assert f"1 episodes from {npz}" in result.stdout
    rows = json.loads(out.read_text())["episodes"]
    assert len(rows) == 1 and "labels" not in rows[0]
    assert rows[0]["predictions"]["simulator"] == _golden_predictions(program, episodes[:1])[0]


def test_npz_of_another_shape_is_one_sentence_naming_both_shapes(cli, build, tmp_path):
    rng = np.random.default_rng(0)
    npz = tmp_path / "cifar.npz"
    labels = np.tile(np.repeat(np.arange(3), 2), (2, 1))
    np.savez(
        npz,
        support_x=rng.random((2, 6, 3, 32, 32), np.float32),
        support_y=labels,
        query_x=rng.random((2, 6, 3, 32, 32), np.float32),
    )
    out = tmp_path / "never.json"
    result = cli("simulate", build, "--lanes", 8, "--episodes-from", npz, "--predictions", out)
    _one_line_error(
        result,
        "support_x [2, 6, 3, 32, 32]",
        "query_x [2, 6, 3, 32, 32]",
        "the program takes support_x [E, 6, 1, 28, 28] and query_x [E, 6, 1, 28, 28]",
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"support_x": None}, "lacks support_x"),
        ({"support_y": np.zeros((2, 6), np.float32)}, "support_y must be an integer array, not float32"),
        ({"query_x": np.zeros((2, 6, 1, 28, 28), np.int64)}, "query_x must be a float array, not int64"),
        ({"query_y": np.full((2, 6), 3)}, "query_y of episode 0 holds 3, outside the class ids 0..2"),
        ({"support_y": np.zeros((2, 6), np.int64)}, "must hold each of at least 2 classes 0..2 equally often"),
        ({"query_y": np.zeros((2, 5), np.int64)}, "query_y of shape [2, 5] does not fit"),
        ({"support_x": np.full((2, 6, 1, 28, 28), np.nan, np.float32)}, "support_x holds NaN or infinite values"),
    ],
)
def test_malformed_npz_is_one_sentence(cli, build, test_split, tmp_path, override, fragment):
    episodes = list(omniglot_episodes(test_split, program_shape(Program.load(build)), 2, seed=1))
    npz = _npz(tmp_path / "bad.npz", episodes, **override)
    _one_line_error(cli("simulate", build, "--lanes", 8, "--episodes-from", npz), fragment)


def test_not_an_npz_and_two_sources_are_one_sentence(cli, build, tmp_path):
    text = tmp_path / "episodes.npz"
    text.write_text("not a zip")
    _one_line_error(cli("simulate", build, "--lanes", 8, "--episodes-from", text), "is not a readable .npz file")
    _one_line_error(
        cli("simulate", build, "--lanes", 8, "--episodes-from", text, "--images", tmp_path),
        "give at most one of --episodes-from, --images and --runs",
    )
    _one_line_error(cli("simulate", build, "--lanes", 8, "--mean", "0.5"), "apply to --images only")


def _image_folder(root, classes: int = 4, per_class: int = 5, size: int = 40):
    rng = np.random.default_rng(7)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = (rng.random((size, size)) > 0.7).astype(np.uint8) * 255
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i:02d}.png")
    (root / "class0" / "notes.txt").write_text("ignored: not an image")
    return root


def test_images_folder_gives_seeded_episodes(cli, build, tmp_path):
    folder = _image_folder(tmp_path / "images")
    files = [tmp_path / f"p{k}.json" for k in range(3)]
    for path, seed in zip(files, (3, 3, 4), strict=True):
        result = cli(
            "simulate",
            build,
            "--lanes",
            8,
            "--images",
            folder,
            "--episodes",
            3,
            "--seed",
            seed,
            "--json",
            "--predictions",
            path,
        )
        assert result.code == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["golden_matched"] == 3 and report["accuracy"]["episodes"] == 3
        assert report["source"] == f"{folder} (seed {seed})"
    first, again, other = (json.loads(p.read_text())["episodes"] for p in files)
    assert first == again
    assert [r["labels"] for r in first] == [[0, 0, 1, 1, 2, 2]] * 3  # 2 queries of each of the 3 classes
    too_many = cli("simulate", build, "--lanes", 8, "--images", folder, "--image-shape", "1x32x32")
    _one_line_error(too_many, "support_x [6, 1, 32, 32]", "the program takes support_x [6, 1, 28, 28]")
    sparse = _image_folder(tmp_path / "sparse", classes=2)
    _one_line_error(
        cli("simulate", build, "--lanes", 8, "--images", sparse), "need 3 classes of >= 4 images", "has 2 such classes"
    )


@pytest.fixture(scope="module")
def runs_build(omniglot, tmp_path_factory):
    """A tiny 20-way 1-shot ProtoNet program with 20 queries (one official run per episode)."""
    model, _ = tiny_episode_model("protonet", 20, 1)
    result = compile_episode(model, QuantConfig(bits=8), omniglot.split("val"), 20, calibration_episodes=2)
    return save_build(result, tmp_path_factory.mktemp("runs") / "build")


def test_runs_on_the_simulator_report_the_mean_error(cli, runs_build, data_dir, tmp_path):
    root = tmp_path / "runs"
    write_runs(data_dir, root, {"run01": ("Korean", 20), "run02": ("Balinese", 20)})
    out = tmp_path / "runs.json"
    result = cli("simulate", runs_build, "--lanes", 16, "--runs", root, "--json", "--predictions", out)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["episodes"] == 2 and report["golden_matched"] == 2
    program = Program.load(runs_build)
    errors = {}
    for run in read_runs(root):
        inputs = {"support_x": run.training, "query_x": run.test, "support_labels": np.arange(20)}
        pixel = program.buffer_map["support_x"].qformat
        feed = {
            **{k: pixel.quantize(inputs[k], program.meta.rounding) for k in ("support_x", "query_x")},
            "support_labels": inputs["support_labels"],
        }
        predicted = execute(program, feed).values["prediction"]
        errors[run.name] = 100.0 * float((predicted != run.labels).sum()) / 20
    assert report["runs"]["simulator"] == {"mean_error": sum(errors.values()) / 2, "per_run_error": errors}
    rows = json.loads(out.read_text())["episodes"]
    assert [r["name"] for r in rows] == ["run01", "run02"]
    text = cli("simulate", runs_build, "--lanes", 16, "--runs", root, "--no-progress").stdout
    assert f"simulator: mean error {report['runs']['simulator']['mean_error']:.2f}% over 2 runs" in text
    write_runs(data_dir, tmp_path / "small", {"run01": ("Korean", 5)})
    _one_line_error(
        cli("simulate", runs_build, "--lanes", 16, "--runs", tmp_path / "small"),
        "holds 5-way 1-shot episodes (run01",
        "takes support_x [20, 1, 28, 28]",
    )
