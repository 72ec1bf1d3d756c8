"""Cycle costs of the accelerator's instructions (docs/microarchitecture.md §6).

Every kernel op runs as a fixed sequence of instructions; an instruction issues `beats`
beats, one per cycle, then drains its pipeline: cycles = T_ISSUE + beats + depth(kind).
Each op's `cycles(buffers, hw)` adds up its instructions with these functions; the cycle
simulator (sim/) counts the same instructions' beats from the tiles it executes and uses
the same depths, and the Amaranth engines delay each beat to the stage offsets of
`hw/amaranth/pipeline.py`, which are checked against these depths when it is imported. `hw` is
a `metahw.hardware.HardwareConfig`; only `lanes` (P) and `groups` (G) are read here.

Lane groups are an embedding-segment matter: a segment op runs G images at once on G groups
of L = P/G lanes. Head ops run the whole array as one group of P lanes whatever G is (their
REDUCE adder tree spans all P lanes, their memories are P lanes wide): the head's few thousand
cycles do not pay for G read ports on every head memory (docs/microarchitecture.md §4).
"""

from __future__ import annotations

from typing import Any

#: controller decodes an instruction and loads its address generators
T_ISSUE = 1
#: OUTER/WIDE pipeline after the issue: read, the engine's operands formed, its operand register,
#: the MAC array's input register, pre-adder, multiply (two stages), accumulate, then the PPU's
#: scale, update and ReLU, running max, requantiser shift, rounding and range (with the write;
#: REDUCE adds lg P adder-tree stages)
D_MAC = 13
#: Winograd conv (kernels/winograd.py): the beats that read the first input channel's 4x4 patch
#: before the first product, and the cycles a window's last output reaches the PPU after a direct
#: tile's would (its 4 sums are handed on one per cycle, from a cycle after the last beat's sum)
WINO_FILL = 16
WINO_DRAIN = 4
#: vector pass after the read: operate, then the PPU's five stages, the last with the write (SCAN
#: and ROWRED, which do not use the PPU, drain as long: ROWRED adds its lg P compare-tree stages)
D_VEC = 7
#: SFU exp pipeline: subtract max, index shift, table read, accumulate + write
D_EXP = 4
#: stream beat to memory write
D_IO = 1
#: out-stream beat: the memory read, then the out register (`out_data` leaves the chip from a register)
D_OUT = 2
#: rsqrt per value: 1 normalise + 33 division steps + 17 square-root steps + 1 write
T_RSQRT = 52
#: episode start (fetch the first step) and done cycles
T_START = 1
T_DONE = 1

OUTER, WIDE, REDUCE, WINO = "outer", "wide", "reduce", "winograd"
VECTOR, SCAN, ROWRED = "vector", "scan", "rowred"
EXP, RECIP, RSQRT, IO, OUT = "exp", "recip", "rsqrt", "io", "out"


def ceil_div(a: int, b: int) -> int:
    """⌈a/b⌉ for positive b."""
    return -(-a // b)


def log2(n: int) -> int:
    """Exact log2 of a power of two."""
    return n.bit_length() - 1


def group_lanes(hw: Any) -> int:
    """L = P / G: lanes per group."""
    return hw.lanes // hw.groups


def t_recip(recip_bits: int) -> int:
    """Divider cycles per softmax row: 1 load + (recip_bits + 1) quotient bits + 1 write."""
    return recip_bits + 2


def depth(kind: str, hw: Any) -> int:
    """Pipeline cycles after an instruction's last beat."""
    if kind in (OUTER, WIDE):
        return D_MAC
    if kind == REDUCE:
        return D_MAC + log2(hw.lanes)
    if kind == WINO:
        return D_MAC + WINO_DRAIN
    if kind in (VECTOR, SCAN):
        return D_VEC
    if kind == ROWRED:
        return D_VEC + log2(hw.lanes)
    if kind == EXP:
        return D_EXP
    if kind == IO:
        return D_IO
    if kind == OUT:
        return D_OUT
    if kind in (RECIP, RSQRT):
        return 0
    raise ValueError(f"unknown instruction kind {kind!r}")


def instruction(kind: str, beats: int, hw: Any) -> int:
    """Cycles of one instruction: T_ISSUE + beats + depth(kind)."""
    return T_ISSUE + beats + depth(kind, hw)


def segment_groups(batch: int, hw: Any) -> int:
    """Image groups a segment op runs for: ⌈B/G⌉."""
    return ceil_div(batch, hw.groups)


def segment_vector(shape: tuple[int, ...], hw: Any, slots: int = 1) -> int:
    """A per-group VECTOR pass over a segment tensor [A0, A1, ...]: ⌈A0/G⌉ x T(VECTOR, slots * ⌈A1/L⌉ * A2 * ...).

    `slots` G: the pass writes one image slot per beat (Flatten: one window of a head memory's
    row per beat), so it reads each word once per slot.
    """
    if len(shape) < 2:
        return segment_groups(shape[0] if shape else 1, hw) * instruction(VECTOR, 1, hw)
    rest = 1
    for extent in shape[2:]:
        rest *= extent
    beats = slots * ceil_div(shape[1], group_lanes(hw)) * rest
    return segment_groups(shape[0], hw) * instruction(VECTOR, beats, hw)


def reduce_cycles(outputs: int, fan_in: int, hw: Any) -> int:
    """REDUCE (a head op: one group of P lanes): `outputs` dot products of `fan_in` terms, ⌈fan_in/P⌉ beats each."""
    return instruction(REDUCE, outputs * ceil_div(fan_in, hw.lanes), hw)


def norm_cycles(rows: int, dim: int, hw: Any) -> int:
    """Norm(R, D): sum of squares (REDUCE), rsqrt per row (SFU), scaling pass (VECTOR)."""
    return (
        reduce_cycles(rows, dim, hw)
        + instruction(RSQRT, rows * T_RSQRT, hw)
        + instruction(VECTOR, ceil_div(rows * dim, hw.lanes), hw)
    )


def softmax_cycles(rows: int, n: int, recip_bits: int, hw: Any) -> int:
    """Softmax(R, N): row max (ROWRED), exp (SFU), reciprocal per row (SFU), scaling pass (VECTOR)."""
    return (
        instruction(ROWRED, rows * ceil_div(n, hw.lanes), hw)
        + instruction(EXP, rows * n, hw)
        + instruction(RECIP, rows * t_recip(recip_bits), hw)
        + instruction(VECTOR, ceil_div(rows * n, hw.lanes), hw)
    )


def rows_of(shape: tuple[int, ...]) -> int:
    """Rows of a tensor reduced over its last axis: the product of the other axes (1 for 1-d)."""
    rows = 1
    for extent in shape[:-1]:
        rows *= extent
    return rows
