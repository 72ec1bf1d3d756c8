"""Tiny whole-episode programs shaped like the zoo's (conv chain -> 1x1 -> head) for RTL tests.

The heads are the zoo's: ProtoNet (prototypes, l2, ArgMin), Proto-MAML (prototypes, head
initialisation, SGD steps, Dense, ArgMax), ANIL (initialised state, SGD steps, Dense, ArgMax),
Matching Net (cosine attention, ArgMax; optionally a cosine distance with a standalone softmax
and a Dense on frozen weights), and all of them on one embedding (`tiny_heads`).
Formats follow the zoo programs' (16-bit head state, 8-bit embedding); 3 ways of 2 shots give
M = 6 support rows (a non-power-of-two count) and rows of 3 elements, so head memories with
rows that do not start on a word are exercised on 4 lanes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from metahw.compiler import kernels as K
from metahw.compiler.program import Buffer, Program, ProgramMeta
from metahw.qformat import QFormat

PIX = QFormat(8, 7, signed=False)
ACT = QFormat(8, 5, signed=False)


def _embedding(m: int, queries: int, width: int, act: QFormat, relu2: bool) -> tuple[list[Buffer], list[K.Kernel]]:
    """Two conv blocks (4x4 -> 2x2 -> 1x1, ReLU + pool) for supports and queries, then Flatten."""
    buffers = [
        Buffer("support_x", (m, 1, 4, 4), PIX, "input"),
        Buffer("query_x", (queries, 1, 4, 4), PIX, "input"),
        Buffer("c1.w", (width, 1, 3, 3), QFormat(8, 6), "weight"),
        Buffer("c1.b", (width,), QFormat(16, 10), "weight"),
        Buffer("c2.w", (width, width, 3, 3), QFormat(8, 7), "weight"),
        Buffer("c2.b", (width,), QFormat(16, 11), "weight"),
    ]
    ops: list[K.Kernel] = []
    for side, batch in (("support", m), ("query", queries)):
        buffers += [
            Buffer(f"{side}.a1", (batch, width, 2, 2), act, "activation"),
            Buffer(f"{side}.a2", (batch, width, 1, 1), act, "activation"),
            Buffer(f"{side}.features", (batch, width), act, "activation"),
        ]
        ops += [
            K.Conv2d(
                name=f"{side}.conv1",
                input=f"{side}_x",
                weight="c1.w",
                bias="c1.b",
                output=f"{side}.a1",
                relu=True,
                pool=True,
            ),
            K.Conv2d(
                name=f"{side}.conv2",
                input=f"{side}.a1",
                weight="c2.w",
                bias="c2.b",
                output=f"{side}.a2",
                relu=relu2,
                pool=True,
            ),
            K.Flatten(name=f"{side}.flatten", input=f"{side}.a2", output=f"{side}.features"),
        ]
    return buffers, ops


def _conv_weights(rng: np.random.Generator, width: int) -> dict[str, np.ndarray]:
    return {
        "c1.w": rng.integers(-128, 128, (width, 1, 3, 3)),
        "c1.b": rng.integers(-3000, 3000, (width,)),
        "c2.w": rng.integers(-128, 128, (width, width, 3, 3)),
        "c2.b": rng.integers(-3000, 3000, (width,)),
    }


def _labels(ways: int) -> QFormat:
    return QFormat(max(1, (ways - 1).bit_length()), 0, signed=False)


def tiny_protonet(
    ways: int = 3,
    shots: int = 2,
    queries: int = 4,
    width: int = 4,
    seed: int = 3,
    rounding: str = "half_up",
    overflow: str = "saturate",
    signed_act: bool = False,
) -> Program:
    """Two conv blocks (4x4 -> 2x2 -> 1x1, ReLU + pool) for supports and queries, prototypes, l2, ArgMin."""
    rng = np.random.default_rng(seed)
    act = QFormat(8, 5, signed=signed_act)
    m = ways * shots
    buffers, embed = _embedding(m, queries, width, act, relu2=not signed_act)
    buffers.insert(1, Buffer("support_labels", (m,), _labels(ways), "input"))
    buffers += [
        Buffer("prototypes", (ways, width), act, "activation"),
        Buffer("scores", (queries, ways), QFormat(20, 8, signed=False), "output"),
        Buffer("prediction", (queries,), _labels(ways), "output"),
    ]
    ops = (
        embed[:3]
        + [
            K.PrototypeAccumulate(
                name="prototypes",
                features="support.features",
                labels="support_labels",
                output="prototypes",
                ways=ways,
                shots=shots,
            ),
        ]
        + embed[3:]
        + [
            K.Distance(name="distance", queries="query.features", refs="prototypes", output="scores", metric="l2"),
            K.ArgMin(name="prediction", input="scores", output="prediction"),
        ]
    )
    meta = ProgramMeta("protonet", ways, shots, queries, rounding, overflow)
    return Program(meta, buffers, ops, _conv_weights(rng, width))


#: the zoo's SGD-step formats (logits, probabilities, gradients) and learning-rate format
SGD_FORMATS = {"prob_format": QFormat(16, 15, signed=False), "grad_format": QFormat(16, 17)}
LR = QFormat(16, 19, signed=False)


@dataclass
class _Head:
    """A head's buffers, its ops on the support features, its ops on the query features, its weights."""

    buffers: list[Buffer]
    support: list[K.Kernel]
    query: list[K.Kernel]
    weights: dict[str, np.ndarray]


