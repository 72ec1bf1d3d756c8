"""Lowering: a passed float `Graph` + calibration ranges + `QuantConfig` -> integer `Program`.

The episode graph has a fixed structure (see models/export.py): Concat(support_x, query_x)
-> ConvBlock chain -> Flatten -> Slice(support) / Slice(query) -> head -> ArgMax. The
program runs the embedding chain twice with shared weights, first on the support set, then,
after the adaptation ops, on the queries, which is the order the accelerator works in:

    support.blockI (Conv2d x depth) -> support.features (Flatten)
    adaptation: PrototypeAccumulate | ProtoHeadInit / learned init + SGDHeadStep x S
    query.blockI (Conv2d x depth) -> query.features (Flatten)
    classify: Distance(l2) + ArgMin | CosineAttention + ArgMax | Dense + ArgMax

Buffer names of the program (also the keys of per-tensor overrides): ``images`` (both
pixel inputs share it as format key), ``blockI.conv.weight`` / ``blockI.conv.bias``,
``blockI.pool`` (activations, as ``support.`` / ``query.`` buffers), ``features``,
``prototypes``, ``head.weight``, ``head.bias``, ``head.lr_w``, ``head.lr_b``,
``head.logits``, ``attention.scale``, ``scores`` and ``prediction``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from metahw.compiler.calibrate import Range
from metahw.compiler.ir import Graph, Node
from metahw.compiler.kernels import (
    ArgMax,
    ArgMin,
    Conv2d,
    CosineAttention,
    Dense,
    Distance,
    Flatten,
    ProtoHeadInit,
    PrototypeAccumulate,
    SGDHeadStep,
)
from metahw.compiler.kernels.argreduce import index_format
from metahw.compiler.kernels.base import Kernel
from metahw.compiler.program import Buffer, Program, ProgramMeta
from metahw.compiler.qformat import QFormat, format_for_range
from metahw.compiler.quant_config import QuantConfig, bias_format
from metahw.errors import UserError

SUPPORT, QUERY = "support", "query"


@dataclass
class _Builder:
    """Accumulates buffers, ops and weights while walking the graph."""

    config: QuantConfig
    ranges: Mapping[str, Range]
    buffers: dict[str, Buffer] = field(default_factory=dict)
    ops: list[Kernel] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    chosen: set[str] = field(default_factory=set)

    def choose(self, tensor: str, lo: float, hi: float, bits: int, signed: bool | None = None) -> QFormat:
        """`QuantConfig.choose`, remembering which override keys this program has."""
        self.chosen.add(tensor)
        return self.config.choose(tensor, lo, hi, bits, signed)

    def buffer(self, name: str, shape: tuple[int, ...], fmt: QFormat, kind: str, fracs: tuple | None = None) -> str:
        self.buffers[name] = Buffer(name, tuple(int(d) for d in shape), fmt, kind, fracs)
        return name

    def constant(self, name: str, value: np.ndarray, fmt: QFormat, kind: str = "weight") -> str:
        self.weights[name] = np.asarray(fmt.quantize(value, self.config.rounding, "saturate"), dtype=np.int64)
        return self.buffer(name, np.shape(value), fmt, kind)

    def range_of(self, *values: str) -> Range:
        found = [self.ranges[v] for v in values if v in self.ranges]
        if not found:
            raise UserError(f"no calibration range for {', '.join(values)}: calibrate on at least one episode.")
        return min(r[0] for r in found), max(r[1] for r in found)


def _expect(node: Node | None, op: str, what: str) -> Node:
    if node is None or node.op != op:
        got = "the end of the graph" if node is None else f"{node.op} node {node.name!r}"
        raise UserError(f"cannot lower the episode graph: expected {op} ({what}), found {got}.")
    return node


def lower(graph: Graph, ranges: Mapping[str, Range], config: QuantConfig, queries: int) -> Program:
    """Quantise and lower a passed episode graph (see `passes.standard_pipeline`) to a Program."""
    if queries < 1:
        raise UserError(f"--queries must be >= 1 (got {queries}).")
    support_shape, label_shape = graph.shapes["support_x"], graph.shapes["support_y"]
    n_support, ways = label_shape
    shots = n_support // ways
    if shots * ways != n_support:
        raise UserError(f"support_y {list(label_shape)} is not a whole number of shots per class.")
    b = _Builder(config, _qat_ranges(graph, ranges))
    nodes = iter(graph.nodes)
    _expect(next(nodes, None), "Concat", "support and query images")

    pixel = b.choose("images", *b.range_of("support_x", "query_x"), config.bits, signed=False)
    b.buffer("support_x", support_shape, pixel, "input")
    b.buffer("query_x", (queries, *support_shape[1:]), pixel, "input")
    b.buffer("support_labels", (n_support,), index_format(ways), "input")

    blocks: list[Node] = []
    node = next(nodes, None)
    while node is not None and node.op == "metahw.ConvBlock":
        blocks.append(node)
        node = next(nodes, None)
    if not blocks:
        raise UserError("cannot lower the episode graph: no convolution blocks between Concat and Flatten.")
    _expect(node, "Flatten", "embedding to feature vectors")
    for expected in ("support features", "query features"):
        _expect(next(nodes, None), "Slice", expected)
    layers: list[_ConvLayer] = []
    for block in blocks:
        layers.append(_conv_layer(b, graph, block, layers[-1].out_format if layers else pixel))

    support_features = _embed(b, SUPPORT, layers, support_shape[0])
    head = list(nodes)
    _expect(head[-1] if head else None, "ArgMax", "predicted class")
    classify = _lower_head(
        b, graph, head[:-1], support_features, ways, shots, lambda: _embed(b, QUERY, layers, queries)
    )
    b.ops.append(classify(b))
    ignored = sorted(set(config.overrides) - b.chosen)
    if ignored:
        raise UserError(f"override(s) for {', '.join(ignored)} name no tensor of this program; "
                        f"overridable are {', '.join(sorted(b.chosen))}.")  # fmt: skip
    meta = ProgramMeta(
        graph.metadata.get("algorithm", "unknown"), ways, shots, queries, config.rounding, config.overflow
    )
    return Program(meta, tuple(b.buffers.values()), tuple(b.ops), b.weights)


def _qat_ranges(graph: Graph, ranges: Mapping[str, Range]) -> dict[str, Range]:
    """Calibration ranges, with a QAT checkpoint's activation ranges taking precedence."""
    merged = dict(ranges)
    if "qat" in graph.metadata:
        for i, top in enumerate(json.loads(graph.metadata["qat"])["activation_max"]):
            merged[f"block{i}.pool"] = (0.0, float(top))
    return merged


