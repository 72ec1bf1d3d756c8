"""The CLI's promises beyond bad input: Ctrl-C, one writer per output, config files, seeds in the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metahw.cli import INTERRUPTED, run
from metahw.cli.rtl import _first_target
from metahw.hardware import HardwareConfig
from metahw.outputs import exclusive


@pytest.fixture(autouse=True)
def _data(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("METAHW_DATA", str(data_dir))


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_prints_one_line_exits_130_and_leaves_no_build(shared, tmp_path, monkeypatch, capsys):
    import metahw.compiler.compile as compile_module

    monkeypatch.setattr(compile_module, "calibrate", _interrupt)
    out = tmp_path / "b"
    code = run(["compile", str(shared["onnx"]), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == INTERRUPTED == 130
    assert len(err) == 1 and err[0].startswith("metahw: interrupted"), err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_ctrl_c_keeps_an_earlier_build_intact(shared, tmp_path, monkeypatch):
    import metahw.compiler.compile as compile_module

    earlier = tmp_path / "b"
    assert run(["compile", str(shared["onnx"]), "--calibration-episodes", "2", "-o", str(earlier)]) == 0
    before = {p.name: p.read_bytes() for p in earlier.iterdir()}
    monkeypatch.setattr(compile_module, "calibrate", _interrupt)
    assert run(["compile", str(shared["onnx"]), "--bits", "6", "-o", str(earlier)]) == INTERRUPTED
    assert {p.name: p.read_bytes() for p in earlier.iterdir()} == before


def test_a_second_writer_of_one_output_is_refused(shared, tmp_path, capsys):
    out = tmp_path / "b"
    with exclusive(out, "build"):  # another command is writing this build right now
        code = run(["compile", str(shared["onnx"]), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "another metahw command is writing" in err
    assert not out.exists()
    assert run(["compile", str(shared["onnx"]), "--calibration-episodes", "2", "-o", str(out)]) == 0  # claim released


def test_simulate_reads_lanes_and_groups_from_the_config_and_records_its_seed(shared, tmp_path, capsys):
    config = HardwareConfig(lanes=4, groups=2).save(tmp_path / "hw.json")
    args = ["simulate", str(shared["prog"]), "--config", str(config), "--episodes", "1", "--seed", "7", "--json"]
    assert run(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["hardware"]["lanes"], report["hardware"]["groups"], report["seed"]) == (4, 2, 7)
    assert run([*args[:-1], "--lanes", "8", "--json"]) == 0  # --lanes wins over the file; G follows the new P
    assert json.loads(capsys.readouterr().out)["hardware"]["lanes"] == 8


@pytest.mark.parametrize(
    ("memory_bits", "target"),
    [
        (100 * 1024, "ice40-up5k"),
        (120 * 1024 + 1, "ecp5-25k"),
        (1008 * 1024, "ecp5-25k"),
        (1008 * 1024 + 1, "ecp5-85k"),
    ],
)
def test_build_suggests_the_smallest_part_whose_block_ram_has_the_bits(memory_bits, target):
    """UP5K: 30 x 4 kbit EBR; ECP5-25k: 56 x 18 kbit DP16KD; anything larger: the 85k."""
    assert _first_target(memory_bits) == target
