"""Property benchmark: random kernel configurations, golden == simulator == formula, and golden == Verilator.

    .venv/bin/python benchmarks/kernel_properties.py [--seed 0] [--cases 1000] [--verilator 50]
        [--out out/kernel_properties/kernel_properties.json] [--only INDEX] [--quiet] [--winograd]

Each configuration is one random episode Program (an embedding chain and one or two heads,
random shapes, bit widths, per-op formats, rounding and overflow modes), a random hardware
config (lanes, groups, stream elements) and random inputs: `tests/sim/random_programs.py`,
a pure function of (seed, index). For every configuration:

1. the simulator equals the golden executor on every buffer and saturation count, and its
   cycles equal the closed-form `episode_cycles` and each op's `Kernel.cycles`
   (`tests/sim/harness.sim_problems`);
2. the RTL generator is asked for a plan on the config the RTL is built with (`derive_hardware`);
   a refusal is recorded with its reason and not counted as a Verilator run;
3. the first `--verilator` accepted configurations are built (Amaranth -> Verilog ->
   Verilator, one job) and run twice (without and with random stream stalls): every output
   must equal the golden executor's, every instruction issue cycle and the total the
   simulator's on that config.

`--winograd` runs the configurations whose convs can all run as Winograd F(2x2, 3x3) (3x3,
stride 1, pooled) on Winograd hardware and records the others as refused.

Prints a table per op family and writes the JSON atomically. Exit code 1 when anything
differed; each failing configuration is printed with the command that reruns it alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metahw.atomic import write_text_atomic  # noqa: E402
from metahw.compiler.golden import execute  # noqa: E402
from metahw.compiler.kernels import Conv2d  # noqa: E402
from metahw.compiler.widths import widest  # noqa: E402
from metahw.errors import UserError  # noqa: E402
from metahw.hardware import derive_hardware  # noqa: E402
from metahw.hw.amaranth.build import build_rtl  # noqa: E402
from metahw.hw.amaranth.spec import RtlPlan, rtl_plan  # noqa: E402
from metahw.hw.amaranth.verilator import RtlMismatch, compare_with_sim, compile_testbench, run_rtl  # noqa: E402
from metahw.progress import StatusTracker  # noqa: E402
from metahw.sim.plan import winograd_refusal  # noqa: E402
from tests.sim.harness import sim_problems  # noqa: E402
from tests.sim.random_programs import Config, draw_config, families  # noqa: E402

DEFAULT_OUT = ROOT / "out" / "kernel_properties" / "kernel_properties.json"
COLUMNS = ("configs", "golden==sim", "RTL accepts", "Verilator runs", "mismatches")


@dataclass
class Outcome:
    """What one configuration gave."""

    index: int
    families: list[str]
    heads: list[str]
    hardware: dict
    ops: int
    redraws: int
    sim_cycles: int | None = None
    #: differences between the simulator and golden or the formulas (or an exception), empty when equal
    sim_problems: list[str] = field(default_factory=list)
    #: None: the RTL accepts the program; else its reason
    refusal: str | None = None
    verilator: bool = False
    rtl_cycles: int | None = None
    rtl_seconds: float | None = None
    rtl_problems: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether anything differed."""
        return bool(self.sim_problems or self.rtl_problems)


def check_sim(config: Config, outcome: Outcome) -> None:
    """Golden == simulator on every buffer, cycles == formulas; problems go into `outcome`."""
    try:
        run, problems = sim_problems(config.program, config.inputs, config.hw)
    except Exception as exc:  # a crash of either model is a finding, not the end of the benchmark
        outcome.sim_problems = [f"{type(exc).__name__}: {exc}"]
        return
    outcome.sim_cycles, outcome.sim_problems = run.total_cycles, problems


def rtl_refusal(config: Config) -> tuple[RtlPlan | None, str | None]:
    """The RTL plan on the RTL's config, or None and the generator's reason for refusing the program."""
    try:
        return rtl_plan(config.program, derive_hardware(config.program, base=config.hw)), None
    except UserError as exc:
        return None, str(exc)


