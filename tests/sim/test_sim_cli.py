"""`metahw simulate`: report, JSON, VCD, and one-line errors for bad input."""

import dataclasses
import json

import pytest

from metahw.compiler.compile import save_build
from metahw.compiler.program import Program
from metahw.sim import HardwareConfig, default_groups, derive_hardware, episode_cycles


@pytest.fixture(scope="module")
def build(lowered, tmp_path_factory):
    return save_build(lowered("protonet"), tmp_path_factory.mktemp("sim") / "build")


def _one_line_error(result, *fragments):
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metahw: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_json_report_matches_the_formula_and_the_golden_executor(cli, build):
    result = cli("simulate", build, "--lanes", 16, "--episodes", 2, "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    program = Program.load(build)
    hw = derive_hardware(program, 16)  # what `metahw build --lanes 16` builds
    budget = episode_cycles(program, hw)
    assert (report["cycles"], report["adaptation_cycles"], report["query_cycles"]) == (
        budget.total,
        budget.adaptation,
        budget.query,
    )
    assert report["golden_matched"] == 2 and report["golden_mismatches"] == []
    assert report["hardware"] == hw.to_json()
    assert hw.groups == default_groups(program, 16) == 4  # 4-channel convs: 4 groups of 4 lanes
    assert report["cycles_per_query"] == budget.query / 6
    assert report["latency_us"] == pytest.approx(budget.total / 200)
    assert {s["name"] for s in report["steps"]} == set(budget.cycles)
    assert 0 < report["conv_utilisation"] <= 1 and report["accuracy"]["episodes"] == 2


def test_text_report_and_vcd(cli, build, tmp_path):
    vcd = tmp_path / "trace.vcd"
    result = cli("simulate", build, "--lanes", 8, "--groups", 1, "--episodes", 1, "--vcd", vcd, "--no-progress")
    assert result.code == 0, result.stderr
    for fragment in (
        "protonet 3-way 2-shot, 6 queries",
        "P=8 lanes (1 group(s) of 8)",
        "support.block1.conv",
        "cycles/episode",
        "per query",
        "MAC utilisation",
        "memory            WMEM",
        "widest operand",
        "1/1 episodes matched bit for bit",
    ):
        assert fragment in result.stdout, fragment
    assert vcd.read_text().startswith("$version metahw cycle simulator")


def test_hardware_config_file_sets_the_other_parameters(cli, build, tmp_path):
    config = HardwareConfig(lanes=4, clock_mhz=100.0, device="ice40-up5k").save(tmp_path / "hw.json")
    result = cli("simulate", build, "--lanes", 32, "--episodes", 1, "--config", config, "--json")
    report = json.loads(result.stdout)
    assert report["hardware"]["lanes"] == 32 and report["hardware"]["device"] == "ice40-up5k"
    assert report["latency_us"] == pytest.approx(report["cycles"] / 100)


def test_bad_input_is_one_line(cli, build, tmp_path):
    _one_line_error(cli("simulate", build, "--lanes", 6), "lanes must be a power of two")
    _one_line_error(cli("simulate", build, "--lanes", 8, "--groups", 16), "groups must be a power of two")
    _one_line_error(cli("simulate", build, "--lanes", 8, "--episodes", 0), "Invalid value for '--episodes'")
    _one_line_error(cli("simulate", tmp_path / "missing", "--lanes", 8), "has no program.json")
    small = dataclasses.replace(HardwareConfig(), act_bytes=100).save(tmp_path / "small.json")
    _one_line_error(cli("simulate", build, "--lanes", 8, "--config", small), "support_x needs", "act_bytes")
