"""The special-function unit: exp table, reciprocal, reciprocal square root, integer sqrt.

Each function is an exact integer definition (docs/numerics.md) shared by the kernels
that need it, so the golden model, the simulator and the RTL generator all call (or
transcribe) the same thing. The exp table is computed with `decimal` at 60 significant
digits and rounded half up, so its contents do not depend on the platform's libm.
"""

from __future__ import annotations

import decimal
import functools

import numpy as np

#: rsqrt normalises its argument to a 32-bit mantissa m in [2^30, 2^32) ...
RSQRT_MANTISSA_BITS = 32
#: ... and returns r = isqrt(floor(2^62 / m)) in [2^15, 2^16], scaled by 2^-(31 + s).
RSQRT_NUMERATOR_BITS = 62
#: the largest rsqrt factor r (docs/numerics.md §4)
RSQRT_MAX = 1 << 16


@functools.lru_cache(maxsize=64)
def _exp_table(index_frac: int, size: int, exp_frac: int) -> tuple[int, ...]:
    ctx = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)
    step = ctx.divide(decimal.Decimal(1), decimal.Decimal(2) ** index_frac)
    one = decimal.Decimal(2) ** exp_frac
    values = []
    for k in range(size):
        e = ctx.multiply(ctx.exp(ctx.multiply(decimal.Decimal(-k), step)), one)
        values.append(int(e.quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP)))
    return tuple(values)


def exp_table(index_frac: int, size: int, exp_frac: int) -> np.ndarray:
    """LUT[k] = round_half_up(2^exp_frac * exp(-k * 2^-index_frac)) for k = 0 .. size-1 (int64).

    LUT[0] = 2^exp_frac exactly. The softmax indexes it with the negated, max-subtracted
    input; indices >= size read as 0.
    """
    if not (1 <= size <= 1 << 16 and 0 <= index_frac <= 16 and 1 <= exp_frac <= 40):
        got = f"index_frac={index_frac}, size={size}, exp_frac={exp_frac}"
        raise ValueError(f"exp table parameters out of range (0..16, 1..65536, 1..40): {got}")
    return np.array(_exp_table(index_frac, size, exp_frac), dtype=np.int64)


def reciprocal(values: np.ndarray, numerator_bits: int) -> np.ndarray:
    """floor(2^numerator_bits / v) for positive int64 v (an exact integer divider)."""
    v = np.asarray(values, dtype=np.int64)
    if np.any(v <= 0):
        raise ValueError("reciprocal of a non-positive value")
    if not 0 <= numerator_bits <= 62:
        raise ValueError(f"reciprocal numerator bits must be in 0..62, got {numerator_bits}")
    return np.floor_divide(np.int64(1) << np.int64(numerator_bits), v)


def constant_reciprocal(count: int, frac: int) -> int:
    """round_half_up(2^frac / count) = floor((2^(frac+1) + count) / (2*count)), for division by a constant."""
    if count < 1:
        raise ValueError(f"cannot divide by {count}")
    return ((1 << (frac + 1)) + count) // (2 * count)


def divide_by_count(values: np.ndarray, count: int, recip_frac: int) -> tuple[np.ndarray, int]:
    """values / count as (integers, extra fractional bits): exact shift if count is a power of two.

    count = 2^k: returns (values, k), i.e. the same integers read with k more fractional
    bits. Otherwise returns (values * R, recip_frac) with R = constant_reciprocal(count,
    recip_frac); the caller requantises, so the only error beyond that rounding is
    |R / 2^recip_frac - 1 / count| <= 2^-(recip_frac + 1) per unit of `values`.
    """
    v = np.asarray(values, dtype=np.int64)
    if count & (count - 1) == 0:
        return v, count.bit_length() - 1
    return v * np.int64(constant_reciprocal(count, recip_frac)), recip_frac


def bit_length(values: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values (0 for 0), by a binary search on shifts."""
    n = np.asarray(values, dtype=np.int64).copy()
    length = np.zeros_like(n)
    for s in (32, 16, 8, 4, 2, 1):
        big = np.right_shift(n, s) > 0
        n = np.where(big, np.right_shift(n, s), n)
        length += big * s
    return length + (n > 0)


def isqrt(values: np.ndarray) -> np.ndarray:
    """floor(sqrt(u)) for 0 <= u < 2^62, digit by digit (restoring square root, 31 steps)."""
    u = np.asarray(values, dtype=np.int64).copy()
    if np.any(u < 0) or np.any(u >= np.int64(1) << 62):
        raise ValueError("isqrt is defined here for 0 <= u < 2^62")
    root = np.zeros_like(u)
    bit = np.int64(1) << 60
    while bit > 0:
        take = u >= root + bit
        u = np.where(take, u - (root + bit), u)
        root = np.where(take, np.right_shift(root, 1) + bit, np.right_shift(root, 1))
        bit >>= 2
    return root


def rsqrt(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1/sqrt(n) for integers 0 <= n < 2^62 as (r, e) with 1/sqrt(n) ~= r * 2^-e; rsqrt(0) = (0, 0).

    L = bit_length(n); s = ceil((L - 32) / 2); m = n >> 2s (or n << -2s) in [2^30, 2^32);
    r = isqrt(floor(2^62 / m)) in [2^15, 2^16]; e = 31 + s. Relative error below 2^-14.
    """
    n = np.asarray(values, dtype=np.int64)
    if np.any(n < 0):
        raise ValueError("rsqrt of a negative value")
    length = bit_length(n)
    s = -np.floor_divide(RSQRT_MANTISSA_BITS - length, 2)  # ceil((L - 32) / 2)
    m = np.where(s >= 0, np.right_shift(n, np.maximum(2 * s, 0)), np.left_shift(n, np.maximum(-2 * s, 0)))
    zero = n == 0
    m = np.where(zero, np.int64(1) << 30, m)
    r = isqrt(np.floor_divide(np.int64(1) << RSQRT_NUMERATOR_BITS, m))
    e = RSQRT_NUMERATOR_BITS // 2 + s
    return np.where(zero, 0, r), np.where(zero, 0, e)
