"""Small Amaranth helpers the engines share: case statements, delays, element extension, register files."""

from __future__ import annotations

from amaranth import Module, Signal

from metahw.compiler.qformat import QFormat


def case(m: Module, index: int, count: int) -> object:
    """`m.Case(index)`, or `m.Default()` for the last of `count` cases (a complete case statement)."""
    return m.Default() if index == count - 1 else m.Case(index)


def bits_for(n: int) -> int:
    """Bits of an index into n things (at least 1)."""
    return max(1, (n - 1).bit_length())


def delay(m: Module, signal: object, cycles: int, name: str) -> object:
    """`signal` delayed by `cycles` registers."""
    for k in range(cycles):
        reg = Signal.like(signal, name=f"{name}_d{k + 1}")
        m.d.sync += reg.eq(signal)
        signal = reg
    return signal


def extend(raw: object, fmt: QFormat) -> object:
    """A stored element (its format's bits) as the integer it holds."""
    return raw[: fmt.bits].as_signed() if fmt.signed else raw[: fmt.bits]


def pick(m: Module, regs: list[Signal], index: object, name: str) -> Signal:
    """regs[index] (a multiplexer; the last register for indices beyond the list)."""
    out = Signal.like(regs[0], name=name)
    with m.Switch(index):
        for k, reg in enumerate(regs):
            with case(m, k, len(regs)):
                m.d.comb += out.eq(reg)
    return out


def put(m: Module, regs: list[Signal], index: object, value: object, enable: object) -> None:
    """regs[index] <- value at the clock edge when `enable`."""
    with m.If(enable):
        with m.Switch(index):
            for k, reg in enumerate(regs):
                with m.Case(k):
                    m.d.sync += reg.eq(value)
