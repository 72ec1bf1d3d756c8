"""The special-function unit's engines: EXP (table and row sums), RECIP (softmax reciprocal) and RSQRT.

docs/microarchitecture.md §4, §6, §8 and docs/numerics.md §4; `sfu.py` holds the iterative
units. Timings per row or element, as the simulator counts them:

- EXP, one element per beat (D_EXP = 4): read at t, subtract the row max at t + 1, index
  shift (the PPU's rounding) at t + 2 with the table ROM addressed, value, row sum and write
  at t + 3.
- RECIP, R + 2 beats per row: load the divider, then R + 1 quotient bits; the reciprocal is
  written in the cycle of the last bit (the simulator counts R + 2, not 1 + (R + 1) + 1).
- RSQRT, T_RSQRT = 52 beats per row: normalise and load the divider, 33 quotient bits (the
  square root unit takes the quotient with the last one), 17 root bits, write (r, e).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory

from metahw.hw.amaranth.isa import EXP, RECIP, RSQRT, ExpOp, RecipOp, RequantSpec
from metahw.hw.amaranth.pipeline import DATA, EXP_INDEX, EXP_WRITE, at
from metahw.hw.amaranth.requant import Requantiser
from metahw.hw.amaranth.sfu import (
    RSQRT_MANTISSA,
    RSQRT_NUMERATOR,
    RSQRT_QUOTIENT_BITS,
    RSQRT_ROOT_BITS,
    Divider,
    RsqrtNormaliser,
    SquareRoot,
)
from metahw.hw.amaranth.util import or_all, pick, put
from metahw.qformat import QFormat

if TYPE_CHECKING:
    from metahw.hw.amaranth.top import Accelerator


def elaborate(top: Accelerator, m: Module) -> None:
    """Build the EXP, RECIP and RSQRT engines the program uses."""
    _exp(top, m)
    _recip(top, m)
    _rsqrt(top, m)


def _counters(top: Accelerator, m: Module, engine: int, limits: list[tuple[int, int]], name: str) -> tuple:
    """Row and step counters, reset at issue, advanced per beat up to each op's (rows, steps per row)."""
    row, step = Signal(16, name=f"{name}_row"), Signal(16, name=f"{name}_step")
    with m.If(top.issued(engine)):
        m.d.sync += [row.eq(0), step.eq(0)]
    for op, (_, steps) in enumerate(limits):
        with m.Elif(top.beat_of(engine) & top.mine(engine, op)):
            m.d.sync += step.eq(step + 1)
            with m.If(step == steps - 1):
                m.d.sync += [step.eq(0), row.eq(row + 1)]
    return row, step


def _exp(top: Accelerator, m: Module) -> None:
    """EXP: k = -shift(x - rowmax), e = table[k] (0 beyond the table), row sums; e written to the exp memory."""
    rp = top.rp
    ops: list[ExpOp] = rp.engine_ops(EXP)
    if not ops:
        return
    rom = m.submodules.exp_table = memory.Memory(
        shape=unsigned(rp.exp_bits), depth=max(2, len(rp.exp_table)), init=rp.exp_table
    )
    rom_rd = rom.read_port()
    row, col = _counters(top, m, EXP, [(d.rows, d.cols) for d in ops], "exp")
    element = Signal(24, name="exp_element")
    with m.If(top.issued(EXP)):
        m.d.sync += element.eq(0)
    with m.Elif(top.beat_of(EXP)):
        m.d.sync += element.eq(element + 1)
    width = max(rp.heads[d.source].qformat.bits for d in ops) + 2
    shifts = sorted({d.shift for d in ops})
    specs = [RequantSpec(s, QFormat(width + max(0, -s) + 1, 0)) for s in shifts]
    index_shift = m.submodules.exp_index = Requantiser(specs, width, rp.program.meta.rounding, "saturate")
    v1, row1 = at(m, top.beat_of(EXP), DATA, "exp_v1"), at(m, row, DATA, "exp_row1")
    peak = pick(m, top.rowmax, row1, "exp_peak")
    difference = Signal(signed(width), name="exp_difference")
    xs, selects, bases, inside_of = [], [], [], []
    index = Signal(signed(len(index_shift.result) + 1), name="exp_index")
    m.d.comb += index.eq(-index_shift.result)
    for op, d in enumerate(ops):
        mine = top.mine(EXP, op)
        top.read(d.source, element, mine)
        xs.append(Mux(mine, top.element(d.source), 0))
        selects.append(Mux(mine, shifts.index(d.shift), 0))
        inside = Signal(name=f"exp{op}_inside")
        m.d.comb += inside.eq(mine & (index < d.size))
        inside_of.append(inside)
        bases.append(Mux(mine, d.base, 0))
    m.d.sync += difference.eq(or_all(xs) - peak)
    inside = or_all(inside_of)
    m.d.comb += [index_shift.value.eq(difference), index_shift.select.eq(or_all(selects))]
    m.d.comb += rom_rd.addr.eq(or_all(bases) + Mux(inside, index[: len(rom_rd.addr)], 0))
    # t + 3: the table value, the running row sum, the row's total and the write
    v3, row3 = at(m, v1, EXP_WRITE, "exp_v3", since=DATA), at(m, row1, EXP_WRITE, "exp_row3", since=DATA)
    col3 = at(m, col, EXP_WRITE, "exp_col3")
    element3 = at(m, element, EXP_WRITE, "exp_element3")
    inside3 = at(m, inside, EXP_WRITE, "exp_inside3", since=EXP_INDEX)
    value = Signal(unsigned(rp.exp_bits), name="exp_value")
    m.d.comb += value.eq(Mux(inside3, rom_rd.data, 0))
    running = Signal.like(top.rowsum[0], name="exp_running")
    total = Mux(col3 == 0, value, running + value)
    with m.If(v3):
        m.d.sync += running.eq(total)
    for op, d in enumerate(ops):
        mine = top.mine(EXP, op)
        put(m, top.rowsum, row3, total, v3 & mine & (col3 == d.cols - 1))
        top.write(d.out, element3, 1, [value], v3 & mine)


