"""The golden executor: run a Program on integer inputs with plain numpy int64.

It is the reference for "bit-accurate": every other implementation (cycle simulator,
RTL, hls4ml C simulation) must reproduce every integer of every buffer it returns. It does
nothing but check the inputs and call each op's `execute` in program order; the integer
semantics live in the kernel ops (compiler/kernels/).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from metahw.compiler.kernels import Env
from metahw.compiler.program import Program
from metahw.errors import UserError


@dataclass(frozen=True)
class GoldenRun:
    """Integers of every buffer after the run (state: final values), and overflow counts per tensor.

    `saturation` maps a buffer name, or '<op name>/<intermediate>' for values internal to an
    op, to the number of elements clipped (or wrapped) while producing it; a state buffer
    written by several ops sums over them. Tensors that never overflowed map to 0.
    """

    values: dict[str, np.ndarray]
    saturation: dict[str, int]


def check_inputs(program: Program, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate `inputs` against the program's input buffers (names, shapes, integer ranges); int64 copies."""
    declared = {b.name: b for b in program.buffers_of("input")}
    missing, unknown = sorted(set(declared) - set(inputs)), sorted(set(inputs) - set(declared))
    if missing or unknown:
        raise UserError(f"inputs must be exactly {sorted(declared)}; missing {missing}, unexpected {unknown}")
    out = {}
    for name, buf in declared.items():
        value = np.asarray(inputs[name])
        if not np.issubdtype(value.dtype, np.integer) or value.shape != buf.shape:
            raise UserError(f"input '{name}' must be integers of shape {buf.shape}, got {value.dtype}{value.shape}")
        value = value.astype(np.int64)
        if not buf.holds(value):
            raise UserError(f"input '{name}' has values outside its format {buf.qformat}")
        out[name] = value
    return out


def execute(program: Program, inputs: Mapping[str, np.ndarray]) -> GoldenRun:
    """Run every op in order on the integer `inputs`; return all buffers' integers and overflow counts."""
    values = {name: np.array(w, dtype=np.int64) for name, w in program.weights.items()}
    values.update(check_inputs(program, inputs))
    meta = program.meta
    env = Env(program.buffer_map, values, meta.rounding, meta.overflow)
    for op in program.ops:
        op.execute(env)
    saturation = {b.name: 0 for b in program.buffers if b.kind not in ("input", "weight")}
    saturation.update(env.saturation)
    return GoldenRun(values=dict(env.values), saturation=saturation)
