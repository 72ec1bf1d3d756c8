"""The activations a MAC kernel or a vector pass applies before requantising: ReLU and LeakyReLU.

LeakyReLU's negative slope is a fixed-point constant `slope * 2^-slope_frac` (`leaky_slope`):
a negative value is multiplied by `slope`, a non-negative one shifted left by `slope_frac`,
so both halves sit at `frac + slope_frac` fractional bits and the one requantisation after
them rounds once. `leaky_slope` picks 8 significant bits of the float slope.
"""

from __future__ import annotations

import math

import numpy as np

from metahw.compiler.onnx_attributes import accepts

#: significant bits of a quantised LeakyReLU slope
SLOPE_BITS = 8


def leaky_slope(alpha: float) -> tuple[int, int]:
    """(slope, slope_frac) with slope * 2^-slope_frac the nearest 8-significant-bit value to `alpha` in (0, 1)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"a LeakyReLU slope must lie in (0, 1), got {alpha}")
    frac = SLOPE_BITS - 1 - math.floor(math.log2(alpha))
    return int(round(alpha * (1 << frac))), frac


def leaky_fields(alpha: float | None) -> dict:
    """A kernel's LeakyReLU fields (`leaky_slope`, `leaky_frac`) for a fused node's `leaky_alpha` (None: none)."""
    if alpha is None:
        return {"leaky_slope": None, "leaky_frac": 0}
    slope, frac = leaky_slope(alpha)
    return {"leaky_slope": slope, "leaky_frac": frac}


def activate(acc: np.ndarray, relu: bool, slope: int | None, slope_frac: int) -> tuple[np.ndarray, int]:
    """ReLU, LeakyReLU (slope/slope_frac) or nothing: the values and the fractional bits they gained."""
    if relu:
        return np.maximum(acc, 0), 0
    if slope is not None:
        return np.where(acc < 0, acc * slope, np.left_shift(acc, slope_frac)), slope_frac
    return acc, 0


def activation_bits(relu: bool, slope: int | None, slope_frac: int) -> int:
    """Extra bits a signed value needs after the activation (LeakyReLU widens the positive half by slope_frac)."""
    return slope_frac if slope is not None and not relu else 0


# ---- from ONNX: LeakyRelu, fused into the conv block or Add before it (passes.py) ----------------------
accepts("LeakyRelu", {"alpha": (lambda v: 0 < v < 1, "in (0, 1)")})
