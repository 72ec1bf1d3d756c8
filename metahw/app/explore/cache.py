"""Results that are computed once: a JSON file per key, written atomically, computed under a file lock.

Workers that need the same result at the same time (two trials sharing a checkpoint and bit
width) take turns on the lock: the second finds the file the first wrote. With Ray the
results folder must be on a file system that every node sees.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from metahw.atomic import write_text_atomic


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the hidden file `.NAME.lock` beside `path` while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_json(path: Path, compute: Callable[[], dict]) -> tuple[dict, bool]:
    """The JSON object in `path`, or `compute()` written there first; and whether it came from the file."""
    with locked(path):
        if path.is_file():
            return json.loads(path.read_text()), True
        value = compute()
        write_text_atomic(path, json.dumps(value, indent=1) + "\n")
        return value, False
