"""MetaLearner: the interface every algorithm implements, and the registry of algorithms.

A learner owns a Conv-4 backbone plus its own meta-parameters (head initialisation,
learning rates, temperature). Two evaluation modes:

- ``full``: the algorithm's own adaptation (e.g. MAML adapts every parameter);
- ``head``: the backbone is frozen and only a linear head is adapted by closed-form SGD
  steps on the support embeddings. This is what the hardware does, so every algorithm
  supports it; the head's initial value is the algorithm's (learned vector, or prototypes).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from metahw.models import head
from metahw.models.backbone import BackboneConfig, Conv4, batch_statistics

MODES = ("full", "head")
ALGORITHMS: dict[str, type[MetaLearner]] = {}


class MetaLearner(nn.Module):
    """Base class: a backbone, hyper-parameters, a training objective and a classifier."""

    algorithm: ClassVar[str]
    defaults: ClassVar[dict] = {"head_steps": 5, "head_lr": 0.1}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "algorithm" in cls.__dict__:
            ALGORITHMS[cls.algorithm] = cls

    def __init__(self, backbone: BackboneConfig, hparams: dict | None = None) -> None:
        super().__init__()
        self.backbone_config = backbone
        self.backbone = _make_backbone(backbone)
        merged = {**MetaLearner.defaults, **type(self).defaults, **(hparams or {})}
        unknown = set(merged) - set(MetaLearner.defaults) - set(type(self).defaults)
        if unknown:
            raise ValueError(f"unknown hyper-parameters for {self.algorithm}: {sorted(unknown)}")
        self.hparams = merged

    # ---- training -------------------------------------------------------------------
    def episode_loss(
        self, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor, ways: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Meta-training loss of one episode and the query logits (backbone in batch-stat mode)."""
        logits = self.logits(sx, sy, qx, ways, "full")
        return F.cross_entropy(logits, qy), logits

    def meta_step(
        self, tasks: list[tuple[torch.Tensor, ...]], ways: int, optimizer: torch.optim.Optimizer
    ) -> tuple[float, float]:
        """One outer update on a batch of tasks (sx, sy, qx, qy); returns (loss, query accuracy).

        BatchNorm normalises with batch statistics and its running buffers are left untouched.
        """
        optimizer.zero_grad(set_to_none=True)
        losses, accs = [], []
        with batch_statistics(self):
            for sx, sy, qx, qy in tasks:
                loss, logits = self.episode_loss(sx, sy, qx, qy, ways)
                (loss / len(tasks)).backward()
                losses.append(loss.item())
                accs.append((logits.argmax(-1) == qy).float().mean().item())
        optimizer.step()
        return sum(losses) / len(losses), sum(accs) / len(accs)

    # ---- inference ------------------------------------------------------------------
    def logits(
        self, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, ways: int, mode: str = "full"
    ) -> torch.Tensor:
        """Query logits [B, N] after adapting to the support set (images in, labels 0..N-1)."""
        feats = self.backbone(torch.cat([sx, qx]))
        return self.logits_from_features(feats[: len(sx)], sy, feats[len(sx) :], ways, mode)

    def logits_from_features(
        self, fs: torch.Tensor, sy: torch.Tensor, fq: torch.Tensor, ways: int, mode: str
    ) -> torch.Tensor:
        """Query logits from support/query embeddings with the backbone frozen."""
        y = head.one_hot(sy, ways)
        if mode == "head":
            w, b = self.head_init(fs, y)
            w, b = head.adapt_head(w, b, fs, y, self.hparams["head_steps"], *self.head_lrs())
            return head.linear_logits(fq, w, b)
        return self.metric_logits(fs, y, fq)

    def metric_logits(self, fs: torch.Tensor, y: torch.Tensor, fq: torch.Tensor) -> torch.Tensor:
        """The algorithm's own classifier on frozen embeddings (overridden per algorithm)."""
        raise NotImplementedError

    def head_init(self, fs: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial linear head for head-only adaptation; default: from prototypes (Proto-MAML)."""
        return head.proto_head_init(head.prototypes(fs, y))

    def head_lrs(self) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """Learning rates (weights, bias) of the head's inner SGD steps."""
        return self.hparams["head_lr"], self.hparams["head_lr"]

    @property
    def adapts_backbone(self) -> bool:
        """Whether 'full' evaluation changes the backbone per episode (no embedding cache possible)."""
        return False


def _make_backbone(config: BackboneConfig) -> Conv4:
    if config.qat_bits:
        from metahw.models.qat import QuantConv4  # qat builds learners: import at use to avoid a cycle

        return QuantConv4(config)
    return Conv4(config)


def build_learner(algorithm: str, backbone: BackboneConfig, hparams: dict | None = None) -> MetaLearner:
    """Instantiate a learner by algorithm name."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}: accepted are {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[algorithm](backbone, hparams)
