"""The generated Verilog in Verilator: lint, determinism, and whole tiny episodes equal to the cycle simulator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metahw.errors import UserError
from metahw.hardware import HardwareConfig
from metahw.hw.amaranth.build import build_rtl
from metahw.hw.amaranth.spec import rtl_plan
from metahw.hw.amaranth.top import ERROR_LABEL_RANGE
from metahw.hw.amaranth.verilator import RtlMismatch, compare_with_sim, compile_testbench, cxx_opt, lint, run_rtl
from metahw.sim.simulator import Simulator
from tests.hw.amaranth.rtl_fixtures import tiny_inputs, tiny_protonet


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    program = tiny_protonet(ways=3, shots=2, queries=4, width=8)
    hw = HardwareConfig(lanes=4, stream_elements=2, acc_bits=34)
    out = build_rtl(program, hw, tmp_path_factory.mktemp("rtl"))
    return program, hw, out, compile_testbench(out)


def test_lint_clean_and_builds_are_byte_identical(tiny_build, tmp_path):
    program, hw, out, _ = tiny_build
    lint(out)
    again = build_rtl(program, hw, tmp_path / "again")
    for name in ("metahw_accel.v", "manifest.json", "instructions.json"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["episode_cycles"] == Simulator(program, hw).run(tiny_inputs(program)).total_cycles
    directions = {p["name"]: p["direction"] for p in manifest["ports"]}
    inputs = {"start", "in_valid", "in_data", "out_ready"}  # what the synthesis wrapper drives
    assert {name for name, flow in directions.items() if flow == "in"} == inputs
    assert {"done", "out_data", "in_ready", "out_valid"} <= {name for name, flow in directions.items() if flow == "out"}


@pytest.mark.parametrize("stall_seed", [0, 7])
def test_episodes_equal_the_simulator_bit_and_cycle(tiny_build, tmp_path, stall_seed):
    program, hw, _, exe = tiny_build
    rp = rtl_plan(program, hw)
    episodes = [tiny_inputs(program, seed) for seed in range(4)]
    runs = run_rtl(exe, rp, episodes, tmp_path, seed=stall_seed)
    simulator = Simulator(program, hw)
    for k, (run, inputs) in enumerate(zip(runs, episodes)):
        compare_with_sim(rp, run, simulator.run(inputs), k)
        assert (run.stalls > 0) == (stall_seed > 0)


def test_a_wrong_output_is_reported_with_its_place(tiny_build, tmp_path):
    program, hw, _, exe = tiny_build
    rp = rtl_plan(program, hw)
    inputs = tiny_inputs(program, 0)
    run = run_rtl(exe, rp, [inputs], tmp_path)[0]
    sim = Simulator(program, hw).run(inputs)
    sim.values["scores"] = sim.values["scores"].copy()
    sim.values["scores"][2, 1] += 1
    with pytest.raises(RtlMismatch, match=r"output 'scores'\[2, 1\].*Distance 'distance'"):
        compare_with_sim(rp, run, sim, 0)


def test_label_out_of_range_stops_with_an_error(tiny_build, tmp_path):
    program, hw, _, exe = tiny_build
    inputs = tiny_inputs(program, 0)
    inputs["support_labels"] = np.array([0, 1, 3, 1, 2, 0])  # 3 is not a class of a 3-way episode
    run = run_rtl(exe, rtl_plan(program, hw), [inputs], tmp_path)[0]
    assert (run.status, run.error_code) == ("error", ERROR_LABEL_RANGE)


def test_refusals_name_the_reason():
    program = tiny_protonet()
    with pytest.raises(UserError, match="stream's 8 elements per beat to divide the 4 lanes"):
        rtl_plan(program, HardwareConfig(lanes=4, stream_elements=8))
    with pytest.raises(UserError, match="stream's 8 elements per beat to divide the 4 lanes of a group"):
        rtl_plan(program, HardwareConfig(lanes=8, groups=2, stream_elements=8))
    # 4 x 4 images: 16 elements, not a whole number of 32-element beats
    with pytest.raises(UserError, match="has 16 elements, not a multiple of the stream's 32"):
        rtl_plan(program, HardwareConfig(lanes=64, groups=2, stream_elements=32))


@pytest.mark.parametrize(("lanes", "groups"), [(8, 2), (16, 4)])
def test_lane_groups_equal_the_simulator_bit_and_cycle(lanes, groups, tmp_path):
    """G images at once in the embedding; 6 supports and 3 queries leave the last group partial at G = 4."""
    program = tiny_protonet(ways=3, shots=2, queries=3, width=4)
    hw = HardwareConfig(lanes=lanes, groups=groups, stream_elements=2, acc_bits=34)
    rp = rtl_plan(program, hw)
    episodes = [tiny_inputs(program, seed) for seed in range(2)]
    runs = run_rtl(compile_testbench(build_rtl(program, hw, tmp_path / "rtl")), rp, episodes, tmp_path)
    simulator = Simulator(program, hw)
    for k, (run, inputs) in enumerate(zip(runs, episodes)):
        sim = simulator.run(inputs)
        compare_with_sim(rp, run, sim, k)
        assert run.total_cycles == sim.total_cycles


@pytest.mark.parametrize(("lanes", "groups", "signed_act", "stall_seed"), [(4, 1, True, 0), (8, 2, False, 7)])
def test_winograd_convs_equal_the_simulator_bit_and_cycle(lanes, groups, signed_act, stall_seed, tmp_path):
    """Winograd F(2x2, 3x3) convs: patches across the padding and across AMEM words (8 channels on 4 lanes)."""
    program = tiny_protonet(ways=3, shots=2, queries=3, width=8, signed_act=signed_act)
    hw = HardwareConfig(lanes=lanes, groups=groups, stream_elements=2, acc_bits=40, winograd=True)
    rp = rtl_plan(program, hw)
    episodes = [tiny_inputs(program, seed) for seed in range(2)]
    runs = run_rtl(compile_testbench(build_rtl(program, hw, tmp_path / "rtl")), rp, episodes, tmp_path, seed=stall_seed)
    simulator = Simulator(program, hw)
    for k, (run, inputs) in enumerate(zip(runs, episodes)):
        sim = simulator.run(inputs)
        compare_with_sim(rp, run, sim, k)
        assert run.total_cycles == sim.total_cycles + run.stalls


def test_cli_build_writes_verilog_and_manifest(cli, tmp_path):
    program = tiny_protonet()
    program.save(tmp_path / "build")
    result = cli("build", str(tmp_path / "build"), "--backend", "amaranth", "--lanes", "4", "-o", str(tmp_path / "out"))
    assert result.code == 0, result.stderr
    assert "lint-only clean" in result.stdout
    assert (tmp_path / "out" / "metahw_accel.v").is_file()
    bad = cli("build", str(tmp_path / "build"), "--backend", "amaranth", "--lanes", "6", "-o", str(tmp_path / "x"))
    assert bad.code == 2 and "power of two" in bad.stderr


def test_ensure_rtl_reuses_a_build_of_the_same_program(tmp_path):
    from metahw.hw.amaranth.check import ensure_rtl

    program, hw = tiny_protonet(), HardwareConfig(lanes=4, stream_elements=4, acc_bits=32)
    verilog = ensure_rtl(program, hw, tmp_path) / "metahw_accel.v"
    stamp = verilog.stat().st_mtime_ns
    ensure_rtl(program, hw, tmp_path)
    assert verilog.stat().st_mtime_ns == stamp
    ensure_rtl(tiny_protonet(seed=4), hw, tmp_path)  # other weights: rebuilt
    assert verilog.stat().st_mtime_ns != stamp


def test_the_verilated_models_optimisation_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("METAHW_VERILATOR_OPT")
    assert cxx_opt() == "-O1"
    monkeypatch.setenv("METAHW_VERILATOR_OPT", "-O3")
    assert cxx_opt() == "-O3"
    monkeypatch.setenv("METAHW_VERILATOR_OPT", "-Ofast")
    with pytest.raises(UserError, match="METAHW_VERILATOR_OPT is '-Ofast'; accepted are -O0, -O1, -O2, -O3"):
        cxx_opt()


def test_an_unoptimised_model_compiles_as_one_translation_unit(tiny_build):
    """At -O0 (the suite's level) no precompiled header is built and one __ALL unit holds the model's files."""
    obj = tiny_build[2] / "verilator" / "obj"
    assert cxx_opt() == "-O0"
    assert (obj / "Vmetahw_accel__ALL.o").is_file() and not list(obj.glob("*.gch"))
    assert not list(obj.glob("Vmetahw_accel___024root__*.o"))  # no object per file
