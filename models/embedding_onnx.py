"""A user's few-shot embedding as ONNX, checked and normalised for splicing into an episode graph.

An embedding is any ONNX graph with one float input [B, C, H, W] and one output [B, ...]
(a feature vector [B, D] or a feature map, flattened in torch ``flatten(1)`` order). Before it
is spliced into the episode (`models/embedding_export.py`) it is brought into the form the
compiler reads:

- local functions inlined, the default-domain opset converted to the episode's;
- every Reshape whose output is [batch, prod(rest)] becomes Flatten(axis=1), however its
  shape was computed (torch's ``x.view(x.size(0), -1)`` exports Shape/Gather/Unsqueeze/
  Concat/Reshape), and Identity nodes are dropped; the shape computations left dead go too;
- the batch dimension is made symbolic and ONNX shape inference is run.

Whether each compute op is supported by the hardware is decided by the compiler at
`metahw compile`, not here.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, inliner, shape_inference, version_converter

from metahw.errors import UserError
from metahw.models.export import IR_VERSION, OPSET

BATCH = "batch"
#: A batch size for the concrete shape probe that no real layer width is likely to equal.
_PROBE_BATCH = 11


@dataclass(frozen=True)
class Embedding:
    """A normalised embedding graph: input [batch, *input_shape] -> output [batch, *output_shape]."""

    model: onnx.ModelProto
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    source: str

    @property
    def feature_dim(self) -> int:
        """The width D of the flattened feature vector."""
        return math.prod(self.output_shape)


def load_embedding_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Read a user's embedding ONNX file; UserError for a missing or unreadable one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX file {path} does not exist.")
    try:
        return onnx.load(path)
    except (DecodeError, ValueError, OSError) as exc:
        raise UserError(f"{path} is not a readable ONNX model ({first_line(exc)}).") from None


def module_to_onnx(module: torch.nn.Module, input_shape: tuple[int, ...]) -> onnx.ModelProto:
    """Export an eval-mode torch module on [batch, *input_shape] images to ONNX with a dynamic batch axis.

    Uses the TorchScript exporter (``dynamo=False``), which needs nothing beyond torch and onnx.
    """
    if module.training:
        raise UserError("the embedding module is in training mode: call module.eval() before exporting it.")
    if len(input_shape) != 3 or not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise UserError(f"the input shape must be (C, H, W) with positive sizes (got {tuple(input_shape)}).")
    buffer = io.BytesIO()
    example = torch.zeros(2, *input_shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                buffer,
                dynamo=False,
                opset_version=OPSET,
                input_names=["x"],
                output_names=["features"],
                dynamic_axes={"x": {0: BATCH}, "features": {0: BATCH}},
            )
    except Exception as exc:  # the exporter raises many types (RuntimeError, TypeError, OnnxExporterError, ...)
        raise UserError(f"torch.onnx.export failed on the embedding module ({first_line(exc)}).") from None
    return onnx.load_from_string(buffer.getvalue())


def prepare_embedding(model: onnx.ModelProto, source: str) -> Embedding:
    """Check a user's embedding (one 4-D float input, one output) and normalise it (module docstring)."""
    model = _checked(model, source)
    model = inliner.inline_local_functions(model)
    model = _at_episode_opset(model, source)
    model = _flatten_reshapes(model)
    model = _without_identities(model)
    model = _live(model)
    model = _with_symbolic_batch(model, source)
    graph = model.graph
    return Embedding(model, _dims(graph.input[0])[1:], _dims(graph.output[0])[1:], source)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if empty), for a one-sentence UserError."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _dims(value: onnx.ValueInfoProto) -> tuple:
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)


