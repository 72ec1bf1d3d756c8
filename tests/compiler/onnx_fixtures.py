"""Tiny exported episodes for compiler tests: random Conv-4 learners with realistic BatchNorm."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from metahw.models.backbone import BackboneConfig, calibrate_batchnorm
from metahw.models.export import episode_head, export_episode
from metahw.models.learners import MetaLearner, build_learner


def tiny_learner(algorithm: str, width: int = 4, seed: int = 0) -> MetaLearner:
    """A random learner whose BatchNorm statistics are calibrated on random stroke-like images."""
    torch.manual_seed(seed)
    learner = build_learner(algorithm, BackboneConfig(width=width))
    for p in learner.backbone.parameters():  # non-trivial BN affine parameters
        if p.dim() == 1:
            p.data.uniform_(0.5, 1.5)
    gen = np.random.default_rng(seed)
    calibrate_batchnorm(
        learner.backbone, lambda: torch.from_numpy((gen.random((32, 1, 28, 28)) > 0.8).astype(np.float32)), 2
    )
    return learner.eval()


def tiny_episode_model(
    algorithm: str = "protonet", ways: int = 3, shots: int = 2, inner_steps: int | None = None, width: int = 4
) -> tuple[onnx.ModelProto, MetaLearner]:
    """An exported episode of a tiny random learner, and the learner."""
    learner = tiny_learner(algorithm, width)
    return export_episode(learner, episode_head(learner, ways, shots, inner_steps)), learner
