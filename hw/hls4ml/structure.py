"""A Program seen the way the hls4ml design computes it: one embedding per image, then the head.

The golden program embeds the support images and the query images with two sets of ops (the
program's roles name their buffers: `support_images` -> ... -> `support_features` and
`query_images` -> ... -> `query_features`, see `EpisodeRoles`) that share their weights. An
embedding is a chain of image-wise ops in program order; a residual Add also reads an earlier
tensor of its chain. The hls4ml design has one set of embedding layers that every image passes
through, so the two chains must be the same computation: the same op types, attributes, weight
buffers and formats, reading the same positions of their chain, differing only in the names of
the activations they write. Everything after the two feature buffers is the head.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from metahw.compiler.kernels import Kernel
from metahw.compiler.program import Program
from metahw.compiler.stages import embedding_chain
from metahw.errors import UserError

BACKEND = "the hls4ml backend"


@dataclass(frozen=True)
class EpisodeStructure:
    """Image and label inputs, the two embedding chains (op by op, same computation), their features, the head."""

    support_images: str
    query_images: str
    support_chain: tuple[Kernel, ...]
    query_chain: tuple[Kernel, ...]
    support_features: str
    query_features: str
    labels: str
    head: tuple[Kernel, ...]


def episode_structure(program: Program) -> EpisodeStructure:
    """Split `program` into its embedding chains and head; raise UserError if hls4ml cannot run it this way."""
    roles = program.roles
    support_images, query_images, labels = (
        roles.require(role, BACKEND) for role in ("support_images", "query_images", "support_labels")
    )
    support_features, query_features = (roles.require(role, BACKEND) for role in ("support_features", "query_features"))
    extra = [b.name for b in program.buffers_of("input") if b.name not in (support_images, query_images, labels)]
    if extra:
        raise UserError(
            f"input buffer '{extra[0]}' is none of the episode's images and labels, the only inputs the hls4ml "
            "design takes"
        )
    support = _chain(program, support_images, support_features)
    query = _chain(program, query_images, query_features)
    _check_same_computation(program, (support_images, support), (query_images, query))
    in_chains = {op.name for op in support + query}
    head = tuple(op for op in program.ops if op.name not in in_chains)
    intermediates = {op.output for op in support[:-1] + query[:-1]} | {support_images, query_images}
    for op in head:
        if set(op.reads()) & intermediates:
            raise UserError(
                f"{op.op} '{op.name}' is outside the two embedding chains ({support_images} -> ... -> features, "
                f"{query_images} -> ...); the hls4ml backend runs the embedding on one image at a time and cannot "
                "place it"
            )
    return EpisodeStructure(
        support_images, query_images, support, query, support_features, query_features, labels, head
    )


def _chain(program: Program, images: str, features: str) -> tuple[Kernel, ...]:
    """The ops between `images` and `features` (program order); each must be an embedding op on weight buffers."""
    buffers = program.buffer_map
    chain = embedding_chain(program, images, features)
    if not chain:
        raise UserError(
            f"the hls4ml backend needs the embedding of '{images}' to end in a buffer '{features}'; "
            "this program has none computed from the images"
        )
    from metahw.hw.hls4ml.ops import EMBEDDING, lowered_at  # the lowerings import the head, which imports this

    # ops that work image by image and map onto hls4ml layers (Dense: a projection on weight buffers)
    embedding_ops = lowered_at(EMBEDDING)
    supported = ", ".join(sorted(cls.op for cls in embedding_ops))
    written = {images}
    for op in chain:
        if type(op) not in embedding_ops:
            raise UserError(
                f"{op.op} '{op.name}' is in the embedding of '{images}', where the hls4ml backend maps "
                f"only {supported} ops"
            )
        foreign = [b for b in op.reads() if b not in written and buffers[b].kind != "weight"]
        if foreign:
            raise UserError(
                f"{op.op} '{op.name}' in the embedding of '{images}' reads '{foreign[0]}', which is "
                "neither a weight nor computed from that image; the hls4ml design embeds one image "
                "at a time"
            )
        written.add(op.output)
    return tuple(chain)


def _check_same_computation(
    program: Program, support_side: tuple[str, tuple[Kernel, ...]], query_side: tuple[str, tuple[Kernel, ...]]
) -> None:
    """UserError unless the two chains ((images, ops) each) compute the same, op by op."""
    (support_images, support), (query_images, query) = support_side, query_side
    buffers = program.buffer_map
    if len(support) != len(query):
        raise UserError(
            f"the support and query embeddings have {len(support)} and {len(query)} ops; the hls4ml "
            "design embeds every image with one chain, so they must be the same"
        )
    s_at = {support_images: -1} | {op.output: i for i, op in enumerate(support)}
    q_at = {query_images: -1} | {op.output: i for i, op in enumerate(query)}
    for s, q in zip(support, query):
        same = type(s) is type(q)
        for field in (f.name for f in dataclasses.fields(s) if f.name != "name") if same else ():
            a, b = getattr(s, field), getattr(q, field)
            same = same and (s_at[a] == q_at[b] if a in s_at or b in q_at else a == b)
        same = same and buffers[s.output].qformat == buffers[q.output].qformat
        same = same and buffers[s.output].shape[1:] == buffers[q.output].shape[1:]
        if not same:
            raise UserError(
                f"{s.op} '{s.name}' and {q.op} '{q.name}' differ; the hls4ml design embeds support and "
                "query images with one chain of layers, so both chains must compute the same"
            )
