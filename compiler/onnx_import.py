"""ONNX -> float `Graph`: load, check, infer shapes, and refuse anything unsupported.

Nothing is skipped or guessed: an op outside `SUPPORTED_OPS` / `SUPPORTED_FUNCTIONS` fails
the import with the op type, the node name and the list of what is supported. `SUPPORTED_OPS`
are the op types of `onnx_attributes.ATTRIBUTES`: the episode's structural ops, and those the
kernel modules declare with `onnx_attributes.accepts`.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper, shape_inference

from metahw.compiler import kernels  # noqa: F401 - importing every kernel module declares its ONNX ops
from metahw.compiler.ir import Graph, Node
from metahw.compiler.onnx_attributes import ATTRIBUTES, check_attributes
from metahw.errors import UserError

SUPPORTED_OPS = tuple(sorted(ATTRIBUTES))
FUNCTION_DOMAIN = "metahw"
SUPPORTED_FUNCTIONS = ("CosineAttentionHead", "LinearHead", "ProtoHead", "ProtoHeadInit", "SGDHeadStep")
EPISODE_INPUTS = ("support_x", "support_y", "query_x")


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Read and check an ONNX file; UserError for a missing, truncated or invalid file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX file {path} does not exist.")
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a valid ONNX model ({reason[:160]}).") from None
    return model


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _shape(value_info: onnx.ValueInfoProto) -> tuple:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def _check_supported(node: onnx.NodeProto) -> str:
    if node.domain in ("", "ai.onnx") and node.op_type in ATTRIBUTES:
        return node.op_type
    if node.domain == FUNCTION_DOMAIN and node.op_type in SUPPORTED_FUNCTIONS:
        return f"{FUNCTION_DOMAIN}.{node.op_type}"
    qualified = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
    supported = ", ".join((*sorted(ATTRIBUTES), *(f"{FUNCTION_DOMAIN}.{f}" for f in SUPPORTED_FUNCTIONS)))
    raise UserError(f"unsupported op {qualified} in node {node.name or '<unnamed>'!r}; metahw supports {supported}.")


def check_episode_inputs(model: onnx.ModelProto) -> None:
    """UserError unless the graph's inputs are exactly support_x, support_y, query_x (an exported episode)."""
    names = [i.name for i in model.graph.input]
    if tuple(names) != EPISODE_INPUTS:
        raise UserError(
            f"the episode graph must have inputs {', '.join(EPISODE_INPUTS)} (got "
            f"{', '.join(names) or 'none'}); write one with `metahw export`."
        )


def import_model(model: onnx.ModelProto) -> Graph:
    """Convert a checked episode ModelProto into a float Graph with static shapes."""
    check_episode_inputs(model)
    _check_episode_shapes({vi.name: _shape(vi) for vi in model.graph.input})
    nodes = []
    for n in model.graph.node:
        op = _check_supported(n)
        attrs = _attrs(n)
        check_attributes(op, n.name or "<unnamed>", attrs)
        if op == "MaxPool" and len([o for o in n.output if o]) > 1:
            raise UserError(f"node {n.name!r} (MaxPool): the Indices output is not supported.")
        nodes.append(Node(op, n.name, tuple(n.input), tuple(n.output), attrs))
    try:
        inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except onnx.shape_inference.InferenceError as exc:
        raise UserError(f"ONNX shape inference failed: {str(exc).splitlines()[0][:200]}.") from None
    g = inferred.graph
    shapes = {vi.name: _shape(vi) for vi in (*g.input, *g.value_info, *g.output)}
    constants = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    shapes.update({k: tuple(v.shape) for k, v in constants.items()})
    metadata = {p.key: p.value for p in model.metadata_props}
    return Graph(tuple(nodes), constants, shapes, EPISODE_INPUTS, tuple(o.name for o in g.output), metadata)


def _check_episode_shapes(shapes: dict) -> None:
    support, labels, query = (shapes[n] for n in EPISODE_INPUTS)
    if len(support) != 4 or len(query) != 4 or support[1:] != query[1:] or None in support[1:]:
        raise UserError(
            "episode images must be [n, C, H, W] with the same static C, H, W for support and query "
            f"(got support_x {list(support)}, query_x {list(query)})."
        )
    if len(labels) != 2 or labels[0] != support[0] or None in labels:
        raise UserError(f"support_y must be one-hot [{support[0]}, ways] (got {list(labels)}).")


def import_onnx(path: str | os.PathLike) -> Graph:
    """Load an ONNX file and import it (`load_onnx` then `import_model`)."""
    return import_model(load_onnx(path))
