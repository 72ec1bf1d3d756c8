"""Few-shot embeddings written in plain PyTorch, as a user who trained elsewhere would have them.

None of them uses metahw's backbone class. They are shared by the export tests and by the
compile / simulate / Verilator tests of imported embeddings, so keep them stable: every
network is built from a fixed seed (without touching the global RNG) and its BatchNorm layers
get non-trivial affine parameters and running statistics, as after real training.

`NETWORKS` names each one with its input shape (C, H, W); `build(name)` makes it in eval mode and
`export_onnx` writes it the way a user would (`torch.onnx.export`, dynamic batch axis).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """The Prototypical Networks block: conv 3x3 pad 1, BatchNorm, ReLU, max-pool 2."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))


def protonet_encoder(width: int = 64, channels: int = 1) -> nn.Sequential:
    """Snell et al.'s encoder: 4 conv blocks, then flatten (1x28x28 -> width x 1 x 1 -> [B, width])."""
    return nn.Sequential(*(conv_block(channels if i == 0 else width, width) for i in range(4)), nn.Flatten())


def strided_encoder(width: int = 8) -> nn.Sequential:
    """No BatchNorm, no pooling: 4 conv 3x3 stride 2 pad 1 with bias + ReLU; ends in a feature map [B, w, 2, 2]."""
    layers: list[nn.Module] = []
    for i in range(4):
        layers += [nn.Conv2d(1 if i == 0 else width, width, 3, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


def projection_encoder(width: int = 8, dim: int = 16) -> nn.Sequential:
    """Two conv blocks, flatten, then a Linear projection to `dim` features."""
    return nn.Sequential(conv_block(1, width), conv_block(width, width), nn.Flatten(), nn.Linear(width * 7 * 7, dim))


class ResidualEncoder(nn.Module):
    """A stem block, one residual block (conv-BN-ReLU-conv-BN + skip, Add, ReLU), max-pool, global average pool."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = conv_block(1, width)
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.pool, self.gap = nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return self.gap(self.pool(torch.relu(x + y))).flatten(1)


class ViewEncoder(nn.Module):
    """Four conv blocks flattened with ``x.view(x.size(0), -1)`` (exports Shape/Gather/Unsqueeze/Concat/Reshape)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(conv_block(1 if i == 0 else width, width) for i in range(4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        return x.view(x.size(0), -1)


@dataclass(frozen=True)
class UserNetwork:
    """A named test network: how to make it and the shape (C, H, W) of one input image."""

    make: Callable[[], nn.Module]
    input_shape: tuple[int, int, int]
    seed: int


NETWORKS: dict[str, UserNetwork] = {
    "protonet": UserNetwork(lambda: protonet_encoder(8), (1, 28, 28), 1),
    "protonet64": UserNetwork(lambda: protonet_encoder(64), (1, 28, 28), 2),
    "strided": UserNetwork(lambda: strided_encoder(8), (1, 28, 28), 3),
    "projection": UserNetwork(lambda: projection_encoder(8, 16), (1, 28, 28), 4),
    "rgb32": UserNetwork(lambda: protonet_encoder(8, channels=3), (3, 32, 32), 5),
    "residual": UserNetwork(lambda: ResidualEncoder(8), (1, 28, 28), 6),
    "view": UserNetwork(lambda: ViewEncoder(8), (1, 28, 28), 7),
}


def trained_batchnorm(module: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm2d the kind of affine parameters and running statistics training leaves."""
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            n = bn.num_features
            with torch.no_grad():
                bn.weight.copy_(0.5 + torch.rand(n, generator=generator))
                bn.bias.copy_(0.2 * torch.randn(n, generator=generator))
                bn.running_mean.copy_(0.3 * torch.randn(n, generator=generator))
                bn.running_var.copy_(0.5 + torch.rand(n, generator=generator))


def build(name: str) -> nn.Module:
    """The network `name` of `NETWORKS`, deterministic and in eval mode (the global RNG is left as it was)."""
    return instantiate(NETWORKS[name])


def instantiate(network: UserNetwork) -> nn.Module:
    """Make `network` from its seed with trained-looking BatchNorm, in eval mode (the global RNG untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(network.seed)
        module = network.make()
    trained_batchnorm(module, torch.Generator().manual_seed(network.seed))
    return module.eval()


def export_onnx(
    module: nn.Module, input_shape: tuple[int, ...], path: Path, dynamic: bool = True, fold_batchnorm: bool = True
) -> Path:
    """Write `module` as a user would: torch.onnx.export (TorchScript exporter), batch axis dynamic or fixed at 1.

    The exporter folds eval-mode BatchNorm into the convolutions; `fold_batchnorm=False` keeps
    BatchNormalization nodes (``do_constant_folding=False``).
    """
    axes = {"image": {0: "n"}, "embedding": {0: "n"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(1 if not dynamic else 2, *input_shape),),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=["embedding"],
            dynamic_axes=axes,
            do_constant_folding=fold_batchnorm,
        )
    return path
