"""Summary statistics of per-episode accuracies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AccuracySummary:
    """Mean accuracy and its 95% confidence half-width (normal approximation) over episodes."""

    mean: float
    ci95: float
    episodes: int

    @classmethod
    def of(cls, accuracies: np.ndarray) -> AccuracySummary:
        """Summarise an array of per-episode accuracies in [0, 1]."""
        acc = np.asarray(accuracies, dtype=np.float64)
        half = 1.96 * acc.std(ddof=1) / np.sqrt(acc.size) if acc.size > 1 else float("nan")
        return cls(float(acc.mean()), float(half), int(acc.size))

    def __str__(self) -> str:
        return f"{100 * self.mean:.2f} +- {100 * self.ci95:.2f} %"

    def to_dict(self) -> dict:
        """JSON-ready dict (fractions, not percent)."""
        return {"accuracy": self.mean, "ci95": self.ci95, "episodes": self.episodes}
