"""Digests that tell RTL builds apart: of the program they implement and of the generator that wrote them.

Kept apart from `build` (no Amaranth import) so that a cache lookup stays cheap.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metahw.compiler.program import Program


@functools.cache
def generator_digest() -> str:
    """A digest of the RTL generator's own sources: a build (or a cached synthesis) from other sources is stale.

    Computed once per process (the sources of a running generator do not change).
    """
    h = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted([*package.glob("*.py"), *package.glob("*.cpp")]):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def program_digest(program: Program) -> str:
    """A stable digest of the program (its JSON and weights), to tell builds apart."""
    h = hashlib.sha256(json.dumps(program.to_json(), sort_keys=True).encode())
    for name in sorted(program.weights):
        h.update(name.encode() + program.weights[name].tobytes())
    return h.hexdigest()
