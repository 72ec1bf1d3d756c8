"""The zoo's accuracy table measured on the hardware: float, 8-bit and 4-bit on the cycle simulator.

    .venv/bin/python benchmarks/hardware_accuracy.py [--qat-dir out/zoo-qat4] [--episodes 1000] [--lanes 16]

For every zoo checkpoint and each of 5w1s, 5w5s, 20w1s and 20w5s (meta-test alphabets, 15
queries per class, seeded episodes, the same ones for every row of a cell), the episode the
hardware runs (`metahw export zoo:NAME --ways N --shots K`: the learner's own head) is run in
PyTorch float and, compiled at 8 and at 4 bits, on the cycle simulator of the design `metahw
build --lanes P` builds (`metahw.sim.engine`, which runs the embedding once per image and the
head once per episode; the first episode of each cell also runs whole and must give the same
prediction). This is `metahw compare CKPT --engine simulator --lanes P --bits 8` per cell, with
SMEM enlarged to `--smem-kib` (memory sizes change no value and no cycle count; at 15 queries per
class the 20-way heads' scratch outgrows the default 64 KiB).

The 4-bit row uses the checkpoint of the same name in `--qat-dir` where there is one (QAT:
`benchmarks/train_zoo.py --qat-bits 4 --out-dir DIR`), post-training quantisation of the
float checkpoint otherwise; the table says which. Agreement is with the float checkpoint's
predictions on the same episodes. Prints a table, writes benchmarks/results/hardware_accuracy.json
(after every cell, so a long run can be read while it goes) and a plot beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from metahw.atomic import write_text_atomic
from metahw.compiler.compare import compare_episodes, omniglot_comparison
from metahw.hardware import HardwareConfig
from metahw.models.checkpoint import load_checkpoint
from metahw.models.data import load_omniglot
from metahw.models.export import episode_head, export_episode
from metahw.models.learners import MetaLearner
from metahw.sim.engine import simulator_engine

SETTINGS = [(5, 1), (5, 5), (20, 1), (20, 5)]
#: the order of the table and the plot: metric learners, head learners, then the MAML family
ORDER = ["protonet", "protonet32", "matchingnet", "protomaml", "anil", "maml", "fomaml", "reptile", "metasgd"]
ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "models" / "zoo"


def measure_cell(
    learner: MetaLearner, ways: int, shots: int, bits: list[int], args: argparse.Namespace, omniglot
) -> tuple[dict, dict]:
    """One (checkpoint, setting) cell at the bit widths: the comparison dict and its predictions by row."""
    spec = episode_head(learner, ways, shots, None)
    model = export_episode(learner, spec)
    chosen, calibration = omniglot_comparison(
        spec, omniglot.split("test"), omniglot.split("val"), args.episodes, args.queries, args.seed
    )
    engine = simulator_engine(args.lanes, HardwareConfig(lanes=args.lanes, support_bytes=args.smem_kib * 1024))
    result = compare_episodes(learner, spec, model, bits, chosen, calibration, True, engine=engine, onnxruntime=False)
    return result, result.pop("predictions")


def summary(accuracy: dict) -> dict:
    """Accuracy and 95 % CI half-width, in percent."""
    return {"accuracy": 100 * accuracy["accuracy"], "ci95": 100 * accuracy["ci95"]}


def main() -> None:
    """Measure every zoo checkpoint at the four settings on the cycle simulator."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None, help="zoo names (default: every checkpoint)")
    parser.add_argument("--qat-dir", type=Path, default=ROOT / "out" / "zoo-qat4")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--lanes", type=int, default=16)
    parser.add_argument(
        "--smem-kib",
        type=int,
        default=512,
        help="SMEM of the simulated design (KiB): Matching Nets' 20-way attention over 300 queries needs more "
        "than the default 64",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", nargs="*", default=[f"{w}w{s}s" for w, s in SETTINGS])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hardware_accuracy.json")
    parser.add_argument("--table", action="store_true", help="only print the markdown table of --out (and plot it)")
    args = parser.parse_args()
    if args.table:
        rows = json.loads(args.out.read_text())
        plot_hardware_accuracy(rows, args.out.with_suffix(".png"))
        print(markdown_table(rows))
        return

    names = args.only or sorted(p.stem for p in ZOO.glob("*.pt"))
    settings = [(w, s) for w, s in SETTINGS if f"{w}w{s}s" in args.settings]
    omniglot = load_omniglot(None)
    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["model"], r["setting"]) for r in rows}
    for name in names:
        learner = load_checkpoint(ZOO / f"{name}.pt").learner
        qat_path = args.qat_dir / f"{name}.pt"
        low = load_checkpoint(qat_path).learner if qat_path.exists() else learner
        for ways, shots in settings:
            setting = f"{ways}w{shots}s"
            if (name, setting) in done:
                continue
            start = time.perf_counter()
            qat = low is not learner
            # post-training 4 bits run on the same float episodes: one comparison holds both widths
            result, predicted = measure_cell(learner, ways, shots, [8] if qat else [8, 4], args, omniglot)
            low_result, low_predicted = (
                measure_cell(low, ways, shots, [4], args, omniglot) if qat else (result, predicted)
            )
            eight, four = result["fixed"]["8"], low_result["fixed"]["4"]
            rows.append(
                {
                    "model": name,
                    "algorithm": learner.algorithm,
                    "setting": setting,
                    "episodes": args.episodes,
                    "queries_per_class": args.queries,
                    "lanes": args.lanes,
                    "smem_bytes": args.smem_kib * 1024,
                    "head": {"inner_steps": result["inner_steps"]},
                    "float": summary(result["float"]["torch"]),
                    "8-bit": {
                        **summary(eight["accuracy"]),
                        "agreement_with_float": 100 * eight["agreement_with_float"],
                        "cycles_per_episode": eight["whole_episode"]["cycles"],
                        "whole_episode_equal": eight["whole_episode"]["equal"],
                    },
                    "4-bit": {
                        **summary(four["accuracy"]),
                        "quantisation": "QAT" if qat else "post-training",
                        "float_of_qat_checkpoint": summary(low_result["float"]["torch"]) if qat else None,
                        "agreement_with_float": 100 * float(np.mean(low_predicted["4-bit"] == predicted["torch"])),
                        "whole_episode_equal": four["whole_episode"]["equal"],
                    },
                    "seconds": time.perf_counter() - start,
                }
            )
            rows = in_order(rows)
            write_text_atomic(args.out, json.dumps(rows, indent=2) + "\n")
            print_row(next(r for r in rows if (r["model"], r["setting"]) == (name, setting)))
    png = args.out.with_suffix(".png")
    plot_hardware_accuracy(rows, png)
    print(markdown_table(rows))
    print(f"wrote {args.out} and {png}")


