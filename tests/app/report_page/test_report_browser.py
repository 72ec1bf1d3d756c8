"""The report page in headless Chromium: the rendered DOM holds every number and a screenshot has content."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from metahw.app.report_page import render_report
from tests.app.report_page.report_fixtures import EXPECTED_TEXT, visible_text

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        pytest.skip("Debian's chromium is not installed: .ci/run installs it (apt-get install chromium)")
    return path


def _run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [chromium, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def test_dom_and_screenshot(data, tmp_path):
    chromium = _chromium()
    page = render_report(data, tmp_path / "report").as_uri()
    dom = _run(chromium, tmp_path / "profile", "--dump-dom", page).stdout
    text = visible_text(dom)
    assert [s for s in EXPECTED_TEXT if s not in text] == []
    assert dom.count("data:image/png;base64,") == 3
    shot = tmp_path / "shot.png"
    _run(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,3000", page)
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert shot.stat().st_size > 100_000  # the tables and the three plots; a page with one line of text is ~17 KB
