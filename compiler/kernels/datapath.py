"""Datapath facts a kernel states about itself: the operand and accumulator widths it needs, and scratch bytes.

docs/microarchitecture.md §8-9. A value enters a multiplier as a signed `operand_bits` number
(an unsigned b-bit value needs b + 1 bits); accumulators and every PPU intermediate are
signed `acc_bits` numbers and must hold the value's exact range (docs/numerics.md §3). Each
kernel's `width_needs` yields (what, kind, bits) for every such value; `compiler.widths`
collects them for a program and the hardware derivation sizes the datapath from them.
"""

from __future__ import annotations

from collections.abc import Iterator

from metahw.qformat import QFormat

OPERAND, ACCUMULATOR = "operand", "accumulator"

#: (what: the value, naming its tensor; kind: OPERAND or ACCUMULATOR; bits) per value an op needs
Needs = Iterator[tuple[str, str, int]]


def signed_bits(lo: int, hi: int) -> int:
    """Two's-complement bits that hold every integer in [lo, hi]."""
    return max((-lo - 1).bit_length() if lo < 0 else 0, hi.bit_length() if hi > 0 else 0) + 1


def format_bits(fmt: QFormat) -> int:
    """Signed bits of a format's range (an unsigned b-bit format needs b + 1)."""
    return signed_bits(fmt.min_int, fmt.max_int)


def nbytes(elements: int, bits: int) -> int:
    """Bytes of `elements` values of `bits` bits, packed."""
    return -(-elements * bits // 8)


def passthrough_needs(name: str, fmt: QFormat) -> Needs:
    """An op that moves or compares its input `name` in the PPU: the input's own width."""
    yield f"input '{name}' ({fmt})", ACCUMULATOR, format_bits(fmt)
