"""Requant: change a tensor's format by an arithmetic shift (program rounding and overflow), optional ReLU.

out = requantise(max(x, 0) if relu else x, from the input's frac to the output format).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from metahw.compiler.embedding_ops import Layer, LayerContext, layer_from
from metahw.compiler.ir import Node
from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.datapath import Needs, passthrough_needs
from metahw.compiler.onnx_attributes import accepts

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


@dataclass(frozen=True, kw_only=True)
class Requant(Kernel):
    """Elementwise requantisation (and ReLU), same shape."""

    op = "Requant"
    segment = True
    reads_fields = ("input",)
    writes_fields = ("output",)

    input: str
    output: str
    relu: bool = False

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """Same shape as the input; the output format is the program's choice."""
        x = buffers[self.input]
        if x.channel_fracs is not None:
            raise self.error("the input needs a per-tensor format")
        return {self.output: OutputSpec(x.shape)}

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """No multiplies: 0."""
        return 0

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """The PPU moves (or compares) input values."""
        return passthrough_needs(self.input, buffers[self.input].qformat)

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Per group of G rows (axis 0), a VECTOR pass through the PPU."""
        return timing.segment_vector(buffers[self.input].shape, hw)

    def execute(self, env: Env) -> None:
        """ReLU (optional) then shift and saturate/wrap."""
        x = env.read(self.input)
        if self.relu:
            x = np.maximum(x, 0)
        env.write(self.output, env.requant(x, env.fmt(self.input).frac, env.fmt(self.output), self.output))


# ---- from ONNX: a Relu that no conv block or Add fused (passes.py) ------------------------------------
accepts("Relu", {})


@layer_from("Relu", "Relu")
def relu_layer(ctx: LayerContext, node: Node) -> Layer:
    """A requantisation with ReLU to the output's calibrated (unsigned) range."""
    out = node.outputs[0]
    return Layer(node, Requant, node.inputs[:1], out, ctx.choose(out, False), fields={"relu": True})
