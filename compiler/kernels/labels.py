"""Support labels: an integer class id per support example (frac 0), checked and one-hot encoded."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from metahw.compiler.kernels.base import Kernel
    from metahw.compiler.program import Buffer


def check_labels_buffer(op: Kernel, labels: Buffer, count: int) -> None:
    """A labels buffer is [count] integers (frac 0)."""
    if labels.shape != (count,) or labels.qformat.frac != 0:
        got = f"{labels.shape} {labels.qformat}"
        raise op.error(f"labels '{labels.name}' must be [{count}] integers (frac 0), got {got}")


def one_hot(op: Kernel, labels: np.ndarray, ways: int) -> np.ndarray:
    """[M] class ids -> [M, ways] 0/1 int64; an id outside 0..ways-1 is a UserError naming the op."""
    if labels.size and (labels.min() < 0 or labels.max() >= ways):
        raise op.error(f"labels must lie in 0..{ways - 1}, got values from {labels.min()} to {labels.max()}")
    return (labels[:, None] == np.arange(ways)[None, :]).astype(np.int64)
