"""Episodic meta-training of any learner, then BatchNorm calibration and validation."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from metahw.errors import UserError
from metahw.models.backbone import BackboneConfig, batch_statistics, calibrate_batchnorm
from metahw.models.checkpoint import Checkpoint
from metahw.models.data import OmniglotImages
from metahw.models.episodes import EpisodeSampler
from metahw.models.evaluate import evaluate
from metahw.models.learners import ALGORITHMS, build_learner
from metahw.progress import StatusTracker

#: Tasks per outer step when the user does not choose: one for metric learners (their
#: episodes are already large), four for the gradient-based ones (as in MAML).
DEFAULT_META_BATCH = {"protonet": 1, "matchingnet": 1}


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

    def validate(self) -> None:
        """Raise UserError on arguments no training run could use."""
        if self.algorithm not in ALGORITHMS:
            raise UserError(f"unknown algorithm {self.algorithm!r}: accepted are {', '.join(sorted(ALGORITHMS))}.")
        if self.episodes < 1 or self.width < 1 or self.depth < 1:
            raise UserError("--episodes, --width and --depth must be positive.")
        if 28 >> self.depth == 0:
            raise UserError(f"depth {self.depth} pools a 28x28 image below 1x1; accepted depths are 1..4.")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError("--device cuda was given but no CUDA device is available; use --device cpu.")

    @property
    def tasks_per_step(self) -> int:
        """Meta-batch size actually used."""
        return self.meta_batch or DEFAULT_META_BATCH.get(self.algorithm, 4)


def _to_device(episode, device: str) -> tuple[torch.Tensor, ...]:  # noqa: ANN001 - Episode
    return tuple(
        torch.from_numpy(a).to(device) for a in (episode.support_x, episode.support_y, episode.query_x, episode.query_y)
    )


def train(cfg: TrainConfig, data: OmniglotImages, progress: bool = True) -> Checkpoint:
    """Meta-train a learner on the meta-train alphabets (x4 rotations) and return its checkpoint.

    After the last step the BatchNorm running statistics are calibrated on training images
    and the learner is validated on the meta-val alphabets; both numbers and the training
    throughput go into the checkpoint's metrics.
    """
    cfg.validate()
    torch.manual_seed(cfg.seed)
    train_split = data.split("train", rotations=True)
    sampler = EpisodeSampler(train_split, cfg.ways, cfg.shots, cfg.queries, seed=cfg.seed)
    backbone = BackboneConfig(width=cfg.width, depth=cfg.depth, batchnorm=cfg.batchnorm)
    learner = build_learner(cfg.algorithm, backbone, cfg.hparams).to(cfg.device)
    optimizer = torch.optim.Adam(learner.parameters(), lr=cfg.lr)
    steps = math.ceil(cfg.episodes / cfg.tasks_per_step)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))

    learner.train()
    start = time.perf_counter()
    recent: list[tuple[float, float]] = []
    with StatusTracker(steps, f"train {cfg.algorithm} {cfg.ways}w{cfg.shots}s", progress) as bar:
        for _ in range(steps):
            tasks = [_to_device(sampler.sample(), cfg.device) for _ in range(cfg.tasks_per_step)]
            with batch_statistics(learner):
                recent.append(learner.meta_step(tasks, cfg.ways, optimizer))
            schedule.step()
            recent = recent[-50:]
            loss, acc = np.mean(recent, axis=0)
            bar.advance(status=f"loss {loss:.3f} acc {100 * acc:.1f}%")
    seconds = time.perf_counter() - start

    rng = np.random.default_rng(cfg.seed)
    flat = train_split.images.reshape(-1, 1, 28, 28)

    def batch() -> torch.Tensor:
        idx = rng.choice(len(flat), 256, replace=False)
        return torch.from_numpy(flat[idx]).to(cfg.device, torch.float32) / 255.0

    calibrate_batchnorm(learner.backbone, batch, cfg.calibration_batches)
    learner.eval()
    val = evaluate(
        learner,
        data.split("val"),
        min(cfg.ways, 20),
        cfg.shots,
        15,
        cfg.val_episodes,
        seed=cfg.seed + 1,
        progress=progress,
    )
    metrics = {
        "train_seconds": seconds,
        "train_episodes_per_second": steps * cfg.tasks_per_step / seconds,
        "val": {"ways": min(cfg.ways, 20), "shots": cfg.shots, **val.to_dict()},
    }
    return Checkpoint(learner.cpu(), train_args=asdict(cfg), metrics=metrics)
