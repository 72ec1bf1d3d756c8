"""Split a lowered Program into its per-image embedding and its per-episode head.

The embedding chain of a lowered program (ops named ``support.*`` / ``query.*``, see
`lower.py`) works image by image: an image's features do not depend on the rest of the
episode. So for many episodes over one image set, the embedding runs once per image and
only the head (adaptation + classification) runs per episode. `embedding_program` and
`head_program` give the two parts as ordinary Programs (executed by the same golden executor,
so the integers are the same ones; `tests/compiler/test_compile.py` proves the split run
equals the whole run).
"""

from __future__ import annotations

from dataclasses import replace

from metahw.compiler.program import Buffer, Program

CHAINS = ("support", "query")


def _chain_of(name: str) -> str | None:
    head = name.split(".", 1)[0]
    return head if head in CHAINS else None


def embedding_program(program: Program, batch: int) -> Program:
    """The query embedding chain for `batch` images: input ``query_x`` -> output ``query.features``."""
    ops = [op for op in program.ops if _chain_of(op.name) == "query"]
    used = {n for op in ops for n in (*op.reads(), *op.writes())}
    buffers = []
    for buf in program.buffers:
        if buf.name not in used:
            continue
        if buf.name == "query_x" or _chain_of(buf.name) == "query":
            kind = "output" if buf.name == "query.features" else buf.kind
            buf = replace(buf, shape=(batch, *buf.shape[1:]), kind=kind)
        buffers.append(buf)
    weights = {k: v for k, v in program.weights.items() if k in used}
    return Program(replace(program.meta, queries=batch), tuple(buffers), tuple(ops), weights)


def head_program(program: Program) -> Program:
    """Adaptation and classification: inputs ``support.features``, ``query.features``, ``support_labels``."""
    ops = [op for op in program.ops if _chain_of(op.name) is None]
    used = {n for op in ops for n in (*op.reads(), *op.writes())}
    buffers: list[Buffer] = []
    for buf in program.buffers:
        if buf.name not in used:
            continue
        if buf.name in ("support.features", "query.features"):
            buf = replace(buf, kind="input")
        buffers.append(buf)
    weights = {k: v for k, v in program.weights.items() if k in used}
    return Program(program.meta, tuple(buffers), tuple(ops), weights)
