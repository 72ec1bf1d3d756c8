"""The front on known points, infeasible exclusion, the target mark, the JSON document and the plot."""

from __future__ import annotations

import json
from pathlib import Path

from metahw.app.explore.objectives import OBJECTIVES, parse_objectives, violation
from metahw.app.explore.pareto import (
    dominates,
    largest_fitting_lanes,
    meets_target,
    pareto_document,
    pareto_front,
    write_pareto_json,
)
from metahw.app.explore.plot import plot_pareto

ALL = tuple(OBJECTIVES.values())


def _record(
    trial: int, accuracy: float, latency: float, luts: int, fits: bool = True, lanes: int | None = None
) -> dict:
    return {
        "trial": trial,
        "state": "complete",
        "params": {"checkpoint": "a.pt", "width": 32, "bits": 8, "lanes": lanes or 2**trial},
        "objectives": {"accuracy": accuracy, "latency_ms": latency, "luts": luts},
        "accuracy": {"accuracy": accuracy, "ci95": 0.01, "episodes": 10},
        "float_accuracy": {"accuracy": 0.95, "ci95": 0.01, "episodes": 10},
        "cycles": {"total": int(latency * 1e5)},
        "clock_mhz": 100.0,
        "clock_source": "nominal",
        "resources": {"used": {"LUT": luts}, "capacity": {"LUT": 1000}, "fits": fits},
        "fits": fits,
        "within_float": accuracy >= 0.945,
    }


POINTS = [
    _record(0, 0.95, 4.0, 100),  # front: most accurate of the cheap ones
    _record(1, 0.94, 2.0, 200),  # front: faster
    _record(2, 0.93, 2.0, 300),  # dominated by 1
    _record(3, 0.96, 1.0, 2000, fits=False),  # would dominate everything, but does not fit
    _record(4, 0.90, 1.0, 900),  # front: fastest that fits
    _record(5, 0.90, 1.0, 950),  # dominated by 4
]


def test_dominance():
    assert dominates([1, 1], [1, 2]) and not dominates([1, 2], [1, 2]) and not dominates([0, 3], [1, 2])


def test_front_of_known_points_excludes_infeasible_and_dominated():
    front = pareto_front(POINTS, ALL)
    assert [r["trial"] for r in front] == [0, 1, 4]
    assert [r["trial"] for r in pareto_front(POINTS, parse_objectives("accuracy"))] == [0]
    # without LUTs, 4 and 5 tie: neither dominates the other
    assert [r["trial"] for r in pareto_front(POINTS, parse_objectives("latency,accuracy"))] == [4, 5, 1, 0]


def test_the_same_design_twice_is_one_front_point():
    twice = [*POINTS, {**POINTS[0], "trial": 9}]
    assert [r["trial"] for r in pareto_front(twice, ALL)] == [0, 1, 4]


def test_failed_trials_are_ignored():
    failed = {"trial": 7, "state": "failed", "params": POINTS[0]["params"], "error": "RuntimeError: x"}
    assert [r["trial"] for r in pareto_front([failed, *POINTS], ALL)] == [0, 1, 4]


def test_target_mark_and_violation():
    assert meets_target(POINTS[0]) and not meets_target(POINTS[1]) and not meets_target(POINTS[3])
    assert violation(POINTS[0]) == 0.0 and violation(POINTS[3]) == 1.0
    assert violation({"fits": False}) == 1.0


def test_document_and_plot(tmp_path: Path):
    front = pareto_front(POINTS, ALL)
    failed = {"trial": 7, "state": "failed", "params": POINTS[0]["params"], "error": "x"}
    document = pareto_document([*POINTS, failed], front, ALL, "ecp5-25k")
    write_pareto_json(document, tmp_path / "pareto.json")
    loaded = json.loads((tmp_path / "pareto.json").read_text())
    assert loaded["trials"] == 6 and loaded["failed"] == 1 and loaded["feasible"] == 5
    assert [d["trial"] for d in loaded["front"]] == [0, 1, 4] and loaded["meets_target"] == [0]
    assert [d["meets_target"] for d in loaded["front"]] == [True, False, False]
    plot_pareto([*POINTS, failed], front, tmp_path / "pareto.png", "ecp5-25k")
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_largest_fitting_lanes_per_checkpoint_and_bits():
    """Trial 3 (P = 8) does not fit, so P = 32 of trial 5 is the largest that fits; 4-bit designs get their own row."""
    soft = {**POINTS[5], "resources": {**POINTS[5]["resources"], "dsp_lanes": 27}}
    four_bit = {**POINTS[0], "trial": 7, "params": {**POINTS[0]["params"], "bits": 4}}
    rows = largest_fitting_lanes([*POINTS[:5], soft, four_bit])
    assert [(r["bits"], r["lanes"], r["trial"], r["dsp_lanes"]) for r in rows] == [(4, 1, 7, None), (8, 32, 5, 27)]
    assert pareto_document(POINTS, [], ALL, "ecp5-25k")["largest_fitting_lanes"][0]["lanes"] == 32
