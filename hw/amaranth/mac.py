"""The MAC array: P lanes of pre-adder, multiplier and accumulator, and the REDUCE adder tree.

docs/microarchitecture.md §4. Five pipeline stages after the operands (presented on `x`, `y` at cycle c):

    stage 0 (input)       the operands and the beat's controls registered (the engines' operand
                          selection and their OR end in a register, not in the pre-adder)
    stage 1 (pre-adder)   d = x - y (subtract) or x;  e = d (square) or y
    stage 2 (multiply)    mid = d * e, or the first levels of a soft multiplier's adder tree
    stage 3 (product)     prod = mid, or the soft multiplier's last levels (reset-less registers)
    stage 4 (accumulate)  lane mode: acc = (first ? preload : acc) + prod, handed on at `last`
                          reduce mode: lg P adder-tree stages, then the same on the sum

Lanes `dsp_lanes` and up build their multiplier from adders (`soft_multiply_first`, `_last`) instead of a `*` that
synthesis maps onto a hardware multiplier (MULT18X18D, DSP48E1, SB_MAC16): a design can then
use every DSP block of a device and go on in LUTs (docs/rtl.md, "Multipliers"). Same
products, same cycles. The soft multiplier's partial-product tree is cut in two by stage 2's
register (at P = 32 on the ECP5-25k its single stage was the critical path, 13.0 ns with 15
levels: `mac.d30 -> mac.prod30`); a hardware multiplier's product passes the same register.

`preload` is read at cycle c + 3 into a register (a conv's bias: the engines' OR and the bias ROM
are then not in front of the accumulators), and joins the products. The lane path (OUTER, WIDE) shows the
P accumulators from cycle c + 5; the reduce path shows one sum from cycle c + 5 + lg P, and
its `sum_preload` (the aligned bias of a Dense output) is read at cycle c + 4 + lg P, with the
tree's total of the output's first beat.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.hdl import Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from metahw.compiler.kernels import winograd


def _add_pairs(terms: list[Value], levels: int | None = None) -> list[Value]:
    """`levels` levels (None: all) of a balanced adder tree over `terms` (neighbours added pairwise)."""
    while len(terms) > 1 and (levels is None or levels > 0):
        terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k] for k in range(0, len(terms), 2)]
        levels = None if levels is None else levels - 1
    return terms


def soft_multiply_first(a: Value, b: Value) -> list[Value]:
    """The first half of the levels of the signed product a * b's partial-product adder tree (no `*` for a DSP).

    Two's complement: b = -b[n-1] 2^(n-1) + sum b[i] 2^i, so the top partial product is subtracted.
    Every partial sum fits the product's len(a) + len(b) bits (|sum| < |a| 2^len(b)).
    """
    n = len(b)
    terms = [Mux(b[i], a.as_signed() << i, 0) for i in range(n - 1)]
    terms.append(Mux(b[n - 1], -(a.as_signed() << (n - 1)), 0))
    return _add_pairs(terms, -(-(n - 1).bit_length() // 2))


def soft_multiply_last(sums: list[Value]) -> Value:
    """The rest of the tree: the product from `soft_multiply_first`'s sums (registered between the two)."""
    return _add_pairs(sums)[0]


