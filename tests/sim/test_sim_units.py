"""The simulator's own PPU and SFU against the golden model's definitions (docs/numerics.md §2, §4)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from metahw.compiler.kernels import SoftmaxSpec
from metahw.compiler.kernels import sfu as golden_sfu
from metahw.qformat import QFormat, rescale
from metahw.qformat import shift_round as golden_shift
from metahw.sim import ppu, sfu
from tests.sim.harness import OVERFLOWS, PROPERTY, ROUNDINGS

values = st.integers(1, 61).flatmap(
    lambda bits: st.lists(st.integers(-(1 << bits), (1 << bits) - 1), min_size=1, max_size=40)
)


@PROPERTY
@given(
    v=values,
    src=st.one_of(st.integers(-70, 80), st.lists(st.integers(-40, 70), min_size=40, max_size=40)),
    bits=st.integers(1, 62),
    frac=st.integers(-10, 30),
    signed=st.booleans(),
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
)
def test_requantise_matches_rescale(v, src, bits, frac, signed, rounding, overflow):
    v = np.array(v, dtype=np.int64)
    src = src if isinstance(src, int) else np.array(src[: v.size], dtype=np.int64)
    dst = QFormat(bits, frac, signed)
    out, count = ppu.requantise(v, src, dst, rounding, overflow)
    expected, expected_count = rescale(v, src, dst, rounding, overflow)
    assert np.array_equal(out, expected) and count == expected_count


@PROPERTY
@given(v=values, shift=st.integers(-8, 70), rounding=ROUNDINGS)
def test_shift_round_matches_the_golden_shift(v, shift, rounding):
    v = np.array(v, dtype=np.int64)
    if shift < 0:
        v = v >> 10  # left shifts of bounded values only
    assert np.array_equal(ppu.shift_round(v, shift, rounding), golden_shift(v, shift, rounding))


def test_rounding_modes_on_ties():
    v = np.array([-5, -3, 3, 5], dtype=np.int64)  # -2.5, -1.5, 1.5, 2.5 at one fractional bit
    assert ppu.shift_round(v, 1, "half_up").tolist() == [-2, -1, 2, 3]
    assert ppu.shift_round(v, 1, "truncate").tolist() == [-3, -2, 1, 2]
    assert ppu.shift_round(v, 1, "half_even").tolist() == [-2, -2, 2, 2]


@PROPERTY
@given(n=st.lists(st.one_of(st.integers(0, 1 << 20), st.integers(0, (1 << 62) - 1)), min_size=1, max_size=50))
def test_rsqrt_iterations_match_the_definition(n):
    n = np.array(n, dtype=np.int64)
    r, e = sfu.rsqrt(n)
    r_gold, e_gold = golden_sfu.rsqrt(n)
    assert np.array_equal(r, r_gold) and np.array_equal(e, e_gold)
    assert np.array_equal(sfu.bit_length(n), golden_sfu.bit_length(n))


@PROPERTY
@given(exp_frac=st.integers(1, 30), recip_bits=st.integers(1, 30), data=st.data())
def test_restoring_divider_matches_the_reciprocal(exp_frac, recip_bits, data):
    if exp_frac + recip_bits > 62:
        recip_bits = 62 - exp_frac
    spec = SoftmaxSpec(exp_frac=exp_frac, recip_bits=recip_bits, table_size=1)
    sums = np.array(data.draw(st.lists(st.integers(1 << exp_frac, (1 << 40) - 1), min_size=1, max_size=20)))
    expected = golden_sfu.reciprocal(sums, exp_frac + recip_bits)
    assert np.array_equal(sfu.softmax_reciprocal(sums, spec), expected)


def test_exp_lookup_reads_zero_beyond_the_table():
    spec = SoftmaxSpec(index_frac=2, table_size=8, exp_frac=10)
    assert sfu.exp_lookup(np.array([0, 7, 8, 100]), spec).tolist() == [1024, spec.table()[7], 0, 0]
