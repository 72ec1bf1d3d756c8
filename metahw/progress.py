"""Progress bars on stderr (so that --json output on stdout stays clean)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")
stderr_console = Console(stderr=True)


def _columns() -> tuple:
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )


def track(items: Iterable[T], total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Iterate over `items`, showing a progress bar on stderr when `enabled`."""
    if not enabled:
        yield from items
        return
    with StatusTracker(total, description) as bar:
        for item in items:
            yield item
            bar.advance()


class StatusTracker:
    """A progress bar whose trailing text the caller updates (e.g. running loss)."""

    def __init__(self, total: int, description: str, enabled: bool = True) -> None:
        self.enabled = enabled
        if enabled:
            self._bar = Progress(*_columns(), console=stderr_console)
            self._task = self._bar.add_task(description, total=total, status="")

    def __enter__(self) -> StatusTracker:
        if self.enabled:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.stop()

    def advance(self, steps: int = 1, status: str = "") -> None:
        """Move the bar forward and replace its status text."""
        if self.enabled:
            self._bar.update(self._task, advance=steps, status=status)
