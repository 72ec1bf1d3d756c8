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

A lowering refuses what the generator cannot build with `isa.refuse` and the reason; the
refusal lists what the generator builds from this registry (`builds`).
"""

from __future__ import annotations

from metahw.compiler.kernels import Kernel
from metahw.hw.lowerings import Lowering, Table, import_modules, registrar

CONV, MAP, FLATTEN, HEAD = "conv", "map", "flatten", "head"
LOWERINGS: Table = {}
#: `@lowers(place, *kernels)` registers a lowering in `LOWERINGS`
lowers = registrar(LOWERINGS)


def lowering(op: Kernel, *places: str) -> tuple[str, Lowering] | None:
    """The place and lowering of `op` among `places`, or None."""
    for place, fn in LOWERINGS.get(type(op), {}).items():
        if place in places:
            return place, fn
    return None


def builds() -> str:
    """What the generator builds, for its refusals: the ops with a lowering, the segment engines' and the head's."""
    segment = sorted(kind.__name__ for kind, places in LOWERINGS.items() if HEAD not in places)
    head = sorted(kind.__name__ for kind, places in LOWERINGS.items() if HEAD in places)
    return f"embedding segments of {', '.join(segment)}; head ops {', '.join(head)}"


import_modules(__name__, __path__)
