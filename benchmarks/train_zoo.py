"""Train the model zoo: every algorithm at the hardware width, written to models/zoo/.

    .venv/bin/python benchmarks/train_zoo.py                 # every recipe
    .venv/bin/python benchmarks/train_zoo.py --only protonet32 --out-dir benchmarks/results/zoo-w32
    .venv/bin/python benchmarks/train_zoo.py --qat-bits 4 --out-dir benchmarks/results/zoo-qat4

A recipe with `backbone_from` starts from that recipe's trained embedding (`metahw train
--backbone-from`), so it is trained after it.

With `--qat-bits B`, each recipe is not trained afresh: the shipped checkpoint of that name
(models/zoo/NAME.pt) has its BatchNorm folded and is fine-tuned with fake quantisation at B
bits for `--qat-episodes` episodes of its recipe's shape (`metahw train --init zoo:NAME
--qat-bits B`).

Prints a table (algorithm, training episodes/s, seconds, val accuracy) and writes it as
JSON beside the checkpoints. The recipes below are the ones the shipped checkpoints were
trained with (seed 0); rerunning reproduces them up to CPU nondeterminism.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from metahw.atomic import write_text_atomic
from metahw.models.checkpoint import save_checkpoint
from metahw.models.data import load_omniglot
from metahw.models.train import TrainConfig, train

#: Training recipe per zoo name: episode shape and number of training episodes (tasks); the
#: algorithm is the name unless given, the width 64 unless given.
RECIPES: dict[str, dict] = {
    "protonet": {"ways": 20, "shots": 1, "queries": 5, "episodes": 15000},
    # the small-FPGA ProtoNet: Conv-4-32 fits an ECP5-25k at 8 bits (docs/hardware_reports.md)
    "protonet32": {"algorithm": "protonet", "width": 32, "ways": 20, "shots": 1, "queries": 5, "episodes": 6000},
    "matchingnet": {"ways": 5, "shots": 1, "queries": 5, "episodes": 4000},
    # ANIL and Proto-MAML meta-train from ProtoNet's embedding (`backbone_from`: a recipe of this
    # table, taken from --out-dir when this run trained it, else the shipped one); from random
    # weights they stay 4 to 9 points under it (the ablation in docs/models.md)
    "protomaml": {"ways": 5, "shots": 1, "queries": 5, "episodes": 2000, "lr": 2e-4, "backbone_from": "protonet"},
    "anil": {"ways": 5, "shots": 1, "queries": 5, "episodes": 2000, "lr": 2e-4, "backbone_from": "protonet"},
    "maml": {"ways": 5, "shots": 1, "queries": 5, "episodes": 2000},
    "fomaml": {"ways": 5, "shots": 1, "queries": 5, "episodes": 3000},
    "metasgd": {"ways": 5, "shots": 1, "queries": 5, "episodes": 3000},
    "reptile": {"ways": 5, "shots": 1, "queries": 5, "episodes": 2000},
}


def main() -> None:
    """Train the selected recipes and write checkpoints plus a summary JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--width", type=int, default=None, help="override every recipe's backbone width")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "zoo")
    parser.add_argument("--qat-bits", type=int, default=None, help="fine-tune the shipped checkpoints with QAT")
    parser.add_argument("--qat-episodes", type=int, default=1000, help="QAT fine-tuning episodes per recipe")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_omniglot(args.data)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    summary_file = args.out_dir / "training.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    for name in args.only:
        recipe = {"algorithm": name, "width": 64} | RECIPES[name]
        if args.width:
            recipe["width"] = args.width
        if args.qat_bits:  # fine-tunes the shipped learner, whatever its float training started from
            recipe.pop("backbone_from", None)
            zoo_checkpoint = Path(__file__).resolve().parents[1] / "models" / "zoo" / f"{name}.pt"
            recipe |= {"qat_bits": args.qat_bits, "qat_episodes": args.qat_episodes, "init": str(zoo_checkpoint)}
        elif "backbone_from" in recipe:
            trained = args.out_dir / f"{recipe['backbone_from']}.pt"
            recipe["backbone_from"] = str(trained) if trained.is_file() else f"zoo:{recipe['backbone_from']}"
        cfg = TrainConfig(device=args.device, **recipe)
        start = time.perf_counter()
        ckpt = train(cfg, data)
        save_checkpoint(ckpt, args.out_dir / f"{name}.pt")
        m = ckpt.metrics
        summary[name] = {
            **recipe,
            "augment": cfg.augment,
            "train_seconds": m["train_seconds"],
            "wall_seconds": time.perf_counter() - start,
            "train_episodes_per_second": m["train_episodes_per_second"],
            "val": m["val"],
        }
        write_text_atomic(summary_file, json.dumps(summary, indent=2) + "\n")
    print(f"{'zoo name':<12} {'eps/s':>7} {'train s':>8} {'val acc':>8}")
    for name, row in summary.items():
        print(
            f"{name:<12} {row['train_episodes_per_second']:>7.1f} {row['train_seconds']:>8.0f} "
            f"{100 * row['val']['accuracy']:>7.2f}%"
        )


if __name__ == "__main__":
    main()
