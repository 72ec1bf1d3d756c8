"""Tiny whole-episode programs shaped like the zoo's (conv chain -> 1x1 -> head) for RTL tests.

The heads are the zoo's: ProtoNet (prototypes, l2, ArgMin), Proto-MAML (prototypes, head
initialisation, SGD steps, Dense, ArgMax), ANIL (initialised state, SGD steps, Dense, ArgMax),
Matching Net (cosine attention, ArgMax), and a cosine-distance head with a standalone softmax.
Formats follow the zoo programs' (16-bit head state, 8-bit embedding); 3 ways of 2 shots give
M = 6 support rows (a non-power-of-two count) and rows of 3 elements, so head memories with
rows that do not start on a word are exercised on 4 lanes.
"""

from __future__ import annotations

import numpy as np

from metahw.compiler import kernels as K
from metahw.compiler.program import Buffer, Program, ProgramMeta
from metahw.compiler.qformat import QFormat

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
            K.Conv2d(name=f"{side}.conv1", input=f"{side}_x", weight="c1.w", bias="c1.b", output=f"{side}.a1",
                     relu=True, pool=True),
            K.Conv2d(name=f"{side}.conv2", input=f"{side}.a1", weight="c2.w", bias="c2.b", output=f"{side}.a2",
                     relu=relu2, pool=True),
            K.Flatten(name=f"{side}.flatten", input=f"{side}.a2", output=f"{side}.features"),
        ]  # fmt: skip
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
    ops = embed[:3] + [
        K.PrototypeAccumulate(name="prototypes", features="support.features", labels="support_labels",
                              output="prototypes", ways=ways, shots=shots),
    ] + embed[3:] + [
        K.Distance(name="distance", queries="query.features", refs="prototypes", output="scores", metric="l2"),
        K.ArgMin(name="prediction", input="scores", output="prediction"),
    ]  # fmt: skip
    meta = ProgramMeta("protonet", ways, shots, queries, rounding, overflow)
    return Program(meta, buffers, ops, _conv_weights(rng, width))


#: the zoo's SGD-step formats (logits, probabilities, gradients) and learning-rate format
SGD_FORMATS = {"prob_format": QFormat(16, 15, signed=False), "grad_format": QFormat(16, 17)}
LR = QFormat(16, 19, signed=False)


def _sgd_head(ways: int, shots: int, queries: int, width: int, steps: int, init: bool, seed: int, rounding: str,
              overflow: str, logits: QFormat) -> Program:  # fmt: skip
    rng = np.random.default_rng(seed)
    m = ways * shots
    buffers, embed = _embedding(m, queries, width, ACT, relu2=True)
    buffers.insert(1, Buffer("support_labels", (m,), _labels(ways), "input"))
    weight, bias = (QFormat(16, 12), QFormat(16, 14)) if init else (QFormat(16, 10), QFormat(16, 6))
    buffers += [
        Buffer("head.weight", (ways, width), weight, "state"),
        Buffer("head.bias", (ways,), bias, "state"),
        Buffer("head.lr_w", (), LR, "weight"),
        Buffer("head.lr_b", (), LR, "weight"),
        Buffer("scores", (queries, ways), QFormat(16, 8), "output"),
        Buffer("prediction", (queries,), _labels(ways), "output"),
    ]
    head: list[K.Kernel] = []
    if not init:
        buffers.append(Buffer("prototypes", (ways, width), ACT, "activation"))
        head += [
            K.PrototypeAccumulate(name="prototypes", features="support.features", labels="support_labels",
                                  output="prototypes", ways=ways, shots=shots),
            K.ProtoHeadInit(name="head_init", prototypes="prototypes", weight="head.weight", bias="head.bias"),
        ]  # fmt: skip
    head += [
        K.SGDHeadStep(name=f"sgd{k}", features="support.features", labels="support_labels", weight="head.weight",
                      bias="head.bias", lr_w="head.lr_w", lr_b="head.lr_b", logits_format=logits, **SGD_FORMATS)
        for k in range(steps)
    ]  # fmt: skip
    ops = embed[:3] + head + embed[3:] + [
        K.Dense(name="linear_head", input="query.features", weight="head.weight", bias="head.bias", output="scores"),
        K.ArgMax(name="prediction", input="scores", output="prediction"),
    ]  # fmt: skip
    weights = _conv_weights(rng, width) | {"head.lr_w": np.array(52429), "head.lr_b": np.array(39321)}
    if init:
        weights["head.weight"] = rng.integers(-3000, 3000, (ways, width))
        weights["head.bias"] = rng.integers(-9000, 9000, ways)
    algorithm = "anil" if init else "protomaml"
    return Program(ProgramMeta(algorithm, ways, shots, queries, rounding, overflow), buffers, ops, weights)


