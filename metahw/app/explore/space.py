"""The search space: which checkpoints (one per backbone width), bit widths and lane counts are explored.

Ranges are written `A..B` (every integer for bits, every power of two for lanes) or as comma
lists. A design is one point (checkpoint, bits, lanes); its backbone width comes from the
checkpoint's metadata.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from metahw.errors import UserError

#: names of the optuna parameters (the checkpoint is a categorical over the checkpoint labels)
PARAMS = ("checkpoint", "bits", "lanes")


@dataclass(frozen=True)
class Design:
    """One point of the space: a checkpoint (its label as given), its backbone width, bits and lanes."""

    checkpoint: str
    width: int
    bits: int
    lanes: int

    def label(self) -> str:
        """Short name for tables and plots: `w64 b8 P16`."""
        return f"w{self.width} b{self.bits} P{self.lanes}"


@dataclass(frozen=True)
class Candidate:
    """A checkpoint the exploration may use, with its backbone width."""

    checkpoint: str
    width: int


@dataclass(frozen=True)
class SearchSpace:
    """Checkpoints x bits x lanes."""

    candidates: tuple[Candidate, ...]
    bits: tuple[int, ...]
    lanes: tuple[int, ...]

    def __post_init__(self) -> None:
        labels = [c.checkpoint for c in self.candidates]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise UserError(f"checkpoint {repeated[0]} is given more than once.")
        if not labels or not self.bits or not self.lanes:
            raise UserError("the search space is empty: give at least one checkpoint, bit width and lane count.")

    @property
    def size(self) -> int:
        """Number of distinct designs."""
        return len(self.candidates) * len(self.bits) * len(self.lanes)

    def choices(self) -> dict[str, list]:
        """Each parameter's values, as optuna's GridSampler and `suggest_categorical` take them."""
        return {
            "checkpoint": [c.checkpoint for c in self.candidates],
            "bits": list(self.bits),
            "lanes": list(self.lanes),
        }

    def grid(self) -> list[Design]:
        """Every design, checkpoints outermost."""
        return [self.design(dict(zip(PARAMS, p))) for p in itertools.product(*self.choices().values())]

    def design(self, params: dict) -> Design:
        """The design of optuna parameters {checkpoint, bits, lanes}."""
        width = next(c.width for c in self.candidates if c.checkpoint == params["checkpoint"])
        return Design(params["checkpoint"], width, int(params["bits"]), int(params["lanes"]))


def _integers(text: str, what: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"`{what}` takes A..B or a comma list of integers, got {text!r}.", (what,)) from None


def parse_range(text: str, what: str, low: int, high: int, powers_of_two: bool = False) -> tuple[int, ...]:
    """`A..B` (every integer, or every power of two, in A..B) or `a,b,c`; each value must lie in low..high."""
    text = text.strip()
    if ".." in text:
        ends = _integers(text.replace("..", ",", 1), what)
        if len(ends) != 2 or ends[0] > ends[1]:
            raise UserError(f"`{what}` range must be A..B with A <= B, got {text!r}.", (what,))
        values = [v for v in range(ends[0], ends[1] + 1) if not powers_of_two or v & (v - 1) == 0]
        if not values:
            raise UserError(f"`{what}` range {text!r} holds no power of two.", (what,))
    else:
        values = _integers(text, what)
    kind = "powers of two" if powers_of_two else "integers"
    for v in values:
        if not low <= v <= high or (powers_of_two and v & (v - 1)):
            raise UserError(f"`{what}` values must be {kind} in {low}..{high}, got {v}.", (what,))
    return tuple(sorted(set(values)))


def parse_widths(text: str) -> tuple[int, ...]:
    """`32,64` -> (32, 64): the backbone widths to keep."""
    values = _integers(text, "widths")
    if any(v < 1 for v in values):
        raise UserError(f"`widths` takes positive integers, got {text!r}.", ("widths",))
    return tuple(sorted(set(values)))


def select_widths(candidates: Sequence[Candidate], widths: Sequence[int] | None) -> tuple[Candidate, ...]:
    """The candidates whose width is in `widths` (all when None); a width without a checkpoint is a UserError."""
    if widths is None:
        return tuple(candidates)
    have = sorted({c.width for c in candidates})
    missing = sorted(set(widths) - set(have))
    if missing:
        raise UserError(
            f"`widths` {', '.join(map(str, missing))}: no checkpoint has that backbone width "
            f"(the checkpoints given have {', '.join(map(str, have))}).",
            ("widths",),
        )
    return tuple(c for c in candidates if c.width in widths)