def check_verilator(config: Config, rp: RtlPlan, work: Path, outcome: Outcome) -> None:
    """Build the Verilog, run it without and with stream stalls: outputs == golden, cycles == simulator."""
    started = time.perf_counter()
    folder = work / f"config{config.index}"
    try:
        build_rtl(config.program, rp.hw, folder)
        exe = compile_testbench(folder, jobs=1)
        outcome.rtl_problems = _rtl_problems(config, rp, exe, folder, outcome)
    except Exception as exc:  # a failed build or testbench is a finding too
        outcome.rtl_problems = [f"{type(exc).__name__}: {exc}"]
    outcome.verilator, outcome.rtl_seconds = True, round(time.perf_counter() - started, 2)
    if not outcome.rtl_problems:
        shutil.rmtree(folder)


def _rtl_problems(config: Config, rp: RtlPlan, exe: Path, folder: Path, outcome: Outcome) -> list[str]:
    golden = execute(config.program, config.inputs)
    sim, problems = sim_problems(config.program, config.inputs, rp.hw)
    problems = [f"on the RTL's config: {p}" for p in problems]
    for stall_seed in (0, config.index + 1):
        rtl = run_rtl(exe, rp, [config.inputs], folder / f"run{stall_seed}", seed=stall_seed)[0]
        if stall_seed == 0:
            outcome.rtl_cycles = rtl.total_cycles
        try:
            compare_with_sim(rp, rtl, sim, 0)
        except RtlMismatch as exc:
            problems.append(f"stall seed {stall_seed}: {exc}")
        problems += [
            f"stall seed {stall_seed}: RTL output '{name}' differs from golden"
            for name in rp.outputs
            if not np.array_equal(rtl.outputs.get(name), golden.values[name])
        ]
    return problems


def winograd_config(config: Config) -> tuple[Config | None, str | None]:
    """`config` on Winograd hardware (`--winograd`), or None and why its program cannot run Winograd convs."""
    if not any(isinstance(op, Conv2d) for op in config.program.ops):
        return None, "Winograd: the program has no Conv2d"
    reason = winograd_refusal(config.program)
    if reason is not None:
        return None, f"Winograd: {reason}"
    operands = max(2, widest(config.program, winograd=True)["operand"])  # exact, as the draw's own config
    hw = dataclasses.replace(config.hw, winograd=True, operand_bits=operands)
    return dataclasses.replace(config, hw=hw), None


def run_config(config: Config, verilator: bool, work: Path, winograd: bool = False) -> Outcome:
    """Every check of one configuration (Verilator only when `verilator` and the RTL accepts it).

    `winograd`: on Winograd hardware; a program whose convs cannot all run it is only recorded, as refused.
    """
    if winograd:
        index, (config, reason) = config.index, winograd_config(config)
        if config is None:
            return Outcome(index, [], [], {}, 0, 0, refusal=reason)
    outcome = Outcome(
        config.index,
        families(config.program),
        list(config.heads),
        config.hw.to_json(),
        len(config.program.ops),
        config.redraws,
    )
    check_sim(config, outcome)
    rp, outcome.refusal = rtl_refusal(config)
    if verilator and rp is not None:
        check_verilator(config, rp, work, outcome)
    return outcome


def run_all(
    seed: int, indices: list[int], verilator: int, work: Path, progress: bool, winograd: bool = False
) -> Iterator[Outcome]:
    """Outcomes of the configurations `indices` of `seed`; the first `verilator` accepted ones run in Verilator."""
    runs = failures = 0
    with StatusTracker(len(indices), "kernel configurations", progress) as bar:
        for index in indices:
            outcome = run_config(draw_config(seed, index), runs < verilator, work, winograd)
            runs += outcome.verilator
            failures += outcome.failed
            bar.advance(1, f"{runs}/{verilator} in Verilator, {failures} mismatching")
            yield outcome


def reason_key(reason: str) -> str:
    """A refusal's one sentence (without the generator's list of what it builds), names, numbers, op lists elided."""
    sentence = re.sub(r"\b\d+\b", "N", re.sub(r"'[^']*'", "'...'", reason.split(" (it builds ")[0]))
    return re.sub(r"\w+ '\.\.\.'(, \w+ '\.\.\.')+", "OPS", sentence)


