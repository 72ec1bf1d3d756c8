"""Lowering: a passed float `Graph` + calibration ranges + `QuantConfig` -> integer `Program`.

The episode graph has a fixed structure (see models/export.py): Concat(support_x, query_x)
-> embedding -> Slice(support) / Slice(query) -> head -> ArgMax; the embedding is lowered by
`lower_embedding.py`. The program runs the embedding twice with shared weights, first on
the support set, then, after the adaptation ops, on the queries, which is the order the
accelerator works in:

    support.blockI (Conv2d, pools, Add, ...) -> support.features (Flatten [-> Dense])
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
    CosineAttention,
    Dense,
    Distance,
    ProtoHeadInit,
    PrototypeAccumulate,
    SGDHeadStep,
)
from metahw.compiler.kernels.argreduce import index_format
from metahw.compiler.kernels.base import Kernel
from metahw.compiler.lower_embedding import embedding_layers, emit_embedding, features_buffer
from metahw.compiler.program import Buffer, EpisodeRoles, Program, ProgramMeta
from metahw.compiler.quant_config import QuantConfig
from metahw.errors import UserError
from metahw.qformat import QFormat

SUPPORT, QUERY = "support", "query"
#: the episode's input buffers, which the program's roles name (the graph's inputs are support_x, support_y, query_x)
SUPPORT_IMAGES, SUPPORT_LABELS, QUERY_IMAGES = "support_x", "support_labels", "query_x"


@dataclass
class ProgramBuilder:
    """Accumulates buffers, ops and weights while walking the graph."""

    config: QuantConfig
    ranges: Mapping[str, Range]
    buffers: dict[str, Buffer] = field(default_factory=dict)
    ops: list[Kernel] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    chosen: set[str] = field(default_factory=set)
    #: C-order -> program order of the feature axis (a channels-last Flatten), for learned head constants
    feature_order: np.ndarray | None = None

    def choose(self, tensor: str, lo: float, hi: float, bits: int, signed: bool | None = None) -> QFormat:
        """`QuantConfig.choose`, remembering which override keys this program has."""
        self.chosen.add(tensor)
        return self.config.choose(tensor, lo, hi, bits, signed)

    def buffer(self, name: str, shape: tuple[int, ...], fmt: QFormat, kind: str, fracs: tuple | None = None) -> str:
        """Declare buffer `name` (its shape, format, kind and per-channel fracs); returns the name."""
        self.buffers[name] = Buffer(name, tuple(int(d) for d in shape), fmt, kind, fracs)
        return name

    def constant(self, name: str, value: np.ndarray, fmt: QFormat, kind: str = "weight") -> str:
        """Quantise a float constant into `fmt` (saturating) and declare its buffer."""
        self.weights[name] = np.asarray(fmt.quantize(value, self.config.rounding, "saturate"), dtype=np.int64)
        return self.buffer(name, np.shape(value), fmt, kind)

    def range_of(self, *values: str) -> Range:
        """The calibrated float range covering all of `values` (UserError if none was calibrated)."""
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
        raise UserError(f"`queries` must be >= 1 (got {queries}).", ("queries",))
    support_shape, label_shape = graph.shapes["support_x"], graph.shapes["support_y"]
    n_support, ways = label_shape
    shots = n_support // ways
    if shots * ways != n_support:
        raise UserError(f"support_y {list(label_shape)} is not a whole number of shots per class.")
    b = ProgramBuilder(config, _qat_ranges(graph, ranges))
    nodes = iter(graph.nodes)
    _expect(next(nodes, None), "Concat", "support and query images")

    lo, hi = b.range_of("support_x", "query_x")
    pixel = b.choose("images", lo, hi, config.bits, signed=lo < 0)
    b.buffer(SUPPORT_IMAGES, support_shape, pixel, "input")
    b.buffer(QUERY_IMAGES, (queries, *support_shape[1:]), pixel, "input")
    b.buffer(SUPPORT_LABELS, (n_support,), index_format(ways), "input")

    node = next(nodes, None)
    embedding_nodes: list[Node] = []
    while node is not None and node.op != "Slice":
        embedding_nodes.append(node)
        node = next(nodes, None)
    if not embedding_nodes:
        raise UserError("cannot lower the episode graph: no embedding between Concat and the support/query Slices.")
    _expect(node, "Slice", "support features")
    _expect(next(nodes, None), "Slice", "query features")
    embedding = embedding_layers(b, graph, embedding_nodes, pixel)
    b.feature_order = embedding.feature_order

    support_features = emit_embedding(b, SUPPORT, SUPPORT_IMAGES, embedding, support_shape[0])
    head = list(nodes)
    _expect(head[-1] if head else None, "ArgMax", "predicted class")
    classify = _lower_head(
        b,
        graph,
        head[:-1],
        support_features,
        ways,
        shots,
        lambda: emit_embedding(b, QUERY, QUERY_IMAGES, embedding, queries),
    )
    prediction = classify(b)
    b.ops.append(prediction)
    ignored = sorted(set(config.overrides) - b.chosen)
    if ignored:
        raise UserError(
            f"override(s) for {', '.join(ignored)} name no tensor of this program; "
            f"overridable are {', '.join(sorted(b.chosen))}."
        )
    meta = ProgramMeta(
        graph.metadata.get("algorithm", "unknown"), ways, shots, queries, config.rounding, config.overflow
    )
    roles = EpisodeRoles(
        support_images=SUPPORT_IMAGES,
        support_labels=SUPPORT_LABELS,
        query_images=QUERY_IMAGES,
        support_features=support_features,
        query_features=features_buffer(QUERY),
        scores=prediction.input,
        prediction=prediction.output,
    )
    return Program(meta, tuple(b.buffers.values()), tuple(b.ops), b.weights, roles)


def _qat_ranges(graph: Graph, ranges: Mapping[str, Range]) -> dict[str, Range]:
    """Calibration ranges, with a QAT checkpoint's activation ranges taking precedence."""
    merged = dict(ranges)
    if "qat" in graph.metadata:
        for i, top in enumerate(json.loads(graph.metadata["qat"])["activation_max"]):
            merged[f"block{i}.pool"] = (0.0, float(top))
    return merged


