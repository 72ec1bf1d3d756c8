"""Winograd F(2x2, 3x3) in integers: exactly 4 x the convolution, and widths that hold every partial sum."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metahw.compiler import kernels as K
from metahw.compiler.kernels import winograd
from metahw.compiler.kernels.conv import conv_windows
from metahw.compiler.kernels.datapath import ACCUMULATOR
from metahw.compiler.program import Buffer
from metahw.qformat import QFormat
from tests.sim.harness import PROPERTY, qformats, rand


def _direct(x: np.ndarray, w: np.ndarray, padding: int) -> np.ndarray:
    """The convolution's exact integer sums [B, O, Ho, Wo] (no bias)."""
    win = conv_windows(x, 3, padding, 1)  # [B, C, Ho, Wo, 3, 3]
    return np.einsum("bcyxij,ocij->boyx", win.astype(np.int64), w.astype(np.int64))


def _conv(shape, padding, xf, wf):
    b, c, o, h, w = shape
    buffers = {
        "x": Buffer("x", (b, c, h, w), xf, "input"),
        "w": Buffer("w", (o, c, 3, 3), wf, "weight"),
        "y": Buffer("y", (b, o, 1, 1), QFormat(8, 0), "output"),
    }
    op = K.Conv2d(name="conv", input="x", weight="w", output="y", padding=padding, pool=True)
    return op, buffers


SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 3), st.integers(2, 9), st.integers(2, 9))


