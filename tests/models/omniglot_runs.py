"""Build one-shot "runs" folders in the official layout from the background zips (for the tests)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class RunTruth:
    """What a generated run holds: per class its (alphabet, character, drawing index), per test item its class."""

    name: str
    training: list[tuple[str, str, int]]
    test: list[tuple[str, str, int]]
    labels: list[int]


def _members(data_dir: Path) -> dict[tuple[str, str], list[tuple[Path, str]]]:
    found: dict[tuple[str, str], dict[str, tuple[Path, str]]] = {}
    for zpath in sorted(data_dir.glob("*.zip")):
        with zipfile.ZipFile(zpath) as z:
            for name in z.namelist():
                if name.endswith(".png"):
                    _, alphabet, character, drawing = name.split("/")
                    found.setdefault((alphabet, character), {}).setdefault(drawing, (zpath, name))
    return {k: [v[d] for d in sorted(v)] for k, v in found.items()}


def write_runs(
    data_dir: Path, root: Path, spec: dict[str, tuple[str, int]], seed: int = 0, same_drawing: bool = False
) -> list[RunTruth]:
    """Write runs in the official layout: {run name: (alphabet, classes)}, one-shot, one test item per class.

    class KK is drawing `a` of its character; the test items are drawing `b` (another drawer, or the
    same drawing when `same_drawing`) of the classes in shuffled order, as in the official runs.
    """
    members = _members(data_dir)
    rng = np.random.default_rng(seed)
    truths = []
    for run, (alphabet, classes) in spec.items():
        characters = sorted(c for a, c in members if a == alphabet)
        chosen = [characters[i] for i in sorted(rng.choice(len(characters), classes, replace=False))]
        order = rng.permutation(classes)
        (root / run / "training").mkdir(parents=True)
        (root / run / "test").mkdir()
        training, test, lines = [], [], []
        for k, character in enumerate(chosen):
            a, b = rng.choice(20, 2, replace=False)
            b = a if same_drawing else b
            training.append((alphabet, character, int(a)))
            _copy(members[(alphabet, character)][a], root / run / "training" / f"class{k + 1:02d}.png")
            test.append((alphabet, character, int(b)))
        test = [test[k] for k in order]
        for m, k in enumerate(order):
            alphabet_, character, b = test[m]
            _copy(members[(alphabet_, character)][b], root / run / "test" / f"item{m + 1:02d}.png")
            lines.append(f"{run}/test/item{m + 1:02d}.png {run}/training/class{k + 1:02d}.png")
        (root / run / "class_labels.txt").write_text("\n".join(lines) + "\n")
        truths.append(RunTruth(run, training, test, [int(k) for k in order]))
    return truths


def _copy(member: tuple[Path, str], dest: Path) -> None:
    with zipfile.ZipFile(member[0]) as z:
        dest.write_bytes(z.read(member[1]))
