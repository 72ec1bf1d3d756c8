"""Fixed-point formats with power-of-two scales, and the one requantisation rule.

A `QFormat(bits, frac, signed)` holds integers v in [min_int, max_int] (two's complement
when signed) that stand for the real numbers v * 2^-frac. Rescaling between formats is an
arithmetic shift with a declared rounding mode, then saturation (or wrap-around) to the
target range: the hardware never multiplies to rescale. Everything here is int64 numpy;
floats appear only at the boundary (`quantize` / `dequantize`).

Rounding modes (right shifts; left shifts are exact):
  half_up    add half an output LSB, then shift (floor)   = ap_fixed AP_RND
  truncate   shift (floor, towards -infinity)              = AP_TRN
  half_even  round to nearest, ties to even                = AP_RND_CONV
Overflow modes: saturate (clip to the range, AP_SAT) and wrap (two's complement, AP_WRAP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ROUNDING_MODES = ("half_up", "truncate", "half_even")
OVERFLOW_MODES = ("saturate", "wrap")

#: Widest format the int64 datapath holds with one bit of headroom for rounding.
MAX_BITS = 62
#: Shifts are capped here: for |v| < 2^62 a shift by 63 or more gives the same result as by 63.
_MAX_SHIFT = 63


@dataclass(frozen=True)
class QFormat:
    """A fixed-point format: `bits` total (sign included when `signed`), scale 2^-`frac`."""

    bits: int
    frac: int
    signed: bool = True

    def __post_init__(self) -> None:
        if type(self.bits) is not int or not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"QFormat bits must be an integer in 1..{MAX_BITS}, got {self.bits!r}")
        if type(self.frac) is not int:
            raise ValueError(f"QFormat frac must be an integer, got {self.frac!r}")
        if type(self.signed) is not bool:
            raise ValueError(f"QFormat signed must be a bool, got {self.signed!r}")

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}q{self.bits}.{self.frac}"

    @property
    def min_int(self) -> int:
        """Smallest representable integer."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max_int(self) -> int:
        """Largest representable integer."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def scale(self) -> float:
        """Real value of one integer step, 2^-frac."""
        return math.ldexp(1.0, -self.frac)

    def contains(self, values: np.ndarray) -> bool:
        """Whether every integer in `values` is representable in this format."""
        values = np.asarray(values)
        return values.size == 0 or (int(values.min()) >= self.min_int and int(values.max()) <= self.max_int)

    def quantize_counted(
        self, x: np.ndarray | float, rounding: str = "half_up", overflow: str = "saturate"
    ) -> tuple[np.ndarray, int]:
        """Real values -> int64 in this format, and the number of elements that overflowed."""
        _check_modes(rounding, overflow)
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError("cannot quantize NaN or infinite values")
        scaled = np.ldexp(x, self.frac)
        if rounding == "half_up":
            low = np.floor(scaled)  # floor(x + 0.5) in float can round 0.49999999999999994 up
            scaled = low + (scaled - low >= 0.5)
        elif rounding == "truncate":
            scaled = np.floor(scaled)
        else:
            scaled = np.rint(scaled)  # IEEE round-half-to-even
        if overflow == "saturate":
            over = (scaled < self.min_int) | (scaled > self.max_int)
            return np.clip(scaled, self.min_int, self.max_int).astype(np.int64), int(over.sum())
        if np.any(np.abs(scaled) >= 2.0**62):
            raise ValueError(f"values too large to wrap into {self}")
        return wrap(scaled.astype(np.int64), self)

    def quantize(self, x: np.ndarray | float, rounding: str = "half_up", overflow: str = "saturate") -> np.ndarray:
        """Real values -> int64 integers of this format (rounded, then saturated or wrapped)."""
        return self.quantize_counted(x, rounding, overflow)[0]

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        """Integers of this format -> the real values they stand for (float64, exact)."""
        return np.ldexp(np.asarray(values, dtype=np.float64), -self.frac)

    def to_json(self) -> dict:
        """Plain dict for program.json."""
        return {"bits": self.bits, "frac": self.frac, "signed": self.signed}

    @classmethod
    def from_json(cls, data: dict) -> QFormat:
        """Inverse of `to_json` (unknown or missing keys raise ValueError)."""
        if not isinstance(data, dict) or set(data) != {"bits", "frac", "signed"}:
            raise ValueError(f"a qformat must be an object with keys bits, frac, signed; got {data!r}")
        return cls(data["bits"], data["frac"], data["signed"])


def _check_modes(rounding: str, overflow: str) -> None:
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"unknown rounding mode {rounding!r}: accepted are {', '.join(ROUNDING_MODES)}")
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"unknown overflow mode {overflow!r}: accepted are {', '.join(OVERFLOW_MODES)}")


def shift_round(values: np.ndarray, shift: int | np.ndarray, rounding: str = "half_up") -> np.ndarray:
    """values * 2^-shift as integers: right shift with `rounding` where shift > 0, exact left shift otherwise.

    `shift` may be an array broadcast against `values` (per-channel formats). The caller
    guarantees that left-shifted values fit in int64 (see `rescale`, which pre-clips).
    """
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"unknown rounding mode {rounding!r}: accepted are {', '.join(ROUNDING_MODES)}")
    v = np.asarray(values, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    right = np.minimum(np.maximum(s, 0), _MAX_SHIFT)
    left = np.minimum(np.maximum(-s, 0), _MAX_SHIFT)
    floor = np.right_shift(v, right)
    if rounding == "truncate":
        down = floor
    else:
        half = np.where(right > 0, np.left_shift(np.int64(1), np.maximum(right - 1, 0)), 0)
        if rounding == "half_up":
            down = np.right_shift(v + half, right)
        else:
            rem = v - np.left_shift(floor, right)
            up = (rem > half) | ((rem == half) & (half > 0) & (floor % 2 == 1))
            down = floor + up
    return np.where(s >= 0, down, np.left_shift(v, left)).astype(np.int64)


def wrap(values: np.ndarray, fmt: QFormat) -> tuple[np.ndarray, int]:
    """Two's-complement wrap-around of int64 `values` into `fmt`, and how many elements changed."""
    v = np.asarray(values, dtype=np.int64)
    mask = np.int64((1 << fmt.bits) - 1)
    offset = np.int64(-fmt.min_int)
    out = np.bitwise_and(v + offset, mask) - offset
    return out.astype(np.int64), int(np.count_nonzero(out != v))


