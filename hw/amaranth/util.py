"""Small Amaranth helpers the engines share: case statements, delays, element extension, register files."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal, Value, signed

from metahw.qformat import QFormat


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
    """regs[index] <- value at the clock edge when `enable` (no register for an index beyond the list)."""
    for k, reg in enumerate(regs):
        with m.If(enable & (index == k)):
            m.d.sync += reg.eq(value)


def or_all(values: list) -> object:
    """The OR of values (engines' contributions to a shared input, each zero when not its turn)."""
    total = values[0]
    for v in values[1:]:
        total = total | v
    return total


class OrDrivers:
    """Signals each driven with the OR of its contributions, each zero when not its turn.

    An engine's ops share its `Out` members, and the engines share the accelerator's inputs
    (the MAC array, the PPU, the memories' ports), this way: the contributions are collected
    while building and each signal is driven once, by `combine`.
    """

    def __init__(self) -> None:
        self._values: dict[int, tuple[Signal, list]] = {}

    def add(self, port: Signal, value: object) -> None:
        """Add one contribution to `port` (a whole signal)."""
        if not isinstance(port, Signal):
            raise TypeError(f"shared inputs are driven as whole signals, got {port!r}")
        self._values.setdefault(id(port), (port, []))[1].append(value)

    def combine(self, m: Module) -> None:
        """Drive each signal with the OR of its contributions."""
        for port, values in self._values.values():
            m.d.comb += port.eq(or_all(values))


def widen(value: Value, width: int) -> Value:
    """`value` sign- (or zero-) extended to `width` bits, as a signed value."""
    if len(value) >= width:
        return value[:width].as_signed()
    top = value[-1] if value.shape().signed else Const(0, 1)
    return Cat(value, top.replicate(width - len(value))).as_signed()


def shift_left(value: Value, k: int, width: int) -> Value:
    """value * 2^k modulo 2^width (signed), with no intermediate wider than `width` bits."""
    value = widen(value, width)
    if k == 0:
        return value
    if k >= width:
        return Const(0, signed(width))
    return Cat(Const(0, k), value[: width - k]).as_signed()


def times_constant(value: Value, factor: int, width: int) -> Value:
    """value * factor modulo 2^width (signed) as shifted adds over the factor's signed digits (no wide product)."""
    digits, n, k = [], factor, 0
    while n:
        if n & 1:
            digit = 2 - (n & 3)  # canonical signed digits: +1 or -1, and no two adjacent non-zero digits
            digits.append((k, digit))
            n -= digit
        n >>= 1
        k += 1
    total: Value = Const(0, signed(width))
    for shift, digit in digits:
        term = shift_left(value, shift, width)
        total = (total + term if digit > 0 else total - term)[:width].as_signed()
    return total
