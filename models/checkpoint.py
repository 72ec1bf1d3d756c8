"""Checkpoints: a learner's weights plus everything needed to rebuild and audit it.

A checkpoint is a `torch.save`d dict of tensors and plain Python values (loadable with
`weights_only=True`): format tag, algorithm, backbone config, hyper-parameters, training
arguments, data split, metrics and package version. Written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from metahw import __version__
from metahw.atomic import atomic_path
from metahw.errors import UserError
from metahw.models.backbone import BackboneConfig
from metahw.models.data import ALPHABET_SPLIT
from metahw.models.learners import ALGORITHMS, MetaLearner, build_learner
from metahw.models.zoo import PREFIX, zoo_names, zoo_path

FORMAT = "metahw-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A trained learner and its metadata."""

    learner: MetaLearner
    train_args: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    split: dict = field(default_factory=lambda: {k: list(v) for k, v in ALPHABET_SPLIT.items()})
    version: str = __version__

    @property
    def algorithm(self) -> str:
        """Name of the meta-learning algorithm."""
        return self.learner.algorithm


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike) -> None:
    """Write `ckpt` to `path` atomically (float32 weights)."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algorithm": ckpt.algorithm,
        "backbone": ckpt.learner.backbone_config.to_dict(),
        "hparams": dict(ckpt.learner.hparams),
        "state_dict": {
            k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
            for k, v in ckpt.learner.state_dict().items()
        },
        "train_args": ckpt.train_args,
        "split": ckpt.split,
        "metrics": ckpt.metrics,
        "metahw_version": ckpt.version,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` (or `zoo:NAME` for a shipped one).

    Anything that is not a metahw checkpoint is a UserError with one clear sentence.
    """
    if str(path).startswith(PREFIX):
        name = str(path).removeprefix(PREFIX)
        if name not in zoo_names():
            raise UserError(f"no shipped checkpoint {path}: the zoo has {', '.join(PREFIX + n for n in zoo_names())}.")
        path = zoo_path(name)
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist (give a .pt file written by `metahw train`).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling arbitrary bytes fails in many ways (KeyError, IndexError, ...)
        raise UserError(
            f"{path} is not a metahw checkpoint (not a readable torch.save file: {type(exc).__name__})."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a metahw checkpoint (no '{FORMAT}' format tag).")
    if payload.get("format_version") != FORMAT_VERSION:
        version = payload.get("format_version")
        raise UserError(
            f"{path} is a metahw checkpoint of format version {version!r}; this metahw reads version "
            f"{FORMAT_VERSION} (use the metahw that wrote it)."
        )
    if payload.get("algorithm") not in ALGORITHMS:
        raise UserError(f"{path} holds unknown algorithm {payload.get('algorithm')!r}.")
    try:
        learner = build_learner(payload["algorithm"], BackboneConfig(**payload["backbone"]), payload["hparams"])
        learner.load_state_dict(payload["state_dict"])
        meta = (payload["train_args"], payload["metrics"], payload["split"], payload["metahw_version"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is a damaged or incompatible metahw checkpoint ({first_line}).") from None
    learner.eval()
    return Checkpoint(learner, *meta)
