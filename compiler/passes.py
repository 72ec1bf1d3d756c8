"""Graph passes: pure functions `Graph -> Graph`, each with one job.

- `fold_constants`: evaluate nodes whose inputs are all constants (e.g. the learned head
  initialisation `Expand(w0, [N, D])`) into new constants;
- `reshape_to_flatten`: a Reshape of [B, ...] to [B, prod(...)] is the Flatten it is;
- `fold_batchnorm`: Conv -> BatchNormalization becomes one Conv with rescaled weights and bias;
- `fuse_conv_blocks`: Conv [-> Relu | LeakyRelu] [-> MaxPool | AveragePool 2x2] becomes one
  ``metahw.ConvBlock`` node, the unit the accelerator executes;
- `fuse_residual_adds`: Add of two computed tensors [-> Relu | LeakyRelu] becomes ``metahw.Add``;
- `fuse_dense`: Gemm, or MatMul [-> Add of a constant bias], [-> Relu] with constant weights
  becomes ``metahw.Dense`` (weight [N, D], optional bias [N]);
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


def _single_consumer(graph: Graph, value: str, *ops: str) -> Node | None:
    users = graph.consumers(value)
    if len(users) == 1 and users[0].op in ops and value not in graph.outputs:
        return users[0]
    return None


def reshape_to_flatten(graph: Graph) -> Graph:
    """Replace each Reshape whose output is [B, product of the other axes] of its input by Flatten(axis=1).

    A Flatten of a [B, D] value is the identity: its readers read the value itself.
    """
    nodes, alias = [], {}
    for node in graph.nodes:
        node = Node(node.op, node.name, tuple(alias.get(i, i) for i in node.inputs), node.outputs, node.attrs)
        src, out = graph.shapes.get(node.inputs[0]), graph.shapes.get(node.outputs[0])
        flattens = src and out and len(out) == 2 and None not in src[1:] and out[1] == int(np.prod(src[1:]))
        if node.op == "Reshape" and flattens:
            node = Node("Flatten", node.name, node.inputs[:1], node.outputs, {"axis": 1})
        if node.op == "Flatten" and src and len(src) == 2 and node.outputs[0] not in graph.outputs:
            alias[node.outputs[0]] = node.inputs[0]
            continue
        nodes.append(node)
    return eliminate_dead_code(graph.with_nodes(nodes))


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


def _activation(graph: Graph, value: str, removed: set[str]) -> tuple[str, dict]:
    """A Relu or LeakyRelu that alone reads `value`: (its output, attributes); else (value, no activation)."""
    act = _single_consumer(graph, value, "Relu", "LeakyRelu")
    if act is None:
        return value, {"relu": False, "leaky_alpha": None}
    removed.add(act.name)
    if act.op == "Relu":
        return act.outputs[0], {"relu": True, "leaky_alpha": None}
    return act.outputs[0], {"relu": False, "leaky_alpha": float(act.attrs.get("alpha", 0.01))}


def fuse_conv_blocks(graph: Graph) -> Graph:
    """Fuse Conv [-> Relu | LeakyRelu] [-> MaxPool | AveragePool 2x2 stride 2] chains into ``metahw.ConvBlock`` nodes.

    The block's attributes: kernel_shape, pads, strides, relu, leaky_alpha, pool (0 or 2), pool_mode.
    """
    removed: set[str] = set()
    replaced: dict[str, Node] = {}
    for conv in (n for n in graph.nodes if n.op == "Conv"):
        out, act = _activation(graph, conv.outputs[0], removed)
        pool, mode = 0, "max"
        if (p := _single_consumer(graph, out, "MaxPool", "AveragePool")) is not None:
            pool, mode, out = 2, "max" if p.op == "MaxPool" else "avg", p.outputs[0]
            removed.add(p.name)
        kernel = list(conv.attrs.get("kernel_shape", np.shape(graph.constants[conv.inputs[1]])[2:]))
        attrs = {
            "kernel_shape": kernel,
            "pads": list(conv.attrs.get("pads", [0, 0, 0, 0])),
            "strides": list(conv.attrs.get("strides", [1, 1])),
            **act,
            "pool": pool,
            "pool_mode": mode,
        }
        replaced[conv.name] = Node("metahw.ConvBlock", conv.name, conv.inputs, (out,), attrs)
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in removed]
    return graph.with_nodes(nodes)


def fuse_residual_adds(graph: Graph) -> Graph:
    """Fuse Add(a, b) of two computed tensors of one shape [-> Relu | LeakyRelu] into ``metahw.Add`` nodes."""
    removed: set[str] = set()
    replaced: dict[str, Node] = {}
    for add in (n for n in graph.nodes if n.op == "Add"):
        if any(i in graph.constants for i in add.inputs):
            continue  # a bias: fuse_dense takes it
        out, act = _activation(graph, add.outputs[0], removed)
        replaced[add.name] = Node("metahw.Add", add.name, add.inputs, (out,), act)
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in removed]
    return graph.with_nodes(nodes)


def fuse_dense(graph: Graph) -> Graph:
    """Fuse Gemm, or MatMul [-> Add(constant bias)], [-> Relu], with constant weights into ``metahw.Dense``.

    The node's inputs are (x, weight [N, D]) or (x, weight, bias [N]) as new constants; attribute relu.
    """
    constants = dict(graph.constants)
    removed: set[str] = set()
    replaced: dict[str, Node] = {}
    for node in graph.nodes:
        if node.op not in ("Gemm", "MatMul") or node.inputs[1] not in constants:
            continue
        weight = np.asarray(constants[node.inputs[1]], np.float32)
        if weight.ndim != 2:
            continue
        weight = weight if node.op == "Gemm" and node.attrs.get("transB", 0) else weight.T
        bias_name = node.inputs[2] if node.op == "Gemm" and len(node.inputs) > 2 and node.inputs[2] else None
        out = node.outputs[0]
        if node.op == "MatMul" and (add := _single_consumer(graph, out, "Add")) is not None:
            other = [i for i in add.inputs if i != out]
            if len(other) == 1 and other[0] in constants and np.size(constants[other[0]]) == len(weight):
                bias_name, out = other[0], add.outputs[0]
                removed.add(add.name)
        relu = _single_consumer(graph, out, "Relu")
        if relu is not None:
            out = relu.outputs[0]
            removed.add(relu.name)
        w_name = f"{node.name}.dense_weight"
        constants[w_name] = weight
        inputs = [node.inputs[0], w_name]
        if bias_name is not None:
            constants[f"{node.name}.dense_bias"] = np.broadcast_to(constants[bias_name], (len(weight),)).astype(
                np.float32
            )
            inputs.append(f"{node.name}.dense_bias")
        replaced[node.name] = Node("metahw.Dense", node.name, tuple(inputs), (out,), {"relu": relu is not None})
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in removed]
    return eliminate_dead_code(graph.with_nodes(nodes, constants))


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


STANDARD_PASSES: tuple[Pass, ...] = (
    fold_constants,
    reshape_to_flatten,
    fold_batchnorm,
    fuse_conv_blocks,
    fuse_residual_adds,
    fuse_dense,
    eliminate_dead_code,
)


def standard_pipeline(graph: Graph, passes: tuple[Pass, ...] = STANDARD_PASSES) -> Graph:
    """Apply `passes` in order."""
    for p in passes:
        graph = p(graph)
    return graph
