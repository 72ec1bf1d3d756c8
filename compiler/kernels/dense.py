"""Dense: y = x W^T + b for a batch of vectors (the linear head's logits), optional fused ReLU.

Semantics (x [B,D], W [N,D], b [N]):
  acc[b,n] = (bias[n] << (fa_n - fb_n)) + sum_d x[b,d] * W[n,d],   fa_n = f_x + fw_n
exact (width from `accumulator_format`), then ReLU if `relu`, then requantise from fa_n to
the output format. W and b may be weight buffers (frozen) or state buffers (adapted on chip).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.datapath import Needs
from metahw.compiler.kernels.mac import channel_accumulators, mac_needs
from metahw.compiler.onnx_attributes import accepts
from metahw.qformat import QFormat

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


def linear(env: Env, x: np.ndarray, x_frac: int, weight: str, bias: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Exact x W^T + b: returns (acc [B,N], acc fractional bits [N]); shared with SGDHeadStep."""
    acc_frac = x_frac + env.fracs(weight)
    acc = x @ env.read(weight).T
    if bias is not None:
        acc = acc + env.shift(env.read(bias), env.fracs(bias) - acc_frac)
    return acc, acc_frac


@dataclass(frozen=True, kw_only=True)
class Dense(Kernel):
    """Matrix times batch of vectors: [B,D] x [N,D]^T (+ [N]) -> [B,N]."""

    op = "Dense"
    reads_fields = ("input", "weight", "bias")
    writes_fields = ("output",)

    input: str
    weight: str
    bias: str | None = None
    output: str
    relu: bool = False

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """Shapes x [B,D], W [N,D], b [N] -> [B,N]; checks the accumulator width."""
        x, w = buffers[self.input], buffers[self.weight]
        if len(x.shape) != 2 or len(w.shape) != 2 or x.shape[1] != w.shape[1] or x.channel_fracs is not None:
            raise self.error(f"needs input [B,D] with one format and weight [N,D], got {x.shape} and {w.shape}")
        if self.bias is not None and buffers[self.bias].shape != (w.shape[0],):
            raise self.error(f"bias must have shape ({w.shape[0]},), got {buffers[self.bias].shape}")
        self.accumulators(buffers)
        return {self.output: OutputSpec((x.shape[0], w.shape[0]))}

    def accumulators(self, buffers: Mapping[str, Buffer]) -> list[QFormat]:
        """Exact accumulator format of each output row n."""
        bias = buffers[self.bias] if self.bias is not None else None
        x, w = buffers[self.input], buffers[self.weight]
        return channel_accumulators(self, x.qformat, w, bias, w.shape[1])

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """The MAC's operands and accumulator."""
        return mac_needs(self, buffers)

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """B * N * D."""
        return buffers[self.input].shape[0] * int(np.prod(buffers[self.weight].shape))

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """REDUCE: B*N dot products of D terms."""
        (b, d), n = buffers[self.input].shape, buffers[self.weight].shape[0]
        return timing.reduce_cycles(b * n, d, hw)

    def execute(self, env: Env) -> None:
        """acc (exact) -> ReLU -> requantise."""
        acc, acc_frac = linear(env, env.read(self.input), env.fmt(self.input).frac, self.weight, self.bias)
        if self.relu:
            acc = np.maximum(acc, 0)
        env.write(self.output, env.requant(acc, acc_frac, env.fmt(self.output), self.output))


# ---- from ONNX: Gemm, or MatMul [+ bias], [Relu] after the Flatten, fused by passes.py ------------------
accepts(
    "Gemm",
    {
        "alpha": (lambda v: v == 1.0, "1.0"),
        "beta": (lambda v: v == 1.0, "1.0"),
        "transA": (lambda v: v == 0, "0"),
        "transB": (lambda v: v in (0, 1), "0 or 1"),
    },
)
accepts("MatMul", {})
