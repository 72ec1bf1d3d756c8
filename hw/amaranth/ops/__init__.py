"""The RTL lowerings, one module per kernel family, named like `compiler/kernels/<family>.py`.

Each module registers its kernels' lowerings with `lowers(place, *kernels)` into `LOWERINGS`
(kernel class -> place -> function); importing this package imports every module in it, so a
new family module needs no edit here. `spec.py` assembles the plan and dispatches through the
registry; the helpers head ops share stay in `lower_head.py`. The places, and what their
functions take and return:

- `CONV`: a segment's convolution on the conv engine, `fn(rp, op, buffers, linear)` -> its
  layer's index in `rp.convs` (`linear`: the segment's first layer, reading the streamed image);
- `MAP`: a segment's pool, residual Add or ReLU pass on the MAP engine, `fn(rp, op, buffers)`
  -> (`MapOp` kind, fractional bits of the value the PPU requantises, the other `MapOp`
  fields); `spec.py` adds the map's shape and the requantiser;
- `FLATTEN`: the segment's last op, `fn(rp, op, buffers)` -> (`FlattenOp`, beats per image);
- `HEAD`: a head op, `fn(rp, op, buffers)` appends its instructions (docs/microarchitecture.md §8).

A lowering refuses what the generator cannot build with `isa.refuse` and the reason.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from metahw.compiler.kernels import Kernel

CONV, MAP, FLATTEN, HEAD = "conv", "map", "flatten", "head"
Lowering = Callable[..., Any]
#: kernel class -> place -> its lowering
LOWERINGS: dict[type[Kernel], dict[str, Lowering]] = {}


def lowers(place: str, *kinds: type[Kernel]) -> Callable[[Lowering], Lowering]:
    """Register a lowering at `place` for kernel classes."""

    def register(fn: Lowering) -> Lowering:
        for kind in kinds:
            LOWERINGS.setdefault(kind, {})[place] = fn
        return fn

    return register


def lowering(op: Kernel, *places: str) -> tuple[str, Lowering] | None:
    """The place and lowering of `op` among `places`, or None."""
    for place, fn in LOWERINGS.get(type(op), {}).items():
        if place in places:
            return place, fn
    return None


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
