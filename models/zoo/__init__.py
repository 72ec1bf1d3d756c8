"""Shipped checkpoints (Conv-4-64, and Conv-4-32 for small FPGAs; float32), trained by benchmarks/train_zoo.py."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

PREFIX = "zoo:"


def zoo_names() -> list[str]:
    """Names of the shipped checkpoints (`zoo:NAME`)."""
    return sorted(p.name.removesuffix(".pt") for p in files(__name__).iterdir() if p.name.endswith(".pt"))


def zoo_path(name: str) -> Path:
    """Path of the shipped checkpoint of algorithm `name` (it may not exist)."""
    return Path(str(files(__name__).joinpath(f"{name}.pt")))


#: The zoo measured on the cycle simulator (benchmarks/hardware_accuracy.py), shipped with the checkpoints.
HARDWARE_ACCURACY = "hardware_accuracy.json"


def zoo_hardware_accuracy(name: str) -> list[dict]:
    """Rows of the shipped hardware accuracy table for `zoo:NAME` (one per setting; [] if not measured)."""
    table = files(__name__).joinpath(HARDWARE_ACCURACY)
    if not table.is_file():
        return []
    return [row for row in json.loads(table.read_text()) if row["model"] == name]
