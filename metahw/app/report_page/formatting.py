"""How the page writes numbers: one function per kind of quantity, so every table agrees."""

from __future__ import annotations

import math


def percent(fraction: float | None) -> str:
    """A fraction in [0, 1] as a percentage with two decimals: 0.9694 -> '96.94 %'."""
    if fraction is None or math.isnan(fraction):
        return "n/a"
    return f"{100 * fraction:.2f} %"


def plus_minus(fraction: float) -> str:
    """A 95% confidence half-width in percentage points: 0.0045 -> '± 0.45 %'."""
    return "n/a" if math.isnan(fraction) else f"± {100 * fraction:.2f} %"


def count(n: int) -> str:
    """An integer with thousands separators: 1234567 -> '1,234,567'."""
    return f"{n:,}"


def decibels(db: float) -> str:
    """An SQNR in dB with one decimal; infinity (no quantisation noise) is 'exact'."""
    return "exact" if math.isinf(db) else f"{db:.1f}"


def mhz(frequency: float) -> str:
    """A clock frequency: 87.34 -> '87.3 MHz'."""
    return f"{frequency:.1f} MHz"


def milliseconds(ms: float) -> str:
    """A latency in milliseconds with three decimals and thousands separators."""
    return f"{ms:,.3f} ms"


def rate(per_second: float) -> str:
    """A throughput in items per second with one decimal and thousands separators."""
    return f"{per_second:,.1f}"
