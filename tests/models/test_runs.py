"""The official one-shot "runs" layout: reader, scorer and `metahw eval --runs`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omniglot_runs import RunTruth, write_runs

from metahw.errors import UserError
from metahw.models.checkpoint import load_checkpoint
from metahw.models.data import OmniglotImages
from metahw.models.runs import OneShotRun, read_run, read_runs, run_error


def _image(omniglot: OmniglotImages, key: tuple[str, str, int]) -> np.ndarray:
    alphabet, character, drawing = key
    index = list(zip(omniglot.alphabet_of, omniglot.character_of, strict=True)).index((alphabet, character))
    return omniglot.images[index, drawing].astype(np.float32)[None] / np.float32(255)


def _expected_error(learner, run: OneShotRun, mode: str) -> float:
    with torch.no_grad():
        logits = learner.logits(
            torch.from_numpy(run.training),
            torch.arange(len(run.training)),
            torch.from_numpy(run.test),
            len(run.training),
            mode,
        )
    return 100.0 * float((logits.argmax(-1).numpy() != run.labels).mean())


def test_read_runs_parses_the_layout(runs: tuple[Path, list[RunTruth]], omniglot: OmniglotImages):
    root, truths = runs
    parsed = read_runs(root)
    assert [r.name for r in parsed] == ["run01", "run02"]
    for run, truth in zip(parsed, truths, strict=True):
        n = len(truth.training)
        assert run.training.shape == (n, 1, 28, 28) and run.test.shape == (n, 1, 28, 28)
        assert run.training.dtype == run.test.dtype == np.float32
        assert run.labels.tolist() == truth.labels
        assert sorted(run.labels.tolist()) == list(range(n)), "every class is tested once"
        for k, key in enumerate(truth.training):
            assert np.array_equal(run.training[k], _image(omniglot, key))
        for m, key in enumerate(truth.test):
            assert np.array_equal(run.test[m], _image(omniglot, key))
            assert key[:2] == truth.training[run.labels[m]][:2], "item m is a drawing of its labelled class"


def test_paths_relative_to_the_run_folder_are_accepted(runs: tuple[Path, list[RunTruth]], tmp_path: Path):
    root, truths = runs
    copy = tmp_path / "run02"
    shutil.copytree(root / "run02", copy)
    labels = copy / "class_labels.txt"
    labels.write_text(labels.read_text().replace("run02/", ""))  # "test/item01.png training/class03.png"
    assert read_run(copy).labels.tolist() == truths[1].labels


def test_run_error_scores_the_nearest_training_image(
    runs: tuple[Path, list[RunTruth]], tiny_checkpoint: Path, data_dir: Path, tmp_path: Path
):
    learner = load_checkpoint(tiny_checkpoint).learner
    for run in read_runs(runs[0]):
        for mode in ("full", "head"):
            error = run_error(learner, run, mode)
            assert error == _expected_error(learner, run, mode)
            assert error in {100.0 * i / len(run.labels) for i in range(len(run.labels) + 1)}
    # test items that are the training drawings themselves: the nearest training image is exact
    write_runs(
        data_dir, tmp_path / "same", {"run01": ("Sanskrit", 20), "run02": ("Tagalog", 10)}, seed=3, same_drawing=True
    )
    same = read_runs(tmp_path / "same")
    assert [run_error(learner, r) for r in same] == [0.0, 0.0]
    # and with every label moved to the next class, every item is wrong
    shifted = OneShotRun("shifted", same[0].training, same[0].test, (same[0].labels + 1) % 20)
    assert run_error(learner, shifted) == 100.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("run01/test/item01.png", "expected"),
        ("run01/test/item01.png run01/training/class01.png extra", "expected"),
        ("run01/test/item01.png run01/training/class99.png", "not in"),
        ("run01/test/item99.png run01/training/class01.png", "does not exist"),
    ],
)
def test_malformed_runs_raise_user_error(runs: tuple[Path, list[RunTruth]], tmp_path: Path, line: str, message: str):
    shutil.copytree(runs[0] / "run01", tmp_path / "run01")
    labels = tmp_path / "run01" / "class_labels.txt"
    labels.write_text(labels.read_text() + line + "\n")
    with pytest.raises(UserError, match=message):
        read_runs(tmp_path)


def test_missing_or_empty_runs_raise_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="not a folder"):
        read_runs(tmp_path / "nowhere")
    with pytest.raises(UserError, match="no runs"):
        read_runs(tmp_path)
    (tmp_path / "run01" / "training").mkdir(parents=True)
    (tmp_path / "run01" / "class_labels.txt").write_text("\n\n")
    with pytest.raises(UserError, match="lists no test items"):
        read_runs(tmp_path)
    (tmp_path / "run01" / "class_labels.txt").write_text("run01/test/item01.png run01/training/class01.png\n")
    with pytest.raises(UserError, match="holds no class images"):
        read_runs(tmp_path)


def test_eval_runs_json(runs: tuple[Path, list[RunTruth]], tiny_checkpoint: Path, cli):
    """The user's command through the entry point: JSON on stdout with per-run errors and their mean.

    In process: the installed script's `eval --json` in a fresh interpreter is test_cli_models.py's.
    """
    result = cli("eval", tiny_checkpoint, "--runs", runs[0], "--mode", "both", "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["algorithm"] == "protonet" and report["checkpoint"] == str(tiny_checkpoint)
    learner = load_checkpoint(tiny_checkpoint).learner
    parsed = read_runs(runs[0])
    assert set(report["runs"]) == {"full", "head"}
    for mode, scores in report["runs"].items():
        expected = {r.name: _expected_error(learner, r, mode) for r in parsed}
        assert scores["per_run_error"] == expected
        assert scores["mean_error"] == pytest.approx(sum(expected.values()) / 2, abs=1e-12)


def test_eval_runs_text_output(runs: tuple[Path, list[RunTruth]], tiny_checkpoint: Path, cli):
    result = cli("eval", tiny_checkpoint, "--runs", runs[0])
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("protonet (full): mean error") and lines[0].endswith("over 2 runs")
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["run01", "run02"]


def test_eval_runs_malformed_labels_exit_2_with_one_line(
    runs: tuple[Path, list[RunTruth]], tiny_checkpoint: Path, tmp_path: Path, cli
):
    """In process: the installed script's exit 2 and one line in a fresh interpreter are test_cli_models'."""
    shutil.copytree(runs[0], tmp_path / "runs")
    (tmp_path / "runs" / "run02" / "class_labels.txt").write_text("run02/test/item01.png\n")
    result = cli("eval", tiny_checkpoint, "--runs", tmp_path / "runs", "--json")
    assert result.code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("metahw: error: ") and "class_labels.txt:1" in result.stderr
    assert "Traceback" not in result.stderr
    text = cli("eval", tiny_checkpoint, "--runs", tmp_path / "runs")  # the same refusal without --json
    assert text.code == 2 and text.stderr == result.stderr