def _sgd_head(
    prefix: str,
    out: str,
    ways: int,
    shots: int,
    queries: int,
    width: int,
    steps: int,
    init: bool,
    rng: np.random.Generator,
) -> _Head:
    """Proto-MAML's (prototypes, ProtoHeadInit) or ANIL's (initialised state) head: SGD steps, Dense, ArgMax."""
    weight, bias = (QFormat(16, 12), QFormat(16, 14)) if init else (QFormat(16, 10), QFormat(16, 6))
    logits = QFormat(16, 11) if init else QFormat(16, 7)
    w, b, lr_w, lr_b = (f"{prefix}.{n}" for n in ("weight", "bias", "lr_w", "lr_b"))
    buffers = [
        Buffer(w, (ways, width), weight, "state"),
        Buffer(b, (ways,), bias, "state"),
        Buffer(lr_w, (), LR, "weight"),
        Buffer(lr_b, (), LR, "weight"),
        Buffer(f"{out}scores", (queries, ways), QFormat(16, 8), "output"),
        Buffer(f"{out}prediction", (queries,), _labels(ways), "output"),
    ]
    support: list[K.Kernel] = []
    if not init:
        buffers.append(Buffer(f"{out}prototypes", (ways, width), ACT, "activation"))
        support += [
            K.PrototypeAccumulate(
                name=f"{out}prototypes",
                features="support.features",
                labels="support_labels",
                output=f"{out}prototypes",
                ways=ways,
                shots=shots,
            ),
            K.ProtoHeadInit(name=f"{out}head_init", prototypes=f"{out}prototypes", weight=w, bias=b),
        ]
    support += [
        K.SGDHeadStep(
            name=f"{out}sgd{k}",
            features="support.features",
            labels="support_labels",
            weight=w,
            bias=b,
            lr_w=lr_w,
            lr_b=lr_b,
            logits_format=logits,
            **SGD_FORMATS,
        )
        for k in range(steps)
    ]
    query = [
        K.Dense(name=f"{out}linear_head", input="query.features", weight=w, bias=b, output=f"{out}scores"),
        K.ArgMax(name=f"{out}prediction", input=f"{out}scores", output=f"{out}prediction"),
    ]
    weights = {lr_w: np.array(52429), lr_b: np.array(39321)}
    if init:
        weights[w] = rng.integers(-3000, 3000, (ways, width))
        weights[b] = rng.integers(-9000, 9000, ways)
    return _Head(buffers, support, query, weights)


def _attention_head(ways: int, shots: int, queries: int, width: int, extras: bool, rng: np.random.Generator) -> _Head:
    """Cosine attention over the support features (rsqrt, softmax, class sums), ArgMax.

    `extras`: also a cosine Distance of the queries to the supports with a standalone softmax over
    it, and a Dense head with ReLU on frozen weights (read-only head memories).
    """
    m = ways * shots
    buffers = [
        Buffer("attention.scale", (), QFormat(16, 11, signed=False), "weight"),
        Buffer("scores", (queries, ways), QFormat(16, 15, signed=False), "output"),
        Buffer("prediction", (queries,), _labels(ways), "output"),
    ]
    query: list[K.Kernel] = [
        K.CosineAttention(
            name="attention",
            queries="query.features",
            supports="support.features",
            labels="support_labels",
            scale="attention.scale",
            output="scores",
            ways=ways,
            logits_format=QFormat(16, 10),
            attention_format=QFormat(16, 15, signed=False),
        ),
        K.ArgMax(name="prediction", input="scores", output="prediction"),
    ]
    weights = {"attention.scale": np.array(46430)}
    if extras:
        buffers += [
            Buffer("cosines", (queries, m), QFormat(8, 4), "activation"),  # finer softmax index: a left shift
            Buffer("probabilities", (queries, m), QFormat(10, 9, signed=False), "output"),
            Buffer("fixed.w", (ways, width), QFormat(8, 6), "weight"),
            Buffer("fixed.b", (ways,), QFormat(16, 9), "weight"),
            Buffer("fixed_scores", (queries, ways), QFormat(10, 4, signed=False), "output"),
        ]
        weights |= {"fixed.w": rng.integers(-128, 128, (ways, width)), "fixed.b": rng.integers(-9000, 9000, ways)}
        query += [
            K.Distance(
                name="cosine",
                queries="query.features",
                refs="support.features",
                output="cosines",
                metric="cosine",
                unit_frac=12,
            ),
            K.Softmax(
                name="softmax",
                input="cosines",
                output="probabilities",
                spec=K.SoftmaxSpec(index_frac=5, table_size=100, exp_frac=12, recip_bits=10),
            ),
            K.Dense(
                name="fixed_head",
                input="query.features",
                weight="fixed.w",
                bias="fixed.b",
                output="fixed_scores",
                relu=True,
            ),
        ]
    return _Head(buffers, [], query, weights)


