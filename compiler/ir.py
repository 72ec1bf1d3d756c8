"""The float graph IR between ONNX import and quantisation.

A `Graph` is an ordered, immutable list of `Node`s over named values, with float constants
(weights) and static shapes. Head parts exported as `metahw`-domain ONNX functions stay
single nodes whose op is the function's name (e.g. ``metahw.SGDHeadStep``), so passes and
lowering see the algorithm's structure rather than its inlined arithmetic. Passes are pure
functions `Graph -> Graph` (see `passes.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np


def _freeze(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Node:
    """One operation: `op` (ONNX op type, or ``metahw.<Function>``), inputs, outputs, attributes."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", _freeze(self.attrs))


@dataclass(frozen=True)
class Graph:
    """A float episode graph: nodes in execution order, constants, value shapes, I/O names."""

    nodes: tuple[Node, ...]
    constants: Mapping  # name -> float32/int64 numpy array
    shapes: Mapping  # value name -> tuple of ints (None for the symbolic query count)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    metadata: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "constants", _freeze(self.constants))
        object.__setattr__(self, "shapes", _freeze(self.shapes))
        object.__setattr__(self, "metadata", _freeze(self.metadata))

    def with_nodes(self, nodes: list[Node], constants: Mapping | None = None) -> Graph:
        """A copy with other nodes (and optionally other constants)."""
        return replace(self, nodes=tuple(nodes), constants=self.constants if constants is None else constants)

    def producer(self, value: str) -> Node | None:
        """The node that writes `value`, or None for inputs and constants."""
        return next((n for n in self.nodes if value in n.outputs), None)

    def consumers(self, value: str) -> list[Node]:
        """Nodes that read `value`."""
        return [n for n in self.nodes if value in n.inputs]

    def ops(self) -> list[str]:
        """The op of every node, in order (handy in tests and reports)."""
        return [n.op for n in self.nodes]

    def constant(self, name: str) -> np.ndarray:
        """A constant's array (KeyError if `name` is not a constant)."""
        return self.constants[name]
