"""RTL lowering of Flatten: the segment's last op, an image slot of an AMEM word per beat into a head memory's row."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from metahw.compiler.kernels import Flatten
from metahw.compiler.program import Buffer
from metahw.hw.amaranth.isa import FlattenOp, refuse
from metahw.hw.amaranth.ops import FLATTEN, lowers

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan


@lowers(FLATTEN, Flatten)
def flatten(rp: RtlPlan, flat: Flatten, buffers: dict[str, Buffer]) -> tuple[FlattenOp, int]:
    """The feature rows' head memory (channels last), and the FLATTEN descriptor and beats of one group of G images."""
    last = buffers[flat.input]
    positions = last.shape[2] * last.shape[3]
    if positions > 1 and not flat.channels_last:
        raise refuse(
            f"Flatten '{flat.name}' flattens a {last.shape[2]}x{last.shape[3]} map in C order (the RTL "
            "writes maps channels last, as the compiler flattens them)"
        )
    feats = buffers[flat.output]
    head = rp.store(feats)
    channels, lanes = last.shape[1], rp.group_lanes
    tiles = -(-channels // lanes)
    # a window starts at row * cols + pos * C + t * L: inside a word where pos * C or t * L is no
    # multiple of P (rows that start inside words the store sees itself)
    if (positions > 1 and channels % rp.lanes) or (tiles > 1 and lanes < rp.lanes):
        rp.heads[feats.name] = dataclasses.replace(head, unaligned=True)
    rp.act_bits = max(rp.act_bits, last.qformat.bits)
    return FlattenOp(feats.name, channels, positions), rp.hw.groups * tiles * positions