@PROPERTY
@given(
    shape=SHAPES,
    padding=st.integers(0, 2),
    xf=qformats(bits=(2, 10)),
    wf=qformats(bits=(2, 10)),
    seed=st.integers(0, 2**31),
)
def test_window_sums_are_four_times_the_convolution(shape, padding, xf, wf, seed):
    b, c, o, h, w = shape
    if h + 2 * padding < 4 or w + 2 * padding < 4:
        return  # no 2x2 pooled window
    rng = np.random.default_rng(seed)
    x, weights = rand(rng, xf, (b, c, h, w)), rand(rng, wf, (o, c, 3, 3))
    op, buffers = _conv(shape, padding, xf, wf)
    rows, cols = op.computed_shape(buffers)
    windows = (rows // 2, cols // 2)
    sums = winograd.window_sums(
        winograd.transform_inputs(winograd.input_patches(x, padding, windows)), winograd.transform_weights(weights)
    )
    direct = _direct(x, weights, padding)[:, :, :rows, :cols]
    expected = direct.reshape(b, o, windows[0], 2, windows[1], 2).transpose(0, 1, 2, 4, 3, 5).reshape(b, o, *windows, 4)
    assert np.array_equal(sums, 4 * expected)


def _partial_sums(x: np.ndarray, weights: np.ndarray, padding: int, windows: tuple[int, int]) -> np.ndarray:
    """Every value an accumulator holds, beat after beat (c, u, v), without bias: [B, O, Hp, Wp, 4, C * 16]."""
    v = winograd.transform_inputs(winograd.input_patches(x, padding, windows))  # [B, C, Hp, Wp, 4, 4]
    u = winograd.transform_weights(weights)  # [O, C, 4, 4]
    b, c, hp, wp = v.shape[:4]
    products = np.einsum("bcyxk,ock->boyxck", v.reshape(b, c, hp, wp, 16), u.reshape(u.shape[0], c, 16))
    signed = np.einsum("boyxck,qk->boyxqck", products, winograd.output_signs().reshape(4, 16))
    return np.cumsum(signed.reshape(*signed.shape[:5], -1), axis=-1)


@pytest.mark.parametrize("signed_input", [False, True])
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_widths_hold_every_operand_and_partial_sum_at_the_extremes(signed_input, padding):
    """Inputs at their format's extremes (the worst case for the bound) and extreme weights."""
    rng = np.random.default_rng(padding)
    xf, wf = QFormat(8, 5, signed=signed_input), QFormat(8, 6)
    shape = (6, 5, 3, 6, 6)
    b, c, o, h, w = shape
    op, buffers = _conv(shape, padding, xf, wf)
    weights = rng.choice([wf.min_int, wf.max_int, 0], (o, c, 3, 3))
    x = rng.choice([xf.min_int, xf.max_int], (b, c, h, w))
    needs = list(winograd.width_needs(op, buffers, {"w": weights}))
    v_bits, u_bits, acc_bits = (bits for _, _, bits in needs)
    rows, cols = op.computed_shape(buffers)
    windows = (rows // 2, cols // 2)
    v = winograd.transform_inputs(winograd.input_patches(x, padding, windows))
    u = winograd.transform_weights(weights)
    assert needs[2][1] == ACCUMULATOR
    for values, bits in ((v, v_bits), (u, u_bits), (_partial_sums(x, weights, padding, windows), acc_bits)):
        assert -(1 << (bits - 1)) <= values.min() and values.max() < 1 << (bits - 1)


def test_only_3x3_stride_1_pooled_convs_qualify():
    op, buffers = _conv((1, 1, 1, 4, 4), 1, QFormat(8, 0), QFormat(8, 0))
    assert winograd.unsupported(op, buffers) is None
    unpooled = K.Conv2d(name="c", input="x", weight="w", output="y", padding=1)
    assert "Winograd F(2x2, 3x3) needs 3x3, stride 1 and a fused 2x2 pool" in winograd.unsupported(unpooled, buffers)
    strided = K.Conv2d(name="c", input="x", weight="w", output="y", padding=1, stride=2, pool=True)
    assert "stride 2" in winograd.unsupported(strided, buffers)


CHECKERBOARD = [[127, -128, 127], [-128, 127, -128], [127, -128, 127]]
CENTRE = [[0, 0, 0], [0, 1, 0], [0, 0, 0]]


@pytest.mark.parametrize("kernel", [CHECKERBOARD, CENTRE], ids=["checkerboard", "centre"])
@pytest.mark.parametrize("signed_input", [False, True])
def test_the_accumulator_width_holds_the_worst_partial_sum_of_a_channel(signed_input, kernel):
    """The largest partial sum inside one channel's 16 beats, exactly: each patch element at the end of its
    range that the prefix's coefficient favours (a 1-channel conv, where that term dominates the bound).

    With the centre tap alone a prefix reaches 5 max|x| against the direct bound's 4 max|x| |w|: the
    bound needs its channel term."""
    xf, wf = QFormat(8, 5, signed=signed_input), QFormat(8, 6)
    op, buffers = _conv((1, 1, 1, 4, 4), 1, xf, wf)
    weights = np.array([[kernel]])
    acc_bits = list(winograd.width_needs(op, buffers, {"w": weights}))[2][2]
    u = winograd.transform_weights(weights)[0, 0].reshape(16)
    # coefficient of patch element (r, s) in beat (u, v)'s product: U[u, v] BT[u, r] BT[v, s]
    per_beat = np.einsum("k,kr,ks->krs", u, np.repeat(winograd.BT, 4, axis=0), np.tile(winograd.BT, (4, 1)))
    signs = winograd.output_signs().reshape(4, 16)
    lo, hi = min(xf.min_int, 0), max(xf.max_int, 0)
    worst = 0
    for q in range(4):
        prefix = np.cumsum(signs[q][:, None, None] * per_beat, axis=0)
        worst = max(worst, int(np.maximum(prefix * lo, prefix * hi).sum(axis=(1, 2)).max()))
        worst = max(worst, int(-np.minimum(prefix * lo, prefix * hi).sum(axis=(1, 2)).min()))
    assert worst < 1 << (acc_bits - 1)
    assert worst == winograd.channel_peaks(winograd.transform_weights(weights), lo, hi)[0, 0]
    if kernel is CENTRE:
        assert worst > 4 * max(-lo, hi)
