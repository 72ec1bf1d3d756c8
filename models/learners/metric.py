"""Metric-based learners: Prototypical Networks and Matching Networks."""

from __future__ import annotations

import math

import torch
from torch import nn

from metahw.models import head
from metahw.models.backbone import BackboneConfig
from metahw.models.learners.base import MetaLearner


class ProtoNet(MetaLearner):
    """Prototypical Networks (Snell et al. 2017): nearest class mean under squared L2."""

    algorithm = "protonet"
    defaults = {"head_steps": 0}

    def metric_logits(self, fs: torch.Tensor, y: torch.Tensor, fq: torch.Tensor) -> torch.Tensor:
        """Minus squared L2 distance to each prototype."""
        return head.squared_l2_logits(fq, head.prototypes(fs, y))


class MatchingNet(MetaLearner):
    """Matching Networks (Vinyals et al. 2016) without full-context embeddings.

    Softmax attention over cosine similarities to every support example, with a learned
    temperature (initialised to 10), summed per class.
    """

    algorithm = "matchingnet"
    defaults = {"head_steps": 0}

    def __init__(self, backbone: BackboneConfig, hparams: dict | None = None) -> None:
        super().__init__(backbone, hparams)
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def metric_logits(self, fs: torch.Tensor, y: torch.Tensor, fq: torch.Tensor) -> torch.Tensor:
        """Log class probabilities of the cosine attention."""
        return head.cosine_attention_logits(fq, fs, y, self.log_scale.exp())
