"""metahw fixed-point formats as hls4ml precision types (ap_fixed / ap_ufixed).

`sqB.F` is `ap_fixed<B, B-F>` and `uqB.F` is `ap_ufixed<B, B-F>`. A format that a value is
*requantised into* carries the program's modes (half_up = AP_RND, truncate = AP_TRN,
half_even = AP_RND_CONV; saturate = AP_SAT, wrap = AP_WRAP), so an ap_fixed assignment
performs exactly the rounding and saturation of docs/numerics.md §2. A format that only
ever holds exact values (accumulators, products, aligned sums) keeps ap_fixed's defaults
(AP_TRN, AP_WRAP): it never rounds or overflows, by construction of its width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType, RoundingMode, SaturationMode

from metahw.qformat import QFormat, bits_for_range, product_range

#: program rounding mode -> ap_fixed quantisation mode
ROUNDING = {"half_up": RoundingMode.RND, "truncate": RoundingMode.TRN, "half_even": RoundingMode.RND_CONV}
#: program overflow mode -> ap_fixed overflow mode
OVERFLOW = {"saturate": SaturationMode.SAT, "wrap": SaturationMode.WRAP}


def fixed(fmt: QFormat, rounding: str | None = None, overflow: str | None = None) -> FixedPrecisionType:
    """The ap_(u)fixed type of `fmt`; with modes when values are requantised into it, exact-only without."""
    return FixedPrecisionType(
        width=fmt.bits,
        integer=fmt.bits - fmt.frac,
        signed=fmt.signed,
        rounding_mode=ROUNDING[rounding] if rounding else None,
        saturation_mode=OVERFLOW[overflow] if overflow else None,
    )


def type_string(precision: FixedPrecisionType | IntegerPrecisionType) -> str:
    """hls4ml's precision string of a type, e.g. 'ap_fixed<8,1,AP_RND,AP_SAT>' (what configs accept)."""
    if isinstance(precision, IntegerPrecisionType):
        return f"ap_{'' if precision.signed else 'u'}int<{precision.width}>"
    kind = "fixed" if precision.signed else "ufixed"
    modes = f",AP_{precision.rounding_mode},AP_{precision.saturation_mode}"
    return f"ap_{kind}<{precision.width},{precision.integer}{modes}>"


def exact_type(lo: int, hi: int, frac: int) -> FixedPrecisionType:
    """The narrowest exact-only type holding every integer in [lo, hi] at `frac` (signed iff lo < 0), any width."""
    bits, signed = bits_for_range(int(lo), int(hi))
    return FixedPrecisionType(width=bits, integer=bits - frac, signed=signed)


@dataclass(frozen=True)
class Exact:
    """The values a layer can hold: the integers lo..hi at `frac` fractional bits (its exact-only type)."""

    lo: int
    hi: int
    frac: int

    @classmethod
    def of(cls, fmt: QFormat) -> Exact:
        """Every value of `fmt`."""
        return cls(fmt.min_int, fmt.max_int, fmt.frac)

    @property
    def type(self) -> FixedPrecisionType:
        """The narrowest exact-only type holding every value."""
        return exact_type(self.lo, self.hi, self.frac)

    def at(self, frac: int) -> Exact:
        """The same values read at `frac` >= self.frac fractional bits."""
        return Exact(self.lo << (frac - self.frac), self.hi << (frac - self.frac), frac)

    def summed(self, count: int, extra_frac: int = 0) -> Exact:
        """A sum of `count` such values, read at `extra_frac` more fractional bits (a sum times 2^-extra_frac)."""
        return Exact(count * self.lo, count * self.hi, self.frac).at(self.frac + extra_frac)

    def relu(self) -> Exact:
        """max(v, 0)."""
        return Exact(max(self.lo, 0), max(self.hi, 0), self.frac)

    def leaky(self, slope: int, slope_frac: int) -> Exact:
        """v * slope * 2^-slope_frac for v < 0, else v, at `slope_frac` more fractional bits."""

        def one(v: int) -> int:
            return v * slope if v < 0 else v << slope_frac

        return Exact(one(self.lo), one(self.hi), self.frac + slope_frac)

    def plus(self, other: Exact) -> Exact:
        """The exact sum of a value of each, aligned to the finer frac."""
        frac = max(self.frac, other.frac)
        a, b = self.at(frac), other.at(frac)
        return Exact(a.lo + b.lo, a.hi + b.hi, frac)


def accumulator_range(a: QFormat, b: QFormat, fan_in: int, bias: QFormat | None = None) -> Exact:
    """Values of bias + a sum of `fan_in` products a*b at frac a.frac + b.frac (docs/numerics.md §3)."""
    frac = a.frac + b.frac
    pmin, pmax = product_range(a, b)
    lo, hi = fan_in * pmin, fan_in * pmax
    if bias is not None:
        shift = frac - bias.frac  # >= 0: the program accepts only biases that align by a left shift
        lo, hi = lo + (bias.min_int << shift), hi + (bias.max_int << shift)
    return Exact(lo, hi, frac)


def accumulator_type(a: QFormat, b: QFormat, fan_in: int, bias: QFormat | None = None) -> FixedPrecisionType:
    """Exact type of bias + a sum of `fan_in` products a*b at frac a.frac + b.frac, any width."""
    return accumulator_range(a, b, fan_in, bias).type


def aligned(fmt: QFormat, fracs: np.ndarray) -> QFormat:
    """One format holding values of `fmt`'s bits at any of the per-index `fracs` exactly (at the finest frac)."""
    top = int(np.max(fracs))
    return QFormat(fmt.bits + top - int(np.min(fracs)), top, fmt.signed)


def integer(bits: int, signed: bool) -> IntegerPrecisionType:
    """ap_(u)int<bits>."""
    return IntegerPrecisionType(width=bits, signed=signed)


def dequantize(values: np.ndarray, fracs: np.ndarray | int) -> np.ndarray:
    """Integers -> the exact float64 reals they stand for (per-index fracs along axis 0 broadcast)."""
    values = np.asarray(values, dtype=np.int64)
    fracs = np.asarray(fracs, dtype=np.int64).reshape((-1,) + (1,) * (values.ndim - 1)) if np.ndim(fracs) else fracs
    if np.any(np.abs(values) >= 1 << 53):
        raise ValueError("values beyond 2^53 are not exact as float64")
    return np.ldexp(values.astype(np.float64), -fracs)
