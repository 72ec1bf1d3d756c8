"""The zoo's heads in Verilator, equal to the cycle simulator bit for bit and cycle for cycle.

One build (`tiny_heads`) holds the Matching Net head (with a cosine Distance, a standalone
Softmax and a Dense on frozen weights), a Proto-MAML head (3 shots: the reciprocal path) and an
ANIL head on one embedding, so every head engine (VECTOR, EXP, RECIP, RSQRT, OUTER and the head
WIDE/REDUCE/ROWRED ops) runs in one Verilator build (a Verilator build costs about as much as
the Verilog it compiles, so one build of all heads is as cheap as separate ones), with and
without stream stalls. The zoo-shaped tiny ANIL episode runs in Amaranth's simulator
(test_rtl_head_units.py); the full-size zoo models run through `metahw simulate --rtl verilator`.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from metahw.compiler.program import Buffer, Program
from metahw.errors import UserError
from metahw.hardware import HardwareConfig, derive_hardware
from metahw.hw.amaranth.build import build_rtl
from metahw.hw.amaranth.isa import ERROR_LABEL_RANGE
from metahw.hw.amaranth.spec import rtl_plan
from metahw.hw.amaranth.verilator import compare_with_sim, compile_testbench, lint, run_rtl
from metahw.sim.simulator import Simulator
from tests.hw.amaranth.rtl_fixtures import tiny_anil, tiny_heads, tiny_inputs, tiny_protomaml


@pytest.fixture(scope="module")
def heads_build(tmp_path_factory):
    program = tiny_heads()
    hw = derive_hardware(program, base=HardwareConfig(lanes=4, stream_elements=2))
    out = build_rtl(program, hw, tmp_path_factory.mktemp("heads"))
    lint(out)
    return program, hw, out, compile_testbench(out)


def test_episodes_equal_the_simulator_bit_and_cycle(heads_build, tmp_path):
    program, hw, _, exe = heads_build
    rp = rtl_plan(program, hw)
    episodes = [tiny_inputs(program, seed) for seed in range(3)]
    simulator = Simulator(program, hw)
    for stall_seed in (0, 5):
        runs = run_rtl(exe, rp, episodes, tmp_path / str(stall_seed), seed=stall_seed)
        for k, (run, inputs) in enumerate(zip(runs, episodes)):
            compare_with_sim(rp, run, simulator.run(inputs), k)
            assert (run.stalls > 0) == (stall_seed > 0)


def test_a_label_out_of_range_stops_the_attention_with_an_error(heads_build, tmp_path):
    """The attention runs before any SCAN: its class sums flag the label."""
    program, hw, _, exe = heads_build
    inputs = tiny_inputs(program, 0)
    inputs["support_labels"][1] = 3  # not a class of a 3-way episode
    run = run_rtl(exe, rtl_plan(program, hw), [inputs], tmp_path)[0]
    assert (run.status, run.error_code) == ("error", ERROR_LABEL_RANGE)


def test_builds_are_byte_identical_and_list_their_memories(heads_build, tmp_path):
    program, hw, first, _ = heads_build
    second = build_rtl(program, hw, tmp_path)
    names = sorted(p.name for p in second.iterdir())
    assert names == sorted(p.name for p in first.iterdir() if p.is_file())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # RtlPlan.memories() (for the manifest) names every data memory the Verilog declares, with its size
    text = (first / "metahw_accel.v").read_text()
    declared = Counter((int(w) + 1) * (int(d) + 1) for w, d in re.findall(r"reg \[(\d+):0\] \S+ \[(\d+):0\];", text))
    memories = rtl_plan(program, hw).memories()
    listed = Counter(m["bits"] for m in memories)
    assert not listed - declared
    assert sum((declared - listed).values()) == 1  # the instruction ROM (the controller's)
    assert any(m["name"] == "head pm_scores (bank 1)" for m in memories)


def test_per_column_learning_rates_are_refused_with_the_reason():
    program = tiny_protomaml()
    buffers = [Buffer(b.name, (8,), b.qformat, b.kind) if b.name == "head.lr_w" else b for b in program.buffers]
    weights = program.weights | {"head.lr_w": np.full(8, 52429)}
    vector_lr = Program(program.meta, buffers, list(program.ops), weights)
    with pytest.raises(UserError, match=r"SGDHeadStep 'sgd0' reads 'head.lr_w' \(8,\).*scalar weights only"):
        rtl_plan(vector_lr, derive_hardware(vector_lr, base=HardwareConfig(lanes=4, stream_elements=2)))


def test_one_lane_is_lint_clean(tmp_path):
    """P = 1: every lane index and window shift has its own (one-bit) register, no zero-width signal."""
    program = tiny_anil(width=4, steps=1)
    lint(build_rtl(program, derive_hardware(program, base=HardwareConfig(lanes=1, stream_elements=1)), tmp_path))
