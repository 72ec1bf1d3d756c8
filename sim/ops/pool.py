"""Schedules of MaxPool2d, AvgPool2d, GlobalAvgPool: VECTOR passes per group of G images (microarchitecture §7)."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import AvgPool2d, GlobalAvgPool, MaxPool2d, timing
from metahw.compiler.kernels.pool import POOL_SHIFT
from metahw.sim.machine import Instr, Machine, ceil_div, per_group, simulates


@simulates(MaxPool2d)
def maxpool2d(m: Machine, op: MaxPool2d) -> list[Instr]:
    """VECTOR: G slots x L channels per beat, 4 beats (window elements) per output, running max."""
    x = m.read(op.input)
    b, c, h, w = x.shape
    hp, wp = h // 2, w // 2
    out = x[:, :, 0 : 2 * hp : 2, 0 : 2 * wp : 2]
    for wy, wx in ((0, 1), (1, 0), (1, 1)):
        out = np.maximum(out, x[:, :, wy : 2 * hp : 2, wx : 2 * wp : 2])
    m.reads[op.input] += 4 * out.size
    m.write(op.output, np.ascontiguousarray(out))
    return per_group(m.hw, b, timing.VECTOR, 4 * ceil_div(c, m.hw.group_lanes) * hp * wp)


@simulates(AvgPool2d)
def avgpool2d(m: Machine, op: AvgPool2d) -> list[Instr]:
    """VECTOR: G slots x L channels per beat, 4 beats per output, running sum, then the PPU's requantisation."""
    x = m.read(op.input)
    b, c, h, w = x.shape
    hp, wp = h // 2, w // 2
    total = sum(x[:, :, wy : 2 * hp : 2, wx : 2 * wp : 2] for wy in (0, 1) for wx in (0, 1))
    m.reads[op.input] += 4 * total.size
    m.write(op.output, m.requant(total, m.fmt(op.input).frac + POOL_SHIFT, m.fmt(op.output), op.output))
    return per_group(m.hw, b, timing.VECTOR, 4 * ceil_div(c, m.hw.group_lanes) * hp * wp)


@simulates(GlobalAvgPool)
def global_avgpool(m: Machine, op: GlobalAvgPool) -> list[Instr]:
    """VECTOR: one beat per (channel block of L, input pixel) into a running sum; the PPU scales and requantises."""
    x = m.read(op.input)
    b, c, h, w = x.shape
    total = x.reshape(b, c, h * w).sum(axis=2).reshape(b, c, 1, 1) * op.scale
    m.reads[op.input] += x.size
    m.write(op.output, m.requant(total, m.fmt(op.input).frac + op.shift, m.fmt(op.output), op.output))
    return per_group(m.hw, b, timing.VECTOR, ceil_div(c, m.hw.group_lanes) * h * w)