@dataclass(frozen=True)
class _ConvLayer:
    """One quantised conv block: its weight/bias buffers, output key and format."""

    block: Node
    weight: str
    bias: str
    out_key: str
    out_format: QFormat


def _conv_layer(b: _Builder, graph: Graph, block: Node, in_fmt: QFormat) -> _ConvLayer:
    """Quantise one conv block's weights (symmetric range rule) and choose its output format."""
    attrs = block.attrs
    if attrs["kernel_shape"] != [3, 3] or attrs["pads"] not in ([1, 1, 1, 1], []) or len(block.inputs) != 3:
        raise UserError(f"conv {block.name!r}: only 3x3 convolutions with padding 1 and a bias are supported.")
    cfg = b.config
    weight = np.asarray(graph.constants[block.inputs[1]], np.float64)
    bias = np.asarray(graph.constants[block.inputs[2]], np.float64)
    w_name, b_name = f"{block.name}.weight", f"{block.name}.bias"
    b.chosen.update((w_name, b_name))
    if cfg.per_channel and w_name not in cfg.overrides:
        tops = np.abs(weight).reshape(len(weight), -1).max(axis=1)
        fracs = tuple(format_for_range(-t, t, cfg.weight_width, True, cfg.rounding).frac for t in tops)
        w_fmt = QFormat(cfg.weight_width, min(fracs), True)
        b.weights[w_name] = np.concatenate(
            [QFormat(cfg.weight_width, f).quantize(w[None], cfg.rounding, "saturate") for f, w in zip(fracs, weight)]
        )
        b.buffer(w_name, weight.shape, w_fmt, "weight", fracs)
    else:
        top = float(np.abs(weight).max())
        w_fmt = b.choose(w_name, -top, top, cfg.weight_width, signed=True)
        fracs = (w_fmt.frac,) * len(weight)
        b.constant(w_name, weight, w_fmt)
    tops = np.abs(bias) if cfg.per_channel else np.full(len(bias), np.abs(bias).max())
    b_fmt = QFormat(cfg.bias_bits, 0)
    b_fracs = tuple(bias_format(t, in_fmt.frac + f, cfg.bias_bits, cfg.rounding).frac for f, t in zip(fracs, tops))
    if b_name in cfg.overrides:
        b_fmt = b.choose(b_name, -float(tops.max()), float(tops.max()), cfg.bias_bits, signed=True)
        b_fracs = (b_fmt.frac,) * len(bias)
    b.weights[b_name] = np.array(
        [replace(b_fmt, frac=f).quantize(v, cfg.rounding, "saturate") for f, v in zip(b_fracs, bias)]
    )
    b.buffer(b_name, bias.shape, replace(b_fmt, frac=min(b_fracs)), "weight",
             b_fracs if len(set(b_fracs)) > 1 else None)  # fmt: skip
    out_key = block.outputs[0]
    out_fmt = b.choose(out_key, *b.range_of(out_key), cfg.bits, signed=False if attrs["relu"] else None)
    return _ConvLayer(block, w_name, b_name, out_key, out_fmt)


