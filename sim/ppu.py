"""The PPU's rounding shifter and saturation/wrap stage, modelled on integers as the RTL computes them.

An independent implementation of docs/numerics.md §2 (the golden model's is
`compiler.qformat.rescale`; tests/sim prove they agree). A right shift by s > 0 keeps one
extra bit, the round bit `v >> (s-1)`:
  truncate   v >> s
  half_up    ((v >> (s-1)) + 1) >> 1            (adding half, then dropping the round bit)
  half_even  (v >> s) + (round and (sticky or odd)), sticky = any of the low s-1 bits
A left shift by k is exact; it overflows when v lies outside [ceil(min / 2^k), floor(max / 2^k)],
which the PPU detects before shifting.
"""

from __future__ import annotations

import numpy as np

from metahw.qformat import QFormat

#: right shifts of 63 or more give the same result as 63 for |v| < 2^62
_CAP = 63


def _right(v: np.ndarray, s: np.ndarray, rounding: str) -> np.ndarray:
    """Rounded v >> s for shifts 1..63 (s broadcast against v)."""
    if rounding == "truncate":
        return np.right_shift(v, s)
    with_round_bit = np.right_shift(v, s - 1)
    if rounding == "half_up":
        return np.right_shift(with_round_bit + 1, 1)
    if rounding != "half_even":
        raise ValueError(f"unknown rounding mode {rounding!r}")
    kept = np.right_shift(with_round_bit, 1)
    round_bit = np.bitwise_and(with_round_bit, 1)
    sticky = np.bitwise_and(v, np.left_shift(np.int64(1), s - 1) - 1) != 0
    return kept + (round_bit & (sticky | (np.bitwise_and(kept, 1) == 1)))


def shift_round(values: np.ndarray, shift: int | np.ndarray, rounding: str) -> np.ndarray:
    """v * 2^-shift as integers (shift scalar or broadcast per element): rounded right, exact left shift.

    Left-shifted values must fit int64 (callers shift bounded intermediates only).
    """
    v = np.asarray(values, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if np.all(s > 0):
        return _right(v, np.minimum(s, _CAP), rounding)
    if np.all(s <= 0):
        return np.left_shift(v, np.minimum(-s, _CAP))
    right = _right(v, np.clip(s, 1, _CAP), rounding)
    return np.where(s > 0, right, np.left_shift(v, np.clip(-s, 0, _CAP)))


def requantise(
    values: np.ndarray, src_frac: int | np.ndarray, dst: QFormat, rounding: str, overflow: str
) -> tuple[np.ndarray, int]:
    """Integers at `src_frac` (scalar or broadcast per element) into `dst`: (result, elements that overflowed)."""
    v = np.asarray(values, dtype=np.int64)
    s = np.asarray(src_frac, dtype=np.int64) - dst.frac
    if overflow not in ("saturate", "wrap"):
        raise ValueError(f"unknown overflow mode {overflow!r}")
    if np.any(s < 0):
        return _requantise_left(v, s, dst, rounding, overflow)
    exact = shift_round(v, s, rounding)
    low, high = exact < dst.min_int, exact > dst.max_int
    count = int(np.count_nonzero(low)) + int(np.count_nonzero(high))
    if overflow == "saturate":
        return (np.maximum(np.minimum(exact, dst.max_int), dst.min_int) if count else exact), count
    return (_wrap(exact, dst) if count else exact), count


def _wrap(exact: np.ndarray, dst: QFormat) -> np.ndarray:
    """The low `bits` bits of each value, read as two's complement (or unsigned)."""
    modulus = np.int64(1) << np.int64(dst.bits)
    low_bits = np.bitwise_and(exact, modulus - 1)
    return low_bits - modulus * (low_bits > dst.max_int) if dst.signed else low_bits


def _requantise_left(
    v: np.ndarray, s: np.ndarray, dst: QFormat, rounding: str, overflow: str
) -> tuple[np.ndarray, int]:
    """The general case with some left shifts: overflow of a left shift is decided before shifting."""
    s = np.broadcast_to(s, v.shape)
    k = np.minimum(np.maximum(-s, 0), _CAP)
    low = -np.right_shift(np.int64(-dst.min_int), k)
    high = np.right_shift(np.int64(dst.max_int), k)
    left_over = (s < 0) & ((v < low) | (v > high))
    if overflow == "saturate":
        exact = shift_round(np.where(left_over, 0, v), s, rounding)
        over = left_over | (exact < dst.min_int) | (exact > dst.max_int)
        clipped = np.minimum(np.maximum(exact, dst.min_int), dst.max_int)
        out = np.where(left_over, np.where(v < 0, dst.min_int, dst.max_int), clipped)
        return out, int(np.count_nonzero(over))
    # wrap keeps the low `bits` bits: (v << k) mod 2^bits only depends on v mod 2^(bits - k)
    keep = np.maximum(dst.bits - k, 0)
    pre = np.where(s < 0, np.bitwise_and(v, np.left_shift(np.int64(1), keep) - 1), v)
    exact = shift_round(pre, s, rounding)
    over = left_over | ((s >= 0) & ((exact < dst.min_int) | (exact > dst.max_int)))
    return _wrap(exact, dst), int(np.count_nonzero(over))
