"""pareto.png: accuracy against latency for every trial, feasibility marked, the front highlighted."""

from __future__ import annotations

from pathlib import Path

from metahw.app.explore.pareto import feasible
from metahw.app.explore.space import Design
from metahw.atomic import atomic_path


def plot_pareto(records: list[dict], front: list[dict], path: Path, target: str) -> None:
    """Scatter of accuracy (%) vs latency (ms): feasible designs coloured by LUTs, infeasible ones as crosses.

    Front designs are ringed and annotated (width, bits, P); with LUTs as a third objective the
    front is not a curve in this plane, so no line joins them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    complete = [r for r in records if r.get("state") == "complete"]
    good = [r for r in complete if feasible(r)]
    bad = [r for r in complete if not feasible(r)]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    if bad:
        ax.scatter(
            [r["objectives"]["latency_ms"] for r in bad],
            [100 * r["objectives"]["accuracy"] for r in bad],
            marker="x",
            color="0.6",
            label=f"does not fit {target}",
        )
    if good:
        luts = [r["objectives"]["luts"] or 0 for r in good]
        points = ax.scatter(
            [r["objectives"]["latency_ms"] for r in good],
            [100 * r["objectives"]["accuracy"] for r in good],
            c=luts,
            cmap="viridis",
            s=36,
            label="fits",
            zorder=2,
        )
        fig.colorbar(points, ax=ax, label="LUTs")
    if front:
        xs = [r["objectives"]["latency_ms"] for r in front]
        ys = [100 * r["objectives"]["accuracy"] for r in front]
        ax.scatter(xs, ys, s=110, facecolors="none", edgecolors="tab:red", lw=1.5, label="Pareto front", zorder=3)
        for record, x, y in zip(front, xs, ys):
            design = Design(**record["params"])
            ax.annotate(
                f"({design.width}, {design.bits}, {design.lanes})",
                (x, y),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=7,
            )
    latencies = [r["objectives"]["latency_ms"] for r in complete]
    if latencies and max(latencies) > 10 * min(latencies):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("latency per episode (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"metahw explore on {target}: annotated (width, bits, lanes)")
    ax.grid(True, alpha=0.3)
    if complete:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
