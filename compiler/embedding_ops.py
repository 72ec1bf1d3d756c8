"""How an embedding node becomes a quantised layer: declared by the kernel modules, read by `lower_embedding.py`.

A kernel module declares, beside its kernels, the graph ops it lowers from: ``@layer_from(op,
chain)`` registers a function ``fn(ctx, node) -> Layer`` in `LAYERS` for the embedding nodes of
`op` before the Flatten (an ONNX op type, or a ``metahw.*`` node that `passes.py` fuses), and
`chain` is how the embedding's refusal names it. The ONNX op types and attributes the importer
admits are declared beside them with `onnx_attributes.accepts`. The Flatten and the projections
after it are the embedding's structure, lowered by `lower_embedding.py` itself.

This module imports no kernel: the modules of `compiler/kernels` import it, and its readers
import `metahw.compiler.kernels`, which imports every kernel module and so fills `LAYERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from metahw.compiler.ir import Graph, Node
from metahw.errors import UserError
from metahw.qformat import QFormat, bias_format, bits_for_range, format_for_range

if TYPE_CHECKING:
    from metahw.compiler.lower import ProgramBuilder


@dataclass(frozen=True)
class Layer:
    """One embedding op, quantised: its graph node, kernel class, weights, output format, extra fields."""

    node: Node
    kind: type
    #: graph values it reads: the chain's predecessor first (and the skip connection for Add)
    sources: tuple[str, ...]
    out_key: str
    out_format: QFormat
    weight: str | None = None
    bias: str | None = None
    fields: Mapping | None = None


@dataclass(frozen=True)
class LayerContext:
    """What a layer's lowering reads: the program being built, the graph, the formats of the values before it."""

    b: ProgramBuilder
    graph: Graph
    #: graph value -> its chosen format ("images": the pixels), in the order the embedding computes them
    formats: Mapping[str, QFormat]

    def shape(self, value: str) -> tuple:
        """The static shape of graph value `value`."""
        return tuple(self.graph.shapes[value])

    def choose(self, value: str, signed: bool | None = None) -> QFormat:
        """The format of `value` from its calibration range at the embedding's bits (or its override)."""
        return self.b.choose(value, *self.b.range_of(value), self.b.config.bits, signed=signed)


LayerLowering = Callable[[LayerContext, Node], Layer]


@dataclass(frozen=True)
class LayerSource:
    """A graph op the embedding lowers: its function, and how the refusal message names it."""

    lower: LayerLowering
    chain: str


#: graph op -> how its nodes become layers (before the Flatten)
LAYERS: dict[str, LayerSource] = {}


def layer_from(op: str, chain: str) -> Callable[[LayerLowering], LayerLowering]:
    """Register `fn(ctx, node) -> Layer` for the embedding nodes of graph op `op`, named `chain` in refusals."""

    def register(fn: LayerLowering) -> LayerLowering:
        LAYERS[op] = LayerSource(fn, chain)
        return fn

    return register


def refuse(node: Node, what: str) -> UserError:
    """The error for an embedding node metahw cannot lower: what it is, and the chains it lowers."""
    chain = ", ".join(sorted(source.chain for source in LAYERS.values()))
    return UserError(
        f"cannot lower the embedding: node {node.name!r} is {what}; the embedding is a chain of {chain}, "
        "one Flatten, then Gemm/MatMul [Relu]."
    )


def quantise_weight(
    b: ProgramBuilder, name: str, weight: np.ndarray, bits: int, per_channel: bool | None = None
) -> tuple:
    """Quantise a weight tensor (per output channel with --per-channel); returns each channel's frac."""
    cfg = b.config
    b.chosen.add(name)
    per_channel = cfg.per_channel if per_channel is None else per_channel
    if per_channel and name not in cfg.overrides:
        tops = np.abs(weight).reshape(len(weight), -1).max(axis=1)
        fracs = tuple(format_for_range(-t, t, bits, True, cfg.rounding).frac for t in tops)
        b.weights[name] = np.concatenate(
            [QFormat(bits, f).quantize(w[None], cfg.rounding, "saturate") for f, w in zip(fracs, weight)]
        )
        b.buffer(name, weight.shape, QFormat(bits, min(fracs), True), "weight", fracs)
        return fracs
    top = float(np.abs(weight).max())
    fmt = b.choose(name, -top, top, bits, signed=True)
    b.constant(name, weight, fmt)
    return (fmt.frac,) * len(weight)


def quantise_bias(
    b: ProgramBuilder, name: str, bias: np.ndarray, in_frac: int, fracs: tuple, per_channel: bool | None = None
) -> None:
    """Quantise a bias at each output channel's accumulator frac (or the override's format).

    Without an override the buffer's format is as narrow as its quantised values (signed, at
    most `bias_bits`): the values are those of the `bias_bits` format, and a layer's accumulator,
    whose exact width covers the bias format's whole range, is no wider than the values need
    (32-bit biases made every conv accumulator of the demo model 33 bits wide, and with it every
    MAC and PPU lane).
    """
    cfg = b.config
    b.chosen.add(name)
    per_channel = cfg.per_channel if per_channel is None else per_channel
    tops = np.abs(bias) if per_channel else np.full(len(bias), np.abs(bias).max())
    fmt = QFormat(cfg.bias_bits, 0)
    b_fracs = tuple(bias_format(t, in_frac + f, cfg.bias_bits, cfg.rounding).frac for f, t in zip(fracs, tops))
    if name in cfg.overrides:
        fmt = b.choose(name, -float(tops.max()), float(tops.max()), cfg.bias_bits, signed=True)
        b_fracs = (fmt.frac,) * len(bias)
    b.weights[name] = np.array(
        [replace(fmt, frac=f).quantize(v, cfg.rounding, "saturate") for f, v in zip(b_fracs, bias)]
    ).reshape(len(bias))
    if name not in cfg.overrides:
        values = b.weights[name]
        fmt = replace(fmt, bits=max(2, bits_for_range(min(int(values.min()), -1), int(values.max()))[0]))
    b.buffer(name, bias.shape, replace(fmt, frac=min(b_fracs)), "weight", b_fracs if len(set(b_fracs)) > 1 else None)
