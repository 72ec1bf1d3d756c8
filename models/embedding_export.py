"""Bring your own model: a few-shot embedding trained elsewhere as a whole-episode ONNX graph.

The user's embedding (a torch module, or an ONNX file holding one) is normalised
(`embedding_onnx.prepare_embedding`), spliced into the episode graph with every name under
``embedding.`` (its input becomes ``images``, its flattened output ``features``) and given one
of metahw's heads, so the result has exactly the structure of a shipped checkpoint's export:

    Concat(support_x, query_x) -> embedding -> Flatten -> Slice / Slice -> head -> ArgMax

Then the graph is checked in onnxruntime against the user's own embedding plus the head in
PyTorch (`embedding_check`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from onnx import helper

from metahw.errors import UserError
from metahw.models.embedding_check import EmbeddingCheck, check_embedding_episode, module_embedder, onnx_embedder
from metahw.models.embedding_onnx import Embedding, first_line, load_embedding_onnx, module_to_onnx, prepare_embedding
from metahw.models.export import (
    EpisodeHead,
    HeadParams,
    check_episode_shape,
    check_inner_steps,
    episode_model,
    zero_init_steps,
)
from metahw.models.export_check import require_passed
from metahw.models.learners import ALGORITHMS

HEADS = ("protonet", "matchingnet", "protomaml", "anil")
GRADIENT_HEADS = ("protomaml", "anil")
PREFIX = "embedding."
#: Matching Networks' attention scale when none is given: the initial temperature of metahw's learner.
DEFAULT_ATTENTION_SCALE = 10.0


@dataclass(frozen=True)
class EmbeddingExport:
    """An imported embedding's episode graph, its head and the numerical check (None when skipped)."""

    model: onnx.ModelProto
    head: str
    spec: EpisodeHead
    params: HeadParams
    embedding: Embedding
    check: EmbeddingCheck | None


def embedding_head(
    head: str,
    ways: int,
    shots: int,
    dim: int,
    inner_steps: int | None = None,
    inner_lr: float | None = None,
    attention_scale: float | None = None,
) -> tuple[EpisodeHead, HeadParams]:
    """The head named `head` for `dim`-wide features, with metahw's learner defaults for what is not given.

    protonet: prototypes and squared L2; matchingnet: cosine attention (scale default 10);
    protomaml: linear head from prototypes, then SGD steps; anil: zero head, then SGD steps
    (steps and learning rate default to the head-mode values of the learner of that name).
    """
    if head not in HEADS:
        raise UserError(f"unknown `head` {head!r}: accepted are {', '.join(HEADS)}.", ("head",))
    check_episode_shape(ways, shots)
    check_inner_steps(inner_steps)
    if head not in GRADIENT_HEADS and (inner_steps or inner_lr is not None):
        raise UserError(
            f"`head` {head} takes no SGD steps: `inner_steps` and `inner_lr` need `head` protomaml or anil.",
            ("head", "inner_steps", "inner_lr"),
        )
    if head != "matchingnet" and attention_scale is not None:
        raise UserError(
            f"`attention_scale` is for `head` matchingnet only (got `head` {head}).", ("attention_scale", "head")
        )
    if inner_lr is not None and not inner_lr > 0:
        raise UserError(f"`inner_lr` must be > 0 (got {inner_lr}).", ("inner_lr",))
    if attention_scale is not None and not attention_scale > 0:
        raise UserError(f"`attention_scale` must be > 0 (got {attention_scale}).", ("attention_scale",))
    if head == "protonet":
        return EpisodeHead("proto", ways, shots), HeadParams(0.0, 0.0, None, dim)
    if head == "matchingnet":
        scale = DEFAULT_ATTENTION_SCALE if attention_scale is None else attention_scale
        return EpisodeHead("cosine", ways, shots), HeadParams(0.0, 0.0, scale, dim)
    defaults = ALGORITHMS[head].defaults
    steps = defaults["head_steps"] if inner_steps is None else inner_steps
    lr = float(defaults["inner_lr"] if inner_lr is None else inner_lr)
    init = "prototypes" if head == "protomaml" else "zeros"
    if init == "zeros":
        zero_init_steps(head, steps)
    return EpisodeHead("sgd", ways, shots, steps, init), HeadParams(lr, lr, None, dim)


def splice(embedding: Embedding, x: str = "images", out: str = "features") -> tuple[list, list]:
    """The embedding's nodes and initializers under `PREFIX`, reading `x` and ending in Flatten -> `out`.

    A final Flatten(axis=1) of the user's own becomes the episode's ``flatten`` node; any other
    output ([B, D] or a feature map) gets one appended, so the compiler always finds the same
    Flatten -> Slice boundary.
    """
    graph = embedding.model.graph
    image, output = graph.input[0].name, graph.output[0].name

    def rename(value: str) -> str:
        return x if value == image else (PREFIX + value if value else value)

    nodes = []
    for i, node in enumerate(graph.node):
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [rename(v) for v in node.input]
        copy.output[:] = [rename(v) for v in node.output]
        copy.name = PREFIX + (node.name or f"{node.op_type}_{i}")
        nodes.append(copy)
    inits = []
    for tensor in graph.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        copy.name = PREFIX + tensor.name
        inits.append(copy)
    last = nodes[-1] if nodes else None
    readers = sum(rename(output) in n.input for n in nodes)
    if last is not None and last.op_type == "Flatten" and _axis(last) == 1 and not readers:
        last.output[0], last.name = out, "flatten"
    else:
        nodes.append(helper.make_node("Flatten", [rename(output)], [out], name="flatten", axis=1))
    return nodes, inits


