"""Tiny whole-episode programs shaped like the zoo's (conv chain -> 1x1 -> head) for RTL tests."""

from __future__ import annotations

import numpy as np

from metahw.compiler import kernels as K
from metahw.compiler.program import Buffer, Program, ProgramMeta
from metahw.compiler.qformat import QFormat

PIX = QFormat(8, 7, signed=False)
ACT = QFormat(8, 5, signed=False)


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
    buffers = [
        Buffer("support_x", (m, 1, 4, 4), PIX, "input"),
        Buffer("support_labels", (m,), QFormat(max(1, (ways - 1).bit_length()), 0, signed=False), "input"),
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
                     relu=not signed_act, pool=True),
            K.Flatten(name=f"{side}.flatten", input=f"{side}.a2", output=f"{side}.features"),
        ]  # fmt: skip
        if side == "support":
            buffers.append(Buffer("prototypes", (ways, width), act, "activation"))
            ops.append(K.PrototypeAccumulate(name="prototypes", features="support.features", labels="support_labels",
                                             output="prototypes", ways=ways, shots=shots))  # fmt: skip
    buffers += [
        Buffer("scores", (queries, ways), QFormat(20, 8, signed=False), "output"),
        Buffer("prediction", (queries,), QFormat(max(1, (ways - 1).bit_length()), 0, signed=False), "output"),
    ]
    ops += [
        K.Distance(name="distance", queries="query.features", refs="prototypes", output="scores", metric="l2"),
        K.ArgMin(name="prediction", input="scores", output="prediction"),
    ]
    weights = {
        "c1.w": rng.integers(-128, 128, (width, 1, 3, 3)),
        "c1.b": rng.integers(-3000, 3000, (width,)),
        "c2.w": rng.integers(-128, 128, (width, width, 3, 3)),
        "c2.b": rng.integers(-3000, 3000, (width,)),
    }
    meta = ProgramMeta("protonet", ways, shots, queries, rounding, overflow)
    return Program(meta, buffers, ops, weights)


def tiny_inputs(program: Program, seed: int = 0) -> dict[str, np.ndarray]:
    """Random pixels and a shuffled balanced label vector for `tiny_protonet`."""
    rng = np.random.default_rng(seed)
    meta = program.meta
    buffers = program.buffer_map
    labels = rng.permutation(np.repeat(np.arange(meta.ways), meta.shots))
    return {
        "support_x": rng.integers(0, 256, buffers["support_x"].shape),
        "support_labels": labels,
        "query_x": rng.integers(0, 256, buffers["query_x"].shape),
    }
