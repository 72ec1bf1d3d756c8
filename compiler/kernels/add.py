"""Add: the elementwise sum of two tensors of one shape (a residual connection), optional fused ReLU/LeakyReLU.

Semantics: both operands are aligned to f = max(f_a, f_b) fractional bits by a left shift
(exact), added, activated (`activation.py`) and requantised once to the output format:
  out = requantise(act((a << (f - f_a)) + (b << (f - f_b))), from f (+ the LeakyReLU's frac)).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from metahw.compiler.embedding_ops import Layer, LayerContext, layer_from, refuse
from metahw.compiler.ir import Node
from metahw.compiler.kernels import timing
from metahw.compiler.kernels.activation import activate, leaky_fields
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.datapath import ACCUMULATOR, Needs, signed_bits
from metahw.compiler.onnx_attributes import accepts

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


@dataclass(frozen=True, kw_only=True)
class Add(Kernel):
    """out = act(input + residual), [B, ...] each; `residual` is the earlier tensor of the skip connection."""

    op = "Add"
    segment = True
    reads_fields = ("input", "residual")
    writes_fields = ("output",)

    input: str
    residual: str
    output: str
    relu: bool = False
    leaky_slope: int | None = None
    leaky_frac: int = 0

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """Both operands of one shape with per-tensor formats; the output format is the program's."""
        a, r = buffers[self.input], buffers[self.residual]
        if a.shape != r.shape or a.channel_fracs is not None or r.channel_fracs is not None:
            raise self.error(f"needs two operands of one shape and per-tensor formats, got {a.shape} and {r.shape}")
        if self.relu and self.leaky_slope is not None:
            raise self.error("has both ReLU and LeakyReLU")
        return {self.output: OutputSpec(a.shape)}

    def aligned_frac(self, buffers: Mapping[str, Buffer]) -> int:
        """f = max(f_input, f_residual): the fractional bits of the exact sum."""
        return max(buffers[self.input].qformat.frac, buffers[self.residual].qformat.frac)

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """No multiplies: 0."""
        return 0

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """The aligned sum of both operands (scaled by LeakyReLU's slope where there is one)."""
        f = self.aligned_frac(buffers)
        names = (self.input, self.residual)
        lo = sum(buffers[n].qformat.min_int << (f - buffers[n].qformat.frac) for n in names)
        hi = sum(buffers[n].qformat.max_int << (f - buffers[n].qformat.frac) for n in names)
        leaky = self.leaky_frac if self.leaky_slope is not None else 0
        yield f"the sum of '{self.input}' and '{self.residual}'", ACCUMULATOR, signed_bits(lo, hi) + leaky

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Per group of G images, a VECTOR pass reading both operands each beat."""
        return timing.segment_vector(buffers[self.input].shape, hw)

    def execute(self, env: Env) -> None:
        """Align, add, activate, requantise."""
        f = self.aligned_frac(env.buffers)
        total = sum(np.left_shift(env.read(n), f - env.fmt(n).frac) for n in (self.input, self.residual))
        total, extra = activate(total, self.relu, self.leaky_slope, self.leaky_frac)
        env.write(self.output, env.requant(total, f + extra, env.fmt(self.output), self.output))


# ---- from ONNX: Add of two computed tensors [Relu | LeakyRelu], fused by passes.py (a constant: a bias) --
accepts("Add", {})


@layer_from("metahw.Add", "Add (residual)")
def add_layer(ctx: LayerContext, node: Node) -> Layer:
    """The later-computed operand is the chain's predecessor, the other the skip connection."""
    a, r = node.inputs
    if ctx.shape(a) != ctx.shape(r):
        raise refuse(node, f"an Add of shapes {list(ctx.shape(a))} and {list(ctx.shape(r))} (no broadcasting)")
    position = {n: i for i, n in enumerate(ctx.formats)}
    first, skip = (a, r) if position[a] > position[r] else (r, a)
    out = node.outputs[0]
    signed = False if node.attrs["relu"] else None
    fields = {"relu": node.attrs["relu"], **leaky_fields(node.attrs.get("leaky_alpha"))}
    return Layer(node, Add, (first, skip), out, ctx.choose(out, signed), fields=fields)
