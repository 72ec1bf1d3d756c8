"""The hls4ml lowerings, one module per kernel family, named like `compiler/kernels/<family>.py`.

Each module registers its kernels' lowerings with `lowers(place, *kernels)` into `LOWERINGS`
(kernel class -> place -> function); importing this package imports every module in it, so a
new family module needs no edit here. The places, and what their functions take and return:

- `EMBEDDING`: an op of the image chains, `fn(out, op, name, values)` appends hls4ml layers to
  the `embedding_ops.LayerList` `out` and returns the `Value` of its output buffer;
- `HEAD`: a head op, `fn(h, op)` appends metahw layers (`layers.py`, C++ in `nnet_metahw.h`)
  to the head `h` (`head.py`) and defines the buffers it writes.

`embedding_ops.py` and `head.py` hold what the lowerings share and import this package when
they dispatch (the lowerings import them).
"""

from __future__ import annotations

from metahw.compiler.kernels import Kernel
from metahw.hw.lowerings import Lowering, Table, import_modules, registrar

EMBEDDING, HEAD = "embedding", "head"
LOWERINGS: Table = {}
#: `@lowers(place, *kernels)` registers a lowering in `LOWERINGS`
lowers = registrar(LOWERINGS)


def lowered_at(place: str) -> dict[type[Kernel], Lowering]:
    """The kernels with a lowering at `place`, and their lowerings."""
    return {kind: places[place] for kind, places in LOWERINGS.items() if place in places}


import_modules(__name__, __path__)
