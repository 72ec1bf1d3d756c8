"""The real design-space exploration: Conv-4-32 and Conv-4-64 ProtoNets on an ECP5-25K, 24 trials.

    .venv/bin/python benchmarks/explore.py [--checkpoints zoo:protonet32 zoo:protonet] [--target ecp5-25k]
                                           [--budget 24] [--bits 4..8] [--lanes 2,4,8] [--episodes 200]
                                           [--pnr timing|fast] [--workers W] [--results DIR] [--data PATH]

Runs `metahw explore CHECKPOINTS ...` (RTL generation, synthesis and place-and-route of every
design), timed, in a results folder that a rerun resumes (delete it for a fresh measurement).
Then reads trials.jsonl and pareto.json and writes benchmarks/results/explore.json: the
command, the wall time, per-measurement seconds (fresh and cached), every trial's design and
objectives, and the front with the designs that fit and stay within 0.5 points of float.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from metahw.app.explore.study import read_trials
from metahw.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("float_accuracy", "accuracy", "cycles", "resources")


def _timings(records: list[dict]) -> dict:
    """Mean and max seconds of each measurement over the trials that computed it (not from the cache)."""
    table = {}
    for step in STEPS:
        fresh = [r["timings"][f"{step}_s"] for r in records if not r["cached"][step]]
        mean = statistics.fmean(fresh) if fresh else None
        table[step] = {
            "computed": len(fresh),
            "cached": len(records) - len(fresh),
            "mean_s": mean,
            "max_s": max(fresh, default=None),
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", default=["zoo:protonet32", "zoo:protonet"])
    parser.add_argument("--target", default="ecp5-25k")
    parser.add_argument("--budget", type=int, default=24)
    parser.add_argument("--bits", default="4..8")
    parser.add_argument("--lanes", default="2,4,8")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--pnr", choices=("timing", "fast"), default="timing")
    parser.add_argument("--results", type=Path, default=ROOT / "out" / "explore-benchmark")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "explore.json")
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()

    command = [
        str(Path(sys.executable).with_name("metahw")),
        "explore",
        *args.checkpoints,
        "--target",
        args.target,
        "--budget",
        str(args.budget),
        "--bits",
        args.bits,
        "--lanes",
        args.lanes,
        "--episodes",
        str(args.episodes),
        "--pnr",
        args.pnr,
        "-o",
        str(args.results),
    ]
    command += ["--workers", str(args.workers)] if args.workers else []
    command += ["--data", str(args.data)] if args.data else []
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started

    records = [r for r in read_trials(args.results / "trials.jsonl") if r["state"] == "complete"]
    pareto = json.loads((args.results / "pareto.json").read_text())
    result = {
        "command": " ".join(command[1:]),
        "wall_s": wall,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor()},
        "trials": len(records),
        "timings": _timings(records),
        "designs": [
            {
                "trial": r["trial"],
                **r["params"],
                **r["objectives"],
                "fits": r["fits"],
                "clock_mhz": r["clock_mhz"],
                "clock_source": r["clock_source"],
            }
            for r in records
        ],
        "pareto": pareto,
    }
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(
        f"{len(records)} trials in {wall:.0f} s; {len(pareto['front'])} on the front, "
        f"{len(pareto['meets_target'])} fit {args.target} within 0.5 points of float; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
