"""The real trial function on the tiny checkpoint, with the RTL generator and synthesis stood in for (fast)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from metahw.app.explore.space import Design
from metahw.app.explore.trial import TrialSettings, compiled_program, evaluate_design
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.sim import derive_hardware, episode_cycles


class FakeReport:
    """One DSP block per hard lane plus one other; 500 LUTs per lane and 100 more per soft lane."""

    def __init__(self, lanes: int, hard: int) -> None:
        self.lanes, self.hard = lanes, hard

    def to_dict(self) -> dict:
        capacity = {"LUT": 24288, "FF": 24288, "DSP": 28, "BRAM": 56}
        luts = 500 * self.lanes + 100 * (self.lanes - self.hard)
        used = {"LUT": luts, "FF": 300 * self.lanes, "DSP": self.hard + 1, "BRAM": 20}
        fits = all(used[k] <= capacity[k] for k in used)
        return {"used": used, "capacity": capacity, "fits": fits, "fmax_mhz": 50.0 if fits else None}


@pytest.fixture
def fake_hardware(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []

    def build_rtl(program: Program, hw, out: Path) -> Path:
        if hw.lanes == 64:
            raise UserError("the 64-lane array needs more block RAM ports than this generator has")
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_text(json.dumps({"lanes": hw.lanes, "hard": hw.hard_multipliers}))
        calls.append(("rtl", hw.lanes, hw.groups, hw.stream_elements, hw.act_ports))
        return out

    def synthesize(
        build_dir: Path, target: str, *, progress: bool = True, pnr_effort: str = "timing", pnr_timeout: float | None
    ) -> FakeReport:
        calls.append(("synth", target, pnr_effort))
        manifest = json.loads(build_dir.joinpath("manifest.json").read_text())
        return FakeReport(manifest["lanes"], manifest["hard"])

    monkeypatch.setattr("metahw.hw.amaranth.build.build_rtl", build_rtl)
    monkeypatch.setattr("metahw.hw.synth.report.synthesize", synthesize)
    return calls


def test_measurements_are_computed_once(tiny_checkpoint: Path, data_dir: Path, tmp_path: Path, fake_hardware: list):
    settings = TrialSettings(tmp_path, "ecp5-25k", episodes=6, queries=3, data=data_dir)
    design = Design(str(tiny_checkpoint), 4, 6, 16)
    record = evaluate_design(design, settings)
    assert record["cached"] == {"float_accuracy": False, "accuracy": False, "cycles": False, "resources": False}
    assert record["accuracy"]["episodes"] == record["float_accuracy"]["episodes"] == 6
    assert 0 < record["accuracy"]["accuracy"] <= 1 and record["accuracy"]["ci95"] >= 0
    program = Program.load(compiled_program(design.checkpoint, 6, settings))
    cycles = episode_cycles(program, derive_hardware(program, 16)).total
    assert record["cycles"]["total"] == cycles
    assert record["objectives"] == pytest.approx(
        {"accuracy": record["accuracy"]["accuracy"], "latency_ms": cycles / 50e3, "luts": 8000}
    )
    assert record["fits"] and record["clock_source"] == "fmax"
    # 4-channel convs: 4 groups of 4 lanes, E = 4 divides them: what `build` builds
    assert fake_hardware == [("rtl", 16, 4, 4, 2), ("synth", "ecp5-25k", "timing")]

    other_lanes = evaluate_design(Design(str(tiny_checkpoint), 4, 6, 4), settings)
    assert other_lanes["cached"] == {"float_accuracy": True, "accuracy": True, "cycles": False, "resources": False}
    assert other_lanes["accuracy"] == record["accuracy"]
    again = evaluate_design(design, settings)
    assert all(again["cached"].values()) and again["objectives"] == record["objectives"]
    assert len(fake_hardware) == 4
    fast = evaluate_design(design, dataclasses.replace(settings, pnr="fast"))  # another placement: placed again
    assert fast["cached"]["accuracy"] and not fast["cached"]["resources"]
    assert fake_hardware[-1] == ("synth", "ecp5-25k", "fast")


def test_a_design_the_generator_rejects_does_not_fit(
    tiny_checkpoint: Path, data_dir: Path, tmp_path: Path, fake_hardware: list
):
    settings = TrialSettings(tmp_path, "ecp5-25k", episodes=3, queries=2, data=data_dir)
    record = evaluate_design(Design(str(tiny_checkpoint), 4, 8, 64), settings)
    assert not record["fits"] and "block RAM" in record["resources"]["error"]
    assert record["objectives"]["luts"] is None and record["clock_source"] == "nominal"


def test_a_design_with_more_multipliers_than_dsp_blocks_goes_on_in_luts(
    tiny_checkpoint: Path, data_dir: Path, tmp_path: Path, fake_hardware: list
):
    """P = 32 needs 33 of 28 DSP blocks: built again with 27 lanes on DSP blocks and 5 in LUTs, which fits."""
    settings = TrialSettings(tmp_path, "ecp5-25k", episodes=3, queries=2, data=data_dir)
    record = evaluate_design(Design(str(tiny_checkpoint), 4, 8, 32), settings)
    assert record["fits"] and record["resources"]["dsp_lanes"] == 27
    assert record["resources"]["used"] == {"LUT": 16500, "FF": 9600, "DSP": 28, "BRAM": 20}
    assert [call[:2] for call in fake_hardware] == [("rtl", 32), ("synth", "ecp5-25k")] * 2
    assert "dsp_lanes" not in evaluate_design(Design(str(tiny_checkpoint), 4, 8, 16), settings)["resources"]


def test_a_device_with_spram_gets_single_port_activation_banks(
    tiny_checkpoint: Path, data_dir: Path, tmp_path: Path, fake_hardware: list
):
    """The UP5K's SPRAM holds only single-port RAM: explore builds its activation banks so (same cycles)."""
    settings = TrialSettings(tmp_path, "ice40-up5k", episodes=3, queries=2, data=data_dir)
    record = evaluate_design(Design(str(tiny_checkpoint), 4, 8, 2), settings)
    assert fake_hardware[0] == ("rtl", 2, 1, 2, 1) and record["resources"]["act_ports"] == 1
    program = Program.load(compiled_program(str(tiny_checkpoint), 8, settings))
    assert record["cycles"]["total"] == episode_cycles(program, derive_hardware(program, 2, act_ports=1)).total


