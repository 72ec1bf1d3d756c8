"""The PPU (post-processing unit): P lanes of scale multiply, aligned update, ReLU, running max and requantiser.

docs/microarchitecture.md §4. Four register stages: the scaled value, the running value, the
requantiser's shift, then the requantised result (with the raw value and `out_valid` beside it):

    scaled  <= value * factor              factor: one of the constant `factors` (`negative_scale` for a
                                           negative value under `leaky`: LeakyReLU), or `operand` (per lane)
    combined = (addend << a) - (scaled << g)   for update case (a, g) of `updates`, else scaled
    rectified = max(combined, 0) with `relu`
    running  = rectified if `first`, else max(held, rectified)         (2x2 max pooling)
                                     or held + rectified with `accumulate` (2x2 average)
    emitted <= running when `valid & emit`
    shifted <= emitted shifted for `requants[select]`, with its round increment (`Requantiser`)
    result  <= shifted rounded and range-limited, raw <= emitted a cycle later; `out_valid`
               four cycles after `valid`

The last two registers keep the requantiser (select, shift, rounding, saturation) out of the
memories' write ports, which it fed directly once, and split it at its rounding adder; the
first splits the constant scale's shifted adds from the update, ReLU and running max. On the
ECP5 each was the longest path of the demo design in turn (docs/hardware_reports.md, "fmax").

Every intermediate is computed modulo 2^width (constant factors as shifted adds, shifts as
concatenations, so no intermediate is wider): the exact value the program needs fits that
width (`sim.widths` validates it), so the two's-complement result is the exact one. A
variable operand (a softmax reciprocal, an rsqrt factor) multiplies an operand-sized value.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from metahw.hw.amaranth.isa import RequantSpec
from metahw.hw.amaranth.requant import Requantiser
from metahw.hw.amaranth.util import shift_left, times_constant


def _cases(m: Module, index: int, count: int) -> object:
    return m.Default() if index == count - 1 else m.Case(index)


class PpuLane(wiring.Component):
    """One PPU lane (see the module docstring)."""

    def __init__(
        self,
        width: int,
        operand_bits: int,
        factors: list[int],
        updates: list[tuple[int, int]],
        requants: list[RequantSpec],
        rounding: str,
        overflow: str,
        built: frozenset[int] | None = None,
        leaky: bool = False,
        accumulate: bool = False,
    ) -> None:
        self.width = width
        #: build the LeakyReLU factor choice and the running sum only for programs that use them
        self.has_leaky, self.has_accumulate = leaky, accumulate
        self.built = built
        self.factors = list(factors)
        self.updates = list(updates)
        self.requants = list(requants)
        self.rounding, self.overflow = rounding, overflow
        out_width = max(s.dst.bits + (0 if s.dst.signed else 1) for s in self.requants)
        super().__init__(
            {
                "valid": In(1),
                "value": In(signed(width)),
                "relu": In(1),
                "first": In(1),
                "emit": In(1),
                "scale": In(range(max(2, len(self.factors)))),
                "leaky": In(1),
                "negative_scale": In(range(max(2, len(self.factors)))),
                "accumulate": In(1),
                "variable": In(1),
                "operand": In(signed(operand_bits)),
                "update": In(range(len(self.updates) + 2)),
                "addend": In(signed(width)),
                "select": In(range(max(2, len(self.requants)))),
                "out_valid": Out(1),
                "raw": Out(signed(width)),
                "result": Out(signed(out_width)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        """Scale into the first register; update, ReLU and max into the second; the requantiser over the last two."""
        m = Module()
        w = self.width
        scaled = Signal(signed(w), name="scaled")
        with m.If(self.variable):  # the multiplicand is an operand then (an exp value, a feature)
            m.d.sync += scaled.eq(self.value[: len(self.operand)].as_signed() * self.operand)
        with m.Else():
            factor = self.scale
            if self.has_leaky:
                factor = Mux(self.leaky & (self.value < 0), self.negative_scale, self.scale)
            with m.Switch(factor):
                for index, factor in enumerate(self.factors):
                    with _cases(m, index, len(self.factors)):
                        m.d.sync += scaled.eq(times_constant(self.value, factor, w))
        # the second stage's controls and addend, a cycle behind the value they came with
        valid, first, emit = Signal(name="valid1"), Signal(name="first1"), Signal(name="emit1")
        relu, accumulate = Signal(name="relu1"), Signal(name="accumulate1")
        update, addend = Signal.like(self.update, name="update1"), Signal.like(self.addend, name="addend1")
        select1 = Signal.like(self.select, name="select1")
        m.d.sync += [
            valid.eq(self.valid),
            first.eq(self.first),
            emit.eq(self.emit),
            relu.eq(self.relu),
            accumulate.eq(self.accumulate),
            update.eq(self.update),
            addend.eq(self.addend),
            select1.eq(self.select),
        ]
        combined = Signal(signed(w), name="combined")
        with m.Switch(update):
            for index, (a, g) in enumerate(self.updates):
                with m.Case(index + 1):
                    m.d.comb += combined.eq(shift_left(addend, a, w) - shift_left(scaled, g, w))
            with m.Default():
                m.d.comb += combined.eq(scaled)
        rectified = Mux(relu & (combined < 0), 0, combined)
        held = Signal(signed(w), name="held")
        running = Mux(first | (rectified > held), rectified, held)
        if self.has_accumulate:
            running = Mux(accumulate & ~first, held + rectified, running)
        select = Signal.like(self.select, name="select_out")
        emitted, emitted_valid = Signal(signed(w), name="emitted"), Signal(name="emitted_valid")
        with m.If(valid):
            m.d.sync += held.eq(running)
            with m.If(emit):
                m.d.sync += emitted.eq(running)
        m.d.sync += [emitted_valid.eq(valid & emit), select.eq(select1)]
        rq = m.submodules.requant = Requantiser(
            self.requants, w, self.rounding, self.overflow, self.built, registered=True
        )
        m.d.comb += [rq.value.eq(emitted), rq.select.eq(select)]
        shifted_raw, shifted_valid = Signal(signed(w), name="shifted_raw"), Signal(name="shifted_valid")
        m.d.sync += [shifted_raw.eq(emitted), shifted_valid.eq(emitted_valid)]
        m.d.sync += [self.result.eq(rq.result), self.raw.eq(shifted_raw), self.out_valid.eq(shifted_valid)]
        return m
