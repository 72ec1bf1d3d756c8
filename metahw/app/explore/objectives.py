"""What the exploration optimises: accuracy (up), latency in ms (down), LUTs (down), and feasibility."""

from __future__ import annotations

import math
from dataclasses import dataclass

from metahw.errors import UserError


@dataclass(frozen=True)
class Objective:
    """One objective: its CLI name, optuna direction, key in a record's `objectives` and table heading."""

    name: str
    direction: str
    key: str
    heading: str

    @property
    def maximise(self) -> bool:
        """True when larger is better."""
        return self.direction == "maximize"


OBJECTIVES = {
    "accuracy": Objective("accuracy", "maximize", "accuracy", "accuracy %"),
    "latency": Objective("latency", "minimize", "latency_ms", "latency ms"),
    "luts": Objective("luts", "minimize", "luts", "LUTs"),
}


def parse_objectives(text: str) -> tuple[Objective, ...]:
    """`accuracy,latency,luts` (any non-empty subset, in the order given) -> the objectives."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in OBJECTIVES]
    if not names or unknown or len(set(names)) != len(names):
        raise UserError(
            f"`objectives` takes distinct names from {', '.join(OBJECTIVES)} separated by commas, got {text!r}.",
            ("objectives",),
        )
    return tuple(OBJECTIVES[n] for n in names)


def objective_values(record: dict, objectives: tuple[Objective, ...]) -> list[float]:
    """The record's values in objective order; a missing one (no LUT count) is the worst value."""
    values = []
    for objective in objectives:
        value = record["objectives"].get(objective.key)
        values.append(float(value) if value is not None else (-math.inf if objective.maximise else math.inf))
    return values


def violation(record: dict) -> float:
    """Optuna constraint value: <= 0 when the design fits the target, else its worst overuse (>= 1 if unknown)."""
    if record.get("fits"):
        return 0.0
    resources = record.get("resources", {})
    used = {k.upper(): v for k, v in resources.get("used", {}).items()}
    capacity = {k.upper(): v for k, v in resources.get("capacity", {}).items()}
    ratios = [used[k] / capacity[k] - 1.0 for k in used if capacity.get(k)]
    return max([*ratios, 0.0]) or 1.0