def _axis(node: onnx.NodeProto) -> int:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)


def export_embedding(embedding: Embedding, head: str, spec: EpisodeHead, params: HeadParams) -> onnx.ModelProto:
    """The checked episode ModelProto of `embedding` with the head `spec` / `params` (named `head`)."""
    meta = {
        "algorithm": head,
        "head": spec.kind,
        "ways": spec.ways,
        "shots": spec.shots,
        "inner_steps": spec.inner_steps,
        "head_init": spec.init,
        "embedding": json.dumps(
            {
                "source": embedding.source,
                "input_shape": list(embedding.input_shape),
                "output_shape": list(embedding.output_shape),
            }
        ),
    }
    try:
        return episode_model(f"{head}_episode", embedding.input_shape, spec, params, splice(embedding), meta)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise UserError(f"the episode graph around {embedding.source} is not valid ONNX ({first_line(exc)}).") from None


def embedding_episode(
    embedding: torch.nn.Module | onnx.ModelProto | str | os.PathLike,
    input_shape: tuple[int, int, int] | None = None,
    head: str = "protonet",
    ways: int = 5,
    shots: int = 1,
    inner_steps: int | None = None,
    inner_lr: float | None = None,
    attention_scale: float | None = None,
    check_episodes: int = 20,
    tolerance: float = 1e-4,
    data: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = False,
) -> EmbeddingExport:
    """`export_embedding_episode` with everything it found: head, normalised embedding and check result."""
    if isinstance(embedding, torch.nn.Module):
        if input_shape is None:
            raise UserError("a torch module needs input_shape=(C, H, W), the shape of one image.")
        model, source = module_to_onnx(embedding, tuple(input_shape)), type(embedding).__name__
        embed = module_embedder(embedding)
    else:
        if isinstance(embedding, onnx.ModelProto):
            model, source = embedding, "the embedding"
        else:
            model, source = load_embedding_onnx(embedding), Path(embedding).name
        embed = None
    prepared = prepare_embedding(model, source)
    if input_shape is not None and tuple(input_shape) != prepared.input_shape:
        raise UserError(f"input_shape {tuple(input_shape)} differs from the embedding's input {prepared.input_shape}.")
    spec, params = embedding_head(head, ways, shots, prepared.feature_dim, inner_steps, inner_lr, attention_scale)
    episode = export_embedding(prepared, head, spec, params)
    check = None
    if check_episodes > 0:
        embed = embed or onnx_embedder(model)
        check = check_embedding_episode(
            episode, embed, spec, params, prepared.input_shape, check_episodes, data, seed, progress=progress
        )
        require_passed(check.result, tolerance)
    return EmbeddingExport(episode, head, spec, params, prepared, check)


def export_embedding_episode(
    embedding: torch.nn.Module | onnx.ModelProto | str | os.PathLike,
    input_shape: tuple[int, int, int] | None = None,
    head: str = "protonet",
    ways: int = 5,
    shots: int = 1,
    inner_steps: int | None = None,
    inner_lr: float | None = None,
    attention_scale: float | None = None,
    check_episodes: int = 20,
    tolerance: float = 1e-4,
    data: str | os.PathLike | None = None,
    seed: int = 0,
) -> onnx.ModelProto:
    """A few-shot embedding trained anywhere as metahw's whole-episode ONNX graph, checked in onnxruntime.

    `embedding` is an eval-mode torch module (exported with torch.onnx.export on
    [batch, *input_shape] images), an ONNX ModelProto or the path of an ONNX file, with one
    float input [B, C, H, W] and one output [B, D] or a feature map (flattened as torch's
    flatten(1)). `head` is one of protonet, matchingnet (`attention_scale`), protomaml or anil
    (`inner_steps`, `inner_lr`). The episode graph is run on `check_episodes` seeded episodes
    (Omniglot meta-test for 1x28x28 inputs, else random images) against the embedding itself
    plus the head in PyTorch; a relative logit error above `tolerance` or any differing
    prediction raises UserError. The result is ready for `metahw compile` (save it with
    `onnx.save_model`). Bad input raises UserError with one sentence.
    """
    return embedding_episode(
        embedding,
        input_shape,
        head,
        ways,
        shots,
        inner_steps,
        inner_lr,
        attention_scale,
        check_episodes,
        tolerance,
        data,
        seed,
    ).model