def _program(
    algorithm: str,
    ways: int,
    shots: int,
    queries: int,
    width: int,
    seed: int,
    rounding: str,
    overflow: str,
    heads: list,
    queries_first: bool = False,
) -> Program:
    """The embedding and the heads (functions of the rng): each head's support ops after the support chain
    and its query ops after the query chain (the zoo's order), or all of them after both chains."""
    rng = np.random.default_rng(seed)
    m = ways * shots
    buffers, embed = _embedding(m, queries, width, ACT, relu2=True)
    buffers.insert(1, Buffer("support_labels", (m,), _labels(ways), "input"))
    weights = _conv_weights(rng, width)
    built = [head(rng) for head in heads]
    for head in built:
        buffers += head.buffers
        weights |= head.weights
    support = [op for head in built for op in head.support]
    query = [op for head in built for op in head.query]
    if queries_first:
        ops = embed + [op for head in built for op in head.support + head.query]
    else:
        ops = embed[:3] + support + embed[3:] + query
    return Program(ProgramMeta(algorithm, ways, shots, queries, rounding, overflow), buffers, ops, weights)


def tiny_protomaml(
    ways: int = 3,
    shots: int = 2,
    queries: int = 4,
    width: int = 8,
    steps: int = 2,
    seed: int = 3,
    rounding: str = "half_up",
    overflow: str = "saturate",
) -> Program:
    """Prototypes, W = 2c and b = -|c|^2 (ProtoHeadInit), `steps` SGD steps, Dense, ArgMax."""
    head = partial(_sgd_head, "head", "", ways, shots, queries, width, steps, False)
    return _program("protomaml", ways, shots, queries, width, seed, rounding, overflow, [head])


def tiny_anil(
    ways: int = 3,
    shots: int = 2,
    queries: int = 4,
    width: int = 8,
    steps: int = 2,
    seed: int = 3,
    rounding: str = "half_up",
    overflow: str = "saturate",
) -> Program:
    """A head state with initial values (state initialisation), `steps` SGD steps, Dense, ArgMax."""
    head = partial(_sgd_head, "head", "", ways, shots, queries, width, steps, True)
    return _program("anil", ways, shots, queries, width, seed, rounding, overflow, [head])


def tiny_matchingnet(
    ways: int = 3,
    shots: int = 2,
    queries: int = 4,
    width: int = 8,
    seed: int = 3,
    rounding: str = "half_up",
    overflow: str = "saturate",
    extras: bool = False,
) -> Program:
    """Cosine attention (see `_attention_head`), ArgMax; `extras`: a cosine Distance, a Softmax and a frozen Dense."""
    head = partial(_attention_head, ways, shots, queries, width, extras)
    return _program("matchingnet", ways, shots, queries, width, seed, rounding, overflow, [head])


def tiny_heads(
    ways: int = 3,
    shots: int = 3,
    queries: int = 4,
    width: int = 8,
    seed: int = 3,
    rounding: str = "half_even",
    overflow: str = "saturate",
) -> Program:
    """The Matching Net head with the extras, then a Proto-MAML head and an ANIL head, on one embedding.

    One Verilator build runs every head engine. The attention comes first, so a label out of range
    is caught by its class sums (no SCAN before them).
    """
    heads = [
        partial(_attention_head, ways, shots, queries, width, True),
        partial(_sgd_head, "pm", "pm_", ways, shots, queries, width, 2, False),
        partial(_sgd_head, "anil", "anil_", ways, shots, queries, width, 1, True),
    ]
    return _program("heads", ways, shots, queries, width, seed, rounding, overflow, heads, queries_first=True)


def tiny_inputs(program: Program, seed: int = 0) -> dict[str, np.ndarray]:
    """Random pixels and a shuffled balanced label vector for the tiny programs."""
    rng = np.random.default_rng(seed)
    meta = program.meta
    buffers = program.buffer_map
    labels = rng.permutation(np.repeat(np.arange(meta.ways), meta.shots))
    return {
        "support_x": rng.integers(0, 256, buffers["support_x"].shape),
        "support_labels": labels,
        "query_x": rng.integers(0, 256, buffers["query_x"].shape),
    }
