"""Where a beat is in the engines' pipelines: cycle offsets from the cycle t the beat is issued in.

The engines delay a beat's addresses and controls to these offsets (`at`), and the cycle
model's drains (`compiler/kernels/timing.py`) are the same numbers, checked here at import:
an engine whose pipeline is changed without the model stops the import instead of drifting
a cycle in Verilator. docs/microarchitecture.md §4 and §6.

MAC engines (conv, OUTER, WIDE, REDUCE): memories addressed at t answer at `DATA`; each
engine forms its operands from the data a cycle later and registers them (`drive_operands`),
so its operand selection and the engines' OR into the MAC array are a cycle apart; the
operand registers present the operands at `OPERANDS`; the MAC array's input register, pre-adder,
two multiplier stages and accumulator (`mac.py`) bring the lane accumulators to the PPU at `ACCUMULATORS`; the PPU's
five registers (`ppu.py`) give the requantised result, written at `MAC_WRITE` = D_MAC. REDUCE
adds the adder tree's lg L stages after the multiplier. Vector passes (VECTOR, MAP, FLATTEN):
read at t, lane values formed at `DATA`, registered into the PPU at `VEC_PPU`, written at
`VEC_WRITE` <= D_VEC (a write in an instruction's last cycle lands before the next
instruction's first read, which is addressed a cycle after its issue). EXP:
the row max is subtracted at `DATA`, the index shift and table address at `EXP_INDEX`, the
value, row sum and write at `EXP_WRITE`, within D_EXP.
"""

from __future__ import annotations

from amaranth import Module

from metahw.compiler.kernels.timing import D_EXP, D_MAC, D_VEC
from metahw.hw.amaranth.util import delay

#: a memory (or the AMEM bank, the weight and bias ROMs) answers one cycle after its address
DATA = 1
#: the engines' operand registers present the beat's operands to the MAC array (formed from the
#: data at DATA + 1, registered)
OPERANDS = DATA + 2
#: the MAC array's stages after the operands: input register, pre-adder, multiplier (two), accumulator
MAC_STAGES = 5
#: a read whose data joins the products in the MAC array (the REDUCE tree's bias, plus the
#: tree's depth) is addressed here; its data comes with the products
PRELOAD_READ = OPERANDS + MAC_STAGES - 1 - DATA
#: the conv's bias ROM read: the MAC array registers the lane `preload` a cycle before the products
LANE_PRELOAD_READ = PRELOAD_READ - 1
#: the lane accumulators reach the PPU, with the PPU's controls for that beat
ACCUMULATORS = OPERANDS + MAC_STAGES
#: a read whose data joins the accumulators in the PPU (a bias or weight addend) is addressed here
ADDEND_READ = ACCUMULATORS - DATA
#: the PPU's register stages: the scaled, the rectified and the running value, the requantiser's
#: shift, the requantised result
PPU_STAGES = 5
#: the PPU's result is written (REDUCE: plus the adder tree's depth)
MAC_WRITE = ACCUMULATORS + PPU_STAGES
#: FLATTEN: the AMEM word read is registered and written into the head memory
FLAT_WRITE = DATA + 1
#: ROWRED: a beat's values enter the compare tree (its winner comes out lg P stages later)
COMPARE = DATA + 1
#: a vector pass's lane values enter the PPU
VEC_PPU = DATA + 1
#: a vector pass's result is written
VEC_WRITE = VEC_PPU + PPU_STAGES
#: EXP: the index shift is rounded and the table ROM addressed
EXP_INDEX = DATA + 1
#: EXP: the table value, the row sum and the write
EXP_WRITE = EXP_INDEX + 1

if MAC_WRITE != D_MAC or VEC_WRITE > D_VEC or EXP_WRITE >= D_EXP:
    raise AssertionError(
        f"the engines' pipelines (MAC write at t + {MAC_WRITE}, vector write at t + {VEC_WRITE}, exp write at "
        f"t + {EXP_WRITE}) no longer match the cycle model's drains (D_MAC {D_MAC}, D_VEC {D_VEC}, D_EXP {D_EXP})"
    )


def at(m: Module, signal: object, stage: int, name: str, since: int = 0) -> object:
    """`signal`, valid at offset `since` of a beat, delayed to offset `stage` of the same beat."""
    if stage < since:
        raise ValueError(f"{name}: stage {stage} is before {since}")
    return delay(m, signal, stage - since, name)
