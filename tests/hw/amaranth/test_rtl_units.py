"""Amaranth-simulator tests of the datapath components against the software models, and a whole tiny episode."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from amaranth import Module, Signal, signed
from amaranth.sim import Simulator

from metahw.compiler.golden import execute
from metahw.hardware import HardwareConfig, derive_hardware
from metahw.hw.amaranth.argtree import ArgTree
from metahw.hw.amaranth.mac import MacArray, soft_multiply_first, soft_multiply_last
from metahw.hw.amaranth.pipeline import MAC_STAGES
from metahw.hw.amaranth.requant import Requantiser
from metahw.hw.amaranth.rom import BANK_WORDS, BANKED_WIDTH, BankedRom
from metahw.hw.amaranth.spec import RequantSpec, rtl_plan
from metahw.qformat import QFormat
from metahw.sim import ppu
from metahw.sim.ops.argreduce import _tree_select
from metahw.sim.simulator import Simulator as CycleSimulator
from tests.hw.amaranth.amaranth_bench import amaranth_episode
from tests.hw.amaranth.rtl_fixtures import tiny_inputs, tiny_protonet
from tests.sim.random_programs import draw_config

SPECS = [
    RequantSpec(7, QFormat(8, 4, signed=False)),
    RequantSpec(3, QFormat(6, 2)),
    RequantSpec(0, QFormat(5, 0)),
    RequantSpec(-2, QFormat(8, 3)),
    RequantSpec(1, QFormat(4, 1)),
    RequantSpec(-9, QFormat(6, 2)),  # shifted left past the format: only 0 fits
    RequantSpec(-3, QFormat(7, 0, signed=False)),
    RequantSpec(23, QFormat(4, 0)),  # shifted right past the value's width
]


def _edges(specs: list[RequantSpec], width: int) -> np.ndarray:
    """Values at each spec's limits: its format's ends and the requantiser's near range (+-2^bits), +-1 and +-1/2."""
    values = set()
    for spec in specs:
        bits = spec.dst.bits
        for end in (spec.dst.max_int, spec.dst.min_int, 1 << bits, -(1 << bits)):
            for step in (-1, 0, 1):
                base = (end + step) << spec.shift if spec.shift >= 0 else (end + step) >> -spec.shift
                half = 1 << (spec.shift - 1) if spec.shift > 0 else 0
                values.update(base + d for d in (-half, -1, 0, 1, half))
    return np.array(sorted(v for v in values if -(1 << (width - 1)) <= v < 1 << (width - 1)))


def _run(dut, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("rounding", ["truncate", "half_up", "half_even"])
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
def test_requantiser_matches_the_ppu_model(rounding, overflow):
    dut = Requantiser(SPECS, 20, rounding, overflow)
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.integers(-(1 << 19), 1 << 19, 150), np.arange(-40, 41), _edges(SPECS, 20)])

    async def bench(ctx):
        for k, spec in enumerate(SPECS):
            want, _ = ppu.requantise(values, spec.shift + spec.dst.frac, spec.dst, rounding, overflow)
            for v, w in zip(values.tolist(), want.tolist()):
                ctx.set(dut.value, v)
                ctx.set(dut.select, k)
                await ctx.delay(1e-9)
                got = ctx.get(dut.result)
                over = ctx.get(dut.overflow)
                exact, count = ppu.requantise(np.array([v]), spec.shift + spec.dst.frac, spec.dst, rounding, overflow)
                assert got == w, (spec, v, got, w)
                assert over == count, (spec, v)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def test_soft_multiply_is_the_signed_product_for_every_operand_pair():
    """Every pair of a 5-bit and a 4-bit signed operand (the sign rows included), through both halves of the tree."""
    a, b = Signal(signed(5)), Signal(signed(4))
    out = Signal(signed(9))
    m = Module()
    sums = [Signal(signed(9), name=f"sum{n}") for n in range(len(soft_multiply_first(a, b)))]
    m.d.comb += [s.eq(v) for s, v in zip(sums, soft_multiply_first(a, b))]  # the sums fit the product's width
    m.d.comb += out.eq(soft_multiply_last(sums))

    async def bench(ctx):
        for x in range(-16, 16):
            for y in range(-8, 8):
                ctx.set(a, x)
                ctx.set(b, y)
                assert ctx.get(out) == x * y, (x, y)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("lanes, dsp_lanes", [(1, None), (4, None), (8, None), (4, 0), (8, 3)])
