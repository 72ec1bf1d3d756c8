"""Whole-episode ONNX export: (support_x, support_y one-hot, query_x) -> (logits, prediction).

The graph holds the Conv-4 backbone as plain ONNX ops (Conv, BatchNormalization, Relu,
MaxPool, Flatten) applied once to the concatenated support and query images, followed by
the episode head built from model-local functions in the `metahw` domain, so that the
compiler recognises each head part by name while onnxruntime still executes it:

- ``metahw.Prototypes(fs, Y) -> c``              class means
- ``metahw.ProtoHead(fs, Y, fq) -> logits``      minus squared L2 to each prototype (ProtoNet)
- ``metahw.CosineAttentionHead(fs, Y, fq, scale) -> logits``  Matching Networks
- ``metahw.ProtoHeadInit(fs, Y) -> W, b``        W = 2c, b = -|c|^2 (Proto-MAML)
- ``metahw.SGDHeadStep(W, b, fs, Y, lr_w, lr_b) -> W', b'``  one closed-form SGD step
- ``metahw.LinearHead(fq, W, b) -> logits``

The graph is built directly with `onnx.helper` from the learner's weights (no tracing),
so it is exactly the math of `metahw.models.head`; `check_export` proves it numerically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from metahw import __version__
from metahw.errors import UserError
from metahw.models import head
from metahw.models.learners import MetaLearner

DOMAIN = "metahw"
OPSET = 18
IR_VERSION = 10  # onnx 1.23 writes 11+, which older onnxruntime releases refuse
QUERY_DIM = "queries"


@dataclass(frozen=True)
class EpisodeHead:
    """Which head an exported episode uses: 'proto', 'cosine' or 'sgd' (with its init and steps)."""

    kind: str
    ways: int
    shots: int
    inner_steps: int = 0
    init: str = ""  # for kind 'sgd': 'prototypes' or 'zeros'


@dataclass(frozen=True)
class HeadParams:
    """The numbers of a head besides its structure: SGD learning rates, attention scale, embedding width.

    `lr_w` / `lr_b` are used by 'sgd' heads (scalars, or per-element tensors for Meta-SGD),
    `scale` by 'cosine' heads; `dim` is the feature width D (the size of a zero-initialised head).
    """

    lr_w: torch.Tensor | float
    lr_b: torch.Tensor | float
    scale: torch.Tensor | float | None
    dim: int


def check_episode_shape(ways: int, shots: int) -> None:
    """UserError unless the episode has at least two classes and one shot each."""
    if ways < 2 or shots < 1:
        raise UserError(f"an episode needs `ways` >= 2 and `shots` >= 1 (got {ways}, {shots}).", ("ways", "shots"))


def check_inner_steps(inner_steps: int | None) -> None:
    """UserError for a negative step count (None means the default)."""
    if inner_steps is not None and inner_steps < 0:
        raise UserError(f"`inner_steps` must be >= 0 (got {inner_steps}).", ("inner_steps",))


def zero_init_steps(algorithm: str, steps: int) -> None:
    """UserError for a zero-initialised head without steps: every query would get class 0."""
    if steps == 0:
        raise UserError(
            f"{algorithm} starts its head at zero, so it needs `inner_steps` >= 1 "
            "(with 0 steps every query would get class 0).",
            ("inner_steps",),
        )


def episode_head(learner: MetaLearner, ways: int, shots: int, inner_steps: int | None) -> EpisodeHead:
    """The head the hardware runs for this learner: its own metric head, or head-only SGD steps.

    ProtoNet with 0 steps and Matching Networks keep their metric heads; every other case is
    a linear head initialised like the algorithm does (from prototypes, or zero) and
    adapted by `inner_steps` SGD steps (default: the learner's head-mode step count).
    """
    check_episode_shape(ways, shots)
    check_inner_steps(inner_steps)
    if learner.algorithm == "matchingnet":
        if inner_steps:
            raise UserError(
                "Matching Networks adapt by attention, not SGD: `inner_steps` must be 0 or not given.", ("inner_steps",)
            )
        return EpisodeHead("cosine", ways, shots)
    steps = learner.hparams["head_steps"] if inner_steps is None else inner_steps
    if learner.algorithm == "protonet" and steps == 0:
        return EpisodeHead("proto", ways, shots)
    init = "prototypes" if learner.algorithm in ("protonet", "protomaml") else "zeros"
    if init == "zeros":
        zero_init_steps(learner.algorithm, steps)
    return EpisodeHead("sgd", ways, shots, steps, init)


def learner_head_params(learner: MetaLearner, spec: EpisodeHead) -> HeadParams:
    """The learner's own head numbers: its head-mode learning rates, its learned attention scale."""
    lr_w, lr_b = learner.head_lrs()
    scale = learner.log_scale.exp() if spec.kind == "cosine" else None
    return HeadParams(lr_w, lr_b, scale, learner.backbone_config.embedding_dim())


def exported_backbone(learner: MetaLearner) -> torch.nn.Module:
    """The float network the graph holds: the backbone, or a QAT backbone's quantised-weight twin."""
    twin = getattr(learner.backbone, "float_twin", None)
    return twin() if twin is not None else learner.backbone


@torch.no_grad()
def reference_logits(
    learner: MetaLearner, spec: EpisodeHead, sx: torch.Tensor, y: torch.Tensor, qx: torch.Tensor
) -> torch.Tensor:
    """What the exported graph computes, in PyTorch float: the ground truth of the export check."""
    learner.eval()
    feats = exported_backbone(learner)(torch.cat([sx, qx]))
    return reference_head(learner, spec, feats[: len(sx)], y, feats[len(sx) :])


@torch.no_grad()
def reference_head(
    learner: MetaLearner, spec: EpisodeHead, fs: torch.Tensor, y: torch.Tensor, fq: torch.Tensor
) -> torch.Tensor:
    """The exported head on float embeddings (support fs, one-hot y, queries fq)."""
    if spec.kind == "proto":
        return head.squared_l2_logits(fq, head.prototypes(fs, y))
    if spec.kind == "cosine":
        return learner.metric_logits(fs, y, fq)
    w, b = learner.head_init(fs, y)
    w, b = head.adapt_head(w, b, fs, y, spec.inner_steps, *learner.head_lrs())
    return head.linear_logits(fq, w, b)


@torch.no_grad()
def head_logits(
    spec: EpisodeHead, params: HeadParams, fs: torch.Tensor, y: torch.Tensor, fq: torch.Tensor
) -> torch.Tensor:
    """The exported head from plain parameters, in PyTorch float: the reference for imported embeddings.

    The same `metahw.models.head` math as `reference_head`, without a learner: prototypes and
    squared L2 ('proto'), Matching Networks' cosine attention at `params.scale` ('cosine'),
    or a linear head from prototypes or zero adapted by `spec.inner_steps` SGD steps ('sgd').
    """
    if spec.kind == "proto":
        return head.squared_l2_logits(fq, head.prototypes(fs, y))
    if spec.kind == "cosine":
        return head.cosine_attention_logits(fq, fs, y, params.scale)
    if spec.init == "prototypes":
        w, b = head.proto_head_init(head.prototypes(fs, y))
    else:
        w, b = fs.new_zeros(spec.ways, fs.shape[1]), fs.new_zeros(spec.ways)
    w, b = head.adapt_head(w, b, fs, y, spec.inner_steps, params.lr_w, params.lr_b)
    return head.linear_logits(fq, w, b)


# ---- the metahw function library --------------------------------------------------------


def _const(name: str, value: float | list[int], dtype: int = TensorProto.FLOAT) -> onnx.NodeProto:
    array = np.array(value, dtype=np.float32 if dtype == TensorProto.FLOAT else np.int64)
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))


