"""Lowering of the embedding: the float graph between Concat(support_x, query_x) and the Slices -> kernel layers.

The embedding is any chain the importer admits (docs/own_model.md): the graph ops the kernel
modules declare with `embedding_ops.layer_from` (``metahw.ConvBlock``: convolution, activation,
2x2 pool; standalone MaxPool / AveragePool 2x2, GlobalAveragePool, Relu, ``metahw.Add``: residual
connections), one Flatten, then ``metahw.Dense`` projections.
`embedding_layers` quantises each layer's weights once and chooses its output format from
the calibration range of its graph value; `emit_embedding` then writes the layers' ops for
one image batch (support or query), both chains sharing the weights.

Buffer names: ``<chain>.<graph value>`` for activations (``support.block0.pool``), the last
one ``<chain>.features``; weights ``<node>.weight`` / ``<node>.bias``. A map larger than 1x1
is flattened channels last (kernels/flatten.py) and the columns of a Dense reading it are
permuted to match; `EmbeddingLayers.feature_order` gives that permutation to the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from metahw.compiler.embedding_ops import LAYERS, Layer, LayerContext, quantise_bias, quantise_weight, refuse
from metahw.compiler.ir import Graph, Node
from metahw.compiler.kernels import Add, Dense, Flatten
from metahw.compiler.kernels.flatten import channels_last_order
from metahw.errors import UserError
from metahw.qformat import QFormat

if TYPE_CHECKING:
    from metahw.compiler.lower import ProgramBuilder

FEATURES = "features"


@dataclass(frozen=True)
class EmbeddingLayers:
    """The quantised embedding: its layers in order, and the C-order -> program feature permutation (or None)."""

    layers: tuple[Layer, ...]
    feature_order: np.ndarray | None


def embedding_layers(b: ProgramBuilder, graph: Graph, nodes: list[Node], pixel: QFormat) -> EmbeddingLayers:
    """Quantise the embedding nodes (Concat's output up to the first Slice) into layers, or refuse with the node.

    Before the Flatten, a node becomes a layer through its kernel module's `layer_from` declaration
    (`embedding_ops.LAYERS`); the Flatten and the projections after it are lowered here.
    """
    formats: dict[str, QFormat] = {"images": pixel}
    ctx = LayerContext(b, graph, formats)
    layers: list[Layer] = []
    order: np.ndarray | None = None
    flat = False
    for node in nodes:
        for value in node.inputs:
            if value not in formats and value not in graph.constants:
                raise refuse(node, f"a {node.op} reading {value!r}, which is no earlier value of the embedding")
        if node.op == "Flatten":
            if flat:
                raise refuse(node, "a second Flatten")
            flat = True
            _, c, h, w = ctx.shape(node.inputs[0])
            last = h * w > 1
            order = channels_last_order(c, h, w) if last else None
            layer = Layer(
                node, Flatten, node.inputs[:1], node.outputs[0], formats[node.inputs[0]], fields={"channels_last": last}
            )
        elif node.op == "metahw.Dense":
            if not flat:
                raise refuse(node, "a Gemm/MatMul before the Flatten (metahw projects flattened features)")
            layer = _dense(ctx, node, order if layers[-1].kind is Flatten else None)
        elif node.op in LAYERS:
            if flat:
                raise refuse(node, f"a {node.op} after the Flatten")
            layer = LAYERS[node.op].lower(ctx, node)
        else:
            raise refuse(node, node.op)
        formats[layer.out_key] = layer.out_format
        layers.append(layer)
    if not flat:
        raise UserError("cannot lower the episode graph: the embedding has no Flatten before the support/query Slices.")
    return EmbeddingLayers(tuple(layers), order)


def _dense(ctx: LayerContext, node: Node, order: np.ndarray | None) -> Layer:
    """A projection after the Flatten: per-tensor weight format (columns permuted for a channels-last Flatten)."""
    b, graph = ctx.b, ctx.graph
    weight = np.asarray(graph.constants[node.inputs[1]], np.float64)
    if order is not None:
        weight = weight[:, order]
    w_name = f"{node.name}.weight"
    fracs = quantise_weight(b, w_name, weight, b.config.weight_width, per_channel=False)
    b_name = None
    if len(node.inputs) > 2:
        b_name = f"{node.name}.bias"
        in_frac = ctx.formats[node.inputs[0]].frac
        quantise_bias(b, b_name, np.asarray(graph.constants[node.inputs[2]], np.float64), in_frac, fracs, False)
    out = node.outputs[0]
    fmt = ctx.choose(out, False if node.attrs["relu"] else None)
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