def _embed(b: _Builder, chain: str, layers: list[_ConvLayer], batch: int) -> str:
    """Emit the conv chain and Flatten for `batch` images of `chain` (support or query)."""
    x = f"{chain}_x"
    _, channels, height, width = b.buffers[x].shape
    for layer in layers:
        out = f"{chain}.{layer.out_key}"
        pool = layer.block.attrs["pool"] == 2
        if pool:
            height, width = height // 2, width // 2
        channels = b.buffers[layer.weight].shape[0]
        b.buffer(out, (batch, channels, height, width), layer.out_format, "activation")
        b.ops.append(Conv2d(name=f"{chain}.{layer.block.name}", input=x, weight=layer.weight, bias=layer.bias,
                            output=out, padding=1, relu=bool(layer.block.attrs["relu"]), pool=pool))  # fmt: skip
        x = out
    features = f"{chain}.features"
    b.buffer(features, (batch, channels * height * width), layers[-1].out_format, "activation")
    b.ops.append(Flatten(name=f"{chain}.flatten", input=x, output=features))
    return features


def _prototypes(b: _Builder, features: str, ways: int, shots: int) -> str:
    fmt = b.buffers[features].qformat
    b.buffer("prototypes", (ways, b.buffers[features].shape[1]), fmt, "activation")
    b.ops.append(PrototypeAccumulate(name="prototypes", features=features, labels="support_labels",
                                     output="prototypes", ways=ways, shots=shots))  # fmt: skip
    return "prototypes"


def _lower_head(b: _Builder, graph: Graph, head: list[Node], support: str, ways: int, shots: int, embed_queries):  # noqa: ANN001, ANN202
    """Emit the adaptation ops now, the query embedding, and return the classifier's ArgMax builder."""
    ops = [n.op for n in head]
    cfg = b.config
    if ops == ["metahw.ProtoHead"]:
        protos = _prototypes(b, support, ways, shots)
        queries = embed_queries()
        dist = Distance(name="distance", queries=queries, refs=protos, output="scores", metric="l2")
        b.buffer("scores", (b.buffers[queries].shape[0], ways), dist.exact_format(b.buffers), "output")
        b.ops.append(dist)
        return lambda b: _argreduce(b, ArgMin)
    if ops == ["metahw.CosineAttentionHead"]:
        queries = embed_queries()
        scale = float(np.asarray(graph.constants[head[0].inputs[3]]))
        b.constant("attention.scale", np.asarray(scale), b.choose("attention.scale", 0.0, scale, cfg.head_bits, False))
        probs = b.choose("attention.probs", 0.0, 1.0, cfg.head_bits, signed=False)
        b.buffer("scores", (b.buffers[queries].shape[0], ways), probs, "output")
        b.ops.append(CosineAttention(
            name="attention", queries=queries, supports=support, labels="support_labels", scale="attention.scale",
            output="scores", ways=ways, logits_format=b.choose("attention.logits", -scale, scale, cfg.head_bits),
            attention_format=probs))  # fmt: skip
        return lambda b: _argreduce(b, ArgMax)
    body = ops[1:] if ops[:1] == ["metahw.ProtoHeadInit"] else ops
    if body and body[-1] == "metahw.LinearHead" and all(op == "metahw.SGDHeadStep" for op in body[:-1]):
        return _lower_sgd_head(b, graph, head, support, ways, shots, embed_queries)
    raise UserError(f"cannot lower the episode head {' -> '.join(ops) or '(empty)'}: supported heads are ProtoHead, "
                    "CosineAttentionHead, and [ProtoHeadInit] -> SGDHeadStep* -> LinearHead.")  # fmt: skip


