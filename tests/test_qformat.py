import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metahw.qformat import (
    OVERFLOW_MODES,
    ROUNDING_MODES,
    QFormat,
    accumulator_format,
    bits_for_range,
    format_for_range,
    requantize,
    rescale,
)

FAST = settings(max_examples=60, deadline=None)


@st.composite
def qformats(draw, min_bits: int = 2, max_bits: int = 16) -> QFormat:
    return QFormat(draw(st.integers(min_bits, max_bits)), draw(st.integers(-6, 20)), draw(st.booleans()))


def _round(x: Fraction, rounding: str) -> int:
    if rounding == "half_up":
        return math.floor(x + Fraction(1, 2))
    if rounding == "truncate":
        return math.floor(x)
    return round(x)  # Fraction rounds half to even


def _fit(v: int, fmt: QFormat, overflow: str) -> tuple[int, bool]:
    if fmt.min_int <= v <= fmt.max_int:
        return v, False
    if overflow == "saturate":
        return min(max(v, fmt.min_int), fmt.max_int), True
    return (v - fmt.min_int) % (1 << fmt.bits) + fmt.min_int, True


# ---- hand cases ------------------------------------------------------------------------
def test_format_range_and_str():
    assert (QFormat(8, 7).min_int, QFormat(8, 7).max_int) == (-128, 127)
    assert (QFormat(8, 0, signed=False).min_int, QFormat(8, 0, signed=False).max_int) == (0, 255)
    assert QFormat(8, 7).scale == 2**-7
    assert str(QFormat(8, 7)) == "sq8.7"


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [
        # -2.5 -1.5 -0.5 0.5 1.5 2.5 -3.5 3.5
        ("half_up", [-2, -1, 0, 1, 2, 3, -3, 4]),
        ("truncate", [-3, -2, -1, 0, 1, 2, -4, 3]),
        ("half_even", [-2, -2, 0, 0, 2, 2, -4, 4]),
    ],
)
def test_requantize_halves(rounding, expected):
    values = np.array([-5, -3, -1, 1, 3, 5, -7, 7])  # frac 1: the halves above
    out, count = requantize(values, QFormat(8, 1), QFormat(8, 0), rounding)
    assert out.tolist() == expected and count == 0


def test_requantize_two_bit_shift():
    values = np.array([7, 6, 10, -6, -7, -10])  # 1.75 1.5 2.5 -1.5 -1.75 -2.5 at frac 2
    assert requantize(values, QFormat(8, 2), QFormat(8, 0), "half_up")[0].tolist() == [2, 2, 3, -1, -2, -2]
    assert requantize(values, QFormat(8, 2), QFormat(8, 0), "truncate")[0].tolist() == [1, 1, 2, -2, -2, -3]
    assert requantize(values, QFormat(8, 2), QFormat(8, 0), "half_even")[0].tolist() == [2, 2, 2, -2, -2, -2]


def test_saturate_and_wrap_counts():
    values = np.array([-9, -8, 7, 8, 100])
    out, count = requantize(values, QFormat(16, 0), QFormat(4, 0), overflow="saturate")
    assert out.tolist() == [-8, -8, 7, 7, 7] and count == 3
    out, count = requantize(values, QFormat(16, 0), QFormat(4, 0), overflow="wrap")
    assert out.tolist() == [7, -8, 7, -8, 4] and count == 3
    out, count = requantize(np.array([-1, 3, 300]), QFormat(16, 0), QFormat(8, 0, signed=False))
    assert out.tolist() == [0, 3, 255] and count == 2


def test_left_shift_saturates_before_overflowing():
    big = np.array([2**40, -(2**40), 3])
    out, count = rescale(big, 0, QFormat(16, 30))
    assert out.tolist() == [32767, -32768, 32767] and count == 3
    out, count = rescale(np.array([1, -1, 2**40]), 0, QFormat(8, 3), overflow="wrap")
    assert out.tolist() == [8, -8, 0] and count == 0 + 1


def test_quantize_hand_cases():
    fmt = QFormat(8, 4)
    x = np.array([0.49999999999999994 / 16, 1 / 32, -1 / 32, 3 / 32, 100.0, -100.0])
    assert fmt.quantize(x, "half_up").tolist() == [0, 1, 0, 2, 127, -128]
    assert fmt.quantize(x, "half_even").tolist() == [0, 0, 0, 2, 127, -128]
    assert fmt.quantize(x, "truncate").tolist() == [0, 0, -1, 1, 127, -128]
    assert fmt.quantize_counted(x)[1] == 2
    with pytest.raises(ValueError, match="NaN"):
        fmt.quantize(np.array([np.nan]))


def test_invalid_formats_and_modes():
    with pytest.raises(ValueError):
        QFormat(0, 0)
    with pytest.raises(ValueError):
        QFormat(63, 0)
    with pytest.raises(ValueError):
        requantize(np.array([1]), QFormat(8, 0), QFormat(8, 0), rounding="nearest")
    with pytest.raises(ValueError):
        QFormat.from_json({"bits": 8, "frac": 1})


