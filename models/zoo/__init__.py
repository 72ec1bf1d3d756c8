"""Shipped checkpoints (Conv-4-64, and Conv-4-32 for small FPGAs; float32), trained by benchmarks/train_zoo.py."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

PREFIX = "zoo:"


def zoo_names() -> list[str]:
    """Names of the shipped checkpoints (`zoo:NAME`)."""
    return sorted(p.name.removesuffix(".pt") for p in files(__name__).iterdir() if p.name.endswith(".pt"))


def zoo_path(name: str) -> Path:
    """Path of the shipped checkpoint of algorithm `name` (it may not exist)."""
    return Path(str(files(__name__).joinpath(f"{name}.pt")))
