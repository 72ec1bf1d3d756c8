"""PNG of a `compare` result: accuracy (95% CI) against bit width, with the float accuracy."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from metahw.atomic import atomic_path  # noqa: E402


def plot_accuracy_vs_bits(result: dict, path: str | os.PathLike) -> None:
    """Write the accuracy-vs-bits plot of a compare result to `path` (PNG, atomically)."""
    bits = sorted(int(b) for b in result["fixed"])
    rows = [result["fixed"][str(b)]["accuracy"] for b in bits]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.errorbar(
        bits,
        [100 * r["accuracy"] for r in rows],
        yerr=[100 * r["ci95"] for r in rows],
        marker="o",
        capsize=4,
        label="fixed point (golden)",
    )
    flt = result["float"]["torch"]
    ax.axhline(100 * flt["accuracy"], color="k", linestyle="--", label=f"float {100 * flt['accuracy']:.2f}%")
    ax.axhspan(100 * (flt["accuracy"] - flt["ci95"]), 100 * (flt["accuracy"] + flt["ci95"]), color="k", alpha=0.08)
    ax.set_xlabel("bits (weights and activations)")
    ax.set_ylabel("accuracy on meta-test episodes (%)")
    ax.set_xticks(bits)
    ax.set_title(f"{result['algorithm']} {result['ways']}-way {result['shots']}-shot, {result['episodes']} episodes")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
