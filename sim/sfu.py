"""The special-function unit as the RTL iterates it: restoring divider, rsqrt, exp lookup.

Independent of `compiler.kernels.sfu` (tests/sim prove they agree), except for the exp
table's contents, which are a shared definition the RTL embeds as a ROM. Every loop below
is one hardware iteration per step, vectorised over the values a sequence of SFU calls
handles.
"""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels.softmax import SoftmaxSpec

#: rsqrt: normalised mantissa in [2^30, 2^32), quotient floor(2^62 / m) of at most 33 bits,
#: whose integer square root has at most 17 bits
RSQRT_NUMERATOR = 62
RSQRT_MANTISSA = 32
RSQRT_QUOTIENT_BITS = 33
RSQRT_ROOT_BITS = 17


def divide_power_of_two(exponent: int, divisor: np.ndarray, quotient_bits: int) -> np.ndarray:
    """floor(2^exponent / d) by restoring division, one quotient bit per step (needs the quotient < 2^quotient_bits)."""
    d = np.asarray(divisor, dtype=np.int64)
    # the numerator's bits above the quotient window, then one numerator bit per step
    rem = np.full_like(d, (1 << exponent) >> quotient_bits)
    quotient = np.zeros_like(d)
    for i in range(quotient_bits - 1, -1, -1):
        rem = 2 * rem + (1 if i == exponent else 0)
        take = rem >= d
        rem = np.where(take, rem - d, rem)
        quotient = 2 * quotient + take
    return quotient


def bit_length(values: np.ndarray) -> np.ndarray:
    """Bits of each non-negative value: the number of powers of two 2^0 .. 2^62 it reaches (a priority encoder)."""
    v = np.asarray(values, dtype=np.int64)
    powers = np.left_shift(np.int64(1), np.arange(63, dtype=np.int64))
    return (v[..., None] >= powers).sum(axis=-1).astype(np.int64)


def square_root(values: np.ndarray, root_bits: int) -> np.ndarray:
    """floor(sqrt(u)) digit by digit, one result bit per step (needs u < 4^root_bits)."""
    u = np.asarray(values, dtype=np.int64).copy()
    root = np.zeros_like(u)
    for i in range(root_bits - 1, -1, -1):
        trial = np.left_shift(4 * root + 1, 2 * i)  # ((2 root + 1)^2 - (2 root)^2) * 4^i: cost of setting bit i
        take = u >= trial
        u = np.where(take, u - trial, u)
        root = 2 * root + take
    return root


def rsqrt(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r, e) with 1/sqrt(n) ~= r * 2^-e (docs/numerics.md §4); (0, 0) for n = 0."""
    n = np.asarray(values, dtype=np.int64)
    length = bit_length(n)
    s = (length - RSQRT_MANTISSA + 1) // 2  # ceil((L - 32) / 2)
    m = np.where(s >= 0, np.right_shift(n, np.maximum(2 * s, 0)), np.left_shift(n, np.maximum(-2 * s, 0)))
    zero = n == 0
    m = np.where(zero, np.int64(1) << (RSQRT_MANTISSA - 2), m)
    quotient = divide_power_of_two(RSQRT_NUMERATOR, m, RSQRT_QUOTIENT_BITS)
    r = square_root(quotient, RSQRT_ROOT_BITS)
    return np.where(zero, 0, r), np.where(zero, 0, RSQRT_NUMERATOR // 2 + s)


def exp_lookup(index: np.ndarray, spec: SoftmaxSpec) -> np.ndarray:
    """Table value for each index >= 0; indices at or beyond the table read as 0."""
    table = spec.table()
    k = np.asarray(index, dtype=np.int64)
    inside = k < spec.table_size
    return np.where(inside, table[np.where(inside, k, 0)], 0)


def softmax_reciprocal(sums: np.ndarray, spec: SoftmaxSpec) -> np.ndarray:
    """floor(2^(E+R) / S) for row sums S >= 2^E: the quotient is at most 2^R, so R + 1 quotient bits."""
    return divide_power_of_two(spec.exp_frac + spec.recip_bits, sums, spec.recip_bits + 1)
