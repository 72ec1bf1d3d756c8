"""Pooling: 2x2 stride-2 max or average (floor mode, as torch.nn.MaxPool2d(2) / AvgPool2d(2)), global average.

- `MaxPool2d`: out[b,c,y,x] = max(in[b,c,2y+i,2x+j] for i, j in {0,1}); an odd last row/column
  is dropped (3x3 -> 1x1). Integers are only compared: the format is unchanged, nothing overflows.
- `AvgPool2d`: the window *sum*, read at two more fractional bits (the exact division by 4),
  requantised once to the output format.
- `GlobalAvgPool`: [B,C,H,W] -> [B,C,1,1], the sum of the H*W values times the integer `scale`,
  read at `frac + shift` bits and requantised once: scale * 2^-shift is 1/(H*W) exactly when H*W
  is a power of two (scale 1), else `global_average_scale`'s 16-bit reciprocal.
All three also fuse into Conv2d (max and average 2x2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from metahw.compiler.embedding_ops import Layer, LayerContext, layer_from
from metahw.compiler.ir import Node
from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.datapath import ACCUMULATOR, Needs, passthrough_needs, signed_bits
from metahw.compiler.onnx_attributes import accepts, any_value, ints, not_set

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer

POOL_MODES = ("max", "avg")
#: fractional bits a 2x2 average adds to its window sum (the division by 4)
POOL_SHIFT = 2
#: significant bits of a global average's reciprocal when H*W is not a power of two
RECIPROCAL_BITS = 16


def pooled_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """[B,C,H,W] -> [B,C,H//2,W//2]."""
    b, c, h, w = shape
    return (b, c, h // 2, w // 2)


def pool2x2(x: np.ndarray, mode: str = "max") -> np.ndarray:
    """2x2 stride-2 max (or sum, for 'avg') over the last two axes, floor mode."""
    b, c, h, w = x.shape
    windows = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(b, c, h // 2, 2, w // 2, 2)
    return windows.max(axis=(3, 5)) if mode == "max" else windows.sum(axis=(3, 5))


def global_average_scale(positions: int) -> tuple[int, int]:
    """(scale, shift): scale * 2^-shift = 1/positions exactly for a power of two, else a 16-bit reciprocal."""
    if positions & (positions - 1) == 0:
        return 1, positions.bit_length() - 1
    shift = RECIPROCAL_BITS - 1 + math.ceil(math.log2(positions))
    return int(round((1 << shift) / positions)), shift


def _window_sum_needs(name: str, x: Buffer, terms: int, scale: int) -> Needs:
    """A running sum of `terms` values of `x`, times `scale`, in the PPU."""
    lo, hi = terms * x.qformat.min_int * scale, terms * x.qformat.max_int * scale
    yield f"the window sum of '{name}'", ACCUMULATOR, signed_bits(lo, hi)


def _check_map(op: Kernel, x: Buffer, smallest: int) -> None:
    if len(x.shape) != 4 or x.shape[2] < smallest or x.shape[3] < smallest or x.channel_fracs is not None:
        raise op.error(f"input must be [B,C,H,W] with H, W >= {smallest} and one format, got {x.shape}")


@dataclass(frozen=True, kw_only=True)
class _Pool2x2(Kernel):
    """What the standalone 2x2 pools share: [B,C,H,W] -> [B,C,H//2,W//2], no multiplies, 4 VECTOR beats per output."""

    reads_fields = ("input",)
    writes_fields = ("output",)
    #: the output keeps the input's format (max: values are only compared), else the program chooses it
    keeps_format: ClassVar[bool]

    input: str
    output: str

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """Needs a 4-d input of at least 2x2 with a per-tensor format (max keeps it; average: the program's)."""
        x = buffers[self.input]
        _check_map(self, x, 2)
        return {self.output: OutputSpec(pooled_shape(x.shape), x.qformat if self.keeps_format else None)}

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """No multiplies: 0."""
        return 0

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Per group of G images, VECTOR: 4 beats per (channel block of L, output pixel)."""
        b, c, h, w = buffers[self.input].shape
        beats = 4 * timing.ceil_div(c, timing.group_lanes(hw)) * (h // 2) * (w // 2)
        return timing.segment_groups(b, hw) * timing.instruction(timing.VECTOR, beats, hw)


@dataclass(frozen=True, kw_only=True)
class MaxPool2d(_Pool2x2):
    """Standalone 2x2 max-pool [B,C,H,W] -> [B,C,H//2,W//2], same format."""

    op = "MaxPool2d"
    segment = True
    keeps_format = True

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """The PPU's running max holds input values."""
        return passthrough_needs(self.input, buffers[self.input].qformat)

    def execute(self, env: Env) -> None:
        """Window maximum."""
        env.write(self.output, pool2x2(env.read(self.input)))


@dataclass(frozen=True, kw_only=True)
class AvgPool2d(_Pool2x2):
    """Standalone 2x2 average pool [B,C,H,W] -> [B,C,H//2,W//2], requantised to the output format."""

    op = "AvgPool2d"
    segment = True
    keeps_format = False

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """The sum of a 2x2 window."""
        return _window_sum_needs(self.input, buffers[self.input], 4, 1)

    def execute(self, env: Env) -> None:
        """Window sum at frac + 2, requantised."""
        src = env.fmt(self.input).frac + POOL_SHIFT
        total = pool2x2(env.read(self.input), "avg")
        env.write(self.output, env.requant(total, src, env.fmt(self.output), self.output))


@dataclass(frozen=True, kw_only=True)
class GlobalAvgPool(Kernel):
    """Global average [B,C,H,W] -> [B,C,1,1]: sum times `scale` at `shift` more fractional bits, requantised."""

    op = "GlobalAvgPool"
    segment = True
    reads_fields = ("input",)
    writes_fields = ("output",)

    input: str
    output: str
    scale: int
    shift: int

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """[B,C,H,W] -> [B,C,1,1]; scale/shift must be `global_average_scale(H*W)`."""
        x = buffers[self.input]
        _check_map(self, x, 1)
        if (self.scale, self.shift) != global_average_scale(x.shape[2] * x.shape[3]):
            raise self.error(f"scale/shift must be {global_average_scale(x.shape[2] * x.shape[3])} for {x.shape[2:]}")
        return {self.output: OutputSpec((*x.shape[:2], 1, 1))}

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """One multiply per channel and image by the reciprocal (none for a power of two): counted as 0."""
        return 0

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Per group of G images, VECTOR: one beat per (channel block of L, input pixel)."""
        b, c, h, w = buffers[self.input].shape
        beats = timing.ceil_div(c, timing.group_lanes(hw)) * h * w
        return timing.segment_groups(b, hw) * timing.instruction(timing.VECTOR, beats, hw)

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """The sum over the map, times the reciprocal of its size."""
        x = buffers[self.input]
        return _window_sum_needs(self.input, x, x.shape[2] * x.shape[3], self.scale)

    def execute(self, env: Env) -> None:
        """Sum over H, W, times scale, requantised from frac + shift."""
        total = env.read(self.input).sum(axis=(2, 3), keepdims=True) * self.scale
        src = env.fmt(self.input).frac + self.shift
        env.write(self.output, env.requant(total, src, env.fmt(self.output), self.output))


# ---- from ONNX: 2x2 pools and the global average ----------------------------------------------------
_POOL = {
    "kernel_shape": (ints([2, 2]), "[2, 2]"),
    "strides": (ints([2, 2]), "[2, 2]"),
    "pads": (ints([0, 0, 0, 0]), "[0, 0, 0, 0]"),
    "ceil_mode": (lambda v: v == 0, "0 (floor, as PyTorch)"),
    "auto_pad": (not_set, "NOTSET"),
}
accepts("MaxPool", {**_POOL, "dilations": (ints([1, 1]), "[1, 1]"), "storage_order": (lambda v: v == 0, "0")})
accepts("AveragePool", {**_POOL, "count_include_pad": (any_value, "0 or 1 (no padding)")})
accepts("GlobalAveragePool", {})


@layer_from("MaxPool", "MaxPool 2x2")
def max_pool_layer(ctx: LayerContext, node: Node) -> Layer:
    """The maximum keeps its input's format."""
    x = node.inputs[0]
    return Layer(node, MaxPool2d, (x,), node.outputs[0], ctx.formats[x])


@layer_from("AveragePool", "AveragePool 2x2")
def average_pool_layer(ctx: LayerContext, node: Node) -> Layer:
    """The average requantises to its calibrated range, signed like its input."""
    x, out = node.inputs[0], node.outputs[0]
    return Layer(node, AvgPool2d, (x,), out, ctx.choose(out, ctx.formats[x].signed))


@layer_from("GlobalAveragePool", "GlobalAveragePool")
def global_average_layer(ctx: LayerContext, node: Node) -> Layer:
    """The sum of the H x W positions times a reciprocal constant (`global_average_scale`)."""
    x, out = node.inputs[0], node.outputs[0]
    _, _, h, w = ctx.shape(x)
    scale, shift = global_average_scale(h * w)
    fields = {"scale": scale, "shift": shift}
    return Layer(node, GlobalAvgPool, (x,), out, ctx.choose(out, ctx.formats[x].signed), fields=fields)