class MacArray(wiring.Component):
    """P lanes; `operand_bits`-bit signed operands, `acc_bits`-bit signed accumulators.

    `dsp_lanes`: lanes 0 .. dsp_lanes - 1 multiply with `*` (a hardware multiplier after
    synthesis), the others with `soft_multiply_first` and `_last`; None: every lane with `*`.
    """

    def __init__(
        self, lanes: int, operand_bits: int, acc_bits: int, dsp_lanes: int | None = None, winograd: bool = False
    ) -> None:
        self.lanes = lanes
        #: build the Winograd conv's 4 accumulators per lane and their hand-over (`_winograd_lanes`)
        self.winograd = winograd
        self.dsp_lanes = lanes if dsp_lanes is None else min(dsp_lanes, lanes)
        self.acc_bits = acc_bits
        self.tree_depth = (lanes - 1).bit_length()
        operands = data.ArrayLayout(signed(operand_bits), lanes)
        accs = data.ArrayLayout(signed(acc_bits), lanes)
        super().__init__(
            {
                # beat inputs (operand registers of the engines)
                "valid": In(1),
                "first": In(1),
                "last": In(1),
                "subtract": In(1),
                "square": In(1),
                "reduce": In(1),
                # Winograd conv beat: 4 accumulators per lane, each takes the product with its sign
                # (signs: per accumulator q, bit 2q skips the product, bit 2q + 1 subtracts it)
                "wino": In(1),
                "signs": In(8),
                "x": In(operands),
                "y": In(operands),
                # lane preload for the first beat of a tile (aligned bias or 0), presented a cycle before
                # the products (stage 3), registered
                "preload": In(accs),
                # reduce preload for the first beat of an output, presented with the tree's total
                "sum_preload": In(signed(acc_bits)),
                # lane results: valid for one cycle after a tile's last beat
                "lane_valid": Out(1),
                "lane_acc": Out(accs),
                # reduce result
                "sum_valid": Out(1),
                "sum": Out(signed(acc_bits)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        """Input registers, pre-adder, multipliers, lane accumulators and the pipelined adder tree."""
        m = Module()
        p = self.lanes
        # valid, first, last, reduce (and with Winograd: wino, signs) per stage; subtract and square
        # with the input stage
        beat = Cat(self.valid, self.first, self.last, self.reduce)
        if self.winograd:
            beat = Cat(beat, self.wino, self.signs)
        ctl = [Signal(len(beat), name=f"ctl{k}") for k in range(4)]
        subtract, square = Signal(name="subtract_in"), Signal(name="square_in")
        m.d.sync += [ctl[0].eq(beat)]
        m.d.sync += [ctl[k + 1].eq(ctl[k]) for k in range(3)]
        m.d.sync += [subtract.eq(self.subtract), square.eq(self.square)]
        width = len(self.x[0])
        x = [Signal(signed(width), name=f"x{k}", reset_less=True) for k in range(p)]
        y = [Signal(signed(width), name=f"y{k}", reset_less=True) for k in range(p)]
        d = [Signal(signed(width + 1), name=f"d{k}", reset_less=True) for k in range(p)]
        e = [Signal(signed(width + 1), name=f"e{k}", reset_less=True) for k in range(p)]
        prod = [Signal(signed(2 * len(d[0])), name=f"prod{k}", reset_less=True) for k in range(p)]
        for k in range(p):
            m.d.sync += [x[k].eq(self.x[k]), y[k].eq(self.y[k])]
            diff = Mux(subtract, x[k] - y[k], x[k])
            m.d.sync += [d[k].eq(diff), e[k].eq(Mux(square, diff, y[k]))]
            self._multiply(m, k, d[k], e[k], prod[k])
        preload = [Signal(signed(self.acc_bits), name=f"preload{k}", reset_less=True) for k in range(p)]
        m.d.sync += [reg.eq(value) for reg, value in zip(preload, self.preload)]
        if self.winograd:
            self._winograd_lanes(m, ctl[3], prod, preload)
        else:
            self._lanes(m, ctl[3], prod, preload)
        self._tree(m, ctl[3][:4], prod)
        return m

    def _multiply(self, m: Module, k: int, d: Signal, e: Signal, prod: Signal) -> None:
        """prod = d * e two cycles later: a hardware multiplier then a register, or a soft tree cut in two."""
        if k < self.dsp_lanes:
            mid = Signal.like(prod, name=f"mid{k}")
            m.d.sync += [mid.eq(d * e), prod.eq(mid)]
            return
        sums = soft_multiply_first(d, e)
        mids = [Signal.like(prod, name=f"mid{k}_{n}") for n in range(len(sums))]
        m.d.sync += [mid.eq(value) for mid, value in zip(mids, sums)]
        m.d.sync += prod.eq(soft_multiply_last(mids))

    def _lanes(self, m: Module, ctl: Signal, prod: list[Signal], preload: list[Signal]) -> None:
        valid, first, last, reduce = ctl[0], ctl[1], ctl[2], ctl[3]
        m.d.sync += self.lane_valid.eq(valid & last & ~reduce)
        for k in range(self.lanes):
            acc = Signal(signed(self.acc_bits), name=f"acc{k}")
            total = Mux(first, preload[k], acc) + prod[k]
            with m.If(valid & ~reduce):
                m.d.sync += acc.eq(total)
                with m.If(last):
                    m.d.sync += self.lane_acc[k].eq(total)

    def _winograd_lanes(self, m: Module, ctl: Signal, prod: list[Signal], preload: list[Signal]) -> None:
        """The lane path with 4 accumulators per lane; a Winograd window hands their sums on one per cycle.

        Outside a Winograd beat (`wino` low) accumulator 0 is the lane's one accumulator. In a
        Winograd beat accumulator q = 2a + b (output (a, b)) adds, subtracts or skips the product
        as `signs` say, from 0 in each window. In the 4 cycles after a window's last beat its
        sums leave as `lane_acc` (with `lane_valid`), shifted right by 2 (two zero bits: the
        transforms' scale, `compiler/kernels/winograd.py`) plus the bias `preload` held at that
        beat: accumulator 1, then 0 (held at the last beat, as the next window's first beat adds
        to it), 2 and 3. Accumulators 1 to 3 leave straight from their registers, cleared by
        their flip-flops' reset as they leave: the next window's first product for accumulator
        1 is at its beat 1 and for 2 and 3 at its beat 4 (`output_signs`), so none has a
        multiplexer to restart it, and only accumulator 0 is held.
        """
        table = winograd.output_signs().reshape(4, 16)
        if table[1, 0] or table[2:, :4].any():
            raise AssertionError("the hand-over needs accumulator 1 untouched at beat 0 and 2, 3 at beats 0-3")
        valid, first, last, reduce, wino = ctl[0], ctl[1], ctl[2], ctl[3], ctl[4]
        signs = ctl[5:13]
        ends = valid & last & ~reduce
        handing, step = Signal(name="wino_handing"), Signal(2, name="wino_step")
        with m.If(ends & wino):
            m.d.sync += [handing.eq(1), step.eq(0)]
        with m.Elif(handing):
            m.d.sync += [step.eq(step + 1), handing.eq(step != 3)]
        m.d.sync += self.lane_valid.eq((ends & ~wino) | handing)
        for k in range(self.lanes):
            accs = [Signal(signed(self.acc_bits), name=f"acc{k}" + (f"_{q}" if q else "")) for q in range(4)]
            totals = []
            for q, acc in enumerate(accs):
                skip, negate = signs[2 * q], signs[2 * q + 1]
                if q == 0:  # also the direct lane: add every product, from the preload
                    skip, negate = wino & skip, wino & negate
                    base = Mux(first, Mux(wino, 0, preload[k]), acc)
                else:
                    base = acc
                # - prod = ~prod + 1: the inverted product, and the 1 as the adder's carry in
                flipped = (prod[k] ^ negate.replicate(len(prod[k])))[: len(prod[k])].as_signed()
                totals.append(base + Mux(skip, 0, flipped) + (negate & ~skip))
            held = Signal(signed(self.acc_bits), name=f"held{k}", reset_less=True)
            bias = Signal(signed(self.acc_bits), name=f"bias{k}", reset_less=True)
            with m.If(valid & ~reduce):
                m.d.sync += accs[0].eq(totals[0])
            with m.If(valid & ~reduce & wino):
                m.d.sync += [acc.eq(total) for acc, total in zip(accs[1:], totals[1:])]
            with m.If(ends & wino):
                m.d.sync += [held.eq(totals[0]), bias.eq(preload[k])]
            leaving = Mux(step[1], Mux(step[0], accs[3], accs[2]), Mux(step[0], held, accs[1]))
            for acc, at_step in ((accs[1], 0), (accs[2], 2), (accs[3], 3)):  # cleared as it leaves
                with m.If(handing & (step == at_step)):
                    m.d.sync += acc.eq(0)
            with m.If(handing):
                m.d.sync += self.lane_acc[k].eq((leaving >> winograd.SCALE_SHIFT) + bias)
            with m.Elif(ends & ~wino):
                m.d.sync += self.lane_acc[k].eq(totals[0])

    def _tree(self, m: Module, ctl: Signal, prod: list[Signal]) -> None:
        level: list = list(prod)
        for stage in range(self.tree_depth):
            nxt = []
            for k in range(0, len(level), 2):
                s = Signal(signed(self.acc_bits), name=f"tree{stage}_{k // 2}", reset_less=True)
                m.d.sync += s.eq(level[k] + level[k + 1] if k + 1 < len(level) else level[k])
                nxt.append(s)
            level = nxt
            delayed = Signal(4, name=f"tree_ctl{stage}")
            m.d.sync += delayed.eq(ctl)
            ctl = delayed
        valid, first, last, reduce = ctl[0], ctl[1], ctl[2], ctl[3]
        acc = Signal(signed(self.acc_bits), name="red_acc")
        total = Mux(first, self.sum_preload, acc) + level[0]
        m.d.sync += self.sum_valid.eq(valid & last & reduce)
        with m.If(valid & reduce):
            m.d.sync += acc.eq(total)
            with m.If(last):
                m.d.sync += self.sum.eq(total)