def _graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Inputs that are not initializers (IR < 4 files list the weights as inputs too)."""
    weights = {t.name for t in graph.initializer}
    return [i for i in graph.input if i.name not in weights]


def _checked(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise UserError(f"{source} is not a valid ONNX model ({first_line(exc)}).") from None
    graph = model.graph
    inputs = _graph_inputs(graph)
    if len(inputs) != 1 or len(graph.output) != 1:
        raise UserError(
            f"{source} must have one image input and one feature output (it has {len(inputs)} inputs and "
            f"{len(graph.output)} outputs)."
        )
    image = inputs[0]
    if image.type.tensor_type.elem_type != TensorProto.FLOAT:
        kind = TensorProto.DataType.Name(image.type.tensor_type.elem_type)
        raise UserError(f"{source}: the input {image.name!r} must be float32 images (it is {kind}).")
    if graph.output[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise UserError(f"{source}: the output {graph.output[0].name!r} must be float32 features.")
    dims = _dims(image)
    if len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        raise UserError(
            f"{source}: the input {image.name!r} must be [batch, C, H, W] with fixed C, H, W (it is {list(dims)})."
        )
    others = sorted({n.domain for n in graph.node if n.domain not in ("", "ai.onnx")})
    if others:
        raise UserError(f"{source} uses ops of domain {', '.join(others)}; an embedding holds standard ONNX ops only.")
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        raise UserError(f"{source} has control flow (If/Loop/Scan), which cannot be part of an episode embedding.")
    return model


def _at_episode_opset(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    if version == OPSET:
        return model
    try:
        return version_converter.convert_version(model, OPSET)
    except Exception as exc:  # the converter raises RuntimeError or its own C++ errors
        raise UserError(
            f"{source} uses opset {version}, which cannot be converted to {OPSET} ({first_line(exc)})."
        ) from None


def _probe_shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    """Every value's shape at a concrete batch (shape computations constant-propagated)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    image = _graph_inputs(probe.graph)[0]
    dim0 = image.type.tensor_type.shape.dim[0]
    if not dim0.HasField("dim_value"):
        dim0.dim_value = _PROBE_BATCH
    try:
        inferred = shape_inference.infer_shapes(probe, data_prop=True).graph
    except onnx.shape_inference.InferenceError:
        return {}
    return {v.name: _dims(v) for v in (*inferred.input, *inferred.value_info, *inferred.output)}


def _flatten_reshapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Reshape [b, r...] -> [b, prod(r)] becomes Flatten(axis=1), the same values for that batch."""
    shapes = _probe_shapes(model)
    nodes = []
    for node in model.graph.node:
        if node.op_type == "Reshape" and _is_flatten(shapes.get(node.input[0]), shapes.get(node.output[0])):
            node = helper.make_node("Flatten", [node.input[0]], [node.output[0]], name=node.name, axis=1)
        nodes.append(node)
    return _replace_nodes(model, nodes)


def _is_flatten(src: tuple | None, out: tuple | None) -> bool:
    if not src or not out or len(src) < 2 or len(out) != 2 or not all(isinstance(d, int) for d in (*src, *out)):
        return False
    return out[0] == src[0] and out[1] == math.prod(src[1:])


def _without_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop Identity nodes: their readers (and the graph output) read the Identity's input instead."""
    alias: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type == "Identity":
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
    nodes = []
    for node in model.graph.node:
        if node.op_type != "Identity":
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.input[:] = [alias.get(v, v) for v in copy.input]
            nodes.append(copy)
    result = _replace_nodes(model, nodes)
    output = result.graph.output[0]
    output.name = alias.get(output.name, output.name)
    return result


def _live(model: onnx.ModelProto) -> onnx.ModelProto:
    """Only the nodes and initializers the output depends on; the image as the only graph input."""
    graph = model.graph
    needed = {graph.output[0].name}
    kept = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(v for v in node.input if v)
    result = _replace_nodes(model, list(reversed(kept)))
    image = _graph_inputs(graph)[0]
    weights = [t for t in graph.initializer if t.name in needed]
    del result.graph.initializer[:], result.graph.input[:]
    result.graph.initializer.extend(weights)
    result.graph.input.append(image)
    result.ir_version = IR_VERSION  # initializers need not be listed as inputs from IR 4 on
    return result


def _with_symbolic_batch(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """Input and output batch dimensions named 'batch', stale value_info dropped, shapes re-inferred."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    del graph.value_info[:]
    image_batch = graph.input[0].type.tensor_type.shape.dim[0]
    image_batch.Clear()
    image_batch.dim_param = BATCH
    graph.output[0].type.tensor_type.ClearField("shape")
    output = graph.output[0].name
    probed = _probe_shapes(result).get(output)
    if not probed or len(probed) < 2 or probed[0] != _PROBE_BATCH or not all(isinstance(d, int) for d in probed[1:]):
        found = "unknown" if probed is None else [d if isinstance(d, int) else "?" for d in probed]
        raise UserError(
            f"{source}: at an input batch of {_PROBE_BATCH}, ONNX shape inference gives the output {output!r} the "
            f"shape {found}, not [{_PROBE_BATCH}, fixed sizes...] (export with a dynamic batch axis and no "
            "batch-size constants)."
        )
    dims = graph.output[0].type.tensor_type.shape.dim
    dims.add().dim_param = BATCH
    for d in probed[1:]:
        dims.add().dim_value = d
    try:
        return shape_inference.infer_shapes(result, check_type=True, strict_mode=True)
    except onnx.shape_inference.InferenceError as exc:
        raise UserError(f"ONNX shape inference failed on {source} ({first_line(exc)}).") from None


def _replace_nodes(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    result = onnx.ModelProto()
    result.CopyFrom(model)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    return result
