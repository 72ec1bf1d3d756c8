"""RTL lowerings of MaxPool2d, AvgPool2d and GlobalAvgPool: passes of the MAP engine (`engines_map.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metahw.compiler.kernels import AvgPool2d, GlobalAvgPool, MaxPool2d
from metahw.compiler.kernels.pool import POOL_SHIFT
from metahw.compiler.program import Buffer
from metahw.hw.amaranth.isa import AVG_POOL, GLOBAL_AVG, MAX_POOL
from metahw.hw.amaranth.ops import MAP, lowers

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan


@lowers(MAP, MaxPool2d)
def max_pool(rp: RtlPlan, op: MaxPool2d, buffers: dict[str, Buffer]) -> tuple[str, int, dict[str, Any]]:
    """4 beats per output position, a running max."""
    return MAX_POOL, buffers[op.input].qformat.frac, {}


@lowers(MAP, AvgPool2d)
def avg_pool(rp: RtlPlan, op: AvgPool2d, buffers: dict[str, Buffer]) -> tuple[str, int, dict[str, Any]]:
    """4 beats per output position, a running sum (2 more fractional bits)."""
    return AVG_POOL, buffers[op.input].qformat.frac + POOL_SHIFT, {}


@lowers(MAP, GlobalAvgPool)
def global_avg(rp: RtlPlan, op: GlobalAvgPool, buffers: dict[str, Buffer]) -> tuple[str, int, dict[str, Any]]:
    """H*W beats per channel tile, a running sum of value * the constant factor `scale`."""
    return GLOBAL_AVG, buffers[op.input].qformat.frac + op.shift, {"scale": rp.factor_index(op.scale)}