def family_rows(outcomes: list[Outcome]) -> dict[str, dict[str, int]]:
    """Per op family: configurations, golden == sim, RTL accepts, Verilator runs, mismatching configurations."""
    rows: dict[str, Counter] = {}
    for o in outcomes:
        for name in ["all", *o.families, *(f"head {h}" for h in o.heads)]:
            row = rows.setdefault(name, Counter({c: 0 for c in COLUMNS}))
            row.update(
                {
                    "configs": 1,
                    "golden==sim": not o.sim_problems,
                    "RTL accepts": o.refusal is None,
                    "Verilator runs": o.verilator,
                    "mismatches": o.failed,
                }
            )
    return {name: dict(row) for name, row in sorted(rows.items(), key=lambda kv: (kv[0] != "all", kv[0]))}


def refusals(outcomes: list[Outcome]) -> list[dict]:
    """The RTL's refusals grouped by reason: count, the first configuration, its full message."""
    groups: dict[str, dict] = {}
    for o in outcomes:
        if o.refusal is not None:
            key = reason_key(o.refusal)
            group = groups.setdefault(key, {"reason": key, "count": 0, "first": o.index, "message": o.refusal})
            group["count"] += 1
    return sorted(groups.values(), key=lambda g: -g["count"])


def table(rows: dict[str, dict[str, int]]) -> str:
    """The family rows as a fixed-width text table."""
    width = max(len(name) for name in rows)
    lines = [f"{'family':<{width}}  " + "  ".join(f"{c:>14}" for c in COLUMNS)]
    lines += [f"{name:<{width}}  " + "  ".join(f"{row[c]:>14}" for c in COLUMNS) for name, row in rows.items()]
    return "\n".join(lines)


def reproduce(seed: int, index: int, winograd: bool = False) -> str:
    """The command that reruns one configuration alone."""
    command = f".venv/bin/python benchmarks/kernel_properties.py --seed {seed} --only {index}"
    return command + " --winograd" if winograd else command


def report(args: argparse.Namespace, outcomes: list[Outcome], seconds: float) -> dict:
    """The JSON document of a run."""
    failed = [o for o in outcomes if o.failed]
    return {
        "command": " ".join(sys.argv),
        "seed": args.seed,
        "cases": len(outcomes),
        "verilator_target": args.verilator,
        "wall_seconds": round(seconds, 1),
        "verilator_seconds": round(sum(o.rtl_seconds or 0 for o in outcomes), 1),
        "redraws": sum(o.redraws for o in outcomes),
        "families": family_rows(outcomes),
        "refusals": refusals(outcomes),
        "mismatches": [
            {
                "index": o.index,
                "problems": o.sim_problems + o.rtl_problems,
                "reproduce": reproduce(args.seed, o.index, args.winograd),
            }
            for o in failed
        ],
        "configs": [asdict(o) for o in outcomes],
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=1000, help="configurations to draw (default 1000)")
    parser.add_argument("--verilator", type=int, default=50, help="accepted configurations to run in Verilator")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON file (RTL builds go beside it)")
    parser.add_argument("--only", type=int, default=None, metavar="INDEX", help="run configuration INDEX alone")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--winograd",
        action="store_true",
        help="configurations whose convs are all 3x3, stride 1, pooled, on Winograd hardware (the rest: refused)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every configuration agreed, 1 otherwise."""
    args = parse(argv)
    indices = [args.only] if args.only is not None else list(range(args.cases))
    started = time.perf_counter()
    work = args.out.parent / "rtl"
    outcomes = list(run_all(args.seed, indices, args.verilator, work, not args.quiet, args.winograd))
    doc = report(args, outcomes, time.perf_counter() - started)
    print(table(doc["families"]))
    print(
        f"\n{doc['cases']} configurations in {doc['wall_seconds']} s ({doc['verilator_seconds']} s in Verilator "
        f"builds and runs), {doc['redraws']} invalid draws redrawn"
    )
    for group in doc["refusals"]:
        print(f"RTL refused {group['count']:>4} (first: configuration {group['first']}): {group['reason']}")
    write_text_atomic(args.out, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    for failure in doc["mismatches"]:
        print(
            f"MISMATCH in configuration {failure['index']} (seed {args.seed}): {'; '.join(failure['problems'])}\n"
            f"  reproduce: {failure['reproduce']}",
            file=sys.stderr,
        )
    return 1 if doc["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
