"""The PPU's requantiser: round, shift and saturate (or wrap) a wide value into a tensor format.

docs/numerics.md §2, the same rule as `metahw.sim.ppu.requantise` (an independent software
model): a right shift by s keeps the round bit `v >> (s-1)`; half_up adds it, half_even adds
it when a lower bit is set or the kept value is odd, truncate drops it; a left shift by k
overflows when v lies outside [ceil(min / 2^k), floor(max / 2^k)], decided before shifting.
The shifts and formats a program uses are few and known when the hardware is generated, so
`select` picks one of them and every shift is a constant (wires, no barrel shifter); the
rounding adder is shared by all of them. The adder is only as wide as the formats: the
shifted value's low `bits + 1` bits go on, with whether the rest is their sign extension
(else the value is far outside the format: saturated by its sign), so neither the select nor
the adder carries the accumulator's width.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from metahw.hw.amaranth.isa import RequantSpec
from metahw.hw.amaranth.util import shift_left


class Requantiser(wiring.Component):
    """Combinational: `value` (signed, `width` bits) requantised by `specs[select]` into `result`.

    `result` is `out_width` bits wide, sign-extended from the chosen format; `overflow` is
    high when the value did not fit (then saturated or wrapped, per `overflow_mode`). Only the
    specs in `built` (default: all) get logic; another `select` gives one of theirs.
    Combinational, or with `registered` one register stage between the shift (with its round
    increment and the select) and the rounding adder: `result` is then a cycle late.
    """

    def __init__(
        self,
        specs: list[RequantSpec],
        width: int,
        rounding: str,
        overflow_mode: str,
        built: frozenset[int] | None = None,
        registered: bool = False,
    ) -> None:
        if rounding not in ("truncate", "half_up", "half_even") or overflow_mode not in ("saturate", "wrap"):
            raise ValueError(f"unknown rounding {rounding!r} or overflow mode {overflow_mode!r}")
        self.specs = list(specs)
        self.width = width
        self.rounding = rounding
        self.overflow_mode = overflow_mode
        self.built = sorted(built if built is not None else range(len(self.specs)))
        self.out_width = max(s.dst.bits + (0 if s.dst.signed else 1) for s in self.specs)
        self.registered = registered
        super().__init__(
            {
                "value": In(signed(width)),
                "select": In(range(max(2, len(self.specs)))),
                "result": Out(signed(self.out_width)),
                "overflow": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        """Select the shifted value's low bits and its round increment, one narrow adder, then per-format checks.

        One adder for all specs (not one per spec): the constant shifts are wires, so selecting
        before adding costs a mux where a copy of the adder and two comparators cost carry
        chains. The range check of a full-range format is a check of the top bits, no compare.
        """
        m = Module()
        keep = max(_kept_bits(self.specs[k]) for k in self.built)
        low = Signal(signed(keep), name="kept")
        near = Signal(name="kept_near")  # the shifted value is its low bits (sign-extended)
        negative, increment = Signal(name="kept_negative"), Signal(name="increment")
        with m.Switch(self.select):
            for n, k in enumerate(self.built):
                with m.Default() if n == len(self.built) - 1 else m.Case(k):
                    kept, carry = self._shifted(self.specs[k])
                    bits = _kept_bits(self.specs[k])
                    top = kept[bits - 1 :] if len(kept) > bits else kept[-1:]
                    m.d.comb += [low.eq(kept[:bits].as_signed() if len(kept) > bits else kept), increment.eq(carry)]
                    m.d.comb += [near.eq((top == 0) | (top == (1 << len(top)) - 1)), negative.eq(kept[-1])]
        select = self.select
        if self.registered:
            staged = [Signal.like(s, name=f"{s.name}_q") for s in (low, near, negative, increment, select)]
            m.d.sync += [reg.eq(s) for reg, s in zip(staged, (low, near, negative, increment, select))]
            low, near, negative, increment, select = staged
        exact = Signal(signed(keep + 1), name="exact")
        m.d.comb += exact.eq(low + increment)
        with m.Switch(select):
            for n, k in enumerate(self.built):
                with m.Default() if n == len(self.built) - 1 else m.Case(k):
                    m.d.comb += self._limited(exact, near, negative, self.specs[k])
        return m

    def _shifted(self, spec: RequantSpec) -> tuple[object, object]:
        """(value >> shift, the rounding's increment) of a right shift; the value itself for shift <= 0."""
        v, s = self.value, spec.shift
        if s <= 0:
            return v, 0
        kept = v >> s
        round_bit = v[s - 1] if s - 1 < self.width else v[-1]
        if self.rounding == "truncate":
            return kept, 0
        if self.rounding == "half_up":
            return kept, round_bit
        sticky = v[: s - 1].any() if s > 1 else 0
        return kept, round_bit & (sticky | kept[0])

    def _limited(self, exact: Signal, near: Signal, negative: Signal, spec: RequantSpec) -> list:
        """`result` and `overflow` of one spec from the rounded low bits (a left shift applies here).

        `exact` is the rounded value when `near`; otherwise the value lies beyond +-2^bits and
        overflows whatever the rounding, saturating by its sign, and a wrap keeps low bits,
        which `exact` has right either way.
        """
        dst, left = spec.dst, max(0, -spec.shift)
        fits = near & _fits(exact, dst.bits - left, dst.signed)
        if self.overflow_mode == "saturate":
            saturated = Mux(Mux(near, exact[-1], negative), dst.min_int, dst.max_int)
            result = Mux(fits, shift_left(exact, left, self.out_width), saturated)
        else:
            low_bits = shift_left(exact, left, dst.bits + 1)[: dst.bits]
            result = low_bits.as_signed() if dst.signed else low_bits
        return [self.result.eq(result), self.overflow.eq(~fits)]


def _kept_bits(spec: RequantSpec) -> int:
    """Low bits of the shifted value a spec needs: its format's bits and a sign (an unsigned format's
    largest value, 2^bits - 1, still in them); beyond them the value overflows any format of `bits`."""
    return spec.dst.bits + 1


def _fits(value: Signal, bits: int, is_signed: bool) -> object:
    """`value` lies in the range of a full-range `bits`-bit integer (only 0 when bits <= 0): its top bits agree."""
    width = len(value)
    if bits <= 0:
        return value == 0
    if is_signed:
        top = value[bits - 1 :] if bits <= width else value[-1:]
        return (top == 0) | (top == (1 << len(top)) - 1)
    return value[bits:] == 0 if bits < width else ~value[-1]
