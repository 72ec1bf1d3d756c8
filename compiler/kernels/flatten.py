"""Flatten: [B, d1, d2, ...] -> [B, d1*d2*...]; values and format unchanged.

In C order (torch's flatten(1)) by default; with `channels_last` a [B,C,H,W] map is flattened
as [B,H,W,C] (feature (y*W + x)*C + c), the order in which the accelerator's channel-tiled
activation memory holds it, so its P-lane words land on P consecutive features. The
compiler uses it for maps larger than 1x1 and permutes the columns of whatever reads the
features (a projection's weights, a learned head initialisation) to match; every head's
distance or dot product is the same sum in another order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.datapath import Needs, passthrough_needs
from metahw.compiler.onnx_attributes import accepts

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


@dataclass(frozen=True, kw_only=True)
class Flatten(Kernel):
    """Reshape keeping the first axis."""

    op = "Flatten"
    segment = True
    reads_fields = ("input",)
    writes_fields = ("output",)

    input: str
    output: str
    channels_last: bool = False

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """[B, ...] -> [B, prod(...)], same format."""
        x = buffers[self.input]
        if len(x.shape) < 2 or x.channel_fracs is not None:
            raise self.error(f"needs at least 2 axes and one format, got {x.shape}")
        if self.channels_last and len(x.shape) != 4:
            raise self.error(f"channels_last flattens a [B,C,H,W] map, got {x.shape}")
        return {self.output: OutputSpec((x.shape[0], int(np.prod(x.shape[1:]))), x.qformat)}

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """No arithmetic: 0."""
        return 0

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """The PPU moves (or compares) input values."""
        return passthrough_needs(self.input, buffers[self.input].qformat)

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Per group of G images, a VECTOR copy from AMEM into the support memory or query buffer, image by image."""
        return timing.segment_vector(buffers[self.input].shape, hw, slots=hw.groups)

    def execute(self, env: Env) -> None:
        """Row-major reshape (of the [B,H,W,C] transpose for `channels_last`)."""
        env.write(self.output, flatten(env.read(self.input), self.channels_last))


def flatten(x: np.ndarray, channels_last: bool) -> np.ndarray:
    """[B, ...] -> [B, prod(...)], in C order or, for `channels_last`, in [B,H,W,C] order."""
    if channels_last:
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x).reshape(x.shape[0], -1)


def channels_last_order(channels: int, height: int, width: int) -> np.ndarray:
    """perm with flatten(x, True)[:, i] == flatten(x, False)[:, perm[i]]: permutes a C-order feature axis."""
    return np.arange(channels * height * width).reshape(channels, height, width).transpose(1, 2, 0).reshape(-1)


# ---- from ONNX: the embedding's one Flatten (a flattening Reshape is one: passes.py) -------------------
accepts("Flatten", {"axis": (lambda v: v == 1, "1")})
accepts("Reshape", {"allowzero": (lambda v: v == 0, "0")})
