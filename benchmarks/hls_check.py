"""hls4ml C simulation vs the golden executor on the shipped checkpoints, with compile time and episodes/s.

    .venv/bin/python benchmarks/hls_check.py [--models protonet protomaml] [--bits 8 4] [--episodes 100]
                                             [--ways 5] [--shots 1] [--strategy latency] [--data PATH]

For each zoo checkpoint (`models/zoo/NAME.pt`) and embedding width: export the N-way K-shot
episode, compile it (`--bits`, head 16 bits, half_up/saturate, calibrated on meta-val),
write and g++-compile its hls4ml project (Vitis backend, io_parallel), and run `--episodes`
seeded meta-test episodes (N queries per episode) through the C simulation. Every output and
every traced layer of every image is compared with the golden executor; a single difference
stops the run (HlsMismatch, exit code 1). Prints a table and writes
benchmarks/results/hls_check.json: mismatches, integers compared, C-simulation compile
seconds, episodes/s of the C simulation alone and with the golden check, accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from metahw.atomic import write_text_atomic
from metahw.compiler.compile import compile_episode
from metahw.compiler.quant_config import QuantConfig
from metahw.hw.hls4ml import ProjectOptions, check_hls_episodes
from metahw.models.checkpoint import load_checkpoint
from metahw.models.data import load_omniglot
from metahw.models.episode_sources import omniglot_episodes
from metahw.models.export import episode_head, export_episode
from metahw.sim.episodes import program_shape

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Check every (model, width) and write the JSON table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["protonet", "protomaml"], help="zoo checkpoint names")
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 4])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--strategy", default="latency", choices=["latency", "resource"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hls_check.json")
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()

    omniglot = load_omniglot(args.data)
    val, test = omniglot.split("val"), omniglot.split("test")
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "settings": {
            "ways": args.ways,
            "shots": args.shots,
            "queries": args.ways,
            "episodes": args.episodes,
            "hls_backend": "vitis",
            "strategy": args.strategy,
            "head_bits": 16,
            "rounding": "half_up",
            "overflow": "saturate",
        },
        "rows": [],
    }
    print(
        f"{args.ways}-way {args.shots}-shot, {args.ways} queries per episode, hls4ml Vitis io_parallel "
        f"({args.strategy}), C simulation built with g++ on {os.cpu_count()} cores"
    )
    for name in args.models:
        learner = load_checkpoint(f"zoo:{name}").learner
        spec = episode_head(learner, args.ways, args.shots, None)
        model = export_episode(learner, spec)
        for bits in args.bits:
            program = compile_episode(model, QuantConfig(bits=bits), val, args.ways).program
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix=f"hls-{name}-{bits}-") as folder:
                runs = check_hls_episodes(
                    program,
                    omniglot_episodes(test, program_shape(program), args.episodes, seed=0),
                    project_dir=folder,
                    options=ProjectOptions(strategy=args.strategy),
                    progress=True,
                )
            row = {
                "model": f"zoo:{name}",
                "algorithm": learner.algorithm,
                "width": learner.backbone_config.width,
                "bits": bits,
                "ops": [op.op for op in program.ops],
                **runs.to_dict(),
                "wall_seconds": time.perf_counter() - started,
            }
            row.pop("project")
            report["rows"].append(row)
            write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
            _print_row(row)
    print(f"wrote {args.out}")


def _print_row(row: dict) -> None:
    print(
        f"{row['model']:<16} {row['bits']:>2}-bit  {row['episodes']} episodes  {row['samples']} images  "
        f"mismatches {row['mismatches']}  integers compared {row['integers_compared']:,}  "
        f"g++ {row['compile_seconds']:.1f} s  {row['csim_episodes_per_second']:.2f} episodes/s "
        f"({row['checked_episodes_per_second']:.2f} checked)  accuracy {100 * row['accuracy']['accuracy']:.2f} "
        f"+- {100 * row['accuracy']['ci95']:.2f} %",
        flush=True,
    )


if __name__ == "__main__":
    main()