def rescale(
    values: np.ndarray,
    src_frac: int | np.ndarray,
    dst: QFormat,
    rounding: str = "half_up",
    overflow: str = "saturate",
) -> tuple[np.ndarray, int]:
    """Integers at fractional bits `src_frac` (scalar or per-element array) -> `dst`; returns (values, overflows).

    The result is exactly what shifting with `rounding` in unbounded precision and then
    saturating (or wrapping) to `dst` gives; `overflows` counts the elements that were
    clipped (or wrapped). Values must satisfy |v| < 2^62.
    """
    _check_modes(rounding, overflow)
    v = np.asarray(values, dtype=np.int64)
    shift = np.broadcast_to(np.asarray(src_frac, dtype=np.int64) - dst.frac, v.shape)
    k = np.minimum(np.maximum(-shift, 0), _MAX_SHIFT)  # left-shift amount, 0 where shifting right
    # For left shifts, decide overflow before shifting so nothing overflows int64.
    lo = -np.right_shift(np.int64(-dst.min_int), k)  # ceil(min / 2^k)
    hi = np.right_shift(np.int64(dst.max_int), k)  # floor(max / 2^k)
    left_over = (shift < 0) & ((v < lo) | (v > hi))
    if overflow == "saturate":
        shifted = shift_round(np.where(left_over, 0, v), shift, rounding)
        over = left_over | (shifted < dst.min_int) | (shifted > dst.max_int)
        out = np.where(left_over, np.where(v < 0, dst.min_int, dst.max_int), np.clip(shifted, dst.min_int, dst.max_int))
        return out.astype(np.int64), int(over.sum())
    # wrap: (v << k) mod 2^bits depends only on v mod 2^(bits - k)
    keep = np.maximum(dst.bits - k, 0)
    low_bits = np.bitwise_and(v, np.left_shift(np.int64(1), keep) - 1)
    pre = np.where(shift < 0, low_bits, v)
    shifted = shift_round(pre, shift, rounding)
    wrapped, _ = wrap(shifted, dst)
    over = left_over | ((shift >= 0) & (wrapped != shifted))
    return wrapped, int(over.sum())