def test_a_design_whose_placement_runs_past_the_limit_does_not_fit(
    tiny_checkpoint: Path, data_dir: Path, tmp_path: Path, fake_hardware: list, monkeypatch: pytest.MonkeyPatch
):
    """nextpnr stopped at `pnr_timeout` (stood in for): the design is not chosen, the limit is in the cache key."""
    limits = []

    def stopped(
        build_dir: Path, target: str, *, progress: bool, pnr_effort: str, pnr_timeout: float | None
    ) -> SimpleNamespace:
        limits.append(pnr_timeout)
        report = {**FakeReport(16, 16).to_dict(), "fmax_mhz": None, "pnr_outcome": "timeout"}
        return SimpleNamespace(to_dict=lambda: {**report, "pnr_timeout_s": pnr_timeout})

    monkeypatch.setattr("metahw.hw.synth.report.synthesize", stopped)
    settings = TrialSettings(tmp_path, "ecp5-25k", episodes=3, queries=2, data=data_dir, pnr_timeout=60)
    record = evaluate_design(Design(str(tiny_checkpoint), 4, 6, 16), settings)
    assert limits == [60] and not record["fits"] and "within the 60 s limit" in record["resources"]["error"]
    longer = evaluate_design(Design(str(tiny_checkpoint), 4, 6, 16), dataclasses.replace(settings, pnr_timeout=600))
    assert limits == [60, 600] and not longer["cached"]["resources"]