def test_mac_array_outer_and_reduce(lanes, dsp_lanes):
    """Lane products, adder-tree sums and squared differences; lanes past `dsp_lanes` multiply in soft logic."""
    dut = MacArray(lanes, 10, 32, dsp_lanes)
    rng = np.random.default_rng(lanes)
    x = rng.integers(-512, 512, (5, lanes))
    y = rng.integers(-512, 512, (5, lanes))
    x[0], y[0] = -512, -512  # the extremes of 10-bit operands: the soft multiplier's sign row
    preload = rng.integers(-1000, 1000, lanes)

    async def bench(ctx):
        lane_out, sums = None, []
        for mode in ("outer", "reduce", "l2"):
            for beat in range(5 + MAC_STAGES + dut.tree_depth):
                live = beat < 5
                ctx.set(dut.valid, live)
                ctx.set(dut.first, beat == 0)
                ctx.set(dut.last, beat == 4)
                ctx.set(dut.reduce, mode != "outer")
                ctx.set(dut.subtract, mode == "l2")
                ctx.set(dut.square, mode == "l2")
                for k in range(lanes):
                    ctx.set(dut.x[k], int(x[beat % 5, k]))
                    ctx.set(dut.y[k], int(y[beat % 5, k]))
                    ctx.set(dut.preload[k], int(preload[k]))
                await ctx.tick()
                if ctx.get(dut.lane_valid):
                    lane_out = [ctx.get(dut.lane_acc[k]) for k in range(lanes)]
                if ctx.get(dut.sum_valid):
                    sums.append(ctx.get(dut.sum))
        assert lane_out == (preload + (x * y).sum(axis=0)).tolist()
        assert sums == [int((x * y).sum()), int(((x - y) ** 2).sum())]

    _run(dut, bench)


@pytest.mark.parametrize(
    ("words", "width", "banks"),
    [(1, BANKED_WIDTH, 1), (300, BANKED_WIDTH, 1), (BANK_WORDS, 40, 1), (2 * BANK_WORDS + 77, 40, 3), (1100, 20, 1)],
)
def test_banked_rom_gives_each_address_its_word_two_cycles_later(words, width, banks):
    """One bank or several (the last one short; a narrow ROM is one): every word, in random order, comes at c + 2."""
    rng = np.random.default_rng(words)
    contents = [int(v) for v in rng.integers(0, 1 << width, words, dtype=np.int64)]
    dut = BankedRom("rom", width, contents)
    assert len(dut.depths) == banks
    addresses = [int(a) for a in rng.permutation(words)] + [words - 1, 0, words - 1]

    async def bench(ctx):
        seen = []
        for addr in addresses + [0, 0]:
            ctx.set(dut.addr, addr)
            await ctx.tick()
            seen.append(ctx.get(dut.data))
        assert seen[1 : len(addresses) + 1] == [contents[a] for a in addresses]

    _run(dut, bench)


@pytest.mark.parametrize("greater", [False, True])
def test_compare_tree_keeps_the_lower_index_on_ties(greater):
    lanes = 8
    dut = ArgTree(lanes, 12, greater)
    rng = np.random.default_rng(5)
    rows = rng.integers(-4, 4, (40, lanes))  # many ties

    async def bench(ctx):
        got = []
        for k in range(len(rows) + dut.depth + 1):
            row = rows[min(k, len(rows) - 1)]
            ctx.set(dut.valid, k < len(rows))
            ctx.set(dut.mask, (1 << 6) - 1)  # the last two lanes are masked off
            for lane in range(lanes):
                ctx.set(dut.values[lane], int(row[lane]))
            await ctx.tick()
            if ctx.get(dut.out_valid):
                got.append(ctx.get(dut.index))
        assert got == _tree_select(rows[:, :6], prefer_greater=greater).tolist()

    _run(dut, bench)


@pytest.mark.parametrize("signed_act, dsp_lanes", [(False, None), (True, None), (False, 1)])
def test_whole_tiny_episode_in_amaranths_simulator(signed_act, dsp_lanes):
    """The whole episode equals the cycle simulator (outputs and issue cycles), also with 3 of 4 lanes in LUTs."""
    program = tiny_protonet(ways=2, shots=2, queries=3, signed_act=signed_act, rounding="half_even")
    hw = HardwareConfig(lanes=4, stream_elements=4, acc_bits=32, dsp_lanes=dsp_lanes)
    rp = rtl_plan(program, hw)
    inputs = tiny_inputs(program, 1)
    want = CycleSimulator(program, hw).run(inputs)
    run, _ = amaranth_episode(rp, inputs)
    assert run.status == "done"
    assert run.total_cycles == want.total_cycles
    assert [cycle for _, cycle in run.issues] == [e.start for e in want.events]
    for name in rp.outputs:
        assert np.array_equal(run.outputs[name], want.values[name]), name


def test_narrow_pixels_stream_into_wider_activation_lanes():
    """A 3-bit image streamed E = 2 per beat into 10-bit AMEM lanes (P = 4): each pixel gets its own lane.

    Random configuration 126 of the property benchmark (`benchmarks/kernel_properties.py`), whose
    pixels had been packed at 3-bit spacing, so every conv output was wrong in Verilator.
    """
    config = draw_config(0, 126)
    hw = derive_hardware(config.program, base=replace(config.hw, lanes=4, stream_elements=2))
    rp = rtl_plan(config.program, hw)
    assert rp.in_bits < rp.act_bits and hw.stream_elements < hw.lanes  # the case this test is about
    golden = execute(config.program, config.inputs).values
    run, _ = amaranth_episode(rp, config.inputs)
    assert run.status == "done"
    for name in rp.outputs:
        assert np.array_equal(run.outputs[name], golden[name]), name
