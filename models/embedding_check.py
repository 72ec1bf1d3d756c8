"""Rung 1 for an imported embedding: onnxruntime on the episode graph == an independent float reference.

The reference never looks at the spliced graph: it runs the user's own embedding (their
original ONNX file in onnxruntime, or their torch module), flattens it in torch ``flatten(1)``
order and applies the head in PyTorch (`export.head_logits`). Episodes are Omniglot meta-test
episodes when the embedding reads 1x28x28 images, seeded random images of its input shape
otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import EPFail, Fail, InvalidArgument, InvalidGraph, RuntimeException

from metahw.errors import UserError
from metahw.models.data import load_omniglot
from metahw.models.embedding_onnx import first_line
from metahw.models.episodes import EpisodeSampler
from metahw.models.export import EpisodeHead, HeadParams, head_logits
from metahw.models.export_check import EpisodeArrays, ExportCheck, compare_episodes, ort_session

OMNIGLOT_IMAGE = (1, 28, 28)
#: What onnxruntime raises for a graph it cannot load or run.
ORT_ERRORS = (EPFail, Fail, InvalidArgument, InvalidGraph, RuntimeException)
#: An embedding as a function: float images [B, C, H, W] -> features [B, D].
Embedder = Callable[[np.ndarray], torch.Tensor]


@dataclass(frozen=True)
class EmbeddingCheck:
    """The check's result and which images it ran on ('Omniglot meta-test' or 'random, seed S')."""

    result: ExportCheck
    images: str


def onnx_embedder(model: onnx.ModelProto) -> Embedder:
    """The user's embedding ONNX as it was given, in onnxruntime (a fixed batch size is fed in chunks)."""
    try:
        session = ort_session(model)
    except ORT_ERRORS as exc:
        raise UserError(f"onnxruntime cannot load the embedding ({first_line(exc)}).") from None
    image = session.get_inputs()[0]
    fixed = image.shape[0] if isinstance(image.shape[0], int) and image.shape[0] > 0 else None

    def embed(images: np.ndarray) -> torch.Tensor:
        chunk = fixed or len(images)
        parts = []
        for start in range(0, len(images), chunk):
            batch = images[start : start + chunk]
            padded = np.concatenate([batch, np.zeros((chunk - len(batch), *batch.shape[1:]), batch.dtype)])
            parts.append(session.run(None, {image.name: padded})[0][: len(batch)])
        return torch.from_numpy(np.concatenate(parts)).flatten(1)

    return embed


def module_embedder(module: torch.nn.Module) -> Embedder:
    """The user's torch module itself, in PyTorch float."""

    @torch.no_grad()
    def embed(images: np.ndarray) -> torch.Tensor:
        return module(torch.from_numpy(images)).flatten(1)

    return embed


def random_episodes(image: tuple[int, ...], ways: int, shots: int, queries: int, seed: int) -> Iterator[EpisodeArrays]:
    """Endless seeded episodes of uniform [0, 1) images: support class-major, `queries` per class."""
    rng = np.random.default_rng(seed)
    while True:
        support_y = np.repeat(np.arange(ways, dtype=np.int64), shots)
        support = rng.random((ways * shots, *image), dtype=np.float32)
        yield support, support_y, rng.random((ways * queries, *image), dtype=np.float32)


def check_embedding_episode(
    model: onnx.ModelProto,
    embed: Embedder,
    spec: EpisodeHead,
    params: HeadParams,
    image: tuple[int, ...],
    episodes: int,
    data: str | os.PathLike | None = None,
    seed: int = 0,
    queries: int = 5,
    progress: bool = True,
) -> EmbeddingCheck:
    """Compare the episode graph with `embed` + the PyTorch head over `episodes` seeded episodes."""
    if tuple(image) == OMNIGLOT_IMAGE:
        sampler = EpisodeSampler(load_omniglot(data).split("test"), spec.ways, spec.shots, queries, seed=seed)
        drawn = ((e.support_x, e.support_y, e.query_x) for e in (sampler.sample() for _ in range(episodes)))
        images = "Omniglot meta-test"
    else:
        source = random_episodes(tuple(image), spec.ways, spec.shots, queries, seed)
        drawn = (next(source) for _ in range(episodes))
        images = f"random, seed {seed}"

    def reference(sx: np.ndarray, y: torch.Tensor, qx: np.ndarray) -> np.ndarray:
        features = embed(np.concatenate([sx, qx]))
        return head_logits(spec, params, features[: len(sx)], y, features[len(sx) :]).numpy()

    try:
        result = compare_episodes(model, drawn, episodes, spec.ways, reference, progress)
    except ORT_ERRORS as exc:
        raise UserError(f"onnxruntime failed on the episode or the embedding ({first_line(exc)}).") from None
    return EmbeddingCheck(result, images)
