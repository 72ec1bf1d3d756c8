"""Hand-built Programs for the hls4ml backend tests: every kernel the backend maps, on 4x4 or 28x28 images.

`all_kernels_program` holds, in one program (one C-simulation build), three conv blocks (ReLU +
pool, ReLU only, neither; per-channel weight and bias formats), then every head op with
several outputs: ProtoNet (3 shots: the reciprocal path), Proto-MAML with two SGD steps
(vector/per-class learning rates), a dense head on per-channel weights without bias, cosine
attention, cosine and dot distances and a standalone softmax. Output formats are narrow on
purpose so that rounding and saturation/wrap-around happen.
"""

from __future__ import annotations

import numpy as np

from metahw.compiler import kernels as K
from metahw.compiler.program import Buffer, Program, ProgramMeta
from metahw.qformat import QFormat

WAYS, SHOTS, QUERIES = 3, 3, 4
PIX = QFormat(8, 7, signed=False)
LABELS = QFormat(2, 0, signed=False)


def _embedding(m: int, q: int, size: int, depth: int, rng: np.random.Generator) -> tuple[list, list, dict]:
    """support_x/query_x [*, 1, size, size] -> `depth` (1 or 3) conv blocks -> features."""
    half = size // 2
    buffers = [
        Buffer("support_x", (m, 1, size, size), PIX, "input"),
        Buffer("query_x", (q, 1, size, size), PIX, "input"),
        Buffer("support_labels", (m,), LABELS, "input"),
        Buffer("c1.w", (3, 1, 3, 3), QFormat(6, 5), "weight", channel_fracs=(5, 6, 7)),
        Buffer("c1.b", (3,), QFormat(12, 8), "weight", channel_fracs=(8, 10, 9)),
        Buffer("c2.w", (3, 3, 3, 3), QFormat(6, 5), "weight"),
        Buffer("c2.b", (3,), QFormat(12, 9), "weight"),
        Buffer("c3.w", (2, 3, 3, 3), QFormat(6, 5), "weight"),
    ][: 5 if depth == 1 else None]
    weights = {
        "c1.w": rng.integers(-32, 32, (3, 1, 3, 3)),
        "c1.b": rng.integers(-2048, 2048, (3,)),
        "c2.w": rng.integers(-32, 32, (3, 3, 3, 3)),
        "c2.b": rng.integers(-2048, 2048, (3,)),
        "c3.w": rng.integers(-32, 32, (2, 3, 3, 3)),
    }
    weights = {k: v for k, v in weights.items() if depth == 3 or k.startswith("c1")}
    ops = []
    for chain, batch in (("support", m), ("query", q)):
        blocks = [
            (
                Buffer(f"{chain}.b1", (batch, 3, half, half), QFormat(6, 4, signed=False), "activation"),
                K.Conv2d(
                    name=f"{chain}.c1",
                    input=f"{chain}_x",
                    weight="c1.w",
                    bias="c1.b",
                    output=f"{chain}.b1",
                    relu=True,
                    pool=True,
                ),
            ),
            (
                Buffer(f"{chain}.b2", (batch, 3, half, half), QFormat(6, 3, signed=False), "activation"),
                K.Conv2d(
                    name=f"{chain}.c2", input=f"{chain}.b1", weight="c2.w", bias="c2.b", output=f"{chain}.b2", relu=True
                ),
            ),
            (
                Buffer(f"{chain}.b3", (batch, 2, half, half), QFormat(7, 4), "activation"),
                K.Conv2d(name=f"{chain}.c3", input=f"{chain}.b2", weight="c3.w", output=f"{chain}.b3"),
            ),
        ][:depth]
        last = blocks[-1][0]
        features = Buffer(f"{chain}.features", (batch, int(np.prod(last.shape[1:]))), last.qformat, "activation")
        buffers += [buf for buf, _ in blocks] + [features]
        ops += [op for _, op in blocks] + [K.Flatten(name=f"{chain}.flatten", input=last.name, output=features.name)]
    return buffers, ops, weights


