"""The PPU's requantiser: round, shift and saturate (or wrap) a wide value into a tensor format.

docs/numerics.md §2, the same rule as `metahw.sim.ppu.requantise` (an independent software
model): a right shift by s keeps the round bit `v >> (s-1)`; half_up adds it, half_even adds
it when a lower bit is set or the kept value is odd, truncate drops it; a left shift by k
overflows when v lies outside [ceil(min / 2^k), floor(max / 2^k)], decided before shifting.
The shifts and formats a program uses are few and known when the hardware is generated, so
`select` picks one of them and every shift is a constant (wires, no barrel shifter).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from metahw.compiler.qformat import QFormat
from metahw.hw.amaranth.isa import RequantSpec
from metahw.hw.amaranth.util import shift_left


class Requantiser(wiring.Component):
    """Combinational: `value` (signed, `width` bits) requantised by `specs[select]` into `result`.

    `result` is `out_width` bits wide, sign-extended from the chosen format; `overflow` is
    high when the value did not fit (then saturated or wrapped, per `overflow_mode`). Only the
    specs in `built` (default: all) get logic; another `select` gives one of theirs.
    """

    def __init__(self, specs: list[RequantSpec], width: int, rounding: str, overflow_mode: str,
                 built: frozenset[int] | None = None) -> None:  # fmt: skip
        if rounding not in ("truncate", "half_up", "half_even") or overflow_mode not in ("saturate", "wrap"):
            raise ValueError(f"unknown rounding {rounding!r} or overflow mode {overflow_mode!r}")
        self.specs = list(specs)
        self.width = width
        self.rounding = rounding
        self.overflow_mode = overflow_mode
        self.built = sorted(built if built is not None else range(len(self.specs)))
        self.out_width = max(s.dst.bits + (0 if s.dst.signed else 1) for s in self.specs)
        super().__init__(
            {
                "value": In(signed(width)),
                "select": In(range(max(2, len(self.specs)))),
                "result": Out(signed(self.out_width)),
                "overflow": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        """One case per spec: constant shift, rounding, range check."""
        m = Module()
        with m.Switch(self.select):
            for n, k in enumerate(self.built):
                result, overflow = self._one(m, self.specs[k], k)
                with m.Default() if n == len(self.built) - 1 else m.Case(k):
                    m.d.comb += [self.result.eq(result), self.overflow.eq(overflow)]
        return m

    def _one(self, m: Module, spec: RequantSpec, k: int) -> tuple[Signal, Signal]:
        """Spec k's result and overflow flag, computed unconditionally."""
        result = Signal(signed(self.out_width), name=f"result{k}")
        overflow = Signal(name=f"overflow{k}")
        v, s, dst = self.value, spec.shift, spec.dst
        lo, hi = dst.min_int, dst.max_int
        wide = signed(self.width + 2)
        if s > 0:
            exact = Signal(wide, name=f"exact{k}")
            kept = v >> s
            round_bit = v[s - 1] if s - 1 < self.width else v[-1]
            if self.rounding == "truncate":
                m.d.comb += exact.eq(kept)
            elif self.rounding == "half_up":
                m.d.comb += exact.eq(kept + round_bit)
            else:
                sticky = v[: s - 1].any() if s > 1 else 0
                m.d.comb += exact.eq(kept + (round_bit & (sticky | kept[0])))
            self._limit(m, exact, exact < lo, exact > hi, dst, result, overflow)
        elif s == 0:
            self._limit(m, v, v < lo, v > hi, dst, result, overflow)
        else:
            low, high = -((-lo) >> -s), hi >> -s
            under, over = v < low, v > high
            if self.overflow_mode == "saturate":
                m.d.comb += result.eq(Mux(under, lo, Mux(over, hi, shift_left(v, -s, self.out_width))))
            else:
                m.d.comb += result.eq(self._wrap(shift_left(v, -s, dst.bits), dst))
            m.d.comb += overflow.eq(under | over)
        return result, overflow

    def _limit(self, m: Module, exact: object, under: object, over: object, dst: QFormat, result: Signal,
               overflow: Signal) -> None:  # fmt: skip
        if self.overflow_mode == "saturate":
            m.d.comb += result.eq(Mux(under, dst.min_int, Mux(over, dst.max_int, exact)))
        else:
            m.d.comb += result.eq(self._wrap(exact, dst))
        m.d.comb += overflow.eq(under | over)

    @staticmethod
    def _wrap(exact: object, dst: QFormat) -> object:
        low_bits = exact[: dst.bits]
        return low_bits.as_signed() if dst.signed else low_bits