def _prototypes(b: ProgramBuilder, features: str, ways: int, shots: int) -> str:
    fmt = b.buffers[features].qformat
    b.buffer("prototypes", (ways, b.buffers[features].shape[1]), fmt, "activation")
    b.ops.append(
        PrototypeAccumulate(
            name="prototypes", features=features, labels=SUPPORT_LABELS, output="prototypes", ways=ways, shots=shots
        )
    )
    return "prototypes"


def _lower_head(b: ProgramBuilder, graph: Graph, head: list[Node], support: str, ways: int, shots: int, embed_queries):  # noqa: ANN001, ANN202
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
        b.ops.append(
            CosineAttention(
                name="attention",
                queries=queries,
                supports=support,
                labels=SUPPORT_LABELS,
                scale="attention.scale",
                output="scores",
                ways=ways,
                logits_format=b.choose("attention.logits", -scale, scale, cfg.head_bits),
                attention_format=probs,
            )
        )
        return lambda b: _argreduce(b, ArgMax)
    body = ops[1:] if ops[:1] == ["metahw.ProtoHeadInit"] else ops
    if body and body[-1] == "metahw.LinearHead" and all(op == "metahw.SGDHeadStep" for op in body[:-1]):
        return _lower_sgd_head(b, graph, head, support, ways, shots, embed_queries)
    raise UserError(
        f"cannot lower the episode head {' -> '.join(ops) or '(empty)'}: supported heads are ProtoHead, "
        "CosineAttentionHead, and [ProtoHeadInit] -> SGDHeadStep* -> LinearHead."
    )


def _lower_sgd_head(
    b: ProgramBuilder, graph: Graph, head: list[Node], support: str, ways: int, shots: int, embed_queries
):  # noqa: ANN001, ANN202
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
        init = np.asarray(graph.constants[init_w])
        b.constant("head.weight", init if b.feature_order is None else init[:, b.feature_order], w_fmt, "state")
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
            b.ops.append(
                SGDHeadStep(
                    name=f"sgd{i}",
                    features=support,
                    labels=SUPPORT_LABELS,
                    weight="head.weight",
                    bias="head.bias",
                    lr_w="head.lr_w",
                    lr_b="head.lr_b",
                    **formats,
                )
            )
    queries = embed_queries()
    scores = b.choose("scores", *b.range_of("logits"), cfg.head_bits, signed=True)
    b.buffer("scores", (b.buffers[queries].shape[0], ways), scores, "output")
    b.ops.append(Dense(name="linear_head", input=queries, weight="head.weight", bias="head.bias", output="scores"))
    return lambda b: _argreduce(b, ArgMax)


def _argreduce(b: ProgramBuilder, op: type[Kernel]) -> Kernel:
    shape = b.buffers["scores"].shape
    b.buffer("prediction", shape[:1], index_format(shape[1]), "output")
    return op(name="prediction", input="scores", output="prediction")
