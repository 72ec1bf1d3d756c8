"""The official Omniglot one-shot "runs" layout: reader and scorer.

A run folder holds `class_labels.txt` (lines "runNN/test/itemMM.png runNN/training/classKK.png"),
`training/classKK.png` (one example per class) and `test/itemMM.png` (queries). A run's
error is the percentage of test items whose predicted training class is not the one named
on their line; the challenge reports the mean error over the runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metahw.errors import UserError
from metahw.models.data import preprocess_png
from metahw.models.learners import MetaLearner


@dataclass(frozen=True)
class OneShotRun:
    """One run: training images [N,1,28,28], test images [T,1,28,28], true class of each test item."""

    name: str
    training: np.ndarray
    test: np.ndarray
    labels: np.ndarray


def _image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"run image {path} named in class_labels.txt does not exist.")
    return preprocess_png(path.read_bytes()).astype(np.float32)[None] / 255.0


def read_run(run_dir: Path) -> OneShotRun:
    """Parse one run folder; paths in class_labels.txt are relative to the folder above the run."""
    label_file = run_dir / "class_labels.txt"
    pairs = []
    for lineno, line in enumerate(label_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise UserError(f"{label_file}:{lineno}: expected 'test/itemMM.png training/classKK.png', got {line!r}.")
        pairs.append(fields)
    if not pairs:
        raise UserError(f"{label_file} lists no test items.")

    def resolve(rel: str) -> Path:
        path = run_dir.parent / rel
        return path if path.exists() else run_dir / Path(rel).parent.name / Path(rel).name

    training_files = sorted((run_dir / "training").glob("*.png"))
    if not training_files:
        raise UserError(f"{run_dir}/training holds no class images.")
    index = {p.resolve(): i for i, p in enumerate(training_files)}
    labels = []
    for _, train_rel in pairs:
        key = resolve(train_rel).resolve()
        if key not in index:
            raise UserError(f"{label_file} names {train_rel}, which is not in {run_dir}/training.")
        labels.append(index[key])
    return OneShotRun(
        name=run_dir.name,
        training=np.stack([_image(p) for p in training_files]),
        test=np.stack([_image(resolve(t)) for t, _ in pairs]),
        labels=np.array(labels, dtype=np.int64),
    )


def read_runs(root: str | os.PathLike) -> list[OneShotRun]:
    """All runs (folders holding class_labels.txt) directly under `root`, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"`root` {root} is not a folder (give the folder holding run01 .. run20).", ("read_runs.root",))
    runs = sorted(p for p in root.iterdir() if (p / "class_labels.txt").is_file())
    if not runs:
        raise UserError(f"no runs under {root}: expected folders like run01/ holding class_labels.txt.")
    return [read_run(r) for r in runs]


def run_error(learner: MetaLearner, run: OneShotRun, mode: str = "full") -> float:
    """Percentage of misclassified test items of one run (1-shot, one training image per class)."""
    learner.eval()
    ways = len(run.training)
    sx, qx = torch.from_numpy(run.training), torch.from_numpy(run.test)
    logits = learner.logits(sx, torch.arange(ways), qx, ways, mode)
    wrong = (logits.argmax(-1).numpy() != run.labels).sum()
    return 100.0 * float(wrong) / len(run.labels)
