"""`metahw train` and `metahw eval`: the round trip, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from metahw.errors import UserError
from metahw.models.checkpoint import load_checkpoint
from metahw.models.data import OmniglotImages
from metahw.models.evaluate import evaluate
from metahw.models.learners import ProtoNet

TINY_TRAIN = ("--width", "4", "--episodes", "6", "--ways", "3", "--no-progress")


def _assert_user_error(result, *fragments: str) -> None:
    """Exit code 2, nothing on stdout, exactly one line on stderr naming the problem, no traceback."""
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("metahw: error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# ---- the round trip, as a user runs it --------------------------------------------------------


def test_train_writes_a_checkpoint_that_eval_json_reads(
    tmp_path: Path, cli, run_metahw, data_dir: Path, omniglot: OmniglotImages
):
    """Training in process, evaluation through the installed script in a fresh interpreter, as a user runs it."""
    out = tmp_path / "models" / "tiny.pt"
    trained = cli("train", "--algo", "protonet", "--out", out, "--seed", "1", "--data", data_dir, *TINY_TRAIN)
    assert trained.code == 0, trained.stderr
    assert trained.stdout.startswith(f"wrote {out}: protonet") and len(trained.stdout.splitlines()) == 1
    assert os.listdir(out.parent) == ["tiny.pt"]
    ckpt = load_checkpoint(out)
    assert isinstance(ckpt.learner, ProtoNet)
    assert ckpt.train_args["ways"] == 3 and ckpt.train_args["episodes"] == 6 and ckpt.train_args["seed"] == 1
    assert ckpt.learner.backbone_config.width == 4

    # eval finds the data through $METAHW_DATA here; JSON only on stdout
    evaluated = run_metahw("eval", out, "--json", "--ways", "5", "--episodes", "4", "--mode", "both", "--seed", "2")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert {k: report[k] for k in ("algorithm", "ways", "shots", "queries", "split", "within_alphabet", "seed")} == {
        "algorithm": "protonet",
        "ways": 5,
        "shots": 1,
        "queries": 15,
        "split": "test",
        "within_alphabet": False,
        "seed": 2,
    }
    assert set(report["modes"]) == {"full", "head"}
    # the numbers are those of the library on the same seeded episodes
    test_split = omniglot.split("test")
    for mode, summary in report["modes"].items():
        expected = evaluate(ckpt.learner, test_split, 5, 1, 15, 4, seed=2, mode=mode, progress=False)
        assert summary == expected.to_dict()
    assert report["modes"]["full"]["accuracy"] == report["modes"]["head"]["accuracy"]  # ProtoNet, 0 head steps


def test_gradient_learner_trains_and_evaluates_in_process(tmp_path: Path, cli):
    out = tmp_path / "anil.pt"
    trained = cli(
        "train",
        "--algo",
        "anil",
        "--out",
        out,
        "--meta-batch",
        "2",
        "--hparam",
        "inner_steps=1",
        "--hparam",
        "inner_lr=1",
        *TINY_TRAIN,
    )
    assert trained.code == 0, trained.stderr
    ckpt = load_checkpoint(out)
    assert ckpt.algorithm == "anil"
    assert ckpt.learner.hparams["inner_steps"] == 1 and ckpt.learner.hparams["inner_lr"] == 1
    assert ckpt.train_args["meta_batch"] == 2
    text = cli("eval", out, "--ways", "20", "--episodes", "2", "--queries", "1", "--within-alphabet", "--no-progress")
    assert text.code == 0, text.stderr
    assert text.stdout.startswith("anil 20-way 1-shot (full, test, within alphabet): ")
    assert text.stdout.rstrip().endswith("over 2 episodes")


def test_training_from_a_pretrained_backbone(tiny_checkpoint: Path, tmp_path: Path, cli):
    """--backbone-from: the new learner starts from the checkpoint's embedding, of the checkpoint's shape."""
    out = tmp_path / "anil.pt"
    # Adam moves each weight by about lr per step: at 1e-12 the start is what the run ends with
    args = ("--algo", "anil", "--backbone-from", tiny_checkpoint, "--out", out, "--lr", "1e-12", "--meta-batch", "1")
    trained = cli("train", *args, "--episodes", "2", "--ways", "3", "--no-progress")
    assert trained.code == 0, trained.stderr
    ckpt, source = load_checkpoint(out), load_checkpoint(tiny_checkpoint)
    assert ckpt.algorithm == "anil" and ckpt.learner.backbone_config == source.learner.backbone_config
    assert ckpt.train_args["backbone_from"] == str(tiny_checkpoint) and ckpt.train_args["width"] == 4
    weights = {k: v for k, v in ckpt.learner.backbone.state_dict().items() if k.endswith("weight")}
    assert len(weights) == 8  # conv and BatchNorm scale of four blocks
    for name, value in weights.items():
        torch.testing.assert_close(value, source.learner.backbone.state_dict()[name], rtol=0, atol=1e-9)
    fresh = cli("train", "--algo", "anil", "--out", tmp_path / "fresh.pt", "--width", "4", *TINY_TRAIN[2:])
    assert fresh.code == 0, fresh.stderr
    conv = "blocks.0.0.weight"
    assert not torch.allclose(load_checkpoint(tmp_path / "fresh.pt").learner.backbone.state_dict()[conv], weights[conv])


def test_training_from_a_backbone_of_another_shape_is_refused(tiny_checkpoint: Path, tmp_path: Path, cli):
    args = ("train", "--algo", "protomaml", "--backbone-from", tiny_checkpoint, "--out", tmp_path / "m.pt")
    _assert_user_error(cli(*args, "--width", "8", *TINY_TRAIN[2:]), "--backbone-from", "width 4", "got width 8")
    _assert_user_error(cli(*args, "--qat-bits", "4", "--init", tiny_checkpoint), "--backbone-from", "--init")
    assert os.listdir(tmp_path) == []


def test_eval_shared_checkpoint_other_shapes(tiny_checkpoint: Path, cli):
    result = cli(
        "eval",
        tiny_checkpoint,
        "--json",
        "--ways",
        "20",
        "--shots",
        "5",
        "--queries",
        "2",
        "--episodes",
        "3",
        "--split",
        "val",
    )
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["split"] == "val" and report["ways"] == 20 and report["shots"] == 5
    assert report["modes"]["full"]["episodes"] == 3
    assert 0.0 <= report["modes"]["full"]["accuracy"] <= 1.0


# ---- bad input: exit code 2 and one line ----------------------------------------------------


def test_unknown_algorithm(tmp_path: Path, cli):
    result = cli("train", "--algo", "siamese", "--out", tmp_path / "x.pt", *TINY_TRAIN)
    _assert_user_error(result, "'siamese'", "protonet")
    assert os.listdir(tmp_path) == []


def test_missing_data_path(tmp_path: Path, tiny_checkpoint: Path, cli):
    result = cli("train", "--algo", "protonet", "--out", tmp_path / "x.pt", "--data", "/nonexistent", *TINY_TRAIN)
    _assert_user_error(result, "/nonexistent")
    assert os.listdir(tmp_path) == []
    _assert_user_error(cli("eval", tiny_checkpoint, "--data", "/nonexistent", "--no-progress"), "/nonexistent")


def test_eval_of_a_file_that_is_not_a_checkpoint(tmp_path: Path, cli):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    _assert_user_error(cli("eval", notes), str(notes), "not a metahw checkpoint")
    weights = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), weights)
    _assert_user_error(cli("eval", weights), str(weights), "not a metahw checkpoint")
    _assert_user_error(cli("eval", tmp_path / "absent.pt"), "absent.pt", "does not exist")


def test_eval_ways_larger_than_the_test_split(tiny_checkpoint: Path, cli):
    _assert_user_error(cli("eval", tiny_checkpoint, "--ways", "58", "--no-progress"), "58-way", "57")
    _assert_user_error(
        cli("eval", tiny_checkpoint, "--ways", "41", "--within-alphabet", "--no-progress"), "41-way", "40"
    )
    _assert_user_error(cli("eval", tiny_checkpoint, "--shots", "10", "--queries", "15", "--no-progress"), "20")


def test_eval_unknown_mode_and_split(tiny_checkpoint: Path, cli):
    _assert_user_error(cli("eval", tiny_checkpoint, "--mode", "fast"), "--mode 'fast'", "full, head, both")
    _assert_user_error(cli("eval", tiny_checkpoint, "--split", "holdout", "--no-progress"), "'holdout'")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--algo", "protonet", "--shots", "15", "--queries", "10"), "exceeds the 20 drawings"),
        (("--algo", "protonet", "--hparam", "inner_lr=0.1"), "unknown hyper-parameters"),
        (("--algo", "maml", "--hparam", "inner_lr"), "KEY=VALUE"),
        (("--algo", "protonet", "--depth", "5"), "depth 5"),
        (("--algo", "protonet", "--ways", "1"), "--ways must be >= 2"),
    ],
)
def test_bad_training_arguments_leave_no_file(tmp_path: Path, cli, args: tuple[str, ...], fragment: str):
    out = tmp_path / "out" / "model.pt"
    out.parent.mkdir()
    _assert_user_error(cli("train", "--out", out, *TINY_TRAIN, *args), fragment)
    assert os.listdir(out.parent) == []


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_training_that_fails_midway_leaves_no_file(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch):
    calls = []

    def diverge(self, tasks, ways, optimizer):
        calls.append(1)
        if len(calls) == 3:
            raise UserError("training diverged (loss is nan)")
        return 1.0, 0.5

    monkeypatch.setattr(ProtoNet, "meta_step", diverge)
    out = tmp_path / "model.pt"
    _assert_user_error(cli("train", "--algo", "protonet", "--out", out, *TINY_TRAIN), "diverged")
    assert len(calls) == 3
    assert os.listdir(tmp_path) == []


def test_out_that_is_a_folder_is_refused_before_training(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ProtoNet, "meta_step", lambda *a: pytest.fail("trained although --out is unusable"))
    _assert_user_error(cli("train", "--algo", "protonet", "--out", tmp_path, *TINY_TRAIN), str(tmp_path), "folder")
    assert os.listdir(tmp_path) == []


def test_subprocess_errors_have_no_traceback(tmp_path: Path, run_metahw):
    """The installed entry point too: exit 2, one line on stderr."""
    result = run_metahw("train", "--algo", "bogus", "--out", tmp_path / "x.pt", *TINY_TRAIN)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("metahw: error: unknown") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []
