"""Episodic meta-training of any learner, then BatchNorm calibration and validation."""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from metahw.errors import UserError
from metahw.models.augment import random_affine
from metahw.models.backbone import BackboneConfig, batch_statistics, calibrate_batchnorm
from metahw.models.checkpoint import Checkpoint, load_checkpoint
from metahw.models.data import OmniglotImages
from metahw.models.episodes import EpisodeSampler
from metahw.models.evaluate import evaluate
from metahw.models.learners import ALGORITHMS, MetaLearner, build_learner
from metahw.models.qat import quantized_learner
from metahw.progress import StatusTracker

#: Tasks per outer step when the user does not choose: one for metric learners (their
#: episodes are already large), four for the gradient-based ones (as in MAML).
DEFAULT_META_BATCH = {"protonet": 1, "matchingnet": 1}
#: Algorithms whose inner loop changes the backbone: their activation ranges vary per task.
QAT_UNSUPPORTED = ("maml", "fomaml", "metasgd", "reptile")


@dataclass
class TrainConfig:
    """Everything `metahw train` needs; stored verbatim in the checkpoint."""

    algorithm: str
    ways: int = 5
    shots: int = 1
    queries: int = 5
    episodes: int = 2000
    meta_batch: int | None = None
    lr: float = 1e-3
    width: int = 64
    depth: int = 4
    batchnorm: bool = True
    seed: int = 0
    device: str = "cpu"
    hparams: dict = field(default_factory=dict)
    calibration_batches: int = 20
    val_episodes: int = 300
    qat_bits: int | None = None
    qat_episodes: int | None = None
    init: str | None = None
    augment: bool = True
    backbone_from: str | None = None

    def validate(self) -> None:
        """Raise UserError on arguments no training run could use."""
        if self.algorithm not in ALGORITHMS:
            raise UserError(f"unknown algorithm {self.algorithm!r}: accepted are {', '.join(sorted(ALGORITHMS))}.")
        for name in ("episodes", "width", "depth", "shots", "queries", "meta_batch", "qat_episodes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"`{name}` must be >= 1 (got {value}).", (name,))
        if self.ways < 2:
            raise UserError(f"`ways` must be >= 2: an episode tells classes apart (got {self.ways}).", ("ways",))
        if not self.lr > 0:
            raise UserError(f"`lr` must be > 0 (got {self.lr}).", ("lr",))
        if self.device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", self.device):
            raise UserError(f"unknown `device` {self.device!r}: accepted are cpu, cuda and cuda:N.", ("device",))
        if 28 >> self.depth == 0:
            raise UserError(f"`depth` {self.depth} pools a 28x28 image below 1x1; accepted are 1..4.", ("depth",))
        if self.qat_bits is not None and not 2 <= self.qat_bits <= 16:
            raise UserError(f"`qat_bits` must be in 2..16 (got {self.qat_bits}).", ("qat_bits",))
        if self.qat_bits and self.algorithm in QAT_UNSUPPORTED:
            raise UserError(
                f"QAT supports protonet, matchingnet, anil and protomaml; {self.algorithm} adapts the backbone per "
                "task, so its quantisation formats would change with every task (train it without `qat_bits`: "
                "its hardware adapts the head only, quantised after training).",
                ("qat_bits",),
            )
        if self.init is not None and not self.qat_bits:
            raise UserError(
                "`init` starts QAT from a trained checkpoint, so it needs `qat_bits`.", ("init", "qat_bits")
            )
        if self.backbone_from is not None and self.init is not None:
            raise UserError(
                "`backbone_from` starts meta-training from a trained embedding and `init` starts QAT from a "
                "trained learner: give one of them.",
                ("backbone_from", "init"),
            )
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(
                f"`device` {self.device} was given but no CUDA device is available; use `device` cpu.", ("device",)
            )
        if self.backbone_from is not None:  # a wrong checkpoint is found now, not after loading the data
            pretrained_backbone(self.backbone_from, self.backbone())
        if self.init is None:
            try:  # unknown hyper-parameters are found now, not by the training loop
                build_learner(self.algorithm, self.backbone(), self.hparams)
            except ValueError as exc:
                raise UserError(f"`hparams`: {exc}.", ("hparams",)) from None

    def backbone(self) -> BackboneConfig:
        """The Conv-4 shape that training builds."""
        return BackboneConfig(width=self.width, depth=self.depth, batchnorm=self.batchnorm)

    @property
    def tasks_per_step(self) -> int:
        """Meta-batch size actually used."""
        return self.meta_batch or DEFAULT_META_BATCH.get(self.algorithm, 4)


def _to_device(episode, device: str) -> tuple[torch.Tensor, ...]:  # noqa: ANN001 - Episode
    return tuple(
        torch.from_numpy(a).to(device) for a in (episode.support_x, episode.support_y, episode.query_x, episode.query_y)
    )


def _meta_train(
    learner: MetaLearner,
    sampler: EpisodeSampler,
    cfg: TrainConfig,
    episodes: int,
    lr: float,
    label: str,
    progress: bool,
) -> tuple[float, int]:
    """Outer loop: Adam with a cosine-annealed rate over `episodes` tasks; returns (seconds, tasks)."""
    optimizer = torch.optim.Adam(learner.parameters(), lr=lr)
    steps = math.ceil(episodes / cfg.tasks_per_step)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    observe = getattr(learner.backbone, "observe", None)
    generator = torch.Generator().manual_seed(cfg.seed)

    def task() -> tuple[torch.Tensor, ...]:
        sx, sy, qx, qy = _to_device(sampler.sample(), cfg.device)
        if cfg.augment:
            sx, qx = (random_affine(x, generator) for x in (sx, qx))
        return sx, sy, qx, qy

    learner.train()
    start = time.perf_counter()
    recent: list[tuple[float, float]] = []
    with StatusTracker(steps, label, progress) as bar:
        for _ in range(steps):
            tasks = [task() for _ in range(cfg.tasks_per_step)]
            if observe is not None:
                observe(torch.cat([t for task in tasks for t in (task[0], task[2])]))
            with batch_statistics(learner):
                recent.append(learner.meta_step(tasks, cfg.ways, optimizer))
            schedule.step()
            recent = recent[-50:]
            loss, acc = np.mean(recent, axis=0)
            bar.advance(status=f"loss {loss:.3f} acc {100 * acc:.1f}%")
    return time.perf_counter() - start, steps * cfg.tasks_per_step


def pretrained_backbone(checkpoint: str, backbone: BackboneConfig) -> dict[str, torch.Tensor]:
    """The embedding weights of `checkpoint` (a path or zoo:NAME), for a learner of shape `backbone`.

    Meta-training from a trained embedding rather than from random weights is what
    Meta-Baseline (Chen et al. 2021) and Meta-Dataset's Proto-MAML (Triantafillou et al. 2020)
    do; here any learner can start from any float checkpoint of the same Conv-4 shape.
    """
    learner = load_checkpoint(checkpoint).learner
    source = learner.backbone_config
    if source.qat_bits:
        raise UserError(
            f"`backbone_from` {checkpoint} was fine-tuned for {source.qat_bits}-bit QAT (BatchNorm folded); give a "
            "float checkpoint.",
            ("backbone_from",),
        )
    if source != backbone:
        raise UserError(
            f"`backbone_from` {checkpoint} has a Conv-4 of width {source.width}, depth {source.depth}"
            f"{'' if source.batchnorm else ' without BatchNorm'}; train with that shape (got width {backbone.width}, "
            f"depth {backbone.depth}{'' if backbone.batchnorm else ' without BatchNorm'}).",
            ("backbone_from",),
        )
    return learner.backbone.state_dict()


def train(cfg: TrainConfig, data: OmniglotImages, progress: bool = True) -> Checkpoint:
    """Meta-train a learner on the meta-train alphabets (x4 rotations) and return its checkpoint.

    After the float phase the BatchNorm running statistics are calibrated on training images.
    With `qat_bits`, BatchNorm is then folded into the convolutions and the learner is
    fine-tuned for `qat_episodes` with fake quantisation (`models/qat.py`). Finally it is
    validated on the meta-val alphabets; validation accuracy and training throughput go into
    the checkpoint's metrics.
    """
    cfg.validate()
    torch.manual_seed(cfg.seed)
    train_split = data.split("train", rotations=True)
    sampler = EpisodeSampler(train_split, cfg.ways, cfg.shots, cfg.queries, seed=cfg.seed)
    seconds, tasks = 0.0, 0
    if cfg.init is not None:
        learner = load_checkpoint(cfg.init).learner.to(cfg.device)
    else:
        learner = build_learner(cfg.algorithm, cfg.backbone(), cfg.hparams).to(cfg.device)
        if cfg.backbone_from is not None:
            learner.backbone.load_state_dict(pretrained_backbone(cfg.backbone_from, cfg.backbone()))
        seconds, tasks = _meta_train(
            learner, sampler, cfg, cfg.episodes, cfg.lr, f"train {cfg.algorithm} {cfg.ways}w{cfg.shots}s", progress
        )
        rng = np.random.default_rng(cfg.seed)
        flat = train_split.images.reshape(-1, 1, 28, 28)

        def batch() -> torch.Tensor:
            idx = rng.choice(len(flat), 256, replace=False)
            return torch.from_numpy(flat[idx]).to(cfg.device, torch.float32) / 255.0

        calibrate_batchnorm(learner.backbone, batch, cfg.calibration_batches)
    if cfg.qat_bits:
        learner = quantized_learner(learner.cpu(), cfg.qat_bits).to(cfg.device)
        qat_seconds, qat_tasks = _meta_train(
            learner,
            sampler,
            cfg,
            cfg.qat_episodes or cfg.episodes,
            cfg.lr * 0.1,
            f"QAT {cfg.qat_bits}-bit {cfg.algorithm}",
            progress,
        )
        seconds, tasks = seconds + qat_seconds, tasks + qat_tasks
    learner.eval()
    val_ways = min(cfg.ways, 20)
    val = evaluate(
        learner, data.split("val"), val_ways, cfg.shots, 15, cfg.val_episodes, seed=cfg.seed + 1, progress=progress
    )
    metrics = {
        "train_seconds": seconds,
        "train_episodes_per_second": tasks / seconds if seconds else None,
        "val": {"ways": val_ways, "shots": cfg.shots, **val.to_dict()},
    }
    return Checkpoint(learner.cpu(), train_args=asdict(cfg), metrics=metrics)
