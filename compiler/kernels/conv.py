"""Conv2d: convolution with integer weights and optional bias, fused activation and 2x2 pooling.

Semantics (B batch, C/O channels, K kernel size, P symmetric zero padding, S stride):
  acc[b,o,y,x] = (bias[o] << (fa_o - fb_o)) + sum_{c,i,j} w[o,c,i,j] * xpad[b,c,S*y+i,S*x+j]
for y < Ho = (H + 2P - K) // S + 1 (x likewise), with fa_o = f_x + fw_o the accumulator's
fractional bits (fw_o per output channel when the weight buffer has channel_fracs). The
accumulator is exact (width from `accumulator_format`). Then, in this order: the activation
(ReLU, or LeakyReLU with a fixed-point slope: `activation.py`), the 2x2 stride-2 pool in floor
mode (`pool`: max, or the window *sum* for `pool_mode` "avg", whose division by 4 is two more
fractional bits), and one requantisation to the output format. ReLU, LeakyReLU and pooling
commute with the monotone requantisation, so the order changes only what the saturation count
counts: output elements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from metahw.compiler.embedding_ops import Layer, LayerContext, layer_from, quantise_bias, quantise_weight, refuse
from metahw.compiler.ir import Node
from metahw.compiler.kernels import timing, winograd
from metahw.compiler.kernels.activation import activate, leaky_fields
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.datapath import ACCUMULATOR, Needs, format_bits
from metahw.compiler.kernels.mac import channel_accumulators, mac_needs
from metahw.compiler.kernels.pool import POOL_MODES, POOL_SHIFT, pool2x2, pooled_shape
from metahw.compiler.onnx_attributes import accepts, any_value, ints, not_set, pair, symmetric_pads
from metahw.qformat import QFormat

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


def conv_output_size(extent: int, kernel: int, padding: int, stride: int) -> int:
    """Output rows (or columns) of a convolution: (extent + 2 padding - kernel) // stride + 1."""
    return (extent + 2 * padding - kernel) // stride + 1


def kernel_span(extent: int, kernel: int, padding: int, stride: int, y: int) -> tuple[int, int]:
    """(first tap, taps) of output row (or column) y inside the input: 0 <= stride * y + i - padding < extent.

    The conv engine skips the taps that fall into the zero padding, so these are the ones it walks.
    """
    start = stride * y - padding
    first, last = max(0, -start), min(kernel - 1, extent - 1 - start)
    return first, max(0, last - first + 1)


def valid_taps(extent: int, kernel: int, padding: int, stride: int, positions: int) -> int:
    """Kernel taps inside the input, summed over the first `positions` output rows (or columns)."""
    return sum(kernel_span(extent, kernel, padding, stride, y)[1] for y in range(positions))


def conv_tile_beats(
    channels: int, height: int, width: int, kernel: int, padding: int, stride: int, rows: int, cols: int
) -> int:
    """Beats of one channel tile for one image: C x the taps inside the input over `rows` x `cols` positions.

    The taps of a position form a rectangle (its rows times its columns inside the input), so
    the sum over the positions' grid is the product of the rows' and the columns' sums.
    """
    taps = valid_taps(height, kernel, padding, stride, rows) * valid_taps(width, kernel, padding, stride, cols)
    return channels * taps


def conv_windows(x: np.ndarray, kernel: int, padding: int, stride: int) -> np.ndarray:
    """The [B, C, Ho, Wo, K, K] input windows of every output position (a strided view of the padded input)."""
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(xpad, (kernel, kernel), axis=(2, 3))
    return windows[:, :, ::stride, ::stride]


