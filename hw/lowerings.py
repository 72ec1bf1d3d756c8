"""What the backends' lowering registries share (`hw/amaranth/ops`, `hw/hls4ml/ops`).

A registry maps a kernel class to its lowerings by place (where in the design the op runs:
an engine, the embedding, the head); `registrar(table)` gives the decorator that fills it, and
`import_modules` imports every module of an ops package, so a new family module registers
itself.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import Any

from metahw.compiler.kernels import Kernel

Lowering = Callable[..., Any]
#: kernel class -> place -> its lowering
Table = dict[type[Kernel], dict[str, Lowering]]


def registrar(table: Table) -> Callable[..., Callable[[Lowering], Lowering]]:
    """The decorator `lowers(place, *kernels)` that registers a lowering at `place` for kernel classes in `table`."""

    def lowers(place: str, *kinds: type[Kernel]) -> Callable[[Lowering], Lowering]:
        def register(fn: Lowering) -> Lowering:
            for kind in kinds:
                table.setdefault(kind, {})[place] = fn
            return fn

        return register

    return lowers


def import_modules(package: str, path: Iterable[str]) -> None:
    """Import every module of `package` (its `__path__`)."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
