"""Meta-training throughput on this machine: episodes/s and peak memory per algorithm.

    .venv/bin/python benchmarks/train_throughput.py [--width 64] [--steps 30]

Measures ProtoNet and (second-order) MAML with 5 inner steps on 5-way 1-shot episodes
(5 queries per class), plus any algorithm given with --algos. Peak resident memory is
read from the process (ru_maxrss) after each algorithm. Writes
benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from metahw.atomic import write_text_atomic
from metahw.models.backbone import BackboneConfig, batch_statistics
from metahw.models.data import load_omniglot
from metahw.models.episodes import EpisodeSampler
from metahw.models.learners import build_learner
from metahw.models.train import DEFAULT_META_BATCH

ROOT = Path(__file__).resolve().parents[1]


def measure(algo: str, width: int, steps: int, data, hparams: dict) -> dict:  # noqa: ANN001
    """Episodes (tasks) per second over `steps` outer steps after two warm-up steps."""
    split = data.split("train", rotations=True)
    sampler = EpisodeSampler(split, 5, 1, 5, seed=0)
    learner = build_learner(algo, BackboneConfig(width=width), hparams)
    optimizer = torch.optim.Adam(learner.parameters(), 1e-3)
    meta_batch = DEFAULT_META_BATCH.get(algo, 4)
    learner.train()

    def step() -> None:
        tasks = [
            tuple(torch.from_numpy(a) for a in (e.support_x, e.support_y, e.query_x, e.query_y))
            for e in (sampler.sample() for _ in range(meta_batch))
        ]
        with batch_statistics(learner):
            learner.meta_step(tasks, 5, optimizer)

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    return {
        "algorithm": algo,
        "width": width,
        "hparams": learner.hparams,
        "meta_batch": meta_batch,
        "episodes_per_second": steps * meta_batch / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    """Measure and print the throughput table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--algos", nargs="*", default=["protonet", "maml"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_throughput.json")
    args = parser.parse_args()
    data = load_omniglot()
    rows = [measure(a, args.width, args.steps, data, {"inner_steps": 5} if a != "protonet" else {}) for a in args.algos]
    write_text_atomic(args.out, json.dumps(rows, indent=2) + "\n")
    print(f"{'algorithm':<10} {'width':>5} {'episodes/s':>11} {'peak RSS MiB':>13}")
    for r in rows:
        print(f"{r['algorithm']:<10} {r['width']:>5} {r['episodes_per_second']:>11.2f} {r['peak_rss_mib']:>13.0f}")


if __name__ == "__main__":
    main()
