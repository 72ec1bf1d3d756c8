"""The special-function unit's iterative parts: a restoring divider, a digit-by-digit square root, rsqrt's normaliser.

docs/microarchitecture.md §4 and docs/numerics.md §4, one hardware step per cycle, the same
iterations as `metahw.sim.sfu` (`divide_power_of_two`, `square_root`, `rsqrt`). The exp table
is a ROM read by the EXP engine (`engines_sfu.py`).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

#: rsqrt's mantissa bits and numerator (docs/numerics.md §4)
RSQRT_MANTISSA = 32
RSQRT_NUMERATOR = 62
RSQRT_QUOTIENT_BITS = 33
RSQRT_ROOT_BITS = 17


class Divider(wiring.Component):
    """floor(2^k / d), one quotient bit per `step`; `load` takes the divisor and the initial remainder.

    For a numerator 2^k with k >= the quotient bits Q the remainder starts at 2^(k - Q) and every
    step shifts in a 0: rem <- 2 rem (- d when that is >= d), q <- 2 q + (taken). `q_next` is the
    quotient after the step of this cycle (the final one in the cycle of the last step).
    """

    def __init__(self, divisor_bits: int, quotient_bits: int) -> None:
        self.divisor_bits = divisor_bits
        self.quotient_bits = quotient_bits
        super().__init__(
            {
                "load": In(1),
                "step": In(1),
                "divisor": In(unsigned(divisor_bits)),
                "initial": In(unsigned(divisor_bits + 1)),
                "q": Out(unsigned(quotient_bits)),
                "q_next": Out(unsigned(quotient_bits)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        """Remainder, divisor and quotient registers; one compare-subtract per step."""
        m = Module()
        rem = Signal(self.divisor_bits + 1, name="rem")
        d = Signal(self.divisor_bits, name="d")
        doubled = Cat(Const(0, 1), rem)
        take = doubled >= d
        m.d.comb += self.q_next.eq(Cat(take, self.q))
        with m.If(self.load):
            m.d.sync += [rem.eq(self.initial), d.eq(self.divisor), self.q.eq(0)]
        with m.Elif(self.step):
            m.d.sync += [rem.eq(Mux(take, doubled - d, doubled)), self.q.eq(self.q_next)]
        return m


class SquareRoot(wiring.Component):
    """floor(sqrt(u)) of a `2 * root_bits`-bit u, one root bit per `step`, two bits of u shifted in per step."""

    def __init__(self, root_bits: int) -> None:
        self.root_bits = root_bits
        super().__init__(
            {
                "load": In(1),
                "step": In(1),
                "value": In(unsigned(2 * root_bits)),
                "root": Out(unsigned(root_bits)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        """rem <- 4 rem + next two bits of u; take bit when rem >= 4 root + 1."""
        m = Module()
        n = self.root_bits
        digits = Signal(2 * n, name="digits")
        rem = Signal(n + 3, name="rem")
        shifted = Cat(digits[-2:], rem)
        trial = Cat(Const(1, 2), self.root)
        take = shifted >= trial
        with m.If(self.load):
            m.d.sync += [digits.eq(self.value), rem.eq(0), self.root.eq(0)]
        with m.Elif(self.step):
            m.d.sync += [
                digits.eq(digits << 2),
                rem.eq(Mux(take, shifted - trial, shifted)),
                self.root.eq(Cat(take, self.root)),
            ]
        return m


class RsqrtNormaliser(wiring.Component):
    """rsqrt's first cycle (combinational): n -> (s, m) with m = n >> 2s (or n << -2s) in [2^30, 2^32).

    s = ceil((L - 32) / 2) for L = bit_length(n); `zero` for n = 0, where m is 2^30 (and the
    result is forced to 0 afterwards).
    """

    def __init__(self, width: int) -> None:
        self.width = width
        super().__init__(
            {
                "value": In(unsigned(width)),
                "zero": Out(1),
                "shift": Out(signed(8)),
                "mantissa": Out(unsigned(RSQRT_MANTISSA)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        """Priority encoder, then a variable right or left shift by 2|s|."""
        m = Module()
        length = Signal(range(self.width + 1), name="length")
        for k in range(self.width):
            with m.If(self.value[k]):
                m.d.comb += length.eq(k + 1)
        s = Signal(signed(8), name="s")
        m.d.comb += s.eq((Cat(length, Const(0, 1)).as_signed() - (RSQRT_MANTISSA - 1)) >> 1)
        wide = Signal(unsigned(self.width + 2 * RSQRT_MANTISSA), name="wide")
        right, left = (2 * s).as_unsigned()[:6], (-2 * s).as_unsigned()[:6]  # |2s| <= 32
        m.d.comb += wide.eq(Mux(s >= 0, self.value >> right, self.value << left))
        m.d.comb += [
            self.zero.eq(self.value == 0),
            self.shift.eq(s),
            self.mantissa.eq(Mux(self.value == 0, 1 << (RSQRT_MANTISSA - 2), wide)),
        ]
        return m
