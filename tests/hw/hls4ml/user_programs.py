"""Programs compiled from plain PyTorch embeddings (export, import, calibrate, lower) for the hls4ml tests.

`mixed32` (3x32x32) holds most embedding ops a user's network brings in one small design: a
stride-2 unpadded bias-free conv with LeakyReLU, a conv block with BatchNorm, LeakyReLU and a
fused 2x2 average pool, a residual block (Add with ReLU), a standalone 2x2 average pool, a
global average over 3x3 (not a power of two: metahw's layer) and a Linear projection.
`strided` (1x28x28) is a no-BatchNorm net of stride-2 padded convs with ReLU, flattened
channels last (a 3x3 map), under an ANIL head (an SGD step with its softmax).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from metahw.compiler.calibrate import calibrate
from metahw.compiler.lower import lower
from metahw.compiler.onnx_import import import_model
from metahw.compiler.passes import standard_pipeline
from metahw.compiler.program import Program
from metahw.compiler.quant_config import QuantConfig
from metahw.models.embedding_export import export_embedding_episode

WAYS, SHOTS, QUERIES = 3, 2, 3


class Mixed32(nn.Module):
    """3x32x32 -> 15x15 (s2, p0, LeakyReLU) -> 7x7 (BN, LeakyReLU, avg) -> residual -> 3x3 (avg) -> GAP -> Linear."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, stride=2, padding=0, bias=False)
        self.conv = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.LeakyReLU(0.1))
        self.res_a, self.res_b = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)
        self.project = nn.Linear(width, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.avg_pool2d(self.conv(nn.functional.leaky_relu(self.stem(x), 0.2)), 2)
        x = torch.relu(x + self.res_b(torch.relu(self.res_a(x))))
        x = nn.functional.adaptive_avg_pool2d(nn.functional.avg_pool2d(x, 2), 1)
        return self.project(torch.flatten(x, 1))


class Strided(nn.Module):
    """1x28x28 -> 14x14 -> 7x7 -> 3x3: convs 3x3 stride 2 (pad 1, 1, 0) with bias and ReLU, no BatchNorm."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else width, width, 3, stride=2, padding=1 if i < 2 else 0) for i in range(3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x))
        return torch.flatten(x, 1)


#: name -> (module factory, input shape, head, head options)
NETWORKS = {
    "mixed32": (Mixed32, (3, 32, 32), "protonet", {}),
    "strided": (Strided, (1, 28, 28), "anil", {"inner_steps": 1, "inner_lr": 0.5}),
}


def user_program(name: str, shape: tuple[int, int, int] | None = None, seed: int = 0) -> Program:
    """The 8-bit 3-way 2-shot program of network `name` (fixed seed, trained-looking BatchNorm), images of `shape`."""
    make, default_shape, head, options = NETWORKS[name]
    shape = shape or default_shape
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        module = make()
        for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.1, 0.1)
    module.eval()
    model = export_embedding_episode(module, shape, head=head, ways=WAYS, shots=SHOTS, check_episodes=2, **options)
    rng = np.random.default_rng(seed)
    labels = np.eye(WAYS, dtype=np.float32)[np.repeat(np.arange(WAYS), SHOTS)]
    feeds = [
        {
            "support_x": rng.random((WAYS * SHOTS, *shape), dtype=np.float32),
            "support_y": labels,
            "query_x": rng.random((QUERIES, *shape), dtype=np.float32),
        }
        for _ in range(4)
    ]
    return lower(standard_pipeline(import_model(model)), calibrate(model, feeds), QuantConfig(bits=8), QUERIES)


def user_inputs(program: Program, seed: int) -> dict[str, np.ndarray]:
    """Random pixel integers of the program's format and a shuffled, balanced support labelling."""
    rng = np.random.default_rng(seed)
    buffers = program.buffer_map
    fmt = buffers["support_x"].qformat
    return {
        "support_x": rng.integers(fmt.min_int, fmt.max_int + 1, buffers["support_x"].shape),
        "query_x": rng.integers(fmt.min_int, fmt.max_int + 1, buffers["query_x"].shape),
        "support_labels": rng.permutation(np.repeat(np.arange(WAYS), SHOTS)),
    }
