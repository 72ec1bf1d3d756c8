"""Summary statistics of per-episode accuracies.

The interval is Student's t over episodes: the half-width t(0.975, n - 1) * s / sqrt(n) of
the sample standard deviation s of the n per-episode accuracies. It is the normal
approximation's 1.96 * s / sqrt(n) for large n (1.962 at n = 1000) and honestly wider for
few episodes (12.71 at n = 2). One episode has no interval (`ci95` is None).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

INTERVAL = "Student t, 95 %, over episodes"


@dataclass(frozen=True)
class AccuracySummary:
    """Mean accuracy and its 95% confidence half-width (Student t over episodes; None for one episode)."""

    mean: float
    ci95: float | None
    episodes: int

    @classmethod
    def of(cls, accuracies: np.ndarray) -> AccuracySummary:
        """Summarise an array of per-episode accuracies in [0, 1] (at least one)."""
        acc = np.asarray(accuracies, dtype=np.float64)
        if acc.size == 0:
            raise ValueError("an accuracy summary needs at least one episode")
        half = None
        if acc.size > 1:
            half = float(student_t.ppf(0.975, acc.size - 1) * acc.std(ddof=1) / np.sqrt(acc.size))
        return cls(float(acc.mean()), half, int(acc.size))

    def __str__(self) -> str:
        return shown(self.to_dict())

    def to_dict(self) -> dict:
        """JSON-ready dict (fractions, not percent)."""
        return {"accuracy": self.mean, "ci95": self.ci95, "episodes": self.episodes, "interval": INTERVAL}


def shown(summary: dict) -> str:
    """'97.00 +- 0.12 %' from a summary's dict, or '97.00 % (one episode: no interval)'."""
    if summary.get("ci95") is None:
        return f"{100 * summary['accuracy']:.2f} % (one episode: no interval)"
    return f"{100 * summary['accuracy']:.2f} +- {100 * summary['ci95']:.2f} %"
