"""Fill the report's `accuracy` and `numerics` sections from a `compare.json` (compiler/compare.py)."""

from __future__ import annotations

from metahw.errors import UserError


def sections_from_compare(comparison: dict, bits: int) -> dict:
    """The `accuracy` and `numerics` sections for `bits` from the dict `metahw compare`/`metahw demo` write.

    Float accuracy is PyTorch's; `by_bits` holds every bit width the comparison ran. Raises
    `UserError` if the comparison has no `bits`-bit row.
    """
    fixed_rows = comparison["fixed"]
    if str(bits) not in fixed_rows:
        raise UserError(f"the comparison has no {bits}-bit run; it has bits {', '.join(fixed_rows) or 'none'}")
    fixed = fixed_rows[str(bits)]

    def estimate(summary: dict) -> dict:
        return {"accuracy": summary["accuracy"], "ci95": summary["ci95"]}

    return {
        "accuracy": {
            "episodes": comparison["episodes"],
            "float": estimate(comparison["float"]["torch"]),
            "fixed": estimate(fixed["accuracy"]),
            "agreement_with_float": fixed["agreement_with_float"],
            "by_bits": {b: estimate(row["accuracy"]) for b, row in fixed_rows.items()},
        },
        "numerics": {"sqnr_db": dict(fixed["sqnr_db"]), "saturation": dict(fixed["saturation"])},
    }
