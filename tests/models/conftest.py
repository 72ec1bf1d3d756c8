"""Fixtures of the models tests: a one-shot "runs" folder built from the background zips, CLI runners."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omniglot_runs import RunTruth, write_runs


@pytest.fixture(scope="session")
def runs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RunTruth]]:
    """Two runs under one root: run01 20-way (Balinese, the official size), run02 5-way (Korean). Read-only."""
    root = tmp_path_factory.mktemp("runs")
    truths = write_runs(data_dir, root, {"run01": ("Balinese", 20), "run02": ("Korean", 5)})
    return root, truths


@pytest.fixture(scope="session")
def metahw_command() -> list[str]:
    """The installed console script (falls back to the entry point through this interpreter)."""
    script = Path(sys.executable).parent / "metahw"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from metahw.cli import main; main()"]


@pytest.fixture
def run_metahw(metahw_command: list[str], cli_env: dict[str, str]):
    """Run `metahw ARGS` as a subprocess (a fresh interpreter, as a user would)."""

    def invoke(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*metahw_command, *map(str, args)],
            capture_output=True,
            text=True,
            env=cli_env,
            timeout=timeout,
            check=False,
        )

    return invoke
