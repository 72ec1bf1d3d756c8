"""The real trial function on the tiny checkpoint, with the RTL generator and synthesis stood in for (fast)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from metahw.app.explore.space import Design
from metahw.app.explore.trial import TrialSettings, compiled_program, evaluate_design
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.sim import derive_hardware, episode_cycles


class FakeReport:
    def __init__(self, lanes: int) -> None:
        self.lanes = lanes

    def to_dict(self) -> dict:
        capacity = {"LUT": 24288, "FF": 24288, "DSP": 28, "BRAM": 56}
        used = {"LUT": 500 * self.lanes, "FF": 300 * self.lanes, "DSP": min(self.lanes, 28), "BRAM": 20}
        return {"used": used, "capacity": capacity, "fits": used["LUT"] <= capacity["LUT"], "fmax_mhz": 50.0}


@pytest.fixture
def fake_hardware(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []

    def build_rtl(program: Program, hw, out: Path) -> Path:
        if hw.lanes == 64:
            raise UserError("the 64-lane array needs more block RAM ports than this generator has")
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_text(f'{{"lanes": {hw.lanes}}}')
        calls.append(("rtl", hw.lanes, hw.groups, hw.stream_elements))
        return out

    def synthesize(build_dir: Path, target: str, *, progress: bool = True, pnr_effort: str = "timing") -> FakeReport:
        calls.append(("synth", target, pnr_effort))
        return FakeReport(int(build_dir.joinpath("manifest.json").read_text().split(":")[1].strip(" }")))

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
    assert fake_hardware == [("rtl", 16, 1, 8), ("synth", "ecp5-25k", "timing")]  # G = 1: what `build` builds

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