@dataclass(frozen=True, kw_only=True)
class Conv2d(Kernel):
    """K x K convolution, stride 1 or 2, zero padding < K: [B,C,H,W] -> [B,O,Ho,Wo] (halved by `pool`), NCHW."""

    op = "Conv2d"
    segment = True
    reads_fields = ("input", "weight", "bias")
    writes_fields = ("output",)

    input: str
    weight: str
    bias: str | None = None
    output: str
    padding: int = 1
    stride: int = 1
    relu: bool = False
    #: LeakyReLU slope as an integer with `leaky_frac` fractional bits (None: no LeakyReLU)
    leaky_slope: int | None = None
    leaky_frac: int = 0
    pool: bool = False
    pool_mode: str = "max"

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """Shapes: x [B,C,H,W], w [O,C,K,K], bias [O]; checks padding, stride, activation and the accumulator."""
        x, w = buffers[self.input], buffers[self.weight]
        if len(x.shape) != 4 or len(w.shape) != 4:
            raise self.error(f"input must be [B,C,H,W] and weight [O,C,K,K], got {x.shape} and {w.shape}")
        b, c, h, wd = x.shape
        o, wc, kh, kw = w.shape
        if wc != c or kh != kw:
            raise self.error(f"weight {w.shape} does not fit input {x.shape}")
        if not 0 <= self.padding < kh or self.stride not in (1, 2):
            raise self.error(f"needs 0 <= padding < K = {kh} and stride 1 or 2, got {self.padding}, {self.stride}")
        if self.relu and self.leaky_slope is not None:
            raise self.error("has both ReLU and LeakyReLU")
        if self.leaky_slope is not None and not (0 < self.leaky_slope < 1 << self.leaky_frac):
            raise self.error(f"LeakyReLU slope {self.leaky_slope} * 2^-{self.leaky_frac} is not in (0, 1)")
        if self.pool_mode not in POOL_MODES:
            raise self.error(f"pool_mode must be one of {', '.join(POOL_MODES)}, got {self.pool_mode!r}")
        if x.channel_fracs is not None:
            raise self.error("the input needs a per-tensor format")
        if self.bias is not None and buffers[self.bias].shape != (o,):
            raise self.error(f"bias must have shape ({o},), got {buffers[self.bias].shape}")
        ho, wo = self.conv_shape(buffers)
        if ho < 1 or wo < 1:
            raise self.error(f"a {kh}x{kh} kernel with padding {self.padding} does not fit a {h}x{wd} input")
        if self.pool and (ho < 2 or wo < 2):
            raise self.error(f"a fused 2x2 pool needs a conv output of at least 2x2, got {ho}x{wo}")
        self.accumulators(buffers)
        shape = (b, o, ho, wo)
        return {self.output: OutputSpec(pooled_shape(shape) if self.pool else shape)}

    def conv_shape(self, buffers: Mapping[str, Buffer]) -> tuple[int, int]:
        """(Ho, Wo): rows and columns of the convolution's output, before pooling."""
        _, _, h, wd = buffers[self.input].shape
        k = buffers[self.weight].shape[-1]
        return conv_output_size(h, k, self.padding, self.stride), conv_output_size(wd, k, self.padding, self.stride)

    def post_frac(self) -> int:
        """Fractional bits the activation and pooling add to the accumulator's (LeakyReLU slope, 2x2 average)."""
        leaky = self.leaky_frac if self.leaky_slope is not None else 0
        return leaky + (POOL_SHIFT if self.pool and self.pool_mode == "avg" else 0)

    def accumulators(self, buffers: Mapping[str, Buffer]) -> list[QFormat]:
        """Exact accumulator format of each output channel (raises UserError if wider than int64 allows)."""
        x, w = buffers[self.input], buffers[self.weight]
        fan_in = int(np.prod(w.shape[1:]))
        bias = buffers[self.bias] if self.bias is not None else None
        return channel_accumulators(self, x.qformat, w, bias, fan_in)

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """The MAC's operands and accumulator; with LeakyReLU or a 2x2 average, the activated, pooled sum too."""
        yield from mac_needs(self, buffers)
        if self.post_frac():  # LeakyReLU's scaled values, then a 2x2 average's sum of 4
            acc = max(format_bits(f) for f in self.accumulators(buffers))
            leaky = self.leaky_frac if self.leaky_slope is not None else 0
            window = 4 if self.pool and self.pool_mode == "avg" else 1
            what = f"the activated, pooled accumulator of '{self.output}'"
            yield what, ACCUMULATOR, acc + leaky + window.bit_length() - 1

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """B * O * Ho * Wo * C * K * K (before pooling)."""
        ho, wo = self.conv_shape(buffers)
        return buffers[self.input].shape[0] * ho * wo * int(np.prod(buffers[self.weight].shape))

    def computed_shape(self, buffers: Mapping[str, Buffer]) -> tuple[int, int]:
        """Conv rows and columns computed: a floor-mode fused pool drops the last odd row and column."""
        ho, wo = self.conv_shape(buffers)
        return (ho // 2 * 2, wo // 2 * 2) if self.pool else (ho, wo)

    def positions(self, buffers: Mapping[str, Buffer]) -> int:
        """Conv positions per image: 4 * (Ho//2) * (Wo//2) under the fused pool (it drops odd ones), else Ho * Wo."""
        rows, cols = self.computed_shape(buffers)
        return rows * cols

    def tile_beats(self, buffers: Mapping[str, Buffer]) -> int:
        """Beats of one channel tile for one image: C x the kernel taps inside the input (`conv_tile_beats`)."""
        _, c, h, wd = buffers[self.input].shape
        k = buffers[self.weight].shape[-1]
        return conv_tile_beats(c, h, wd, k, self.padding, self.stride, *self.computed_shape(buffers))

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Per group of G images, OUTER over ⌈O/L⌉ channel tiles x the taps inside the input (`tile_beats`).

        With `hw.winograd`, a WINO instruction instead: the first patch's fill, then ⌈O/L⌉ channel
        tiles x 16 beats per input channel and pool window (`winograd.window_beats`).
        """
        b = buffers[self.input].shape[0]
        tiles = timing.ceil_div(buffers[self.weight].shape[0], timing.group_lanes(hw))
        if hw.winograd:
            beats = winograd.instruction_beats(tiles, winograd.window_beats(self, buffers))
            return timing.segment_groups(b, hw) * timing.instruction(timing.WINO, beats, hw)
        beats = tiles * self.tile_beats(buffers)
        return timing.segment_groups(b, hw) * timing.instruction(timing.OUTER, beats, hw)

    def execute(self, env: Env) -> None:
        """acc (exact) -> activation -> 2x2 pool -> requantise to the output format."""
        x, w = env.read(self.input), env.read(self.weight)
        k = w.shape[-1]
        windows = conv_windows(x, k, self.padding, self.stride)  # [B,C,Ho,Wo,K,K]
        b, c, ho, wo = windows.shape[:4]
        cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, c * k * k)
        acc = cols @ w.reshape(w.shape[0], -1).T  # [B*Ho*Wo, O], exact int64
        acc = acc.reshape(b, ho, wo, -1).transpose(0, 3, 1, 2)
        acc_frac = env.fmt(self.input).frac + env.fracs(self.weight)  # [O]
        if self.bias is not None:
            acc = acc + env.shift(env.read(self.bias), env.fracs(self.bias) - acc_frac)[None, :, None, None]
        acc, _ = activate(acc, self.relu, self.leaky_slope, self.leaky_frac)
        if self.pool:
            acc = pool2x2(acc, self.pool_mode)
        src = acc_frac + self.post_frac()
        env.write(self.output, env.requant(acc, src[None, :, None, None], env.fmt(self.output), self.output))


# ---- from ONNX: Conv [BatchNormalization] [Relu | LeakyRelu] [2x2 pool], fused by passes.py -------------
accepts(
    "Conv",
    {
        "kernel_shape": (lambda v: len(v) == 2 and v[0] == v[1], "a square kernel [K, K]"),
        "pads": (symmetric_pads, "symmetric zero padding [p, p, p, p] with p < K"),
        "strides": (pair((1, 2)), "[1, 1] or [2, 2]"),
        "dilations": (ints([1, 1]), "[1, 1]"),
        "group": (lambda v: v == 1, "1"),
        "auto_pad": (not_set, "NOTSET"),
    },
)
accepts(
    "BatchNormalization",
    {
        "epsilon": (lambda v: v > 0, "> 0"),
        "momentum": (any_value, "any (inference)"),
        "training_mode": (lambda v: v == 0, "0 (inference)"),
    },
)


@layer_from("metahw.ConvBlock", "Conv [BatchNormalization] [Relu|LeakyRelu] [MaxPool|AveragePool 2x2]")
def conv_block_layer(ctx: LayerContext, block: Node) -> Layer:
    """Quantise one conv block's weights (symmetric range rule) and choose its output format."""
    b, attrs = ctx.b, block.attrs
    weight = np.asarray(ctx.graph.constants[block.inputs[1]], np.float64)
    k = weight.shape[-1]
    pad = attrs["pads"][0]
    if pad >= k:
        raise refuse(block, f"a {k}x{k} convolution with padding {pad} (metahw pads less than the kernel size)")
    bias = np.asarray(ctx.graph.constants[block.inputs[2]], np.float64) if len(block.inputs) > 2 else None
    w_name = f"{block.name}.weight"
    fracs = quantise_weight(b, w_name, weight, b.config.weight_width)
    b_name = None
    if bias is not None:
        b_name = f"{block.name}.bias"
        quantise_bias(b, b_name, bias, ctx.formats[block.inputs[0]].frac, fracs)
    out_key = block.outputs[0]
    signed = False if attrs["relu"] else None
    fields = {
        "padding": pad,
        "stride": attrs["strides"][0],
        "relu": bool(attrs["relu"]),
        **leaky_fields(attrs.get("leaky_alpha")),
        "pool": attrs["pool"] == 2,
        "pool_mode": attrs["pool_mode"],
    }
    return Layer(block, Conv2d, block.inputs[:1], out_key, ctx.choose(out_key, signed), w_name, b_name, fields)
