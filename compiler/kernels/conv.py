"""Conv2d: stride-1 'same' convolution with integer weights and bias, fused ReLU and 2x2 max-pool.

Semantics (B batch, C/O channels, K odd kernel size, padding P = field, zero padding):
  acc[b,o,y,x] = (bias[o] << (fa_o - fb_o)) + sum_{c,i,j} w[o,c,i,j] * xpad[b,c,y+i,x+j]
with fa_o = f_x + fw_o the accumulator's fractional bits (fw_o per output channel when the
weight buffer has channel_fracs). The accumulator is exact (width from `accumulator_format`).
Then, in this order: ReLU (max(acc, 0)) if `relu`; 2x2 max-pool (floor mode) if `pool`;
requantise acc from fa_o to the output format. ReLU and pooling commute with the monotone
requantisation, so the order changes only what the saturation count counts: output elements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.mac import channel_accumulators
from metahw.compiler.kernels.pool import maxpool2x2, pooled_shape
from metahw.compiler.qformat import QFormat

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


@dataclass(frozen=True, kw_only=True)
class Conv2d(Kernel):
    """3x3 (any odd K) stride-1 convolution [B,C,H,W] -> [B,O,H,W] (halved by `pool`), NCHW."""

    op = "Conv2d"
    reads_fields = ("input", "weight", "bias")
    writes_fields = ("output",)

    input: str
    weight: str
    bias: str | None = None
    output: str
    padding: int = 1
    relu: bool = False
    pool: bool = False

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """Shapes: x [B,C,H,W], w [O,C,K,K] with K = 2*padding + 1, bias [O]; checks the accumulator width."""
        x, w = buffers[self.input], buffers[self.weight]
        if len(x.shape) != 4 or len(w.shape) != 4:
            raise self.error(f"input must be [B,C,H,W] and weight [O,C,K,K], got {x.shape} and {w.shape}")
        b, c, h, wd = x.shape
        o, wc, kh, kw = w.shape
        if wc != c or kh != kw or kh != 2 * self.padding + 1:
            raise self.error(f"weight {w.shape} does not fit input {x.shape} with padding {self.padding}")
        if x.channel_fracs is not None:
            raise self.error("the input needs a per-tensor format")
        if self.bias is not None and buffers[self.bias].shape != (o,):
            raise self.error(f"bias must have shape ({o},), got {buffers[self.bias].shape}")
        if self.pool and (h < 2 or wd < 2):
            raise self.error(f"a fused 2x2 pool needs H, W >= 2, got {h}x{wd}")
        self.accumulators(buffers)
        shape = (b, o, h, wd)
        return {self.output: OutputSpec(pooled_shape(shape) if self.pool else shape)}

    def accumulators(self, buffers: Mapping[str, Buffer]) -> list[QFormat]:
        """Exact accumulator format of each output channel (raises UserError if wider than int64 allows)."""
        x, w = buffers[self.input], buffers[self.weight]
        fan_in = int(np.prod(w.shape[1:]))
        bias = buffers[self.bias] if self.bias is not None else None
        return channel_accumulators(self, x.qformat, w, bias, fan_in)

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """B * O * H * W * C * K * K (before pooling)."""
        b, _, h, wd = buffers[self.input].shape
        return b * h * wd * int(np.prod(buffers[self.weight].shape))

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Per group of G images, OUTER over ⌈O/L⌉ channel tiles x S positions x C*K*K beats.

        S = 4 * (H//2) * (W//2) with the fused pool (the rows/columns it drops are skipped),
        else H * W.
        """
        b, c, h, wd = buffers[self.input].shape
        o, _, k, _ = buffers[self.weight].shape
        positions = 4 * (h // 2) * (wd // 2) if self.pool else h * wd
        beats = timing.ceil_div(o, timing.group_lanes(hw)) * positions * c * k * k
        return timing.segment_groups(b, hw) * timing.instruction(timing.OUTER, beats, hw)

    def execute(self, env: Env) -> None:
        """acc (exact) -> ReLU -> 2x2 max-pool -> requantise to the output format."""
        x, w = env.read(self.input), env.read(self.weight)
        p = self.padding
        k = w.shape[-1]
        xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        windows = np.lib.stride_tricks.sliding_window_view(xpad, (k, k), axis=(2, 3))  # [B,C,H,W,K,K]
        b, c, h, wd = x.shape
        cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(b * h * wd, c * k * k)
        acc = cols @ w.reshape(w.shape[0], -1).T  # [B*H*W, O], exact int64
        acc = acc.reshape(b, h, wd, -1).transpose(0, 3, 1, 2)
        acc_frac = env.fmt(self.input).frac + env.fracs(self.weight)  # [O]
        if self.bias is not None:
            acc = acc + env.shift(env.read(self.bias), env.fracs(self.bias) - acc_frac)[None, :, None, None]
        if self.relu:
            acc = np.maximum(acc, 0)
        if self.pool:
            acc = maxpool2x2(acc)
        out = env.requant(acc, acc_frac[None, :, None, None], env.fmt(self.output), self.output)
        env.write(self.output, out)
