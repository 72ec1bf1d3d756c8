"""Graph passes: pure functions `Graph -> Graph`, each with one job.

- `fold_constants`: evaluate nodes whose inputs are all constants (e.g. the learned head
  initialisation `Expand(w0, [N, D])`) into new constants;
- `fold_batchnorm`: Conv -> BatchNormalization becomes one Conv with rescaled weights and bias;
- `fuse_conv_blocks`: Conv -> Relu -> MaxPool(2x2) becomes one ``metahw.ConvBlock`` node, the
  unit the accelerator executes;
- `eliminate_dead_code`: drop nodes and constants that no graph output depends on.

`standard_pipeline` applies them in the order the compiler uses.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from onnx import numpy_helper

from metahw.compiler.ir import Graph, Node

Pass = Callable[[Graph], Graph]


def _evaluate_constant(node: Node, args: list[np.ndarray]) -> np.ndarray | None:
    """Numpy value of a node over constant inputs, or None if the op is not foldable."""
    if node.op == "Identity":
        return args[0]
    if node.op == "Expand":
        return np.broadcast_to(args[0], np.broadcast_shapes(args[0].shape, tuple(args[1]))).copy()
    if node.op == "Constant" and "value" in node.attrs:
        return numpy_helper.to_array(node.attrs["value"])
    return None


def fold_constants(graph: Graph) -> Graph:
    """Replace every foldable node whose inputs are all constants by the constant it computes."""
    constants = dict(graph.constants)
    shapes = dict(graph.shapes)
    kept = []
    for node in graph.nodes:
        value = None
        if all(i in constants for i in node.inputs) and len(node.outputs) == 1:
            value = _evaluate_constant(node, [constants[i] for i in node.inputs])
        if value is None:
            kept.append(node)
        else:
            constants[node.outputs[0]] = value
            shapes[node.outputs[0]] = tuple(value.shape)
    return Graph(tuple(kept), constants, shapes, graph.inputs, graph.outputs, graph.metadata)


def _single_consumer(graph: Graph, value: str, op: str) -> Node | None:
    users = graph.consumers(value)
    if len(users) == 1 and users[0].op == op and value not in graph.outputs:
        return users[0]
    return None


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold every BatchNormalization that alone consumes a Conv output into that Conv.

    W' = W * g / sqrt(v + eps) per output channel; b' = (b - m) * g / sqrt(v + eps) + beta.
    """
    constants = dict(graph.constants)
    replaced: dict[str, Node] = {}
    removed: set[str] = set()
    for conv in (n for n in graph.nodes if n.op == "Conv"):
        bn = _single_consumer(graph, conv.outputs[0], "BatchNormalization")
        if bn is None or not all(i in constants for i in bn.inputs[1:]) or conv.inputs[1] not in constants:
            continue
        gamma, beta, mean, var = (np.asarray(constants[i], np.float64) for i in bn.inputs[1:])
        factor = gamma / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        weight = np.asarray(constants[conv.inputs[1]], np.float64)
        bias = np.asarray(constants[conv.inputs[2]], np.float64) if len(conv.inputs) > 2 else np.zeros(len(factor))
        w_name, b_name = f"{conv.name}.folded_weight", f"{conv.name}.folded_bias"
        constants[w_name] = (weight * factor[:, None, None, None]).astype(np.float32)
        constants[b_name] = ((bias - mean) * factor + beta).astype(np.float32)
        replaced[conv.name] = Node("Conv", conv.name, (conv.inputs[0], w_name, b_name), bn.outputs, conv.attrs)
        removed.add(bn.name)
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in removed]
    return eliminate_dead_code(graph.with_nodes(nodes, constants))


def fuse_conv_blocks(graph: Graph) -> Graph:
    """Fuse Conv [-> Relu] [-> MaxPool 2x2 stride 2] chains into ``metahw.ConvBlock`` nodes."""
    removed: set[str] = set()
    replaced: dict[str, Node] = {}
    for conv in (n for n in graph.nodes if n.op == "Conv"):
        out, relu, pool = conv.outputs[0], False, 0
        if (r := _single_consumer(graph, out, "Relu")) is not None:
            relu, out = True, r.outputs[0]
            removed.add(r.name)
        p = _single_consumer(graph, out, "MaxPool")
        if (
            p is not None
            and list(p.attrs.get("kernel_shape", [])) == [2, 2]
            and list(p.attrs.get("strides", [])) == [2, 2]
        ):
            pool, out = 2, p.outputs[0]
            removed.add(p.name)
        attrs = {"kernel_shape": list(conv.attrs.get("kernel_shape", [3, 3])), "pads": list(conv.attrs.get("pads", [])),
                 "relu": relu, "pool": pool}  # fmt: skip
        replaced[conv.name] = Node("metahw.ConvBlock", conv.name, conv.inputs, (out,), attrs)
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in removed]
    return graph.with_nodes(nodes)


def eliminate_dead_code(graph: Graph) -> Graph:
    """Keep only the nodes and constants that some graph output depends on."""
    live = set(graph.outputs)
    kept: list[Node] = []
    for node in reversed(graph.nodes):
        if live.intersection(node.outputs):
            kept.append(node)
            live.update(node.inputs)
    constants = {k: v for k, v in graph.constants.items() if k in live}
    return graph.with_nodes(kept[::-1], constants)


STANDARD_PASSES: tuple[Pass, ...] = (fold_constants, fold_batchnorm, fuse_conv_blocks, eliminate_dead_code)


def standard_pipeline(graph: Graph, passes: tuple[Pass, ...] = STANDARD_PASSES) -> Graph:
    """Apply `passes` in order."""
    for p in passes:
        graph = p(graph)
    return graph