def _function(name: str, inputs: list[str], outputs: list[str], nodes: list[onnx.NodeProto]) -> onnx.FunctionProto:
    return helper.make_function(
        DOMAIN, name, inputs, outputs, nodes, [helper.make_opsetid("", OPSET), helper.make_opsetid(DOMAIN, 1)]
    )


def _call(name: str, inputs: list[str], outputs: list[str], node_name: str) -> onnx.NodeProto:
    return helper.make_node(name, inputs, outputs, name=node_name, domain=DOMAIN)


def function_library() -> list[onnx.FunctionProto]:
    """The `metahw`-domain functions; their bodies are the float reference semantics."""
    n = helper.make_node
    prototypes = _function(
        "Prototypes",
        ["fs", "y"],
        ["c"],
        [
            _const("axis0", [0], TensorProto.INT64),
            n("Transpose", ["y"], ["yt"], perm=[1, 0]),
            n("MatMul", ["yt", "fs"], ["sums"]),
            n("ReduceSum", ["y", "axis0"], ["counts_row"], keepdims=1),
            n("Transpose", ["counts_row"], ["counts"], perm=[1, 0]),
            n("Div", ["sums", "counts"], ["c"]),
        ],
    )
    proto_head = _function(
        "ProtoHead",
        ["fs", "y", "fq"],
        ["logits"],
        [
            _call("Prototypes", ["fs", "y"], ["c"], "prototypes"),
            _const("axis1", [1], TensorProto.INT64),
            _const("axis0", [0], TensorProto.INT64),
            _const("axis2", [2], TensorProto.INT64),
            n("Unsqueeze", ["fq", "axis1"], ["q3"]),
            n("Unsqueeze", ["c", "axis0"], ["c3"]),
            n("Sub", ["q3", "c3"], ["diff"]),
            n("Mul", ["diff", "diff"], ["sq"]),
            n("ReduceSum", ["sq", "axis2"], ["dist"], keepdims=0),
            n("Neg", ["dist"], ["logits"]),
        ],
    )
    proto_init = _function(
        "ProtoHeadInit",
        ["fs", "y"],
        ["w", "b"],
        [
            _call("Prototypes", ["fs", "y"], ["c"], "prototypes"),
            _const("two", 2.0),
            _const("axis1", [1], TensorProto.INT64),
            n("Mul", ["c", "two"], ["w"]),
            n("Mul", ["c", "c"], ["csq"]),
            n("ReduceSum", ["csq", "axis1"], ["norm2"], keepdims=0),
            n("Neg", ["norm2"], ["b"]),
        ],
    )
    linear = _function(
        "LinearHead",
        ["fq", "w", "b"],
        ["logits"],
        [
            n("Transpose", ["w"], ["wt"], perm=[1, 0]),
            n("MatMul", ["fq", "wt"], ["prod"]),
            n("Add", ["prod", "b"], ["logits"]),
        ],
    )
    sgd_step = _function(
        "SGDHeadStep",
        ["w", "b", "fs", "y", "lr_w", "lr_b"],
        ["w_next", "b_next"],
        [
            _call("LinearHead", ["fs", "w", "b"], ["logits"], "support_logits"),
            n("Softmax", ["logits"], ["p"], axis=1),
            n("Sub", ["p", "y"], ["residual"]),
            n("Shape", ["y"], ["shape"], start=0, end=1),
            n("Cast", ["shape"], ["m"], to=TensorProto.FLOAT),
            n("Div", ["residual", "m"], ["err"]),
            n("Transpose", ["err"], ["err_t"], perm=[1, 0]),
            n("MatMul", ["err_t", "fs"], ["grad_w"]),
            _const("axis0", [0], TensorProto.INT64),
            n("ReduceSum", ["err", "axis0"], ["grad_b"], keepdims=0),
            n("Mul", ["lr_w", "grad_w"], ["step_w"]),
            n("Mul", ["lr_b", "grad_b"], ["step_b"]),
            n("Sub", ["w", "step_w"], ["w_next"]),
            n("Sub", ["b", "step_b"], ["b_next"]),
        ],
    )
    cosine = _function(
        "CosineAttentionHead",
        ["fs", "y", "fq", "scale"],
        ["logits"],
        [
            _const("axis1", [1], TensorProto.INT64),
            _const("eps", 1e-8),
            _const("tiny", 1e-12),
            n("Mul", ["fq", "fq"], ["q2"]),
            n("ReduceSum", ["q2", "axis1"], ["qn2"], keepdims=1),
            n("Sqrt", ["qn2"], ["qn_raw"]),
            n("Max", ["qn_raw", "eps"], ["qn"]),
            n("Div", ["fq", "qn"], ["q_unit"]),
            n("Mul", ["fs", "fs"], ["s2"]),
            n("ReduceSum", ["s2", "axis1"], ["sn2"], keepdims=1),
            n("Sqrt", ["sn2"], ["sn_raw"]),
            n("Max", ["sn_raw", "eps"], ["sn"]),
            n("Div", ["fs", "sn"], ["s_unit"]),
            n("Transpose", ["s_unit"], ["s_unit_t"], perm=[1, 0]),
            n("MatMul", ["q_unit", "s_unit_t"], ["cos"]),
            n("Mul", ["cos", "scale"], ["scaled"]),
            n("Softmax", ["scaled"], ["attention"], axis=1),
            n("MatMul", ["attention", "y"], ["probs"]),
            n("Add", ["probs", "tiny"], ["probs_safe"]),
            n("Log", ["probs_safe"], ["logits"]),
        ],
    )
    return [prototypes, proto_head, proto_init, linear, sgd_step, cosine]


