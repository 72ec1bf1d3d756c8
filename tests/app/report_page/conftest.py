"""Fixtures of the report page tests."""

from __future__ import annotations

import pytest

from tests.app.report_page.report_fixtures import report


@pytest.fixture
def data() -> dict:
    """A fresh copy of the realistic report for each test."""
    return report()
