"""Where a command may write: checked before any work starts, so a bad `-o` costs nothing and deletes nothing.

Every output of every command goes through one of these checks first:

- `writable_file`: a file to create or replace (a checkpoint, an ONNX file, a VCD, JSON).
  Refused: an existing folder at that path, a file where a parent folder should be, a
  location the process cannot write.
- `writable_folder`: a folder the command fills. Refused, besides the above: a folder that
  holds anything other than an earlier output of the same command (which the command may
  replace), and the current folder or one above it.
- `exclusive`: one writer per output at a time; a second command writing the same path
  while the first runs is refused instead of silently overwriting (last writer wins).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from metahw.errors import UserError


def _first_existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists (the folder in which the output would be created)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor)


def _require_creatable(path: Path, what: str) -> None:
    """`path`'s missing parents can be made and the nearest existing one accepts new files."""
    if path.exists():
        return
    ancestor = _first_existing(path.parent)
    if not ancestor.is_dir():
        raise UserError(f"cannot write {what} {path}: {ancestor} is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as exc:
        raise UserError(f"cannot write {what} {path}: {ancestor} does not accept new files ({exc.strerror}).") from None


def writable_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as a file to write (`what` names it in messages): not a folder, in a folder that can be written."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name in it, e.g. {path / 'out'}.")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"cannot write {what} {path}: the file is read-only.")
    _require_creatable(path, what)
    return path


def writable_folder(
    path: str | os.PathLike, what: str, earlier: Callable[[Path], bool], own: frozenset[str] = frozenset()
) -> Path:
    """`path` as a folder to fill: new, empty, or one for which `earlier(path)` says it is an earlier output.

    A folder holding anything else is refused, never cleared: the tool deletes only what it wrote.
    The refusal names the folder's entries, leaving out the names in `own` (what the tool writes).
    """
    path = Path(path)
    here = Path.cwd().resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file; give a new folder, an empty one or an earlier {what}.")
    if path.resolve() == here or path.resolve() in here.parents:
        raise UserError(f"{what} {path} is the current folder or one above it; give a subfolder, e.g. ./out.")
    if path.is_dir() and any(path.iterdir()) and not earlier(path):
        shown = sorted(p.name for p in path.iterdir() if p.name not in own) or sorted(p.name for p in path.iterdir())
        more = ", ..." if len(shown) > 3 else ""
        raise UserError(
            f"{path} holds files that are not an earlier {what} ({', '.join(shown[:3])}{more}); give a "
            f"new folder, an empty one or an earlier {what}: nothing in it is replaced."
        )
    _require_creatable(path, what)
    return path


def _lock_file(path: Path) -> Path:
    key = hashlib.sha256(str(path.absolute().resolve()).encode()).hexdigest()[:32]
    folder = Path(tempfile.gettempdir()) / "metahw-locks"
    folder.mkdir(exist_ok=True)
    return folder / f"{key}.lock"


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold the only write claim on output `path` while the block runs; UserError if another process holds it.

    The claim is an advisory lock (flock) on a file in the temporary folder named after the
    output's absolute path, so nothing is added to the user's folders and a crashed command
    leaves no stale claim (the kernel releases it with the process).
    """
    with _lock_file(Path(path)).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another metahw command is writing {what} {path} right now; wait for it to finish or "
                "give another output."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
