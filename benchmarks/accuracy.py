"""Accuracy table of the zoo: algorithm x {5w1s, 5w5s, 20w1s, 20w5s} on the meta-test alphabets.

    .venv/bin/python benchmarks/accuracy.py [--zoo models/zoo] [--episodes 1000] [--full-episodes 200]

Every algorithm is evaluated in its own mode ('full') and, for the gradient-based ones, in
head-only mode ('head': frozen backbone, SGD on a linear head, as the hardware does).
Modes that need no per-episode backbone update use cached embeddings and `--episodes`
episodes; full MAML-family adaptation (every parameter, per episode) is costly on a CPU, so it
uses `--full-episodes`. Prints a table and writes benchmarks/results/accuracy.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from metahw.atomic import write_text_atomic
from metahw.models.checkpoint import load_checkpoint
from metahw.models.data import load_omniglot
from metahw.models.evaluate import evaluate
from metahw.models.learners import MetaLearner

SETTINGS = [(5, 1), (5, 5), (20, 1), (20, 5)]
ROOT = Path(__file__).resolve().parents[1]


def modes_of(learner: MetaLearner) -> list[str]:
    """Evaluation modes of a learner: its own, plus head-only for the gradient-based ones."""
    return ["full"] if learner.algorithm in ("protonet", "matchingnet") else ["full", "head"]


def main() -> None:
    """Evaluate every checkpoint of the zoo at the four standard settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--zoo",
        type=Path,
        nargs="+",
        default=[ROOT / "models" / "zoo"],
        help="checkpoint files, or folders whose *.pt files are evaluated",
    )
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--full-episodes", type=int, default=200)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "accuracy.json")
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    test = load_omniglot(args.data).split("test")
    paths = [p for zoo in args.zoo for p in (sorted(zoo.glob("*.pt")) if zoo.is_dir() else [zoo])]
    checkpoints = [(path, load_checkpoint(path)) for path in paths]
    jobs = [(path, ckpt, mode) for path, ckpt in checkpoints for mode in modes_of(ckpt.learner)]
    jobs.sort(key=lambda job: job[2] == "full" and job[1].learner.adapts_backbone)  # cheap rows first
    rows = []
    for path, ckpt, mode in jobs:
        learner = ckpt.learner
        row = {
            "checkpoint": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
            "algorithm": learner.algorithm,
            "width": learner.backbone_config.width,
            "mode": mode,
            "train_seconds": ckpt.metrics.get("train_seconds"),
            "train_episodes": ckpt.train_args.get("episodes"),
            "results": {},
        }
        episodes = args.full_episodes if (mode == "full" and learner.adapts_backbone) else args.episodes
        for ways, shots in SETTINGS:
            summary = evaluate(learner, test, ways, shots, args.queries, episodes, seed=0, mode=mode)
            row["results"][f"{ways}w{shots}s"] = summary.to_dict()
        rows.append(row)
        write_text_atomic(args.out, json.dumps(rows, indent=2) + "\n")

    header = f"{'algorithm':<12} {'width':>5} {'mode':<5} " + " ".join(f"{w}w{s}s".rjust(14) for w, s in SETTINGS)
    print(header + f" {'train s':>8}")
    for row in rows:
        cells = " ".join(
            f"{100 * r['accuracy']:6.2f}+-{100 * r['ci95']:4.2f}".rjust(14) for r in row["results"].values()
        )
        print(f"{row['algorithm']:<12} {row['width']:>5} {row['mode']:<5} {cells} {row['train_seconds'] or 0:>8.0f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
