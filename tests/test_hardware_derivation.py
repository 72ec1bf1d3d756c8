"""One derivation of the hardware: every command measures the design that `metahw build` builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metahw.app.explore.space import Design
from metahw.app.explore.trial import TrialSettings, compiled_program, evaluate_design
from metahw.cli import run
from metahw.compiler.program import Program
from metahw.compiler.widths import widest
from metahw.hardware import HardwareConfig, default_groups, derive_hardware

LANES = 16  # the tiny checkpoint's 4-channel convs keep G = 4 groups of 4 lanes busy


class Captured(Exception):
    """Raised by a stand-in once it has recorded the config a command handed to the expensive work."""


@pytest.fixture(scope="module")
def program_folder(tiny_checkpoint: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 6-bit program that `explore` compiles for the tiny checkpoint (every command below uses it)."""
    settings = TrialSettings(tmp_path_factory.mktemp("explore"), "ecp5-25k", episodes=3, queries=2, data=data_dir)
    return compiled_program(str(tiny_checkpoint), 6, settings)


def test_defaults_are_the_rtl_buildable_design(program_folder: Path):
    program = Program.load(program_folder)
    hw = derive_hardware(program, LANES)
    assert default_groups(program, LANES) == hw.groups == 4
    assert hw.acc_bits == widest(program)["accumulator"] < HardwareConfig().acc_bits
    assert hw.stream_elements == 4  # E divides L = 4
    assert derive_hardware(program, 4).stream_elements == 4  # E divides P
    assert derive_hardware(program, LANES, groups=1).groups == 1  # asked for


def test_a_config_file_keeps_its_groups_unless_its_lanes_change(program_folder: Path):
    program = Program.load(program_folder)
    base = HardwareConfig(lanes=16, groups=4, acc_bits=20, clock_mhz=100.0)
    assert (derive_hardware(program, base=base).groups, derive_hardware(program, 16, base=base).groups) == (4, 4)
    moved = derive_hardware(program, 32, base=base)
    assert (moved.lanes, moved.groups, moved.clock_mhz) == (32, default_groups(program, 32), 100.0)
    assert moved.acc_bits == min(20, widest(program)["accumulator"])


def test_every_command_measures_the_design_build_builds(
    program_folder: Path, tiny_checkpoint: Path, data_dir: Path, tmp_path: Path, monkeypatch, capsys
):
    monkeypatch.setenv("METAHW_DATA", str(data_dir))
    folder, lanes = str(program_folder), str(LANES)
    assert run(["build", folder, "--backend", "amaranth", "--lanes", lanes, "-o", str(tmp_path / "rtl")]) == 0
    built = json.loads((tmp_path / "rtl" / "manifest.json").read_text())["hardware"]
    seen: dict[str, dict] = {}

    capsys.readouterr()
    assert run(["simulate", folder, "--lanes", lanes, "--episodes", "1", "--json"]) == 0
    seen["simulate"] = json.loads(capsys.readouterr().out)["hardware"]

    def record(command: str):
        def stand_in(program: Program, hw: HardwareConfig, *args, **kwargs):
            seen[command] = hw.to_json()
            raise Captured

        return stand_in

    monkeypatch.setattr("metahw.cli.rtl.check_rtl_episodes", record("simulate --rtl"))
    with pytest.raises(Captured):
        run(["simulate", folder, "--lanes", lanes, "--episodes", "1", "--rtl", "verilator"])

    monkeypatch.setattr("metahw.hw.amaranth.build.build_rtl", record("explore"))
    settings = TrialSettings(program_folder.parents[2], "ecp5-25k", episodes=3, queries=2, data=data_dir)
    assert compiled_program(str(tiny_checkpoint), 6, settings) == program_folder  # explore's own program
    with pytest.raises(Captured):
        evaluate_design(Design(str(tiny_checkpoint), 4, 6, LANES), settings)

    from metahw.app.demo import demo_hardware, start_synthesis

    monkeypatch.setattr("metahw.app.demo.ensure_rtl", record("demo"))
    program = Program.load(program_folder)
    with pytest.raises(Captured):
        start_synthesis(program, demo_hardware(program, LANES, False), tmp_path / "demo", "ecp5-25k", [])

    assert seen.keys() == {"simulate", "simulate --rtl", "explore", "demo"}
    assert all(hardware == built for hardware in seen.values()), {"build": built, **seen}


def test_winograd_is_derived_alike_by_build_simulate_and_the_demo(program_folder: Path, tmp_path: Path, capsys):
    """`--winograd` widens the operands and accumulators the same way everywhere; the demo picks it by itself."""
    from metahw.app.demo import demo_hardware

    folder, lanes = str(program_folder), str(LANES)
    assert run(["build", folder, "--backend", "amaranth", "--lanes", lanes, "--winograd", "-o", str(tmp_path)]) == 0
    built = json.loads((tmp_path / "manifest.json").read_text())["hardware"]
    capsys.readouterr()
    assert run(["simulate", folder, "--lanes", lanes, "--winograd", "--episodes", "1", "--json"]) == 0
    simulated = json.loads(capsys.readouterr().out)["hardware"]
    program = Program.load(program_folder)
    assert built["winograd"] and built == simulated == demo_hardware(program, LANES, None).to_json()
    assert demo_hardware(program, LANES, False) == derive_hardware(program, LANES)
