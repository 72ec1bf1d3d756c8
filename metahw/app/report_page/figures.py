"""The page's plots as PNG bytes, drawn with matplotlib's Agg canvas (no pyplot, no global backend)."""

from __future__ import annotations

import io

from matplotlib.figure import Figure

BLUE, ORANGE, RED, GREY = "#2563eb", "#ea580c", "#dc2626", "#6b7280"


def _png(fig: Figure) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return buffer.getvalue()


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="both", color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)


def accuracy_vs_bits(accuracy: dict) -> bytes:
    """Float accuracy as a line with its 95% CI band, fixed point per bit width with CI error bars."""
    by_bits = sorted((int(b), e) for b, e in accuracy["by_bits"].items())
    bits = [b for b, _ in by_bits]
    fig = Figure(figsize=(5.6, 3.2))
    ax = fig.add_subplot()
    fl = accuracy["float"]
    lo, hi = (min(bits) - 1, max(bits) + 1) if bits else (0, 1)
    ax.axhline(100 * fl["accuracy"], color=GREY, linewidth=1.5, label="float")
    ax.axhspan(100 * (fl["accuracy"] - fl["ci95"]), 100 * (fl["accuracy"] + fl["ci95"]), color=GREY, alpha=0.18)
    ax.errorbar(
        bits,
        [100 * e["accuracy"] for _, e in by_bits],
        yerr=[100 * e["ci95"] for _, e in by_bits],
        fmt="o",
        color=BLUE,
        capsize=4,
        markersize=6,
        label="fixed point (95% CI)",
    )
    ax.set_xlim(lo, hi)
    ax.set_xticks(bits)
    ax.set_xlabel("bits")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Accuracy vs bit width ({accuracy['episodes']:,} episodes)", fontsize=11)
    ax.legend(loc="lower right", frameon=False)
    _style(ax)
    return _png(fig)


def cycles_per_kernel(kernels: list[dict]) -> bytes:
    """One horizontal bar per kernel, in program order from the top; log scale when cycles span 100x."""
    labels = [k["label"] for k in kernels]
    cycles = [k["cycles"] for k in kernels]
    fig = Figure(figsize=(7.2, 1.0 + 0.32 * max(len(kernels), 1)))
    ax = fig.add_subplot()
    ax.barh(range(len(kernels)), cycles, color=BLUE, height=0.65)
    ax.set_yticks(range(len(kernels)), labels, fontsize=8)
    ax.invert_yaxis()
    positive = [c for c in cycles if c > 0]
    if positive and max(positive) >= 100 * min(positive):
        ax.set_xscale("log")
    ax.set_xlabel("cycles per episode")
    ax.set_title("Cycles per kernel", fontsize=11)
    _style(ax)
    ax.grid(axis="y", visible=False)
    return _png(fig)


def resources(resources: dict) -> bytes:
    """Percentage of the device used per resource, with the 100 % line; over-capacity bars in red."""
    names = list(resources["used"])
    shares = [100 * resources["used"][n] / resources["capacity"][n] if resources["capacity"][n] else 0.0 for n in names]
    fig = Figure(figsize=(5.6, 2.8))
    ax = fig.add_subplot()
    bars = ax.bar(names, shares, color=[RED if s > 100 else BLUE for s in shares], width=0.6)
    ax.bar_label(bars, labels=[f"{s:.1f} %" for s in shares], padding=2, fontsize=9)
    ax.axhline(100, color=RED, linestyle="--", linewidth=1)
    ax.set_ylim(0, max(110, 1.15 * max(shares, default=0)))
    ax.set_ylabel(f"% of {resources['target']}")
    ax.set_title(f"Resources used on {resources['target']}", fontsize=11)
    _style(ax)
    ax.grid(axis="x", visible=False)
    return _png(fig)
