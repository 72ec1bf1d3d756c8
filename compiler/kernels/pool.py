"""MaxPool2d: 2x2 window, stride 2, floor mode (as torch.nn.MaxPool2d(2)); also fused into Conv2d.

out[b,c,y,x] = max(in[b,c,2y+i,2x+j] for i, j in {0,1}); an odd last row/column is dropped
(3x3 -> 1x1). Integers are only compared, so the format is unchanged and nothing overflows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


def pooled_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """[B,C,H,W] -> [B,C,H//2,W//2]."""
    b, c, h, w = shape
    return (b, c, h // 2, w // 2)


def maxpool2x2(x: np.ndarray) -> np.ndarray:
    """2x2 stride-2 max over the last two axes, floor mode."""
    b, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


@dataclass(frozen=True, kw_only=True)
class MaxPool2d(Kernel):
    """Standalone 2x2 max-pool [B,C,H,W] -> [B,C,H//2,W//2], same format."""

    op = "MaxPool2d"
    reads_fields = ("input",)
    writes_fields = ("output",)

    input: str
    output: str

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """Needs a 4-d input of at least 2x2 with a per-tensor format; output keeps the format."""
        x = buffers[self.input]
        if len(x.shape) != 4 or x.shape[2] < 2 or x.shape[3] < 2 or x.channel_fracs is not None:
            raise self.error(f"input must be [B,C,H,W] with H, W >= 2 and one format, got {x.shape}")
        return {self.output: OutputSpec(pooled_shape(x.shape), x.qformat)}

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """No multiplies: 0."""
        return 0

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Per group of G images, VECTOR: 4 beats per (channel block of L, output pixel)."""
        b, c, h, w = buffers[self.input].shape
        beats = 4 * timing.ceil_div(c, timing.group_lanes(hw)) * (h // 2) * (w // 2)
        return timing.segment_groups(b, hw) * timing.instruction(timing.VECTOR, beats, hw)

    def execute(self, env: Env) -> None:
        """Window maximum."""
        env.write(self.output, maxpool2x2(env.read(self.input)))
