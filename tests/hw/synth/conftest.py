"""Fixtures of the synthesis tests: one tiny RTL build folder per session (the tools write under it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hw.synth.tiny_design import write_build


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-lane 8-bit MAC over a 256-word weight ROM, as an RTL build folder (manifest.json + Verilog)."""
    return write_build(tmp_path_factory.mktemp("rtl") / "tiny", lanes=2, depth=256)