# ---- graph construction -----------------------------------------------------------------


def _tensor(name: str, value: torch.Tensor | np.ndarray | float) -> onnx.TensorProto:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return numpy_helper.from_array(array.astype(np.float32), name)


def _backbone_nodes(backbone: torch.nn.Module, x: str, out: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    nodes, inits = [], []
    for i, block in enumerate(backbone.blocks):
        conv, rest = block[0], list(block)[1:]
        prefix = f"block{i}"
        inputs = [x, f"{prefix}.conv.weight"]
        inits.append(_tensor(inputs[1], conv.weight))
        if conv.bias is not None:
            inputs.append(f"{prefix}.conv.bias")
            inits.append(_tensor(inputs[2], conv.bias))
        nodes.append(
            helper.make_node(
                "Conv",
                inputs,
                [f"{prefix}.conv"],
                name=f"{prefix}.conv",
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
                strides=[1, 1],
            )
        )
        x = f"{prefix}.conv"
        if isinstance(rest[0], torch.nn.BatchNorm2d):
            bn = rest[0]
            names = [f"{prefix}.bn.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
            inits += [
                _tensor(nm, getattr(bn, p)) for nm, p in zip(names, ("weight", "bias", "running_mean", "running_var"))
            ]
            nodes.append(
                helper.make_node(
                    "BatchNormalization", [x, *names], [f"{prefix}.bn"], name=f"{prefix}.bn", epsilon=bn.eps
                )
            )
            x = f"{prefix}.bn"
        nodes.append(helper.make_node("Relu", [x], [f"{prefix}.relu"], name=f"{prefix}.relu"))
        nodes.append(
            helper.make_node(
                "MaxPool",
                [f"{prefix}.relu"],
                [f"{prefix}.pool"],
                name=f"{prefix}.pool",
                kernel_shape=[2, 2],
                strides=[2, 2],
            )
        )
        x = f"{prefix}.pool"
    nodes.append(helper.make_node("Flatten", [x], [out], name="flatten", axis=1))
    return nodes, inits


def _head_nodes(spec: EpisodeHead, params: HeadParams) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    if spec.kind == "proto":
        return [_call("ProtoHead", ["support_features", "support_y", "query_features"], ["logits"], "proto_head")], []
    if spec.kind == "cosine":
        scale = _tensor("attention_scale", params.scale)
        return [
            _call(
                "CosineAttentionHead",
                ["support_features", "support_y", "query_features", "attention_scale"],
                ["logits"],
                "cosine_attention_head",
            )
        ], [scale]
    nodes, inits = [], []
    if spec.init == "prototypes":
        nodes.append(_call("ProtoHeadInit", ["support_features", "support_y"], ["head_w_0", "head_b_0"], "head_init"))
    else:
        inits += [_tensor("head_w_0", np.zeros((spec.ways, params.dim))), _tensor("head_b_0", np.zeros(spec.ways))]
    inits += [_tensor("head_lr_w", params.lr_w), _tensor("head_lr_b", params.lr_b)]
    for s in range(spec.inner_steps):
        nodes.append(
            _call(
                "SGDHeadStep",
                [f"head_w_{s}", f"head_b_{s}", "support_features", "support_y", "head_lr_w", "head_lr_b"],
                [f"head_w_{s + 1}", f"head_b_{s + 1}"],
                f"sgd_head_step_{s}",
            )
        )
    last = spec.inner_steps
    nodes.append(_call("LinearHead", ["query_features", f"head_w_{last}", f"head_b_{last}"], ["logits"], "linear_head"))
    return nodes, inits


def episode_model(
    name: str,
    image: tuple[int, ...],
    spec: EpisodeHead,
    params: HeadParams,
    embedding: tuple[list[onnx.NodeProto], list[onnx.TensorProto]],
    meta: dict,
) -> onnx.ModelProto:
    """The checked episode ModelProto around `embedding` (nodes 'images' -> 'features', initializers).

    Shared by shipped checkpoints and imported embeddings, so that both have the structure the
    compiler lowers: Concat -> embedding -> Slice support / Slice query -> head -> ArgMax.
    """
    n_support = spec.ways * spec.shots
    inputs = [
        helper.make_tensor_value_info("support_x", TensorProto.FLOAT, [n_support, *image]),
        helper.make_tensor_value_info("support_y", TensorProto.FLOAT, [n_support, spec.ways]),
        helper.make_tensor_value_info("query_x", TensorProto.FLOAT, [QUERY_DIM, *image]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, [QUERY_DIM, spec.ways]),
        helper.make_tensor_value_info("prediction", TensorProto.INT64, [QUERY_DIM]),
    ]
    embedding_nodes, inits = embedding
    head_nodes, head_inits = _head_nodes(spec, params)
    inits = [*inits, *head_inits] + [
        numpy_helper.from_array(np.array([0], np.int64), "slice_begin"),
        numpy_helper.from_array(np.array([n_support], np.int64), "slice_split"),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), "slice_end"),
    ]
    nodes = [
        helper.make_node("Concat", ["support_x", "query_x"], ["images"], name="concat_images", axis=0),
        *embedding_nodes,
        helper.make_node(
            "Slice", ["features", "slice_begin", "slice_split"], ["support_features"], name="support_slice"
        ),
        helper.make_node("Slice", ["features", "slice_split", "slice_end"], ["query_features"], name="query_slice"),
        *head_nodes,
        helper.make_node("ArgMax", ["logits"], ["prediction"], name="prediction", axis=1, keepdims=0),
    ]
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(
        graph,
        functions=function_library(),
        producer_name="metahw",
        producer_version=__version__,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(DOMAIN, 1)],
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {k: str(v) for k, v in meta.items()})
    onnx.checker.check_model(model, full_check=True)
    return model


def export_episode(learner: MetaLearner, spec: EpisodeHead) -> onnx.ModelProto:
    """The whole few-shot episode of `learner` as a checked ONNX model."""
    learner.eval()
    meta = {
        "algorithm": learner.algorithm,
        "head": spec.kind,
        "ways": spec.ways,
        "shots": spec.shots,
        "inner_steps": spec.inner_steps,
        "head_init": spec.init,
        "backbone": learner.backbone_config.to_dict(),
    }
    if hasattr(learner.backbone, "activation_ranges"):
        meta["qat"] = json.dumps(
            {"bits": learner.backbone_config.qat_bits, "activation_max": learner.backbone.activation_ranges()}
        )
    backbone = _backbone_nodes(exported_backbone(learner), "images", "features")
    return episode_model(
        f"{learner.algorithm}_episode", (1, 28, 28), spec, learner_head_params(learner, spec), backbone, meta
    )
