"""Plain-dict reports of simulated runs: per-op cycles and utilisation, phases, latency, memory, widths."""

from __future__ import annotations

from metahw.compiler.kernels import Conv2d
from metahw.compiler.program import Program
from metahw.compiler.widths import widest
from metahw.hardware import HardwareConfig
from metahw.sim.plan import build_plan
from metahw.sim.simulator import SimRun


def conv_utilisation(program: Program, run: SimRun) -> float:
    """MAC-array utilisation over the Conv2d ops only (lane-MACs / (P x their cycles))."""
    names = [op.name for op in program.ops if isinstance(op, Conv2d)]
    cycles = sum(run.cycles[n] for n in names)
    return sum(run.lane_macs[n] for n in names) / (run.lanes * cycles) if cycles else 0.0


def run_report(program: Program, hw: HardwareConfig, run: SimRun) -> dict:
    """Cycles (total, phases, per query, per op and I/O step), utilisation, latency, traffic, memory and widths."""
    queries = program.meta.queries
    plan = build_plan(program, hw)
    ops = {op.name: op for op in program.ops}
    steps = [
        {
            "name": label,
            "op": ops[label].op if label in ops else "io",
            "cycles": cycles,
            "lane_macs": run.lane_macs.get(label, 0),
            "utilisation": run.utilisation(label),
        }
        for label, cycles in run.cycles.items()
    ]
    return {
        "hardware": hw.to_json(),
        "cycles": run.total_cycles,
        "adaptation_cycles": run.adaptation_cycles,
        "query_cycles": run.query_cycles,
        "cycles_per_query": run.query_cycles / queries,
        "latency_us": 1e6 * hw.seconds(run.total_cycles),
        "latency_per_query_us": 1e6 * hw.seconds(run.query_cycles) / queries,
        "mac_utilisation": run.utilisation(),
        "conv_utilisation": conv_utilisation(program, run),
        "steps": steps,
        "traffic": {name: {"reads": r, "writes": w} for name, (r, w) in run.traffic.items()},
        "saturation": {name: count for name, count in run.saturation.items() if count},
        "memory_bytes": {memory: p.end for memory, p in plan.memory_use().items()},
        "widest": widest(program),
    }