def all_kernels_program(rounding: str = "half_even", overflow: str = "wrap", seed: int = 3) -> Program:
    """Every kernel the hls4ml backend maps, in one 3-way 3-shot program on 4x4 images."""
    rng = np.random.default_rng(seed)
    m, n, q, d = WAYS * SHOTS, WAYS, QUERIES, 8
    buffers, ops, weights = _embedding(m, q, 4, 3, rng)
    buffers += [
        Buffer("prototypes", (n, d), QFormat(8, 5), "activation"),
        Buffer("scores", (q, n), QFormat(12, 6, signed=False), "output"),
        Buffer("prediction", (q,), LABELS, "output"),
        Buffer("head.weight", (n, d), QFormat(8, 4), "state"),
        Buffer("head.bias", (n,), QFormat(10, 3), "state"),
        Buffer("lr_w", (d,), QFormat(3, 3), "weight"),
        Buffer("lr_b", (n,), QFormat(3, 4), "weight"),
        Buffer("logits", (q, n), QFormat(14, 3), "output"),
        Buffer("logit_prediction", (q,), LABELS, "output"),
        Buffer("fixed.w", (n, d), QFormat(6, 4), "weight", channel_fracs=(4, 5, 6)),
        Buffer("fixed_logits", (q, n), QFormat(10, 6), "output"),
        Buffer("scale", (), QFormat(8, 3, signed=False), "weight"),
        Buffer("attention", (q, n), QFormat(10, 9, signed=False), "output"),
        Buffer("cosine", (q, m), QFormat(10, 8), "output"),
        Buffer("dot", (q, n), QFormat(12, 3), "output"),
        Buffer("softmax", (q, m), QFormat(8, 8, signed=False), "output"),
    ]
    sgd = {"logits_format": QFormat(14, 4), "prob_format": QFormat(9, 8, signed=False), "grad_format": QFormat(8, 9)}
    ops += [
        K.PrototypeAccumulate(
            name="protos",
            features="support.features",
            labels="support_labels",
            output="prototypes",
            ways=n,
            shots=SHOTS,
            recip_frac=12,
        ),
        K.Distance(name="l2", queries="query.features", refs="prototypes", output="scores", metric="l2"),
        K.ArgMin(name="nearest", input="scores", output="prediction"),
        K.ProtoHeadInit(name="init", prototypes="prototypes", weight="head.weight", bias="head.bias"),
        K.SGDHeadStep(
            name="step0",
            features="support.features",
            labels="support_labels",
            weight="head.weight",
            bias="head.bias",
            lr_w="lr_w",
            lr_b="lr_b",
            **sgd,
        ),
        K.SGDHeadStep(
            name="step1",
            features="support.features",
            labels="support_labels",
            weight="head.weight",
            bias="head.bias",
            lr_w="lr_w",
            lr_b="lr_b",
            softmax=K.SoftmaxSpec(3, 40, 12, 10),
            **sgd,
        ),
        K.Dense(name="head", input="query.features", weight="head.weight", bias="head.bias", output="logits"),
        K.ArgMax(name="best", input="logits", output="logit_prediction"),
        K.Dense(name="fixed_head", input="query.features", weight="fixed.w", output="fixed_logits", relu=True),
        K.CosineAttention(
            name="attend",
            queries="query.features",
            supports="support.features",
            labels="support_labels",
            scale="scale",
            output="attention",
            ways=n,
            logits_format=QFormat(9, 4),
            attention_format=QFormat(12, 11, signed=False),
            unit_frac=10,
        ),
        K.Distance(name="cos", queries="query.features", refs="support.features", output="cosine", metric="cosine"),
        K.Distance(name="dotp", queries="query.features", refs="prototypes", output="dot", metric="dot"),
        K.Softmax(name="soft", input="cosine", output="softmax", spec=K.SoftmaxSpec(index_frac=5, table_size=100)),
    ]
    weights |= {
        "lr_w": rng.integers(0, 4, (d,)),
        "lr_b": rng.integers(1, 4, (n,)),
        "fixed.w": rng.integers(-32, 32, (n, d)),
        "scale": np.array(83),
    }
    meta = ProgramMeta("all-kernels", n, SHOTS, q, rounding, overflow)
    return Program(meta, buffers, ops, {k: np.asarray(v, dtype=np.int64) for k, v in weights.items()})


def tiny_protonet_program(ways: int = 3, shots: int = 1, queries: int = 3, rounding: str = "truncate") -> Program:
    """A 28x28 ProtoNet (one conv block, prototypes, L2, ArgMin) that Omniglot episodes can run (AP_TRN, AP_SAT)."""
    rng = np.random.default_rng(5)
    m = ways * shots
    buffers, ops, weights = _embedding(m, queries, 28, 1, rng)
    d = 3 * 14 * 14
    buffers += [
        Buffer("prototypes", (ways, d), QFormat(6, 4, signed=False), "activation"),
        Buffer("scores", (queries, ways), QFormat(20, 8, signed=False), "output"),
        Buffer("prediction", (queries,), LABELS, "output"),
    ]
    ops += [
        K.PrototypeAccumulate(
            name="protos",
            features="support.features",
            labels="support_labels",
            output="prototypes",
            ways=ways,
            shots=shots,
        ),
        K.Distance(name="l2", queries="query.features", refs="prototypes", output="scores", metric="l2"),
        K.ArgMin(name="nearest", input="scores", output="prediction"),
    ]
    meta = ProgramMeta("protonet", ways, shots, queries, rounding)
    return Program(meta, buffers, ops, {k: np.asarray(v, dtype=np.int64) for k, v in weights.items()})


def random_inputs(program: Program, seed: int) -> dict[str, np.ndarray]:
    """Random pixels and a shuffled, balanced support labelling of the program's episode shape."""
    rng = np.random.default_rng(seed)
    meta, buffers = program.meta, program.buffer_map
    labels = rng.permutation(np.repeat(np.arange(meta.ways), meta.shots))
    return {
        "support_x": rng.integers(0, 256, buffers["support_x"].shape),
        "query_x": rng.integers(0, 256, buffers["query_x"].shape),
        "support_labels": labels,
    }