def requantize(
    values: np.ndarray, src: QFormat, dst: QFormat, rounding: str = "half_up", overflow: str = "saturate"
) -> tuple[np.ndarray, int]:
    """Integers of format `src` -> format `dst` by arithmetic shift; returns (values, overflow count)."""
    return rescale(values, src.frac, dst, rounding, overflow)


def bits_for_range(lo: int, hi: int) -> tuple[int, bool]:
    """Fewest bits (and signedness) of a format whose integer range holds [lo, hi]; signed iff lo < 0."""
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    if lo >= 0:
        return max(1, int(hi).bit_length()), False
    # signed n bits hold [-2^(n-1), 2^(n-1) - 1]
    need = max((-int(lo) - 1).bit_length(), max(int(hi), 0).bit_length()) + 1
    return need, True


def product_range(a: QFormat, b: QFormat) -> tuple[int, int]:
    """Smallest and largest integer product of one value of `a` and one of `b`."""
    corners = [x * y for x in (a.min_int, a.max_int) for y in (b.min_int, b.max_int)]
    return min(corners), max(corners)


def accumulator_format(a: QFormat, b: QFormat, fan_in: int, bias: QFormat | None = None) -> QFormat:
    """Format of bias + sum of `fan_in` products a*b that can never overflow, at frac a.frac + b.frac.

    The width is derived from the exact worst-case integer range (every product at its
    extreme, the bias at its extreme, left-shifted to the accumulator's frac). A bias with
    more fractional bits than the products cannot be aligned exactly and is rejected.
    Raises ValueError when the width exceeds what the int64 datapath holds.
    """
    if fan_in < 1:
        raise ValueError(f"fan_in must be positive, got {fan_in}")
    frac = a.frac + b.frac
    pmin, pmax = product_range(a, b)
    lo, hi = fan_in * pmin, fan_in * pmax
    if bias is not None:
        if bias.frac > frac:
            raise ValueError(f"bias format {bias} has more fractional bits than the accumulator ({frac})")
        shift = frac - bias.frac
        lo, hi = lo + (bias.min_int << shift), hi + (bias.max_int << shift)
    bits, signed = bits_for_range(lo, hi)
    if bits > MAX_BITS:
        raise ValueError(f"an accumulator of {fan_in} products of {a} and {b} needs {bits} bits; at most {MAX_BITS}")
    return QFormat(bits, frac, signed)


def format_for_range(lo: float, hi: float, bits: int, signed: bool = True, rounding: str = "half_up") -> QFormat:
    """The finest `bits`-bit format (largest frac) in which lo and hi quantize without overflow.

    A power-of-two scale: the smallest step 2^-frac whose range still covers [lo, hi] after
    rounding. An all-zero range gets frac = bits - 1 (signed) or bits (unsigned), i.e. [-1, 1)
    or [0, 1). Unsigned formats require lo >= 0.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"invalid range [{lo}, {hi}]")
    if not signed and lo < 0:
        raise ValueError(f"an unsigned format cannot hold the negative value {lo}")
    top = max(abs(lo), abs(hi))
    if top == 0.0:
        return QFormat(bits, bits - 1 if signed else bits, signed)

    def fits(frac: int) -> bool:
        fmt = QFormat(bits, frac, signed)
        return fmt.quantize_counted(np.array([lo, hi]), rounding, "saturate")[1] == 0

    frac = (bits - 1 if signed else bits) - math.ceil(math.log2(top))
    while not fits(frac):
        frac -= 1
    while fits(frac + 1):
        frac += 1
    return QFormat(bits, frac, signed)


def bias_format(top: float, acc_frac: int, bits: int = 32, rounding: str = "half_up") -> QFormat:
    """Format of a bias whose largest magnitude is `top`, added to an accumulator at frac `acc_frac`.

    The accumulator's own frac (exact alignment, no accuracy lost) unless `bits` cannot hold
    `top` there; then the finest frac that holds it (aligned by an exact left shift).
    """
    return QFormat(bits, min(acc_frac, format_for_range(-top, top, bits, True, rounding).frac), True)
