"""Meta-training throughput on this machine: episodes/s and peak memory per algorithm, and
ProtoNet's training step against a plain PyTorch loop of the same model.

    .venv/bin/python benchmarks/train_throughput.py [--width 64] [--steps 30] [--ways 5]
        [--algos protonet maml] [--baseline-ways 20] [--baseline-steps 20]

Per algorithm (N-way 1-shot episodes with 5 queries per class, second-order MAML with 5 inner
steps): episodes/s of the step `metahw train` runs (sampling, augmentation off, `meta_step`),
and peak resident memory (ru_maxrss after each algorithm).

Baseline (issue 17, item 5): a ProtoNet Conv-4 step at `--baseline-ways` 1-shot, timed three
ways in alternating rounds so that both see the same machine load: a plain PyTorch loop
(an `nn.Sequential` Conv-4, prototypes and squared distances written inline, Adam, on
pre-sampled episode tensors), metahw's `ProtoNet.meta_step` on the same tensors, and the whole
metahw step (`EpisodeSampler` + `meta_step`, and with `random_affine` augmentation as
`metahw train` does by default). Writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
from torch import nn

from metahw.atomic import write_text_atomic
from metahw.models.augment import random_affine
from metahw.models.backbone import BackboneConfig, batch_statistics
from metahw.models.data import load_omniglot
from metahw.models.episodes import EpisodeSampler
from metahw.models.learners import build_learner
from metahw.models.train import DEFAULT_META_BATCH

ROOT = Path(__file__).resolve().parents[1]


def measure(algo: str, width: int, ways: int, steps: int, data, hparams: dict) -> dict:  # noqa: ANN001
    """Episodes (tasks) per second over `steps` outer steps after two warm-up steps."""
    split = data.split("train", rotations=True)
    sampler = EpisodeSampler(split, ways, 1, 5, seed=0)
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
            learner.meta_step(tasks, ways, optimizer)

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    return {
        "algorithm": algo,
        "width": width,
        "ways": ways,
        "hparams": learner.hparams,
        "meta_batch": meta_batch,
        "episodes_per_second": steps * meta_batch / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def plain_conv4(width: int) -> nn.Sequential:
    """Conv-4 written directly in PyTorch: four (3x3 conv, BatchNorm, ReLU, 2x2 max-pool) blocks, flattened."""
    layers: list[nn.Module] = []
    for cin in (1, width, width, width):
        layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten())


def plain_protonet_step(model: nn.Module, optimizer: torch.optim.Optimizer, task: tuple, ways: int) -> None:
    """One ProtoNet update as a plain PyTorch loop writes it: embed, class means, -squared distances, CE."""
    sx, sy, qx, qy = task
    optimizer.zero_grad(set_to_none=True)
    features = model(torch.cat([sx, qx]))
    support, query = features[: len(sx)], features[len(sx) :]
    prototypes = torch.zeros(ways, support.shape[1]).index_add_(0, sy, support) / torch.bincount(sy, minlength=ways)[
        :, None
    ].to(support.dtype)
    logits = -torch.cdist(query, prototypes).pow(2)
    nn.functional.cross_entropy(logits, qy).backward()
    optimizer.step()


def baseline(width: int, ways: int, steps: int, data) -> dict:  # noqa: ANN001
    """ProtoNet steps/s: plain PyTorch vs metahw on the same tensors vs the whole metahw step, interleaved."""
    split = data.split("train", rotations=True)
    sampler = EpisodeSampler(split, ways, 1, 5, seed=0)

    def sample() -> tuple[torch.Tensor, ...]:
        e = sampler.sample()
        return tuple(torch.from_numpy(a) for a in (e.support_x, e.support_y, e.query_x, e.query_y))

    tasks = [sample() for _ in range(steps)]
    torch.manual_seed(0)
    plain = plain_conv4(width)
    plain_opt = torch.optim.Adam(plain.parameters(), 1e-3)
    learner = build_learner("protonet", BackboneConfig(width=width), {})
    learner_opt = torch.optim.Adam(learner.parameters(), 1e-3)
    plain.train()
    learner.train()
    generator = torch.Generator().manual_seed(0)

    def metahw_step(task: tuple, augment: bool) -> None:
        if augment:
            sx, sy, qx, qy = task
            task = (random_affine(sx, generator), sy, random_affine(qx, generator), qy)
        learner.meta_step([task], ways, learner_opt)

    variants = {
        "plain PyTorch": lambda k: plain_protonet_step(plain, plain_opt, tasks[k], ways),
        "metahw meta_step": lambda k: metahw_step(tasks[k], False),
        "metahw step with sampling": lambda k: metahw_step(sample(), False),
        "metahw step with sampling and augmentation": lambda k: metahw_step(sample(), True),
    }
    seconds = dict.fromkeys(variants, 0.0)
    for step in variants.values():  # warm-up
        step(0)
    for k in range(steps):  # alternate, so that every variant sees the same load
        for name, step in variants.items():
            start = time.perf_counter()
            step(k)
            seconds[name] += time.perf_counter() - start
    plain_rate = steps / seconds["plain PyTorch"]
    rows = [
        {"variant": name, "steps_per_second": steps / s, "time_vs_plain": s / seconds["plain PyTorch"]}
        for name, s in seconds.items()
    ]
    return {
        "algorithm": "protonet",
        "width": width,
        "ways": ways,
        "shots": 1,
        "queries_per_class": 5,
        "steps": steps,
        "threads": torch.get_num_threads(),
        "plain_steps_per_second": plain_rate,
        "variants": rows,
    }


def main() -> None:
    """Measure and print the throughput table and the plain-PyTorch comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--ways", type=int, default=5, help="ways of the per-algorithm episodes (default 5)")
    parser.add_argument("--algos", nargs="*", default=["protonet", "maml"])
    parser.add_argument("--baseline-ways", type=int, default=20, help="ways of the plain-PyTorch comparison")
    parser.add_argument("--baseline-steps", type=int, default=20, help="timed steps per variant (0: skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_throughput.json")
    args = parser.parse_args()
    data = load_omniglot()
    rows = [
        measure(a, args.width, args.ways, args.steps, data, {"inner_steps": 5} if a != "protonet" else {})
        for a in args.algos
    ]
    print(f"{'algorithm':<10} {'width':>5} {'ways':>4} {'episodes/s':>11} {'peak RSS MiB':>13}")
    for r in rows:
        print(
            f"{r['algorithm']:<10} {r['width']:>5} {r['ways']:>4} {r['episodes_per_second']:>11.2f} "
            f"{r['peak_rss_mib']:>13.0f}"
        )
    compared = baseline(args.width, args.baseline_ways, args.baseline_steps, data) if args.baseline_steps else None
    if compared:
        print(f"\nProtoNet Conv-4-{args.width}, {args.baseline_ways}-way 1-shot, 5 queries per class:")
        for row in compared["variants"]:
            print(f"  {row['variant']:<44} {row['steps_per_second']:>7.2f} steps/s  {row['time_vs_plain']:.2f}x time")
    doc = {"algorithms": rows, "plain_pytorch_comparison": compared}
    write_text_atomic(args.out, json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
