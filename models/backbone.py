"""The Conv-4 backbone family: [3x3 conv, BatchNorm, ReLU, 2x2 max-pool] x depth.

BatchNorm keeps running statistics so that it can be folded into the convolutions for
hardware. During meta-training the learners use *batch* statistics without touching the
running buffers (`batch_statistics(model)`); after training, `calibrate_batchnorm` sets the
running statistics from training images once, so evaluation, export and hardware all use
the same fixed, non-transductive normalisation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BackboneConfig:
    """Conv-4 shape: channel width, number of blocks, BatchNorm or not, input channels.

    `qat_bits` set means a BN-free network trained with fake quantisation (`models/qat.py`).
    """

    width: int = 64
    depth: int = 4
    batchnorm: bool = True
    in_channels: int = 1
    qat_bits: int | None = None

    def to_dict(self) -> dict:
        """Plain dict for checkpoints."""
        return asdict(self)

    def embedding_dim(self, image_size: int = 28) -> int:
        """Length of the flattened feature vector for square inputs of `image_size`."""
        side = image_size
        for _ in range(self.depth):
            side //= 2
        return self.width * side * side


class ConvBlock(nn.Sequential):
    """3x3 conv (padding 1) -> BatchNorm (optional) -> ReLU -> 2x2 max-pool."""

    def __init__(self, cin: int, cout: int, batchnorm: bool) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(cout))
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
        super().__init__(*layers)


class Conv4(nn.Module):
    """Conv-4 embedding network: images [B, C, H, W] -> features [B, embedding_dim]."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        if config.width < 1 or config.depth < 1:
            raise ValueError("Conv-4 width and depth must be positive")
        self.config = config
        chans = [config.in_channels] + [config.width] * config.depth
        self.blocks = nn.Sequential(*(ConvBlock(a, b, config.batchnorm) for a, b in zip(chans, chans[1:])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch of images into flat feature vectors."""
        return self.blocks(x).flatten(1)


def batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    """All BatchNorm2d layers of a model."""
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Normalise with batch statistics and leave running buffers untouched (safe under torch.func)."""
    bns = batchnorms(model)
    saved = [bn.track_running_stats for bn in bns]
    for bn in bns:
        bn.track_running_stats = False
    try:
        yield
    finally:
        for bn, s in zip(bns, saved):
            bn.track_running_stats = s


@contextlib.contextmanager
def transductive_batchnorm(model: nn.Module) -> Iterator[None]:
    """Normalise with the statistics of each batch (train mode, running buffers untouched), then restore."""
    was_training = model.training
    model.train()
    try:
        with batch_statistics(model):
            yield
    finally:
        model.train(was_training)


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches: Callable[[], torch.Tensor], steps: int) -> None:
    """Set BatchNorm running statistics to the exact average over `steps` batches of images."""
    bns = batchnorms(model)
    if not bns:
        return
    was_training = model.training
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average = exact mean over the batches
    model.train()
    for _ in range(steps):
        model(batches())
    for bn in bns:
        bn.momentum = 0.1
    model.train(was_training)
