"""The Pareto front of the feasible designs, the issue's target mark, and the front as a table and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from metahw.app.explore.objectives import Objective, objective_values
from metahw.app.explore.space import Design
from metahw.atomic import write_text_atomic


def feasible(record: dict) -> bool:
    """True for a completed trial whose design fits the target."""
    return record.get("state") == "complete" and bool(record.get("fits"))


def meets_target(record: dict) -> bool:
    """The issue's target: the design fits the device and stays within 0.5 points of float accuracy."""
    return feasible(record) and bool(record.get("within_float"))


def _costs(record: dict, objectives: tuple[Objective, ...]) -> list[float]:
    values = objective_values(record, objectives)
    return [-v if o.maximise else v for v, o in zip(values, objectives)]


def dominates(a: list[float], b: list[float]) -> bool:
    """True when costs `a` are nowhere worse than `b` and somewhere better (lower is better)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(records: list[dict], objectives: tuple[Objective, ...]) -> list[dict]:
    """Non-dominated feasible records (one per design), best first in the first objective."""
    designs: dict[tuple, dict] = {}
    for record in filter(feasible, records):
        designs.setdefault(tuple(sorted(record["params"].items())), record)
    costs = {key: _costs(record, objectives) for key, record in designs.items()}
    front = [designs[k] for k, c in costs.items() if not any(dominates(other, c) for other in costs.values())]
    return sorted(front, key=lambda r: _costs(r, objectives))


def largest_fitting_lanes(records: list[dict]) -> list[dict]:
    """Per (checkpoint, bits): the largest P among the explored designs that fits the target, and its record.

    The widest MAC array the device holds; its lanes past the DSP blocks multiply in LUTs
    (`dsp_lanes`, chosen by the trial when the multipliers would not fit otherwise); `act_ports`
    1 when its activation banks are single-ported for the device's SPRAM.
    """
    best: dict[tuple, dict] = {}
    for record in filter(feasible, records):
        params = record["params"]
        key = (params["checkpoint"], params["bits"])
        if key not in best or params["lanes"] > best[key]["params"]["lanes"]:
            best[key] = record
    return [
        {
            "checkpoint": key[0],
            "bits": key[1],
            "lanes": record["params"]["lanes"],
            "dsp_lanes": record.get("resources", {}).get("dsp_lanes"),
            "act_ports": record.get("resources", {}).get("act_ports", 2),
            "trial": record["trial"],
            "latency_ms": record["objectives"]["latency_ms"],
        }
        for key, record in sorted(best.items())
    ]


def _summary(record: dict) -> dict:
    resources = record.get("resources", {})
    return {
        "trial": record["trial"],
        "params": record["params"],
        "objectives": record["objectives"],
        "accuracy": record["accuracy"],
        "float_accuracy": record["float_accuracy"],
        "cycles": record["cycles"]["total"],
        "clock_mhz": record["clock_mhz"],
        "clock_source": record["clock_source"],
        "used": resources.get("used"),
        "fits": record["fits"],
        "within_float": record["within_float"],
        "meets_target": meets_target(record),
    }


def pareto_document(records: list[dict], front: list[dict], objectives: tuple[Objective, ...], target: str) -> dict:
    """pareto.json's content: counts, the objectives, and each front design with the target mark."""
    complete = [r for r in records if r.get("state") == "complete"]
    return {
        "target": target,
        "objectives": [o.name for o in objectives],
        "trials": len(complete),
        "failed": len(records) - len(complete),
        "feasible": sum(map(feasible, complete)),
        "front": [_summary(r) for r in front],
        "largest_fitting_lanes": largest_fitting_lanes(complete),
        "meets_target": [r["trial"] for r in front if meets_target(r)],
    }


def write_pareto_json(document: dict, path: Path) -> None:
    """Write the document atomically."""
    write_text_atomic(path, json.dumps(document, indent=2) + "\n")


def front_table(front: list[dict], target: str) -> Table:
    """The front as a rich table, one row per design; `target` says whether it fits within 0.5 points of float."""
    nominal = any(r["clock_source"] != "fmax" for r in front)
    caption = "* nominal clock (no fmax)" if nominal else None
    table = Table(title=f"Pareto front on {target} ({len(front)} designs)", caption=caption)
    for heading in ("trial", "design", "accuracy %", "float %", "latency ms", "MHz", "LUTs", "target"):
        table.add_column(heading, justify="left" if heading in ("design", "target") else "right")
    for record in front:
        acc, values = record["accuracy"], record["objectives"]
        drop = 100 * (acc["accuracy"] - record["float_accuracy"]["accuracy"])
        table.add_row(
            str(record["trial"]),
            Design(**record["params"]).label(),
            f"{100 * acc['accuracy']:.2f}±{100 * acc['ci95']:.2f}",
            f"{100 * record['float_accuracy']['accuracy']:.2f}",
            f"{values['latency_ms']:.4g}",
            f"{record['clock_mhz']:.1f}" + ("" if record["clock_source"] == "fmax" else "*"),
            "-" if values.get("luts") is None else f"{values['luts']:,}",
            "yes" if meets_target(record) else f"no, {drop:+.2f} pt",
        )
    return table
