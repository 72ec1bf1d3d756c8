"""Small hand-built Programs (one per head family) and a one-op harness for kernel tests."""

from __future__ import annotations

import numpy as np

from metahw.compiler import kernels as K
from metahw.compiler.golden import GoldenRun, execute
from metahw.compiler.program import Buffer, Program, ProgramMeta
from metahw.qformat import QFormat

PIX = QFormat(8, 7)
FEAT = QFormat(8, 5)
LABEL = QFormat(2, 0, signed=False)


def run_op(
    op: K.Kernel,
    buffers: list[Buffer],
    inputs: dict[str, np.ndarray],
    weights: dict[str, np.ndarray] | None = None,
    rounding: str = "half_up",
    overflow: str = "saturate",
) -> GoldenRun:
    """Wrap one op in a Program (meta is a placeholder) and run the golden executor."""
    meta = ProgramMeta("test", 1, 1, 1, rounding, overflow)
    weights = {k: np.asarray(v, dtype=np.int64) for k, v in (weights or {}).items()}
    program = Program(meta, buffers, [op], weights)
    return execute(program, {k: np.asarray(v, dtype=np.int64) for k, v in inputs.items()})


def _backbone(ways: int, shots: int, queries: int) -> tuple[list[Buffer], list[K.Kernel], dict[str, np.ndarray]]:
    """One conv block (per-channel weight fracs) + flatten for supports and queries: 4x4 images -> 8 features."""
    m = ways * shots
    rng = np.random.default_rng(7)
    buffers = [
        Buffer("support_x", (m, 1, 4, 4), PIX, "input"),
        Buffer("support_y", (m,), LABEL, "input"),
        Buffer("query_x", (queries, 1, 4, 4), PIX, "input"),
        Buffer("conv1.w", (2, 1, 3, 3), QFormat(8, 6), "weight", channel_fracs=(6, 7)),
        Buffer("conv1.b", (2,), QFormat(16, 10), "weight"),
        Buffer("s1", (m, 2, 2, 2), FEAT, "activation"),
        Buffer("q1", (queries, 2, 2, 2), FEAT, "activation"),
        Buffer("support_f", (m, 8), FEAT, "activation"),
        Buffer("query_f", (queries, 8), FEAT, "activation"),
    ]
    ops: list[K.Kernel] = [
        K.Conv2d(
            name="conv1_s", input="support_x", weight="conv1.w", bias="conv1.b", output="s1", relu=True, pool=True
        ),
        K.Conv2d(name="conv1_q", input="query_x", weight="conv1.w", bias="conv1.b", output="q1", relu=True, pool=True),
        K.Flatten(name="flat_s", input="s1", output="support_f"),
        K.Flatten(name="flat_q", input="q1", output="query_f"),
    ]
    weights = {"conv1.w": rng.integers(-128, 128, (2, 1, 3, 3)), "conv1.b": rng.integers(-3000, 3000, (2,))}
    return buffers, ops, weights


def episode_inputs(ways: int, shots: int, queries: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random pixel inputs and balanced labels for the fixture programs."""
    rng = np.random.default_rng(seed)
    return {
        "support_x": rng.integers(0, 128, (ways * shots, 1, 4, 4)),
        "support_y": np.repeat(np.arange(ways), shots),
        "query_x": rng.integers(0, 128, (queries, 1, 4, 4)),
    }


def protonet_program(ways: int = 3, shots: int = 2, queries: int = 4) -> Program:
    """Backbone -> prototypes -> squared L2 -> ArgMin."""
    buffers, ops, weights = _backbone(ways, shots, queries)
    buffers += [
        Buffer("protos", (ways, 8), FEAT, "activation"),
        Buffer("dist", (queries, ways), QFormat(30, 10, signed=False), "output"),
        Buffer("pred", (queries,), LABEL, "output"),
    ]
    ops += [
        K.PrototypeAccumulate(
            name="proto", features="support_f", labels="support_y", output="protos", ways=ways, shots=shots
        ),
        K.Distance(name="l2", queries="query_f", refs="protos", output="dist", metric="l2"),
        K.ArgMin(name="argmin", input="dist", output="pred"),
    ]
    return Program(ProgramMeta("protonet", ways, shots, queries), buffers, ops, weights)


def protomaml_program(ways: int = 3, shots: int = 2, queries: int = 4, steps: int = 2) -> Program:
    """Backbone -> prototypes -> ProtoHeadInit -> `steps` SGDHeadSteps -> Dense -> ArgMax."""
    buffers, ops, weights = _backbone(ways, shots, queries)
    buffers += [
        Buffer("protos", (ways, 8), FEAT, "activation"),
        Buffer("head.w", (ways, 8), QFormat(12, 6), "state"),
        Buffer("head.b", (ways,), QFormat(16, 6), "state"),
        Buffer("lr_w", (), QFormat(2, 3), "weight"),
        Buffer("lr_b", (), QFormat(2, 3), "weight"),
        Buffer("logits", (queries, ways), QFormat(16, 8), "output"),
        Buffer("pred", (queries,), LABEL, "output"),
    ]
    ops += [
        K.PrototypeAccumulate(
            name="proto", features="support_f", labels="support_y", output="protos", ways=ways, shots=shots
        ),
        K.ProtoHeadInit(name="head_init", prototypes="protos", weight="head.w", bias="head.b"),
    ]
    ops += [
        K.SGDHeadStep(
            name=f"sgd{i}",
            features="support_f",
            labels="support_y",
            weight="head.w",
            bias="head.b",
            lr_w="lr_w",
            lr_b="lr_b",
            logits_format=QFormat(16, 8),
            prob_format=QFormat(16, 15, signed=False),
            grad_format=QFormat(16, 14),
        )
        for i in range(steps)
    ]
    ops += [
        K.Dense(name="head", input="query_f", weight="head.w", bias="head.b", output="logits"),
        K.ArgMax(name="argmax", input="logits", output="pred"),
    ]
    weights |= {"lr_w": np.array(1), "lr_b": np.array(1)}  # 2^-3 each
    return Program(ProgramMeta("protomaml", ways, shots, queries), buffers, ops, weights)


def matchingnet_program(ways: int = 3, shots: int = 2, queries: int = 4) -> Program:
    """Backbone -> CosineAttention -> ArgMax, plus a standalone cosine Distance and Softmax for coverage."""
    buffers, ops, weights = _backbone(ways, shots, queries)
    m = ways * shots
    buffers += [
        Buffer("scale", (), QFormat(8, 3), "weight"),
        Buffer("probs", (queries, ways), QFormat(16, 15, signed=False), "output"),
        Buffer("pred", (queries,), LABEL, "output"),
        Buffer("cos", (queries, m), QFormat(16, 14), "activation"),
        Buffer("attn", (queries, m), QFormat(12, 11, signed=False), "output"),
    ]
    ops += [
        K.CosineAttention(
            name="attention",
            queries="query_f",
            supports="support_f",
            labels="support_y",
            scale="scale",
            output="probs",
            ways=ways,
            logits_format=QFormat(16, 10),
            attention_format=QFormat(16, 15, signed=False),
        ),
        K.ArgMax(name="argmax", input="probs", output="pred"),
        K.Distance(name="cosine", queries="query_f", refs="support_f", output="cos", metric="cosine"),
        K.Softmax(name="softmax", input="cos", output="attn", spec=K.SoftmaxSpec(index_frac=3, table_size=64)),
    ]
    weights["scale"] = np.array(80)  # 10.0
    return Program(ProgramMeta("matchingnet", ways, shots, queries), buffers, ops, weights)
