"""The "bring your own model" route on the command line, as docs/own_model.md shows it, down to Verilator.

A 3-channel 16x16 encoder written in plain PyTorch (LeakyReLU, a 2x2 average, a stride-2 conv,
a residual Add) is exported with torch.onnx.export, then: `metahw export --head protonet`,
`metahw compile --episodes-from eps.npz`, `metahw simulate --episodes-from`, and `metahw
simulate --rtl verilator --episodes-from`: every buffer equal to the golden executor, every
output and the cycle count of the RTL equal to the simulator.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from tests.compiler.own_programs import random_episodes
from tests.models.user_networks import conv_block, export_onnx, trained_batchnorm


class TinyResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_block(3, 8), nn.Conv2d(8, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.AvgPool2d(2))
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.down = nn.Conv2d(8, 6, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.down(torch.relu(x + self.branch(x))).flatten(1)


def test_export_compile_simulate_and_verilator_on_an_npz(cli, tmp_path):
    torch.manual_seed(0)
    encoder = TinyResidual()
    trained_batchnorm(encoder, torch.Generator().manual_seed(0))
    onnx_file = export_onnx(encoder.eval(), (3, 16, 16), tmp_path / "encoder.onnx")
    episodes = random_episodes((3, 16, 16), 3, seed=4)
    npz = tmp_path / "eps.npz"
    np.savez(npz, **{k: np.stack([getattr(e, k) for e in episodes]) for k in ("support_x", "support_y", "query_x")})
    episode, build = tmp_path / "episode.onnx", tmp_path / "build"
    result = cli(
        "export",
        onnx_file,
        "--head",
        "protonet",
        "--ways",
        3,
        "--shots",
        2,
        "-o",
        episode,
        "--check-episodes",
        3,
        "--no-progress",
    )
    assert result.code == 0, result.stderr
    assert cli("compile", episode, "-o", build, "--queries", 3, "--episodes-from", npz).code == 0
    sim = cli("simulate", build, "--lanes", 4, "--episodes-from", npz, "--json", "--no-progress")
    assert sim.code == 0, sim.stderr
    report = json.loads(sim.stdout)
    assert report["golden_matched"] == 3 and report["accuracy"] is None  # no query_y: predictions only
    assert {"Conv2d", "Add", "Flatten"} <= {s["op"] for s in report["steps"]}
    rtl = cli("simulate", build, "--lanes", 4, "--rtl", "verilator", "--episodes-from", npz, "--json", "--no-progress")
    assert rtl.code == 0, rtl.stderr
    check = json.loads(rtl.stdout)
    assert check["matched"] == 3 and check["rtl_cycles"] == check["sim_cycles"]
