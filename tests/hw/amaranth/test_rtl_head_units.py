"""Amaranth-simulator tests of the head datapath: head memories, PPU lanes, the SFU's units, a whole ANIL episode.

Golden values come from the compiler's kernels (`compiler.kernels.sfu`) and the simulator's
independent models (`sim.ppu`, `sim.sfu`).
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from metahw.compiler.kernels import sfu as golden
from metahw.hardware import HardwareConfig, derive_hardware
from metahw.hw.amaranth.isa import ERROR_LABEL_RANGE, RequantSpec
from metahw.hw.amaranth.mac import MacArray
from metahw.hw.amaranth.pipeline import DATA, MAC_STAGES, OPERANDS, PPU_STAGES, PRELOAD_READ
from metahw.hw.amaranth.ppu import PpuLane
from metahw.hw.amaranth.sfu import (
    RSQRT_MANTISSA,
    RSQRT_NUMERATOR,
    RSQRT_QUOTIENT_BITS,
    RSQRT_ROOT_BITS,
    Divider,
    RsqrtNormaliser,
    SquareRoot,
)
from metahw.hw.amaranth.spec import rtl_plan
from metahw.hw.amaranth.store import LinearStore
from metahw.qformat import QFormat
from metahw.sim import ppu
from metahw.sim.simulator import Simulator as CycleSimulator
from tests.hw.amaranth.amaranth_bench import amaranth_episode
from tests.hw.amaranth.rtl_fixtures import tiny_anil, tiny_inputs


def _run(dut, bench, clock: bool = True) -> None:
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize(
    ("rows", "cols", "lanes", "window_writes", "rotated"),
    [
        (5, 3, 4, True, None),
        (3, 8, 4, True, None),
        (1, 5, 4, True, None),
        (3, 5, 1, True, None),
        (5, 3, 4, False, None),
        (7, 5, 8, False, None),
        (3, 8, 4, False, None),
        (3, 5, 1, False, None),
        (7, 5, 8, False, 5),
        (5, 3, 4, True, 2),
        (7, 5, 8, False, 0),
        (2, 3, 8, True, None),
        (3, 2, 8, True, 3),
        (2, 3, 8, False, 2),
        (1, 5, 8, True, None),
    ],
)
def test_head_memory_windows_and_elements(rows, cols, lanes, window_writes, rotated):
    """Random window and single-element writes and reads at any start equal a flat array's.

    `window_writes` False: only single elements are written (the memory has no write rotator).
    `rotated` lanes: a read that starts inside a word is right in those lanes (and lane 0), one
    that starts on a word in all. A write passes the write register first: the read addressed
    with it still sees the old contents, the read addressed in the next cycle the new (the read
    port is transparent to the write register's write).
    """
    bits = 6
    dut = LinearStore(
        rows, cols, lanes, bits, init=list(range(rows * cols)), window_writes=window_writes, rotated_lanes=rotated
    )
    right = lanes if rotated is None else max(1, rotated)
    assert dut.windows == (cols % lanes != 0 and rows > 1)
    assert len(dut.depths) == (2 if dut.windows and rows * cols > lanes else 1)  # one word: one memory
    rng = np.random.default_rng(rows * cols)
    model = np.arange(rows * cols) % (1 << bits)

    async def bench(ctx):
        landing = None  # the write of the previous cycle, in the write register
        for _ in range(60):
            if dut.windows or rng.random() < 0.3:
                start = int(rng.integers(0, rows * cols))
            else:
                start = int(rng.integers(0, -(-rows * cols // lanes))) * lanes
            single = rng.random() < 0.3 or start % lanes != 0 and not dut.windows or not window_writes
            count = 1 if single else int(rng.integers(0, min(lanes, rows * cols - start) + 1))
            data = rng.integers(0, 1 << bits, lanes)
            ctx.set(dut.wr_start, start)
            ctx.set(dut.wr_mask, (1 << count) - 1)
            ctx.set(dut.wr_data, sum(int(v) << (k * bits) for k, v in enumerate(data)))
            ctx.set(dut.rd_start, start)
            await ctx.tick()
            ctx.set(dut.wr_mask, 0)
            lanes_out = ctx.get(dut.rd_lanes)
            got = [(lanes_out >> (k * bits)) & ((1 << bits) - 1) for k in range(lanes)]
            if landing is not None:  # the previous cycle's write, landing now: this read sees it
                model[landing[0] : landing[0] + landing[1]] = landing[2]
            want = model[start : start + lanes].tolist()  # not this cycle's write
            if start % lanes == 0:
                assert got[: len(want)] == want
            elif dut.windows:
                assert got[: min(len(want), right)] == want[:right]
            assert ctx.get(dut.rd_elem) == want[0]
            landing = (start, count, data[:count])
        model[landing[0] : landing[0] + landing[1]] = landing[2]
        await ctx.tick()  # the last write lands
        for start in range(rows * cols):
            ctx.set(dut.rd_start, start)
            await ctx.tick()
            assert ctx.get(dut.rd_elem) == model[start]

    _run(dut, bench)


@pytest.mark.parametrize("rows, cols, lanes", [(5, 5, 8), (5, 5, 32), (7, 3, 4), (3, 6, 16)])
def test_head_memory_rotates_only_its_declared_starts(rows, cols, lanes):
    """Rows read as windows (the ArgMin's) from the start lanes their readers declare, single elements from any.

    The rotator has a case for each declared start only: a row read is right in all `cols`
    lanes (up to P), and a single element anywhere stays right (lane 0 of an even/odd memory
    keeps every start).
    """
    bits = 6
    starts = frozenset(q * cols % lanes for q in range(rows))
    dut = LinearStore(rows, cols, lanes, bits, init=list(range(rows * cols)), window_writes=False, rotated_lanes=0)
    dut.rotated_starts = frozenset()
    dut.note_rotated_lanes(min(lanes, cols), starts)
    # assert dut.rotated_starts == starts
    rng = np.random.default_rng(rows * cols + lanes)
    model = np.arange(rows * cols) % (1 << bits)

    async def bench(ctx):
        for _ in range(40):  # single-element writes, then a row and an element read
            start = int(rng.integers(0, rows * cols))
            value = int(rng.integers(0, 1 << bits))
            ctx.set(dut.wr_start, start)
            ctx.set(dut.wr_mask, 1)
            ctx.set(dut.wr_data, value)
            await ctx.tick()
            ctx.set(dut.wr_mask, 0)
            await ctx.tick()  # the write lands
            model[start] = value
            q = int(rng.integers(0, rows))
            ctx.set(dut.rd_start, q * cols)
            await ctx.tick()
            window = ctx.get(dut.rd_lanes)
            got = [(window >> (k * bits)) & ((1 << bits) - 1) for k in range(min(lanes, cols))]
            assert got == model[q * cols : q * cols + min(lanes, cols)].tolist()
            element = int(rng.integers(0, rows * cols))
            ctx.set(dut.rd_start, element)
            await ctx.tick()
            assert ctx.get(dut.rd_elem) == model[element]

    _run(dut, bench)


def test_ppu_lane_scales_updates_and_requantises():
    """value * factor (constant or operand), (addend << a) - (scaled << g), ReLU, max, requantise."""
    specs = [RequantSpec(5, QFormat(10, 2)), RequantSpec(-1, QFormat(12, 4, signed=False))]
    dut = PpuLane(40, 18, [1, 3, -1], [(2, 1), (0, 4)], specs, "half_even", "saturate")
    rng = np.random.default_rng(2)

    async def bench(ctx):
        for _ in range(200):
            value, operand, addend = (int(v) for v in rng.integers(-3000, 3000, 3))
            scale, update, variable, relu, select = (int(rng.integers(0, n)) for n in (3, 3, 2, 2, 2))
            scaled = value * (operand if variable else [1, 3, -1][scale])
            combined = scaled if update == 0 else (addend << [2, 0][update - 1]) - (scaled << [1, 4][update - 1])
            if relu:
                combined = max(combined, 0)
            spec = specs[select]
            want, _ = ppu.requantise(
                np.array([combined]), spec.shift + spec.dst.frac, spec.dst, "half_even", "saturate"
            )
            for port, v in (
                ("value", value),
                ("operand", operand),
                ("addend", addend),
                ("scale", scale),
                ("update", update),
                ("variable", variable),
                ("relu", relu),
                ("select", select),
                ("valid", 1),
                ("first", 1),
                ("emit", 1),
            ):
                ctx.set(getattr(dut, port), v)
            await ctx.tick()
            ctx.set(dut.valid, 0)
            for _ in range(PPU_STAGES - 1):
                assert ctx.get(dut.out_valid) == 0
                await ctx.tick()
            assert ctx.get(dut.out_valid) == 1
            assert ctx.get(dut.raw) == combined
            assert ctx.get(dut.result) == int(want[0])

    _run(dut, bench)


def test_reduce_tree_preload_adds_the_bias_once_per_output():
    lanes = 4
    dut = MacArray(lanes, 10, 32)
    rng = np.random.default_rng(4)
    x, y = rng.integers(-300, 300, (2, lanes)), rng.integers(-300, 300, (2, lanes))

    async def bench(ctx):
        sums = []
        preload_at = PRELOAD_READ + DATA - OPERANDS + dut.tree_depth  # cycles after the first beat's operands
        for beat in range(2 + MAC_STAGES + 1 + dut.tree_depth):
            ctx.set(dut.valid, beat < 2)
            ctx.set(dut.first, beat == 0)
            ctx.set(dut.last, beat == 1)
            ctx.set(dut.reduce, 1)
            ctx.set(dut.sum_preload, 1000 if beat == preload_at else 0)
            for k in range(lanes):
                ctx.set(dut.x[k], int(x[beat % 2, k]))
                ctx.set(dut.y[k], int(y[beat % 2, k]))
            await ctx.tick()
            if ctx.get(dut.sum_valid):
                sums.append(ctx.get(dut.sum))
        assert sums == [1000 + int((x * y).sum())]

    _run(dut, bench)


@pytest.mark.parametrize(("exp_frac", "recip_bits", "ways"), [(16, 16, 5), (12, 10, 20), (4, 3, 2)])
def test_divider_gives_the_softmax_reciprocal(exp_frac, recip_bits, ways):
    """R + 1 steps of the restoring divider = floor(2^(E+R) / S) for row sums S in [2^E, N 2^E]."""
    dut = Divider(exp_frac + ways.bit_length() + 1, recip_bits + 1)
    rng = np.random.default_rng(exp_frac)
    sums = np.concatenate([[1 << exp_frac, ways << exp_frac], rng.integers(1 << exp_frac, ways << exp_frac, 20)])

    async def bench(ctx):
        for s in sums.tolist():
            ctx.set(dut.load, 1)
            ctx.set(dut.divisor, s)
            ctx.set(dut.initial, 1 << (exp_frac - 1))
            await ctx.tick()
            ctx.set(dut.load, 0)
            ctx.set(dut.step, 1)
            for _ in range(recip_bits + 1):
                last = ctx.get(dut.q_next)
                await ctx.tick()
            ctx.set(dut.step, 0)
            assert last == ctx.get(dut.q) == int(golden.reciprocal(np.array([s]), exp_frac + recip_bits)[0])

    _run(dut, bench)


def test_normaliser_divider_and_square_root_give_rsqrt():
    """The RSQRT engine's sequence on the units = compiler.kernels.sfu.rsqrt, zero included."""
    width = 62
    normaliser = RsqrtNormaliser(width)
    divider = Divider(RSQRT_MANTISSA, RSQRT_QUOTIENT_BITS)
    root = SquareRoot(RSQRT_ROOT_BITS)
    rng = np.random.default_rng(9)
    values = [0, 1, 2, 3, 255, (1 << 31) - 1, 1 << 31, (1 << 61) + 12345] + rng.integers(1, 1 << 40, 12).tolist()
    want_r, want_e = golden.rsqrt(np.array(values))

    from amaranth import Module

    m = Module()
    m.submodules += [normaliser, divider, root]
    m.d.comb += [
        divider.divisor.eq(normaliser.mantissa),
        root.value.eq(divider.q_next),
        divider.initial.eq(1 << (RSQRT_NUMERATOR - RSQRT_QUOTIENT_BITS)),
    ]

    async def bench(ctx):
        for n, r, e in zip(values, want_r.tolist(), want_e.tolist()):
            ctx.set(normaliser.value, n)
            ctx.set(divider.load, 1)
            await ctx.delay(1e-9)
            zero, shift = ctx.get(normaliser.zero), ctx.get(normaliser.shift)
            await ctx.tick()
            ctx.set(divider.load, 0)
            ctx.set(divider.step, 1)
            for k in range(RSQRT_QUOTIENT_BITS):
                ctx.set(root.load, k == RSQRT_QUOTIENT_BITS - 1)
                await ctx.tick()
            ctx.set(divider.step, 0)
            ctx.set(root.load, 0)
            ctx.set(root.step, 1)
            for _ in range(RSQRT_ROOT_BITS):
                await ctx.tick()
            ctx.set(root.step, 0)
            assert (0 if zero else ctx.get(root.root), 0 if zero else RSQRT_NUMERATOR // 2 + shift) == (r, e), n

    _run(m, bench)


def test_whole_tiny_anil_episode_in_amaranths_simulator():
    """State initialisation from its read-only copy, SGD steps (no SCAN before them), Dense, ArgMax."""
    program = tiny_anil(ways=3, shots=2, queries=2, width=4, steps=1, overflow="wrap")
    hw = derive_hardware(program, base=HardwareConfig(lanes=4, stream_elements=2))
    rp = rtl_plan(program, hw)
    inputs = tiny_inputs(program, 3)
    want = CycleSimulator(program, hw).run(inputs)
    run, peeked = amaranth_episode(rp, inputs, peek=("head.weight", "head.bias"))
    assert run.status == "done"
    assert [cycle for _, cycle in run.issues] == [e.start for e in want.events]
    assert run.total_cycles == want.total_cycles
    for name in rp.outputs:
        assert np.array_equal(run.outputs[name], want.values[name]), name
    for name in ("head.weight", "head.bias"):  # the adapted state, as raw 16-bit words
        assert peeked[name] == (want.values[name].reshape(-1) & 0xFFFF).tolist(), name
    inputs["support_labels"] = np.array([0, 3, 1, 0, 2, 1])  # 3 is not a class: the gradient pass stops
    run, _ = amaranth_episode(rp, inputs)
    assert (run.status, run.error_code) == ("error", ERROR_LABEL_RANGE)
