"""A Program seen the way the hls4ml design computes it: one embedding chain per image, then the head.

The golden program embeds the support images and the query images with two chains of ops
(``support_x`` -> Conv2d ... -> Flatten and ``query_x`` -> ...) that share their weights.
The hls4ml design has one set of embedding layers that every image passes through, so the
two chains must be the same computation: the same op types, attributes, weight buffers and
formats, differing only in the names of the activations they write. Everything after the
two feature buffers is the head.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from metahw.compiler.kernels import Conv2d, Flatten, Kernel
from metahw.compiler.program import Program
from metahw.errors import UserError

SUPPORT_IMAGES, QUERY_IMAGES = "support_x", "query_x"
#: ops that work image by image and map onto hls4ml's own layers
EMBEDDING_OPS = (Conv2d, Flatten)
_ACTIVATION_FIELDS = ("input", "output", "name")


@dataclass(frozen=True)
class EpisodeStructure:
    """The two embedding chains (op by op, same computation), their feature buffers, labels and head ops."""

    support_chain: tuple[Kernel, ...]
    query_chain: tuple[Kernel, ...]
    support_features: str
    query_features: str
    labels: str
    head: tuple[Kernel, ...]


def episode_structure(program: Program) -> EpisodeStructure:
    """Split `program` into its embedding chains and head; raise UserError if hls4ml cannot run it this way."""
    buffers = program.buffer_map
    for name in (SUPPORT_IMAGES, QUERY_IMAGES):
        if name not in buffers or buffers[name].kind != "input" or len(buffers[name].shape) != 4:
            raise UserError(
                f"the hls4ml backend needs a 4-d input buffer '{name}' (images NCHW); this program has none"
            )
    labels = [b.name for b in program.buffers_of("input") if len(b.shape) == 1]
    if len(labels) != 1:
        raise UserError(f"the hls4ml backend needs exactly one 1-d input buffer (the support labels), found {labels}")
    support, query = _chain(program, SUPPORT_IMAGES), _chain(program, QUERY_IMAGES)
    _check_same_computation(program, support, query)
    in_chains = {op.name for op in support + query}
    head = tuple(op for op in program.ops if op.name not in in_chains)
    intermediates = {op.output for op in support[:-1] + query[:-1]} | {SUPPORT_IMAGES, QUERY_IMAGES}
    for op in head:
        if isinstance(op, EMBEDDING_OPS) or set(op.reads()) & intermediates:
            raise UserError(
                f"{op.op} '{op.name}' is outside the two embedding chains (support_x -> ... -> features, query_x "
                "-> ...); the hls4ml backend runs the embedding on one image at a time and cannot place it"
            )
    return EpisodeStructure(support, query, support[-1].output, query[-1].output, labels[0], head)


def _chain(program: Program, images: str) -> tuple[Kernel, ...]:
    """The ops that embed `images`: each embedding op reading the previous one's output, ending at a Flatten."""
    chain: list[Kernel] = []
    current = images
    for op in program.ops:
        if isinstance(op, EMBEDDING_OPS) and op.input == current:
            chain.append(op)
            current = op.output
    if not chain or not isinstance(chain[-1], Flatten):
        supported = ", ".join(cls.op for cls in EMBEDDING_OPS)
        raise UserError(
            f"the embedding of '{images}' must be a chain of {supported} ops ending in a Flatten; the hls4ml backend "
            f"found {[op.op for op in chain]}"
        )
    return tuple(chain)


def _check_same_computation(program: Program, support: tuple[Kernel, ...], query: tuple[Kernel, ...]) -> None:
    buffers = program.buffer_map
    if len(support) != len(query):
        raise UserError(f"the support and query embeddings have {len(support)} and {len(query)} ops; the hls4ml "
                        "design embeds every image with one chain, so they must be the same")  # fmt: skip
    for s, q in zip(support, query):
        fields = [f.name for f in dataclasses.fields(s) if f.name not in _ACTIVATION_FIELDS]
        same = type(s) is type(q) and all(getattr(s, f) == getattr(q, f) for f in fields)
        same = same and buffers[s.output].qformat == buffers[q.output].qformat
        same = same and buffers[s.output].shape[1:] == buffers[q.output].shape[1:]
        if not same:
            raise UserError(f"{s.op} '{s.name}' and {q.op} '{q.name}' differ; the hls4ml design embeds support and "
                            "query images with one chain of layers, so both chains must compute the same")  # fmt: skip