def _recip(top: Accelerator, m: Module) -> None:
    """RECIP: per row, load the divider with the row sum, then R + 1 quotient bits; the last one writes r."""
    rp = top.rp
    ops: list[RecipOp] = rp.engine_ops(RECIP)
    if not ops:
        return
    divider = m.submodules.recip_divider = Divider(len(top.rowsum[0]), len(top.recip[0]))
    row, step = _counters(top, m, RECIP, [(d.rows, d.recip_bits + 2) for d in ops], "recip")
    beat = top.beat_of(RECIP)
    initials, lasts = [], []
    for op, d in enumerate(ops):
        mine = top.mine(RECIP, op)
        initials.append(Mux(mine, 1 << (d.exp_frac - 1), 0))
        lasts.append(mine & (step == d.recip_bits + 1))
    m.d.comb += [
        divider.load.eq(beat & (step == 0)),
        divider.step.eq(beat & (step != 0)),
        divider.divisor.eq(pick(m, top.rowsum, row, "recip_sum")),
        divider.initial.eq(or_all(initials)),
    ]
    put(m, top.recip, row, divider.q_next, beat & or_all(lasts))


def _rsqrt(top: Accelerator, m: Module) -> None:
    """RSQRT: per row, normalise + load (1), divide (33), square root (17), write r and e (1)."""
    rp = top.rp
    if not rp.engine_ops(RSQRT):
        return
    normaliser = m.submodules.rsqrt_normaliser = RsqrtNormaliser(rp.norm_bits)
    divider = m.submodules.rsqrt_divider = Divider(RSQRT_MANTISSA, RSQRT_QUOTIENT_BITS)
    root = m.submodules.rsqrt_root = SquareRoot(RSQRT_ROOT_BITS)
    steps = 1 + RSQRT_QUOTIENT_BITS + RSQRT_ROOT_BITS + 1
    row, step = _counters(top, m, RSQRT, [(d.rows, steps) for d in rp.engine_ops(RSQRT)], "rsqrt")
    beat = top.beat_of(RSQRT)
    shift, zero = Signal(signed(8), name="rsqrt_shift"), Signal(name="rsqrt_zero")
    m.d.comb += normaliser.value.eq(pick(m, top.norm_sum, row, "rsqrt_sum"))
    dividing = (step >= 1) & (step <= RSQRT_QUOTIENT_BITS)
    rooting = (step > RSQRT_QUOTIENT_BITS) & (step < steps - 1)
    m.d.comb += [
        divider.load.eq(beat & (step == 0)),
        divider.step.eq(beat & dividing),
        divider.divisor.eq(normaliser.mantissa),
        divider.initial.eq(1 << (RSQRT_NUMERATOR - RSQRT_QUOTIENT_BITS)),
        root.load.eq(beat & (step == RSQRT_QUOTIENT_BITS)),
        root.step.eq(beat & rooting),
        root.value.eq(divider.q_next),
    ]
    with m.If(beat & (step == 0)):
        m.d.sync += [shift.eq(normaliser.shift), zero.eq(normaliser.zero)]
    write = beat & (step == steps - 1)
    put(m, top.rsqrt_r, row, Mux(zero, 0, root.root), write)
    put(m, top.rsqrt_e, row, Mux(zero, 0, RSQRT_NUMERATOR // 2 + shift), write)