def _lower_sgd_head(b: _Builder, graph: Graph, head: list[Node], support: str, ways: int, shots: int, embed_queries):  # noqa: ANN001, ANN202
    cfg = b.config
    steps = [n for n in head if n.op == "metahw.SGDHeadStep"]
    linear = head[-1]
    w_values = [linear.inputs[1], *(n.inputs[0] for n in steps)]
    b_values = [linear.inputs[2], *(n.inputs[1] for n in steps)]
    ranges = dict(b.ranges)
    for name in (*w_values, *b_values):
        if name in graph.constants:
            value = np.asarray(graph.constants[name], np.float64)
            ranges[name] = (float(value.min()), float(value.max()))
    b.ranges = ranges
    w_fmt = b.choose("head.weight", *b.range_of(*w_values), cfg.head_bits, signed=True)
    b_fmt = b.choose("head.bias", *b.range_of(*b_values), cfg.head_bits, signed=True)
    acc_frac = b.buffers[support].qformat.frac + w_fmt.frac
    if "head.bias" not in cfg.overrides and b_fmt.frac > acc_frac:  # a bias is aligned by a left shift only
        b_fmt = replace(b_fmt, frac=acc_frac)
    dim = b.buffers[support].shape[1]
    if head[0].op == "metahw.ProtoHeadInit":
        protos = _prototypes(b, support, ways, shots)
        b.buffer("head.weight", (ways, dim), w_fmt, "state")
        b.buffer("head.bias", (ways,), b_fmt, "state")
        b.ops.append(ProtoHeadInit(name="head_init", prototypes=protos, weight="head.weight", bias="head.bias"))
    else:
        init_w, init_b = (steps[0].inputs[0], steps[0].inputs[1]) if steps else (linear.inputs[1], linear.inputs[2])
        b.constant("head.weight", np.asarray(graph.constants[init_w]), w_fmt, "state")
        b.constant("head.bias", np.asarray(graph.constants[init_b]), b_fmt, "state")
    if steps:
        for key, name in (("head.lr_w", steps[0].inputs[4]), ("head.lr_b", steps[0].inputs[5])):
            value = np.asarray(graph.constants[name], np.float64)
            b.constant(key, value, b.choose(key, float(value.min()), float(value.max()), cfg.head_bits))
        lo, hi = b.range_of("logits")
        logits = b.choose("head.logits", 2 * lo, 2 * hi, cfg.head_bits, signed=True)
        probs = b.choose("head.probs", 0.0, 1.0, cfg.head_bits, signed=False)
        m = b.buffers[support].shape[0]
        grad = b.choose("head.grad", -1.0 / m, 1.0 / m, cfg.head_bits, signed=True)
        formats = {"logits_format": logits, "prob_format": probs, "grad_format": grad}
        for i, _ in enumerate(steps):
            b.ops.append(SGDHeadStep(name=f"sgd{i}", features=support, labels="support_labels", weight="head.weight",
                                     bias="head.bias", lr_w="head.lr_w", lr_b="head.lr_b", **formats))  # fmt: skip
    queries = embed_queries()
    scores = b.choose("scores", *b.range_of("logits"), cfg.head_bits, signed=True)
    b.buffer("scores", (b.buffers[queries].shape[0], ways), scores, "output")
    b.ops.append(Dense(name="linear_head", input=queries, weight="head.weight", bias="head.bias", output="scores"))
    return lambda b: _argreduce(b, ArgMax)


def _argreduce(b: _Builder, op: type[Kernel]) -> Kernel:
    shape = b.buffers["scores"].shape
    b.buffer("prediction", shape[:1], index_format(shape[1]), "output")
    return op(name="prediction", input="scores", output="prediction")