# ---- properties ----------------------------------------------------------------------------
@FAST
@given(
    src=qformats(),
    dst=qformats(),
    rounding=st.sampled_from(ROUNDING_MODES),
    overflow=st.sampled_from(OVERFLOW_MODES),
    data=st.data(),
)
def test_requantize_matches_exact_rational_reference(src, dst, rounding, overflow, data):
    values = data.draw(st.lists(st.integers(src.min_int, src.max_int), min_size=1, max_size=20))
    out, count = requantize(np.array(values), src, dst, rounding, overflow)
    expected, clipped = zip(
        *(_fit(_round(Fraction(v, 1) * Fraction(2) ** (dst.frac - src.frac), rounding), dst, overflow) for v in values)
    )
    assert out.tolist() == list(expected)
    assert count == sum(clipped)


@FAST
@given(
    fmt=qformats(),
    rounding=st.sampled_from(ROUNDING_MODES),
    overflow=st.sampled_from(OVERFLOW_MODES),
    xs=st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=20),
)
def test_quantize_matches_exact_rational_reference(fmt, rounding, overflow, xs):
    out, count = fmt.quantize_counted(np.array(xs), rounding, overflow)
    expected, clipped = zip(*(_fit(_round(Fraction(x) * Fraction(2) ** fmt.frac, rounding), fmt, overflow) for x in xs))
    assert out.tolist() == list(expected) and count == sum(clipped)


@FAST
@given(fmt=qformats(), rounding=st.sampled_from(ROUNDING_MODES), data=st.data())
def test_quantisation_error_bound(fmt, rounding, data):
    lo, hi = fmt.dequantize(fmt.min_int), fmt.dequantize(fmt.max_int)
    x = np.array(data.draw(st.lists(st.floats(float(lo), float(hi)), min_size=1, max_size=20)))
    err = np.abs(fmt.dequantize(fmt.quantize(x, rounding)) - x)
    bound = fmt.scale * (1.0 if rounding == "truncate" else 0.5)
    assert np.all(err <= bound)


@FAST
@given(a=qformats(), b=qformats(), fan_in=st.integers(1, 600), with_bias=st.booleans(), data=st.data())
def test_accumulator_never_overflows_at_worst_case(a, b, fan_in, with_bias, data):
    bias = None
    if with_bias:
        bias = QFormat(data.draw(st.integers(2, 16)), a.frac + b.frac - data.draw(st.integers(0, 8)), True)
    acc = accumulator_format(a, b, fan_in, bias)
    assert acc.frac == a.frac + b.frac
    shift = 0 if bias is None else acc.frac - bias.frac
    extremes = [x * y for x in (a.min_int, a.max_int) for y in (b.min_int, b.max_int)]
    bias_ext = [0] if bias is None else [bias.min_int << shift, bias.max_int << shift]
    sums = [fan_in * p + c for p in extremes for c in bias_ext]
    assert all(acc.min_int <= s <= acc.max_int for s in sums)
    # and the width is the smallest that works
    assert bits_for_range(min(sums), max(sums))[0] == acc.bits
    # random inputs summed in int64 stay inside
    xs = np.array(data.draw(st.lists(st.integers(a.min_int, a.max_int), min_size=fan_in, max_size=fan_in)))
    ws = np.full(fan_in, data.draw(st.sampled_from([b.min_int, b.max_int])))
    assert acc.contains(np.array([int((xs * ws).sum())]))


def test_accumulator_hand_case_and_limits():
    # 9 products of s8 x s8 (max 128*128) plus a 16-bit bias at frac 10 shifted by 4: 21 bits
    assert accumulator_format(QFormat(8, 7), QFormat(8, 7), 9, QFormat(16, 10)) == QFormat(21, 14)
    assert accumulator_format(QFormat(8, 0, False), QFormat(8, 0, False), 1) == QFormat(16, 0, False)
    with pytest.raises(ValueError, match="more fractional bits"):
        accumulator_format(QFormat(8, 1), QFormat(8, 1), 4, QFormat(8, 3))
    with pytest.raises(ValueError, match="needs"):
        accumulator_format(QFormat(32, 0), QFormat(32, 0), 4)


@FAST
@given(lo=st.floats(-1e6, 1e6), width=st.floats(0, 1e6), bits=st.integers(2, 16), signed=st.booleans())
def test_format_for_range_is_finest_that_fits(lo, width, bits, signed):
    hi = lo + width
    if not signed:
        lo, hi = abs(lo), abs(lo) + width
    fmt = format_for_range(lo, hi, bits, signed)
    assert fmt.bits == bits and fmt.signed == signed
    assert fmt.quantize_counted(np.array([lo, hi]))[1] == 0
    if max(abs(lo), abs(hi)) > 0:
        finer = QFormat(bits, fmt.frac + 1, signed)
        assert finer.quantize_counted(np.array([lo, hi]))[1] > 0


def test_format_for_range_hand_cases():
    assert format_for_range(-3.2, 1.0, 8) == QFormat(8, 5)
    assert format_for_range(-1.0, 0.99, 8) == QFormat(8, 7)
    assert format_for_range(0.0, 0.9, 8, signed=False) == QFormat(8, 8, False)
    assert format_for_range(0.0, 0.0, 8) == QFormat(8, 7)
    with pytest.raises(ValueError):
        format_for_range(-1.0, 1.0, 8, signed=False)
