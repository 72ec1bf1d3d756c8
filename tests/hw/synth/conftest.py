"""Fixtures of the synthesis tests: one tiny RTL build folder per session (the tools write under it), and one
synthesis per build, target and options for the tests that only read its report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from metahw.hw.synth import synthesize, synthesize_asic
from tests.hw.synth.tiny_design import write_build

#: A synthesis function (`synthesize` or `synthesize_asic`) with its arguments, as `shared_synthesis` runs it.
Synthesis = Callable[..., Any]


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-lane 8-bit MAC over a 256-word weight ROM, as an RTL build folder (manifest.json + Verilog)."""
    return write_build(tmp_path_factory.mktemp("rtl") / "tiny", lanes=2, depth=256)


@pytest.fixture(scope="session")
def shared_synthesis() -> Synthesis:
    """`shared_synthesis(function, build, target, **options)`: the function's report, run once per session.

    A later call with the same function, build, target and options (progress aside: it only draws the
    status line) gets the first call's report. Yosys and nextpnr take seconds even on the tiny build,
    and the tests that use this read the report without changing it.
    """
    reports: dict[tuple, Any] = {}

    def run(function: Callable[..., Any], build: Path, target: str, *, progress: bool = False, **options: Any) -> Any:
        key = (function.__name__, Path(build).resolve(), target, tuple(sorted(options.items())))
        if key not in reports:
            reports[key] = function(build, target, progress=progress, **options)
        return reports[key]

    return run


@pytest.fixture
def cli_shares_synthesis(shared_synthesis: Synthesis, monkeypatch: pytest.MonkeyPatch) -> None:
    """`metahw report` in this test synthesises through `shared_synthesis`: a repeated report reuses the run."""

    def shared(function: Callable[..., Any]) -> Callable[..., Any]:
        def run(build: Path, target: str, **options: Any) -> Any:
            return shared_synthesis(function, build, target, **options)

        return run

    monkeypatch.setattr("metahw.cli.report.synthesize", shared(synthesize))
    monkeypatch.setattr("metahw.cli.report.synthesize_asic", shared(synthesize_asic))
