"""Winograd F(2x2, 3x3) for the conv engine: 16 products per 2x2 outputs instead of 36, exact in integers.

A 3x3, stride-1 Conv2d with a fused 2x2 pool computes its outputs in 2x2 tiles, and a tile is
one pool window. Lavin and Gray's minimal filtering (arXiv:1509.09308) gives a tile as

    Y = A^T [ (G g G^T) . (B^T d B) ] A        (. : element-wise, summed over input channels)

with d the tile's 4x4 input patch (zero outside the input) and g a 3x3 kernel. G holds halves;
metahw uses G2 = 2 G, whose entries are integers, so that U = G2 g G2^T = 4 G g G^T is an
integer weight and the sum Y4 = A^T [sum_c U . V] A is exactly 4 Y: the shift by 2 that
undoes the scale drops two zero bits. The conv's golden semantics (`conv.py`) do not change;
only the datapath that reaches them does (docs/microarchitecture.md §7, "Winograd").

Per output channel and window, each input channel is 16 beats: beat (u, v) multiplies the
transformed input V[u, v] by the transformed weight U[u, v], and the product is added to or
subtracted from each of the 4 outputs' accumulators by the sign A[u, a] A[v, b] (or skipped
where that is 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.datapath import ACCUMULATOR, OPERAND, Needs, signed_bits

if TYPE_CHECKING:
    from metahw.compiler.kernels.conv import Conv2d
    from metahw.compiler.program import Buffer

#: the kernel transform, scaled by 2 so that it is integer (G2 = 2 G)
G2 = np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], dtype=np.int64)
#: the input transform B^T: row u combines two patch rows (or columns) with signs
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.int64)
#: the output transform A^T: output row a takes product row u with sign AT[a, u]
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.int64)
#: the scale of the integer sum: Y4 = 4 Y, undone by an exact shift
SCALE_SHIFT = 2
#: beats per input channel of a window: the 4 x 4 transformed products
PATCH_BEATS = 16


def unsupported(op: Conv2d, buffers: Mapping[str, Buffer]) -> str | None:
    """Why the Winograd conv engine cannot run `op` (None: it can): it needs 3x3, stride 1, a fused 2x2 pool."""
    k = buffers[op.weight].shape[-1]
    if k != 3 or op.stride != 1 or not op.pool:
        pool = "a fused 2x2 pool" if op.pool else "no pool"
        needs = "Winograd F(2x2, 3x3) needs 3x3, stride 1 and a fused 2x2 pool"
        return f"it is {k}x{k}, stride {op.stride}, with {pool}; {needs}"
    return None


def transform_weights(w: np.ndarray) -> np.ndarray:
    """U = G2 g G2^T for every kernel of w [O, C, 3, 3]: [O, C, 4, 4] integers (4 x the textbook U)."""
    return np.einsum("ui,ocij,vj->ocuv", G2, w.astype(np.int64), G2)


def input_patches(x: np.ndarray, padding: int, windows: tuple[int, int]) -> np.ndarray:
    """The 4x4 input patch of every pool window: [B, C, Hp, Wp, 4, 4] (zeros outside the input).

    Window (py, px) covers conv outputs 2py..2py+1, 2px..2px+1, whose inputs are rows
    2py - padding .. 2py - padding + 3 (columns likewise).
    """
    hp, wp = windows
    xpad = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (padding, padding + 1), (padding, padding + 1)))
    view = np.lib.stride_tricks.sliding_window_view(xpad, (4, 4), axis=(2, 3))
    return view[:, :, : 2 * hp : 2, : 2 * wp : 2]


def transform_inputs(patches: np.ndarray) -> np.ndarray:
    """V = B^T d B of every patch [..., 4, 4]."""
    return np.einsum("ur,...rs,vs->...uv", BT, patches, BT)


def output_signs() -> np.ndarray:
    """[4 outputs (a, b), 4, 4 beats (u, v)]: the sign AT[a, u] AT[b, v] with which beat (u, v) enters output (a, b)."""
    return np.einsum("au,bv->abuv", AT, AT).reshape(4, 4, 4)


def window_sums(v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Y4[b, o, py, px, 4 outputs] = sum over c and beats (u, v) of sign x U[o, c] V[b, c, py, px], exactly (int64).

    `v` [B, C, Hp, Wp, 4, 4], `u` [O, C, 4, 4]. Each output's sum is 4 x its conv output.
    """
    b, c, hp, wp = v.shape[:4]
    o = u.shape[0]
    products = np.einsum("bcyxk,ock->boyxk", v.reshape(b, c, hp, wp, 16), u.reshape(o, c, 16))
    return np.einsum("boyxk,ak->boyxa", products, output_signs().reshape(4, 16))