def plot_hardware_accuracy(rows: list[dict], png: Path) -> None:
    """One panel per setting: float, 8-bit and 4-bit accuracy per model with their 95 % CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = in_order(rows)
    settings = [f"{w}w{s}s" for w, s in SETTINGS if any(r["setting"] == f"{w}w{s}s" for r in rows)]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(len(settings), 1, figsize=(10, 2.6 * len(settings)), squeeze=False)
    for ax, setting in zip(axes[:, 0], settings, strict=True):
        cells = {r["model"]: r for r in rows if r["setting"] == setting}
        x = np.arange(len(models))
        for i, (key, color) in enumerate((("float", "#888888"), ("8-bit", "#1f77b4"), ("4-bit", "#ff7f0e"))):
            shown = [m for m in models if m in cells]
            ax.bar(
                x[[models.index(m) for m in shown]] + (i - 1) * 0.27,
                [cells[m][key]["accuracy"] for m in shown],
                0.27,
                yerr=[cells[m][key]["ci95"] for m in shown],
                color=color,
                label=key if key != "4-bit" else "4-bit (QAT where trained)",
            )
        ax.set_xticks(x, models, fontsize=8)
        ax.set_ylim(50, 100)
        ax.set_ylabel(f"{setting} accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(loc="lower left", fontsize=8, ncols=3)
    axes[0, 0].set_title("Zoo accuracy on the cycle simulator (meta-test alphabets, 95 % CI)", fontsize=11)
    fig.tight_layout()
    tmp = png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(png)


def in_order(rows: list[dict]) -> list[dict]:
    """Rows by model (`ORDER`, then any other by name) and setting (`SETTINGS`)."""
    settings = [f"{w}w{s}s" for w, s in SETTINGS]

    def key(row: dict) -> tuple:
        model = row["model"]
        return (ORDER.index(model) if model in ORDER else len(ORDER), model, settings.index(row["setting"]))

    return sorted(rows, key=key)


def markdown_table(rows: list[dict]) -> str:
    """The table of docs/models.md: a row per (model, setting), accuracies with their 95 % CIs."""
    rows = in_order(rows)

    def cell(entry: dict) -> str:
        return f"{entry['accuracy']:.2f} +- {entry['ci95']:.2f}"

    lines = [
        "| model | setting | float | 8-bit | agrees | 4-bit | by | agrees | cycles per episode (P = "
        f"{rows[0]['lanes']}) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        eight, four = row["8-bit"], row["4-bit"]
        lines.append(
            f"| {row['model']} | {row['setting']} | {cell(row['float'])} | {cell(eight)} | "
            f"{eight['agreement_with_float']:.2f} % | {cell(four)} | {four['quantisation']} | "
            f"{four['agreement_with_float']:.2f} % | {eight['cycles_per_episode']:,} |"
        )
    return "\n".join(lines)


def print_row(row: dict) -> None:
    """One cell as a line of the table."""
    four = row["4-bit"]
    print(
        f"{row['model']:<12} {row['setting']:<6} float {row['float']['accuracy']:6.2f} +- {row['float']['ci95']:.2f}"
        f"  8-bit {row['8-bit']['accuracy']:6.2f} ({row['8-bit']['agreement_with_float']:.2f} % agree)"
        f"  4-bit {four['quantisation'][:4]} {four['accuracy']:6.2f} ({four['agreement_with_float']:.2f} % agree)"
        f"  {row['8-bit']['cycles_per_episode']:,} cycles  {row['seconds']:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
