"""The MAC array's arithmetic, vectorised over all tiles of an instruction, and exact.

A tile's accumulator is the sum of F integer products. When every product and every partial
sum is bounded by F * max|a| * max|b| < 2^24 (2^53), float32 (float64) arithmetic is exact
in any summation order, so the whole instruction can run as one BLAS matrix product; beyond
that the simulator uses int64. The result is the same integers either way.
"""

from __future__ import annotations

import numpy as np

FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53


def _peak(x: np.ndarray) -> int:
    return int(np.abs(x).max()) if x.size else 0


def exact_dtype(fan_in: int, a: np.ndarray, b: np.ndarray) -> type:
    """float32, float64 or int64: the narrowest type in which sums of `fan_in` products of a and b are exact."""
    bound = fan_in * _peak(a) * _peak(b)
    return np.float32 if bound < FLOAT32_EXACT else np.float64 if bound < FLOAT64_EXACT else np.int64


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [..., n, F] @ b [..., F, m] on int64 operands, exactly (fast BLAS path where the bound allows)."""
    dtype = exact_dtype(a.shape[-1], a, b)
    return np.matmul(a.astype(dtype), b.astype(dtype)).astype(np.int64)


def squared_distances(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """sum_d (q[i,d] - r[j,d])^2 for every pair, as the lanes compute it (pre-adder, then square), int64."""
    out = np.empty((q.shape[0], r.shape[0]), dtype=np.int64)
    rows = max(1, (1 << 22) // max(1, r.size))
    for start in range(0, q.shape[0], rows):
        diff = q[start : start + rows, None, :] - r[None, :, :]
        out[start : start + rows] = (diff * diff).sum(axis=-1)
    return out
