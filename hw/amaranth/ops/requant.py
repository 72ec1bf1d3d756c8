"""RTL lowering of Requant with ReLU: a pass of the MAP engine (a bare requantisation has no engine)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metahw.compiler.kernels import Requant
from metahw.compiler.program import Buffer
from metahw.hw.amaranth.isa import PASS, refuse
from metahw.hw.amaranth.ops import MAP, lowers

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan


@lowers(MAP, Requant)
def relu(rp: RtlPlan, op: Requant, buffers: dict[str, Buffer]) -> tuple[str, int, dict[str, Any]]:
    """The word itself, then ReLU."""
    if not op.relu:
        raise refuse(f"Requant '{op.name}' in a segment has no ReLU (the MAP engine runs ReLU passes)")
    return PASS, buffers[op.input].qformat.frac, {"relu": True}
