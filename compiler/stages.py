"""Split a lowered Program into its per-image embedding and its per-episode head.

The embedding chains of a program are the ops between its images and its features (the roles
`support_images` -> `support_features` and `query_images` -> `query_features`, see
`program.EpisodeRoles`); they work image by image: an image's features do not depend on the
rest of the episode. So for many episodes over one image set, the embedding runs once per image
and only the head (adaptation + classification) runs per episode. `embedding_program` and
`head_program` give the two parts as ordinary Programs (executed by the same golden executor,
so the integers are the same ones; `tests/compiler/test_compile.py` proves the split run
equals the whole run).
"""

from __future__ import annotations

from dataclasses import replace

from metahw.compiler.kernels import Kernel
from metahw.compiler.program import Buffer, Program
from metahw.errors import UserError


def embedding_chain(program: Program, images: str, features: str) -> tuple[Kernel, ...]:
    """The ops (program order) that compute buffer `features` from buffer `images`: one embedding chain.

    An op belongs to the chain when it reads something computed from the images and the features
    are computed from what it writes; an empty chain means the features do not come from the images.
    """
    descendants, candidates = {images}, []
    for op in program.ops:
        if set(op.reads()) & descendants:
            descendants |= set(op.writes())
            candidates.append(op)
    needed, chain = {features}, []
    for op in reversed(candidates):
        if set(op.writes()) & needed:
            needed |= set(op.reads())
            chain.insert(0, op)
    return tuple(chain)


def _chain_of(program: Program, side: str) -> tuple[Kernel, ...]:
    """The embedding chain of `side` (support or query), the roles naming its images and features."""
    roles, user = program.roles, f"splitting the {side} embedding from the head"
    images, features = roles.require(f"{side}_images", user), roles.require(f"{side}_features", user)
    chain = embedding_chain(program, images, features)
    if not chain:
        raise UserError(f"the program's {side} features '{features}' are not computed from its images '{images}'")
    return chain


def embedding_program(program: Program, batch: int) -> Program:
    """The query embedding chain for `batch` images: input `query_images` -> output `query_features`."""
    ops = _chain_of(program, "query")
    images, features = program.roles.query_images, program.roles.query_features
    chain = {images} | {name for op in ops for name in op.writes()}
    used = {n for op in ops for n in (*op.reads(), *op.writes())}
    buffers = []
    for buf in program.buffers:
        if buf.name not in used:
            continue
        if buf.name in chain:
            kind = "output" if buf.name == features else buf.kind
            buf = replace(buf, shape=(batch, *buf.shape[1:]), kind=kind)
        buffers.append(buf)
    weights = {k: v for k, v in program.weights.items() if k in used}
    roles = program.roles.restricted(used)
    return Program(replace(program.meta, queries=batch), tuple(buffers), tuple(ops), weights, roles)


def head_program(program: Program) -> Program:
    """Adaptation and classification: inputs `support_features`, `query_features`, `support_labels`."""
    in_chains = {op.name for side in ("support", "query") for op in _chain_of(program, side)}
    ops = [op for op in program.ops if op.name not in in_chains]
    used = {n for op in ops for n in (*op.reads(), *op.writes())}
    roles = program.roles.restricted(used)
    buffers: list[Buffer] = []
    for buf in program.buffers:
        if buf.name not in used:
            continue
        if buf.name in (roles.support_features, roles.query_features):
            buf = replace(buf, kind="input")
        buffers.append(buf)
    weights = {k: v for k, v in program.weights.items() if k in used}
    return Program(program.meta, tuple(buffers), tuple(ops), weights, roles)
