import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metahw.compiler.kernels.sfu import (
    bit_length,
    constant_reciprocal,
    divide_by_count,
    exp_table,
    isqrt,
    reciprocal,
    rsqrt,
)

FAST = settings(max_examples=60, deadline=None)
BELOW_2_62 = st.integers(0, 2**62 - 1)


def test_exp_table_hand_values():
    # 256 * e^0, 256 * e^-1 = 94.18, 256 * e^-2 = 34.65
    assert exp_table(0, 3, 8).tolist() == [256, 94, 35]
    # step 1/4: 2^16 * e^-0.25 = 51039.49
    assert exp_table(2, 2, 16).tolist() == [65536, 51039]


def test_exp_table_agrees_with_libm_rounding():
    table = exp_table(4, 256, 16)
    reference = np.floor(np.exp(-np.arange(256) / 16.0) * 2**16 + 0.5)
    assert np.array_equal(table, reference.astype(np.int64))
    assert table.dtype == np.int64 and table[0] == 2**16


def test_exp_table_rejects_bad_parameters():
    with pytest.raises(ValueError):
        exp_table(4, 0, 16)
    with pytest.raises(ValueError):
        exp_table(4, 16, 50)


@FAST
@given(st.lists(BELOW_2_62, min_size=1, max_size=30))
def test_isqrt_and_bit_length_exact(values):
    arr = np.array(values, dtype=np.int64)
    assert isqrt(arr).tolist() == [math.isqrt(v) for v in values]
    assert bit_length(arr).tolist() == [v.bit_length() for v in values]


@FAST
@given(st.lists(st.integers(1, 2**62 - 1), min_size=1, max_size=30))
def test_rsqrt_error_and_mantissa_range(values):
    r, e = rsqrt(np.array(values, dtype=np.int64))
    for v, ri, ei in zip(values, r.tolist(), e.tolist()):
        assert 2**15 <= ri <= 2**16
        assert abs(ri * 2.0**-ei * math.sqrt(v) - 1) < 2**-14


def test_rsqrt_hand_values():
    r, e = rsqrt(np.array([0, 1, 4, 2**40, 2]))
    assert r.tolist() == [0, 65536, 65536, 65536, 46340]  # isqrt(2^62 / 2^31) = isqrt(2^31)
    assert e.tolist() == [0, 16, 17, 36, 16]


def test_reciprocals():
    assert reciprocal(np.array([3, 7, 1]), 10).tolist() == [341, 146, 1024]
    with pytest.raises(ValueError):
        reciprocal(np.array([0]), 10)
    assert constant_reciprocal(3, 8) == 85  # 85.33
    assert constant_reciprocal(6, 1) == 0  # 0.33
    assert constant_reciprocal(4, 1) == 1  # 0.5 rounds up
    assert constant_reciprocal(3, 1) == 1  # 0.67


def test_divide_by_count():
    v, extra = divide_by_count(np.array([7, -7]), 4, 16)
    assert v.tolist() == [7, -7] and extra == 2
    v, extra = divide_by_count(np.array([7, -7]), 3, 8)
    assert v.tolist() == [595, -595] and extra == 8
