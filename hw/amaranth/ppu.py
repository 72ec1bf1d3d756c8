"""The PPU (post-processing unit): P lanes of scale multiply, aligned update, ReLU, running max and requantiser.

docs/microarchitecture.md §4. Five register stages: the scaled value, the rectified value, the
running value, the requantiser's shift, then the requantised result (with the raw value and
`out_valid` beside it):

    scaled   <= value * factor             factor: one of the constant `factors` (`negative_scale` for a
                                           negative value under `leaky`: LeakyReLU), or `operand` (per lane)
    combined  = (addend << a) - (scaled << g)   for update case (a, g) of `updates`, else scaled
    rectified <= max(combined, 0) with `relu`, else combined
    running   = rectified if `first`, else max(held, rectified)        (2x2 max pooling)
                                      or held + rectified with `accumulate` (2x2 average)
    emitted  <= running when `valid & emit`
    shifted  <= emitted shifted for `requants[select]`, with its round increment (`Requantiser`)
    result   <= shifted rounded and range-limited, raw <= emitted a cycle later; `out_valid`
                five cycles after `valid`

The controls and the addend travel with the value through the stages. The last two registers
keep the requantiser (select, shift, rounding, saturation) out of the memories' write ports,
which it fed directly once, and split it at its rounding adder; the first two keep the constant
scale's shifted adds, the update and the ReLU apart from the running max, whose loop through
`held` (a compare or an add, and a select) is what a stage must hold. On the ECP5 each was the
longest path of the demo design in turn (docs/hardware_reports.md, "fmax").

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
from metahw.hw.amaranth.util import delay, shift_left, times_constant


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
        """Five register stages: scale; update and ReLU; the running value; the requantiser's two."""
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
        # the controls and the addend travel with the value, one register per stage
        s1 = _registered(
            m,
            "1",
            valid=self.valid,
            first=self.first,
            emit=self.emit,
            relu=self.relu,
            accumulate=self.accumulate,
            update=self.update,
            addend=self.addend,
            select=self.select,
        )
        combined = Signal(signed(w), name="combined")
        with m.Switch(s1["update"]):
            for index, (a, g) in enumerate(self.updates):
                with m.Case(index + 1):
                    m.d.comb += combined.eq(shift_left(s1["addend"], a, w) - shift_left(scaled, g, w))
            with m.Default():
                m.d.comb += combined.eq(scaled)
        rectified = Signal(signed(w), name="rectified")
        m.d.sync += rectified.eq(Mux(s1["relu"] & (combined < 0), 0, combined))
        s2 = _registered(
            m,
            "2",
            valid=s1["valid"],
            first=s1["first"],
            emit=s1["emit"],
            accumulate=s1["accumulate"],
            select=s1["select"],
        )
        held = Signal(signed(w), name="held")
        running = Mux(s2["first"] | (rectified > held), rectified, held)
        if self.has_accumulate:
            running = Mux(s2["accumulate"] & ~s2["first"], held + rectified, running)
        emitted = Signal(signed(w), name="emitted")
        with m.If(s2["valid"]):
            m.d.sync += held.eq(running)
            with m.If(s2["emit"]):
                m.d.sync += emitted.eq(running)
        s3 = _registered(m, "3", valid=s2["valid"] & s2["emit"], select=s2["select"])
        rq = m.submodules.requant = Requantiser(
            self.requants, w, self.rounding, self.overflow, self.built, registered=True
        )
        m.d.comb += [rq.value.eq(emitted), rq.select.eq(s3["select"])]
        s4 = _registered(m, "4", valid=s3["valid"], raw=emitted)
        m.d.sync += [self.result.eq(rq.result), self.raw.eq(s4["raw"]), self.out_valid.eq(s4["valid"])]
        return m


def _registered(m: Module, stage: str, **values: object) -> dict[str, Signal]:
    """Each value through one register (`delay`): what travels with the data to the next stage."""
    return {name: delay(m, value, 1, f"{name}{stage}") for name, value in values.items()}
