"""A cheap stand-in for the trial function: synthetic measurements, a call log, an optional interruption."""

from __future__ import annotations

import fcntl
from pathlib import Path

from metahw.app.explore.space import Candidate, Design, SearchSpace

#: LUTs of the fake target: designs above it do not fit
CAPACITY = 4000


def space(
    bits: tuple[int, ...] = (4, 8), lanes: tuple[int, ...] = (4, 16), widths: tuple[int, ...] = (32,)
) -> SearchSpace:
    return SearchSpace(tuple(Candidate(f"ckpt-w{w}.pt", w) for w in widths), bits, lanes)


def _log_call(log: Path, design: Design) -> int:
    """Append the design to the log; the number of calls so far, this one included."""
    with open(log, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(design.label() + "\n")
        fh.flush()
        fh.seek(0)
        return len(fh.read().splitlines())


def fake_evaluate(
    design: Design, log: Path | None = None, interrupt_at: int | None = None, fail_at: int | None = None
) -> dict:
    """More bits: more accurate; more lanes: faster; both cost LUTs. The n-th call can raise."""
    calls = _log_call(log, design) if log is not None else 0
    if calls == interrupt_at:
        raise KeyboardInterrupt
    if calls == fail_at:
        raise RuntimeError(f"synthetic failure of {design.label()}")
    luts = 40 * design.lanes * design.bits + design.width
    accuracy = 0.9 + 0.01 * design.bits + 0.0001 * design.width
    return {
        "accuracy": {"accuracy": accuracy, "ci95": 0.01, "episodes": 10},
        "float_accuracy": {"accuracy": 0.985, "ci95": 0.01, "episodes": 10},
        "cycles": {"total": 1_000_000 // design.lanes},
        "resources": {"used": {"LUT": luts}, "capacity": {"LUT": CAPACITY}, "fits": luts <= CAPACITY},
        "objectives": {"accuracy": accuracy, "latency_ms": 10.0 / design.lanes, "luts": luts},
        "fits": luts <= CAPACITY,
        "within_float": accuracy >= 0.98,
        "clock_mhz": 100.0,
        "clock_source": "nominal",
        "timings": {"total_s": 0.0},
    }


def fake_trial(design: Design, settings: object) -> dict:
    """`evaluate_design`'s signature over `fake_evaluate` (for the CLI, whose trial function takes settings)."""
    return fake_evaluate(design)
