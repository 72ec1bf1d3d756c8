"""RTL lowering of Flatten: the segment's last op, one AMEM word per beat into a row of a head memory."""

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
    """The feature row's head memory (channels last), and the FLATTEN descriptor and beats of one image."""
    last = buffers[flat.input]
    positions = last.shape[2] * last.shape[3]
    if positions > 1 and not flat.channels_last:
        raise refuse(
            f"Flatten '{flat.name}' flattens a {last.shape[2]}x{last.shape[3]} map in C order (the RTL "
            "writes maps channels last, as the compiler flattens them)"
        )
    feats = buffers[flat.output]
    head = rp.store(feats)
    if positions > 1 and last.shape[1] % rp.lanes:  # words of a position start at pos * C: inside a word
        rp.heads[feats.name] = dataclasses.replace(head, unaligned=True)
    rp.act_bits = max(rp.act_bits, last.qformat.bits)
    tiles = -(-last.shape[1] // rp.lanes)
    return FlattenOp(feats.name, last.shape[1], positions), tiles * positions
