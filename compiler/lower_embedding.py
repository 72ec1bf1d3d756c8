"""Lowering of the embedding: the float graph between Concat(support_x, query_x) and the Slices -> kernel layers.

The embedding is any chain the importer admits (docs/own_model.md): ``metahw.ConvBlock``
(convolution, activation, 2x2 pool), standalone MaxPool / AveragePool 2x2, GlobalAveragePool,
Relu, ``metahw.Add`` (residual connections), one Flatten, then ``metahw.Dense`` projections.
`embedding_layers` quantises each layer's weights once and chooses its output format from
the calibration range of its graph value; `emit_embedding` then writes the layers' ops for
one image batch (support or query), both chains sharing the weights.

Buffer names: ``<chain>.<graph value>`` for activations (``support.block0.pool``), the last
one ``<chain>.features``; weights ``<node>.weight`` / ``<node>.bias``. A map larger than 1x1
is flattened channels last (kernels/flatten.py) and the columns of a Dense reading it are
permuted to match; `EmbeddingLayers.feature_order` gives that permutation to the head.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from metahw.compiler.ir import Graph, Node
from metahw.compiler.kernels import Add, AvgPool2d, Conv2d, Dense, Flatten, GlobalAvgPool, MaxPool2d, Requant
from metahw.compiler.kernels.activation import leaky_slope
from metahw.compiler.kernels.flatten import channels_last_order
from metahw.compiler.kernels.pool import global_average_scale
from metahw.errors import UserError
from metahw.qformat import QFormat, bias_format, format_for_range

if TYPE_CHECKING:
    from metahw.compiler.lower import ProgramBuilder

FEATURES = "features"
MAP_OPS = ("metahw.ConvBlock", "MaxPool", "AveragePool", "GlobalAveragePool", "Relu", "metahw.Add")


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
class EmbeddingLayers:
    """The quantised embedding: its layers in order, and the C-order -> program feature permutation (or None)."""

    layers: tuple[Layer, ...]
    feature_order: np.ndarray | None


def _shape(graph: Graph, value: str) -> tuple:
    return tuple(graph.shapes[value])


def embedding_layers(b: ProgramBuilder, graph: Graph, nodes: list[Node], pixel: QFormat) -> EmbeddingLayers:
    """Quantise the embedding nodes (Concat's output up to the first Slice) into layers, or refuse with the node."""
    formats: dict[str, QFormat] = {"images": pixel}
    layers: list[Layer] = []
    order: np.ndarray | None = None
    flat = False
    for node in nodes:
        for value in node.inputs:
            if value not in formats and value not in graph.constants:
                raise _refuse(node, f"a {node.op} reading {value!r}, which is no earlier value of the embedding")
        if node.op == "Flatten":
            if flat:
                raise _refuse(node, "a second Flatten")
            flat = True
            _, c, h, w = _shape(graph, node.inputs[0])
            last = h * w > 1
            order = channels_last_order(c, h, w) if last else None
            layer = Layer(
                node, Flatten, node.inputs[:1], node.outputs[0], formats[node.inputs[0]], fields={"channels_last": last}
            )
        elif node.op == "metahw.Dense":
            if not flat:
                raise _refuse(node, "a Gemm/MatMul before the Flatten (metahw projects flattened features)")
            layer = _dense(b, graph, node, formats[node.inputs[0]], order if layers[-1].kind is Flatten else None)
        elif node.op in MAP_OPS:
            if flat:
                raise _refuse(node, f"a {node.op} after the Flatten")
            layer = _map_layer(b, graph, node, formats)
        else:
            raise _refuse(node, node.op)
        formats[layer.out_key] = layer.out_format
        layers.append(layer)
    if not flat:
        raise UserError("cannot lower the episode graph: the embedding has no Flatten before the support/query Slices.")
    return EmbeddingLayers(tuple(layers), order)


def _refuse(node: Node, what: str) -> UserError:
    return UserError(
        f"cannot lower the embedding: node {node.name!r} is {what}; the embedding is a chain of Conv "
        "[BatchNormalization] [Relu|LeakyRelu] [MaxPool|AveragePool 2x2], GlobalAveragePool, Relu, "
        "Add (residual), one Flatten, then Gemm/MatMul [Relu]."
    )


def _choose(b: ProgramBuilder, value: str, signed: bool | None = None) -> QFormat:
    return b.choose(value, *b.range_of(value), b.config.bits, signed=signed)


def _leaky(node: Node) -> dict:
    alpha = node.attrs.get("leaky_alpha")
    if alpha is None:
        return {"leaky_slope": None, "leaky_frac": 0}
    slope, frac = leaky_slope(alpha)
    return {"leaky_slope": slope, "leaky_frac": frac}


def _map_layer(b: ProgramBuilder, graph: Graph, node: Node, formats: dict[str, QFormat]) -> Layer:
    out = node.outputs[0]
    x = node.inputs[0]
    if node.op == "metahw.ConvBlock":
        return _conv(b, graph, node, formats[x])
    if node.op == "MaxPool":
        return Layer(node, MaxPool2d, (x,), out, formats[x])
    if node.op == "AveragePool":
        return Layer(node, AvgPool2d, (x,), out, _choose(b, out, formats[x].signed))
    if node.op == "GlobalAveragePool":
        _, _, h, w = _shape(graph, x)
        scale, shift = global_average_scale(h * w)
        return Layer(
            node, GlobalAvgPool, (x,), out, _choose(b, out, formats[x].signed), fields={"scale": scale, "shift": shift}
        )
    if node.op == "Relu":
        return Layer(node, Requant, (x,), out, _choose(b, out, False), fields={"relu": True})
    a, r = node.inputs  # metahw.Add: the later-computed operand is the chain's predecessor, the other the skip
    if _shape(graph, a) != _shape(graph, r):
        raise _refuse(node, f"an Add of shapes {list(_shape(graph, a))} and {list(_shape(graph, r))} (no broadcasting)")
    position = {n: i for i, n in enumerate(formats)}
    first, skip = (a, r) if position[a] > position[r] else (r, a)
    signed = False if node.attrs["relu"] else None
    return Layer(
        node, Add, (first, skip), out, _choose(b, out, signed), fields={"relu": node.attrs["relu"], **_leaky(node)}
    )


def _conv(b: ProgramBuilder, graph: Graph, block: Node, in_fmt: QFormat) -> Layer:
    """Quantise one conv block's weights (symmetric range rule) and choose its output format."""
    attrs = block.attrs
    cfg = b.config
    weight = np.asarray(graph.constants[block.inputs[1]], np.float64)
    k = weight.shape[-1]
    pad = attrs["pads"][0]
    if pad >= k:
        raise _refuse(block, f"a {k}x{k} convolution with padding {pad} (metahw pads less than the kernel size)")
    bias = np.asarray(graph.constants[block.inputs[2]], np.float64) if len(block.inputs) > 2 else None
    w_name = f"{block.name}.weight"
    fracs = _quantise_weight(b, w_name, weight, cfg.weight_width)
    b_name = None
    if bias is not None:
        b_name = f"{block.name}.bias"
        _quantise_bias(b, b_name, bias, in_fmt.frac, fracs)
    out_key = block.outputs[0]
    signed = False if attrs["relu"] else None
    fields = {
        "padding": pad,
        "stride": attrs["strides"][0],
        "relu": bool(attrs["relu"]),
        **_leaky(block),
        "pool": attrs["pool"] == 2,
        "pool_mode": attrs["pool_mode"],
    }
    return Layer(block, Conv2d, block.inputs[:1], out_key, _choose(b, out_key, signed), w_name, b_name, fields)


def _quantise_weight(
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


def _quantise_bias(
    b: ProgramBuilder, name: str, bias: np.ndarray, in_frac: int, fracs: tuple, per_channel: bool | None = None
) -> None:
    """Quantise a bias at each output channel's accumulator frac (or the override's format)."""
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
    b.buffer(name, bias.shape, replace(fmt, frac=min(b_fracs)), "weight", b_fracs if len(set(b_fracs)) > 1 else None)


def _dense(b: ProgramBuilder, graph: Graph, node: Node, in_fmt: QFormat, order: np.ndarray | None) -> Layer:
    """A projection after the Flatten: per-tensor weight format (columns permuted for a channels-last Flatten)."""
    weight = np.asarray(graph.constants[node.inputs[1]], np.float64)
    if order is not None:
        weight = weight[:, order]
    w_name = f"{node.name}.weight"
    fracs = _quantise_weight(b, w_name, weight, b.config.weight_width, per_channel=False)
    b_name = None
    if len(node.inputs) > 2:
        b_name = f"{node.name}.bias"
        _quantise_bias(b, b_name, np.asarray(graph.constants[node.inputs[2]], np.float64), in_fmt.frac, fracs, False)
    out = node.outputs[0]
    fmt = _choose(b, out, False if node.attrs["relu"] else None)
    return Layer(node, Dense, node.inputs[:1], out, fmt, w_name, b_name, {"relu": bool(node.attrs["relu"])})


def features_buffer(chain: str) -> str:
    """The name of the buffer holding the features of `chain` (support or query): the embedding's last output."""
    return f"{chain}.{FEATURES}"


def emit_embedding(b: ProgramBuilder, chain: str, images: str, embedding: EmbeddingLayers, batch: int) -> str:
    """Emit the embedding's ops for `batch` images (input buffer `images`) of `chain`; returns the features buffer."""
    names = {"images": images}
    layers = embedding.layers
    for k, layer in enumerate(layers):
        out = features_buffer(chain) if k == len(layers) - 1 else f"{chain}.{layer.out_key}"
        reads = [names[s] for s in layer.sources]
        fields = dict(layer.fields or {})
        if layer.kind is Add:
            fields["residual"] = reads[1]
        if layer.weight is not None:
            fields["weight"] = layer.weight
            fields["bias"] = layer.bias
        op = layer.kind(name=f"{chain}.{layer.node.name}", input=reads[0], output=out, **fields)
        shape = op.infer(b.buffers)[out].shape
        b.buffer(out, shape, layer.out_format, "activation")
        b.ops.append(op)
        names[layer.out_key] = out
    return features_buffer(chain)