def tiny_protomaml(ways: int = 3, shots: int = 2, queries: int = 4, width: int = 8, steps: int = 2, seed: int = 3,
                   rounding: str = "half_up", overflow: str = "saturate") -> Program:  # fmt: skip
    """Prototypes, W = 2c and b = -|c|^2 (ProtoHeadInit), `steps` SGD steps, Dense, ArgMax."""
    return _sgd_head(ways, shots, queries, width, steps, False, seed, rounding, overflow, QFormat(16, 7))


def tiny_anil(ways: int = 3, shots: int = 2, queries: int = 4, width: int = 8, steps: int = 2, seed: int = 3,
              rounding: str = "half_up", overflow: str = "saturate") -> Program:  # fmt: skip
    """A head state with initial values (state initialisation), `steps` SGD steps, Dense, ArgMax."""
    return _sgd_head(ways, shots, queries, width, steps, True, seed, rounding, overflow, QFormat(16, 11))


def tiny_matchingnet(ways: int = 3, shots: int = 2, queries: int = 4, width: int = 8, seed: int = 3,
                     rounding: str = "half_up", overflow: str = "saturate",
                     cosine: bool = False) -> Program:  # fmt: skip
    """Cosine attention over the support features (rsqrt, softmax, class sums), ArgMax.

    `cosine`: also a cosine Distance of the queries to the supports and a standalone softmax over it.
    """
    rng = np.random.default_rng(seed)
    m = ways * shots
    buffers, embed = _embedding(m, queries, width, ACT, relu2=True)
    buffers.insert(1, Buffer("support_labels", (m,), _labels(ways), "input"))
    buffers += [
        Buffer("attention.scale", (), QFormat(16, 11, signed=False), "weight"),
        Buffer("scores", (queries, ways), QFormat(16, 15, signed=False), "output"),
        Buffer("prediction", (queries,), _labels(ways), "output"),
    ]
    ops = embed + [
        K.CosineAttention(name="attention", queries="query.features", supports="support.features",
                          labels="support_labels", scale="attention.scale", output="scores", ways=ways,
                          logits_format=QFormat(16, 10), attention_format=QFormat(16, 15, signed=False)),
        K.ArgMax(name="prediction", input="scores", output="prediction"),
    ]  # fmt: skip
    if cosine:
        buffers += [
            Buffer("cosines", (queries, m), QFormat(12, 10), "activation"),
            Buffer("probabilities", (queries, m), QFormat(10, 9, signed=False), "output"),
        ]
        ops += [
            K.Distance(name="cosine", queries="query.features", refs="support.features", output="cosines",
                       metric="cosine", unit_frac=12),
            K.Softmax(name="softmax", input="cosines", output="probabilities",
                      spec=K.SoftmaxSpec(index_frac=5, table_size=100, exp_frac=12, recip_bits=10)),
        ]  # fmt: skip
    weights = _conv_weights(rng, width) | {"attention.scale": np.array(46430)}
    meta = ProgramMeta("matchingnet", ways, shots, queries, rounding, overflow)
    return Program(meta, buffers, ops, weights)


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
