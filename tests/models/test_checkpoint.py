"""Checkpoints: exact round trip, clear errors for anything that is not one, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import metahw
from metahw.errors import UserError
from metahw.models import checkpoint as checkpoint_module
from metahw.models.backbone import BackboneConfig, batchnorms
from metahw.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from metahw.models.data import ALPHABET_SPLIT
from metahw.models.learners import ALGORITHMS, build_learner
from metahw.models.learners.base import MODES

TINY = BackboneConfig(width=4, depth=4)


def _trained_looking_learner(algorithm: str, seed: int = 0):
    """A learner whose every parameter and buffer is random (not at its initial value)."""
    torch.manual_seed(seed)
    learner = build_learner(algorithm, TINY, {"head_steps": 2})
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for bn in batchnorms(learner):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.num_batches_tracked.fill_(11)
    return learner.eval()


def _task(ways: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(ways, 1, 28, 28, generator=g), torch.arange(ways), torch.rand(2 * ways, 1, 28, 28, generator=g))


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_round_trip_gives_identical_logits_and_metadata(algorithm: str, tmp_path: Path):
    learner = _trained_looking_learner(algorithm)
    train_args = {"algorithm": algorithm, "ways": 5, "episodes": 10, "meta_batch": None, "hparams": {"head_steps": 2}}
    metrics = {"train_seconds": 1.5, "val": {"ways": 5, "accuracy": 0.75, "ci95": 0.01, "episodes": 3}}
    path = tmp_path / f"{algorithm}.pt"
    save_checkpoint(Checkpoint(learner, train_args=train_args, metrics=metrics), path)
    assert sorted(os.listdir(tmp_path)) == [path.name], "no temporary files left beside the checkpoint"

    loaded = load_checkpoint(path)
    assert loaded.algorithm == algorithm and type(loaded.learner) is type(learner)
    assert loaded.learner.backbone_config == TINY
    assert loaded.learner.hparams == learner.hparams
    assert loaded.train_args == train_args and loaded.metrics == metrics
    assert loaded.split == {k: list(v) for k, v in ALPHABET_SPLIT.items()}
    assert loaded.version == metahw.__version__
    assert not loaded.learner.training
    original, restored = learner.state_dict(), loaded.learner.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    sx, sy, qx = _task()
    for mode in MODES:
        assert torch.equal(loaded.learner.logits(sx, sy, qx, 5, mode), learner.logits(sx, sy, qx, 5, mode))


def test_shared_tiny_checkpoint_holds_training_metadata(tiny_checkpoint: Path):
    ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt.algorithm == "protonet"
    assert ckpt.learner.backbone_config.width == 4
    assert ckpt.train_args["episodes"] == 40 and ckpt.train_args["algorithm"] == "protonet"
    assert ckpt.metrics["val"]["ways"] == 5 and ckpt.metrics["val"]["episodes"] == 20
    assert 0.0 <= ckpt.metrics["val"]["accuracy"] <= 1.0
    for bn in batchnorms(ckpt.learner):  # calibrated, not the initial statistics
        assert int(bn.num_batches_tracked) == 3
        assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    # loading twice gives the same learner
    again = load_checkpoint(str(tiny_checkpoint))
    sx, sy, qx = _task()
    assert torch.equal(again.learner.logits(sx, sy, qx, 5), ckpt.learner.logits(sx, sy, qx, 5))


def _not_checkpoints(folder: Path, real: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        files[name] = folder / f"{name}.pt"
        files[name].write_bytes(data)

    put("random-bytes", bytes(range(256)) * 8)
    put("empty", b"")
    put("text", b"hello, this is not a checkpoint\n")
    put("truncated", real.read_bytes()[: real.stat().st_size // 2])
    for name, obj in {
        "tensor": torch.zeros(3),
        "plain-dict": {"weights": torch.ones(2)},
        "state-dict": torch.nn.Linear(2, 2).state_dict(),
        "pickled-module": torch.nn.Linear(2, 2),
        "tag-only": {"format": checkpoint_module.FORMAT},
        "unknown-algorithm": {"format": checkpoint_module.FORMAT, "algorithm": "siamese"},
    }.items():
        files[name] = folder / f"{name}.pt"
        torch.save(obj, files[name])
    payload = torch.load(real, weights_only=True)
    for name, broken in {
        "wrong-weights": {**payload, "state_dict": {"backbone.blocks.0.0.weight": torch.zeros(1)}},
        "bad-backbone": {**payload, "backbone": {"width": 4, "colour": True}},
        "bad-hparams": {**payload, "hparams": {"no_such_hparam": 1}},
        "no-metrics": {k: v for k, v in payload.items() if k != "metrics"},
    }.items():
        files[name] = folder / f"{name}.pt"
        torch.save(broken, files[name])
    files["missing"] = folder / "missing.pt"
    files["folder"] = folder
    return files


def test_anything_else_is_a_user_error(tmp_path: Path, tiny_checkpoint: Path):
    cases = _not_checkpoints(tmp_path, tiny_checkpoint)
    for name, path in cases.items():
        with pytest.raises(UserError) as err:
            load_checkpoint(path)
        message = str(err.value)
        assert str(path) in message, name
        assert "\n" not in message, f"{name}: the message is one line"


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path):
    ckpt = load_checkpoint(tiny_checkpoint)
    target = tmp_path / "out" / "model.pt"
    save_checkpoint(ckpt, target)  # creates the folder
    assert os.listdir(target.parent) == ["model.pt"]
    good = target.read_bytes()

    def crash(obj, f, *args, **kwargs):  # write half a file, then fail like a full disk would
        Path(f).write_bytes(good[: len(good) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", crash)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(ckpt, target)
    assert target.read_bytes() == good, "a failed save leaves the previous checkpoint intact"
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(ckpt, tmp_path / "out" / "new.pt")
    assert os.listdir(target.parent) == ["model.pt"], "no half-written or temporary files"
    monkeypatch.undo()
    assert load_checkpoint(target).algorithm == "protonet"
