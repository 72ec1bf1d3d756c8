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

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring

from metahw.hw.amaranth.engine import Bus, Engine
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
from metahw.hw.amaranth.spec import RtlPlan
from metahw.hw.amaranth.util import or_all, pick, put
from metahw.qformat import QFormat


def _counters(m: Module, flags: wiring.PureInterface, limits: list[tuple[int, int]], name: str) -> tuple:
    """Row and step counters, reset at issue, advanced per beat up to each op's (rows, steps per row)."""
    row, step = Signal(16, name=f"{name}_row"), Signal(16, name=f"{name}_step")
    with m.If(flags.issued):
        m.d.sync += [row.eq(0), step.eq(0)]
    for op, (_, steps) in enumerate(limits):
        with m.Elif(flags.beat & flags.mine[op]):
            m.d.sync += step.eq(step + 1)
            with m.If(step == steps - 1):
                m.d.sync += [step.eq(0), row.eq(row + 1)]
    return row, step


class ExpEngine(Engine):
    """EXP: k = -shift(x - rowmax), e = table[k] (0 beyond the table), row sums; e written to the exp memory."""

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        self.ops: list[ExpOp] = rp.engine_ops(EXP)
        sources = {d.source for d in self.ops}  # read one element a beat: no lane past the first
        heads = bus.heads(reads=sources, writes={d.out for d in self.ops}, rotated=dict.fromkeys(sources, 0))
        rows = bus.rows(reads=("rowmax",), writes=("rowsum",))
        super().__init__(bus, {"exp": bus.flags(len(self.ops)), "heads": heads, "rows": rows})

    def build(self, m: Module) -> None:
        """The element counter, the index shift, the table and the row sums."""
        rp, ops, flags = self.rp, self.ops, self.exp
        rom = m.submodules.exp_table = memory.Memory(
            shape=unsigned(rp.exp_bits), depth=max(2, len(rp.exp_table)), init=rp.exp_table
        )
        rom_rd = rom.read_port()
        row, col = _counters(m, flags, [(d.rows, d.cols) for d in ops], "exp")
        element = self.beats(m, flags, "exp_element", 24)
        width = max(rp.heads[d.source].qformat.bits for d in ops) + 2
        shifts = sorted({d.shift for d in ops})
        specs = [RequantSpec(s, QFormat(width + max(0, -s) + 1, 0)) for s in shifts]
        index_shift = m.submodules.exp_index = Requantiser(specs, width, rp.program.meta.rounding, "saturate")
        v1, row1 = at(m, flags.beat, DATA, "exp_v1"), at(m, row, DATA, "exp_row1")
        peak = pick(m, list(self.rows.rowmax), row1, "exp_peak")
        difference = Signal(signed(width), name="exp_difference")
        xs, selects, bases, inside_of = [], [], [], []
        index = Signal(signed(len(index_shift.result) + 1), name="exp_index")
        m.d.comb += index.eq(-index_shift.result)
        for op, d in enumerate(ops):
            mine = flags.mine[op]
            self.read(d.source, element, mine)
            xs.append(Mux(mine, self.element(d.source), 0))
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
        sums = list(self.rows.rowsum)
        running = Signal.like(sums[0], name="exp_running")
        total = Mux(col3 == 0, value, running + value)
        with m.If(v3):
            m.d.sync += running.eq(total)
        for op, d in enumerate(ops):
            mine = flags.mine[op]
            put(m, sums, row3, total, v3 & mine & (col3 == d.cols - 1))
            self.write(d.out, element3, 1, [value], v3 & mine)


class RecipEngine(Engine):
    """RECIP: per row, load the divider with the row sum, then R + 1 quotient bits; the last one writes r."""

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        self.ops: list[RecipOp] = rp.engine_ops(RECIP)
        rows = bus.rows(reads=("rowsum",), writes=("recip",))
        super().__init__(bus, {"recip": bus.flags(len(self.ops)), "rows": rows})

    def build(self, m: Module) -> None:
        """The divider and its row and step counters."""
        sums, recips, flags = list(self.rows.rowsum), list(self.rows.recip), self.recip
        divider = m.submodules.recip_divider = Divider(len(sums[0]), len(recips[0]))
        row, step = _counters(m, flags, [(d.rows, d.recip_bits + 2) for d in self.ops], "recip")
        initials, lasts = [], []
        for op, d in enumerate(self.ops):
            mine = flags.mine[op]
            initials.append(Mux(mine, 1 << (d.exp_frac - 1), 0))
            lasts.append(mine & (step == d.recip_bits + 1))
        m.d.comb += [
            divider.load.eq(flags.beat & (step == 0)),
            divider.step.eq(flags.beat & (step != 0)),
            divider.divisor.eq(pick(m, sums, row, "recip_sum")),
            divider.initial.eq(or_all(initials)),
        ]
        put(m, recips, row, divider.q_next, flags.beat & or_all(lasts))


class RsqrtEngine(Engine):
    """RSQRT: per row, normalise + load (1), divide (33), square root (17), write r and e (1)."""

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        self.ops = rp.engine_ops(RSQRT)
        rows = bus.rows(reads=("norm_sum",), writes=("rsqrt_r", "rsqrt_e"))
        super().__init__(bus, {"rsqrt": bus.flags(len(self.ops)), "rows": rows})

    def build(self, m: Module) -> None:
        """The normaliser, the divider and the square root, stepped by a row and step counter."""
        rp, flags = self.rp, self.rsqrt
        normaliser = m.submodules.rsqrt_normaliser = RsqrtNormaliser(rp.norm_bits)
        divider = m.submodules.rsqrt_divider = Divider(RSQRT_MANTISSA, RSQRT_QUOTIENT_BITS)
        root = m.submodules.rsqrt_root = SquareRoot(RSQRT_ROOT_BITS)
        steps = 1 + RSQRT_QUOTIENT_BITS + RSQRT_ROOT_BITS + 1
        row, step = _counters(m, flags, [(d.rows, steps) for d in self.ops], "rsqrt")
        beat = flags.beat
        shift, zero = Signal(signed(8), name="rsqrt_shift"), Signal(name="rsqrt_zero")
        m.d.comb += normaliser.value.eq(pick(m, list(self.rows.norm_sum), row, "rsqrt_sum"))
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
        put(m, list(self.rows.rsqrt_r), row, Mux(zero, 0, root.root), write)
        put(m, list(self.rows.rsqrt_e), row, Mux(zero, 0, RSQRT_NUMERATOR // 2 + shift), write)
