"""Tiny Proto-MAML and Matching Net episodes in Verilator, equal to the simulator bit for bit and cycle for cycle.

Proto-MAML runs prototypes, ProtoHeadInit, two SGD steps and Dense; the Matching Net fixture
adds a cosine Distance and a standalone Softmax to the cosine attention, so every head engine
(VECTOR, EXP, RECIP, RSQRT, OUTER and the head WIDE/REDUCE/ROWRED ops) runs, with and without
stream stalls. ANIL adds only the state initialisation; its tiny episode runs in Amaranth's
simulator (test_rtl_head_units.py), which keeps this folder's Verilator builds to three.
"""

from __future__ import annotations

import numpy as np
import pytest

from metahw.compiler.program import Buffer, Program
from metahw.errors import UserError
from metahw.hw.amaranth.build import build_rtl
from metahw.hw.amaranth.check import rtl_hardware
from metahw.hw.amaranth.isa import ERROR_LABEL_RANGE
from metahw.hw.amaranth.spec import rtl_plan
from metahw.hw.amaranth.verilator import compare_with_sim, compile_testbench, lint, run_rtl
from metahw.sim.config import HardwareConfig
from metahw.sim.simulator import Simulator
from tests.rtl.rtl_fixtures import tiny_inputs, tiny_matchingnet, tiny_protomaml

PROGRAMS = {
    "protomaml": lambda: tiny_protomaml(rounding="half_even", overflow="wrap"),
    "matchingnet": lambda: tiny_matchingnet(cosine=True),
}


@pytest.fixture(scope="module", params=sorted(PROGRAMS))
def head_build(request, tmp_path_factory):
    program = PROGRAMS[request.param]()
    hw = rtl_hardware(program, HardwareConfig(lanes=4, stream_elements=2))
    out = build_rtl(program, hw, tmp_path_factory.mktemp(request.param))
    lint(out)
    return program, hw, out, compile_testbench(out)


def test_episodes_equal_the_simulator_bit_and_cycle(head_build, tmp_path):
    program, hw, _, exe = head_build
    rp = rtl_plan(program, hw)
    episodes = [tiny_inputs(program, seed) for seed in range(3)]
    simulator = Simulator(program, hw)
    for stall_seed in (0, 5):
        runs = run_rtl(exe, rp, episodes, tmp_path / str(stall_seed), seed=stall_seed)
        for k, (run, inputs) in enumerate(zip(runs, episodes)):
            compare_with_sim(rp, run, simulator.run(inputs), k)
            assert (run.stalls > 0) == (stall_seed > 0)


def test_a_label_out_of_range_stops_the_head_with_an_error(head_build, tmp_path):
    """Proto-MAML's SCAN flags the label; Matching Net has none: its class sums do."""
    program, hw, _, exe = head_build
    inputs = tiny_inputs(program, 0)
    inputs["support_labels"] = np.array([0, 1, 3, 1, 2, 0])  # 3 is not a class of a 3-way episode
    run = run_rtl(exe, rtl_plan(program, hw), [inputs], tmp_path)[0]
    assert (run.status, run.error_code) == ("error", ERROR_LABEL_RANGE)


def test_head_builds_are_byte_identical(head_build, tmp_path):
    program, hw, first, _ = head_build
    second = build_rtl(program, hw, tmp_path)
    names = sorted(p.name for p in second.iterdir())
    assert names == sorted(p.name for p in first.iterdir() if p.is_file())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_per_column_learning_rates_are_refused_with_the_reason():
    program = tiny_protomaml()
    buffers = [Buffer(b.name, (8,), b.qformat, b.kind) if b.name == "head.lr_w" else b for b in program.buffers]
    weights = program.weights | {"head.lr_w": np.full(8, 52429)}
    vector_lr = Program(program.meta, buffers, list(program.ops), weights)
    with pytest.raises(UserError, match=r"SGDHeadStep 'sgd0' reads 'head.lr_w' \(8,\).*scalar weights only"):
        rtl_plan(vector_lr, rtl_hardware(vector_lr, HardwareConfig(lanes=4, stream_elements=2)))
