"""Validation of the report data against the schema in the package docstring.

The schema is written as data: a dict is a record whose keys are all required, `MapOf` a
record with free keys, `ListOf` a list, `SectionSpec` a page section that may be replaced by
`None` or `{"not_run": reason}`, and a type (or tuple of types) a leaf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metahw.errors import UserError

NUMBER = (int, float)
STATUSES = ("pass", "fail", "not run")


@dataclass(frozen=True)
class MapOf:
    """A record with arbitrary string keys, every value matching `values`."""

    values: Any


@dataclass(frozen=True)
class ListOf:
    """A list whose items all match `items`."""

    items: Any


@dataclass(frozen=True)
class SectionSpec:
    """A page section: `None`, `{"not_run": reason}`, or a value matching `spec`."""

    spec: Any


ESTIMATE = {"accuracy": NUMBER, "ci95": NUMBER}
RESOURCE_COUNTS = {"LUT": int, "FF": int, "DSP": int, "BRAM": int}

SCHEMA = {
    "title": str,
    "model": {"checkpoint": str, "algorithm": str, "width": int, "depth": int},
    "episode": {"ways": int, "shots": int, "queries": int},
    "bits": int,
    "accuracy": SectionSpec(
        {
            "episodes": int,
            "float": ESTIMATE,
            "fixed": ESTIMATE,
            "agreement_with_float": NUMBER,
            "by_bits": MapOf(ESTIMATE),
        }
    ),
    "numerics": SectionSpec({"sqnr_db": MapOf(NUMBER), "saturation": MapOf(int)}),
    "performance": SectionSpec(
        {
            "lanes": int,
            "groups": int,
            "conv": str,
            "clock_mhz": NUMBER,
            "fmax_mhz": (*NUMBER, type(None)),
            "total_cycles": int,
            "adaptation_cycles": int,
            "query_cycles": int,
            "kernels": ListOf({"label": str, "cycles": int, "utilisation": (*NUMBER, type(None))}),
        }
    ),
    "resources": SectionSpec(
        {
            "target": str,
            "used": RESOURCE_COUNTS,
            "capacity": RESOURCE_COUNTS,
            "fits": bool,
            "fmax_mhz": (*NUMBER, type(None)),
            "suggestions": ListOf(str),
        }
    ),
    "hardware_accuracy": SectionSpec(
        {
            "source": str,
            "lanes": int,
            "rows": ListOf(
                {
                    "setting": str,
                    "episodes": int,
                    "float": ESTIMATE,
                    "8-bit": ESTIMATE,
                    "4-bit": ESTIMATE,
                    "4-bit quantisation": str,
                }
            ),
        }
    ),
    "verification": ListOf({"rung": str, "status": str, "episodes": (int, type(None)), "detail": str}),
}


def not_run_reason(section: dict | None) -> str | None:
    """The reason a section was not run, or None when it holds results."""
    if section is None:
        return "no reason recorded"
    return section.get("not_run")


def validate(data: dict) -> None:
    """Check `data` against `SCHEMA`; raise `UserError` naming the first missing or ill-typed key."""
    _check(data, SCHEMA, "")
    for i, rung in enumerate(data["verification"]):
        if rung["status"] not in STATUSES:
            raise UserError(f"report data: 'verification[{i}].status' is {rung['status']!r}; use one of {STATUSES}")
    _require_positive(data, ("episode", "ways"), ("episode", "shots"), ("episode", "queries"))
    if not_run_reason(data["performance"]) is None:
        _require_positive(data, ("performance", "clock_mhz"), ("performance", "total_cycles"))
    accuracy = data["accuracy"]
    if not_run_reason(accuracy) is None:
        for key in accuracy["by_bits"]:
            if not key.isdigit():
                raise UserError(f"report data: 'accuracy.by_bits' key {key!r} is not a bit width")


def _require_positive(data: dict, *paths: tuple[str, str]) -> None:
    for section, key in paths:
        if data[section][key] <= 0:
            raise UserError(f"report data: '{section}.{key}' must be positive, got {data[section][key]}")


def _check(value: Any, spec: Any, path: str) -> None:
    if isinstance(spec, SectionSpec):
        if value is None:
            return
        if isinstance(value, dict) and "not_run" in value:
            _check(value, {"not_run": str}, path)
            return
        _check(value, spec.spec, path)
    elif isinstance(spec, dict):
        _require_type(value, dict, path)
        for key, sub in spec.items():
            where = f"{path}.{key}" if path else key
            if key not in value:
                raise UserError(f"report data: missing required key '{where}'")
            _check(value[key], sub, where)
    elif isinstance(spec, MapOf):
        _require_type(value, dict, path)
        for key, item in value.items():
            _check(item, spec.values, f"{path}.{key}")
    elif isinstance(spec, ListOf):
        _require_type(value, list, path)
        for i, item in enumerate(value):
            _check(item, spec.items, f"{path}[{i}]")
    else:
        _require_type(value, spec, path)


def _require_type(value: Any, types: type | tuple[type, ...], path: str) -> None:
    allowed = types if isinstance(types, tuple) else (types,)
    is_bool = isinstance(value, bool)
    if not isinstance(value, allowed) or (is_bool and bool not in allowed):
        names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
        raise UserError(f"report data: '{path or '(top level)'}' must be {names}, got {type(value).__name__}")