def window_beats(op: Conv2d, buffers: Mapping[str, Buffer]) -> int:
    """Beats of one channel tile for one image: C x 16 per pool window."""
    rows, cols = op.computed_shape(buffers)
    return buffers[op.input].shape[1] * PATCH_BEATS * (rows // 2) * (cols // 2)


def instruction_beats(tiles: int, tile_beats: int) -> int:
    """Beats of a WINO instruction for one image group: the first patch's fill, then every channel tile.

    The one count the cost model, the simulator and the RTL plan share.
    """
    return timing.WINO_FILL + tiles * tile_beats


def _range_of(coefficients: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """The least and greatest sum of coefficients x values in [lo, hi] (each value chosen freely)."""
    pos, neg = np.clip(coefficients, 0, None), np.clip(coefficients, None, 0)
    return int((pos * lo + neg * hi).sum()), int((pos * hi + neg * lo).sum())


def input_range(x_min: int, x_max: int) -> tuple[int, int]:
    """The least and greatest transformed input V over patches of values in [x_min, x_max] (0 included: padding)."""
    lo, hi = min(x_min, 0), max(x_max, 0)
    ranges = [_range_of(np.outer(BT[u], BT[v]), lo, hi) for u in range(4) for v in range(4)]
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def channel_peaks(u: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Per kernel of u [O, C, 4, 4], the largest |partial sum| an accumulator reaches within its 16 beats: [O, C].

    Patch values lie in [lo, hi]. A prefix of the beats is a linear function of the 16 patch
    elements, so its extremes over that box take each element at the end its coefficient
    favours: the bound is exact over the box (a patch at the border, partly 0, stays inside it).
    """
    basis = np.einsum("ur,vs->uvrs", BT, BT).reshape(16, 16)  # [beat, element]: V's coefficients
    signs = output_signs().reshape(4, 16)
    kernels = u.reshape(-1, 16)
    peaks = np.zeros(len(kernels), dtype=np.int64)
    for start in range(0, len(kernels), 1024):
        coef = kernels[start : start + 1024, None, :, None] * signs[None, :, :, None] * basis[None, None]
        prefix = np.cumsum(coef, axis=2)  # [kernels, output, beats done, element]
        high = np.maximum(prefix * lo, prefix * hi).sum(axis=3)
        low = np.minimum(prefix * lo, prefix * hi).sum(axis=3)
        peaks[start : start + 1024] = np.maximum(high, -low).max(axis=(1, 2))
    return peaks.reshape(u.shape[:2])


def width_needs(op: Conv2d, buffers: Mapping[str, Buffer], weights: Mapping[str, np.ndarray]) -> Needs:
    """The Winograd datapath's operands (V, and U of the op's weights) and its 4 accumulators' exact bound.

    Output channel o's accumulators start each window at 0 and hold 4 x the direct sum over
    the channels done plus the partial sum of the channel under way (`channel_peaks`): at
    most 4 max|x| sum|w[o]| + the largest peak of o's kernels. What leaves them (shifted by 2,
    plus the aligned bias) is the direct accumulator, so the PPU's widths do not change.
    """
    x, w = buffers[op.input].qformat, weights[op.weight]
    v_lo, v_hi = input_range(x.min_int, x.max_int)
    u = transform_weights(w)
    yield f"the transformed input of '{op.input}' ({x})", OPERAND, signed_bits(v_lo, v_hi)
    yield f"the transformed weight of '{op.weight}'", OPERAND, signed_bits(int(u.min()), int(u.max()))
    lo, hi = min(x.min_int, 0), max(x.max_int, 0)
    direct = max(-lo, hi) * np.abs(w).reshape(w.shape[0], -1).sum(axis=1)
    bound = int(((direct << SCALE_SHIFT) + channel_peaks(u, lo, hi).max(axis=1)).max())
    yield f"the Winograd accumulators of '{op.output}'", ACCUMULATOR, signed_bits(-bound, bound)
