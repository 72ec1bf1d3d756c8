"""The page's content as plain strings: validated report data -> what the template lays out.

Every number is formatted here (with `formatting`), so the template only arranges text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metahw.app.report_page import formatting as f
from metahw.app.report_page.schema import not_run_reason

#: The rungs of the verification ladder (DESIGN.md §6); any the data omits are shown as not run.
RUNGS = (
    "onnxruntime vs PyTorch",
    "golden executor",
    "cycle simulator vs golden",
    "Verilator RTL vs simulator",
    "hls4ml C simulation",
    "synthesis/PnR",
)


@dataclass
class Table:
    """A table of strings: `align` holds 'l', 'c' or 'r' per column, `row_classes` a CSS class per row,
    `wide` stretches it to the section's width, `pill` is the column drawn as status pills."""

    headers: list[str]
    rows: list[list[str]]
    align: str
    row_classes: list[str] = field(default_factory=list)
    wide: bool = False
    pill: int | None = None


@dataclass
class Section:
    """One section of the page: either `not_run` (the reason) or its tables, facts and plot."""

    title: str
    not_run: str | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[tuple[str, Table]] = field(default_factory=list)
    plot: str | None = None  # a data: URI
    notes: list[str] = field(default_factory=list)
    notes_title: str = ""


@dataclass
class Verdict:
    """The overall verdict in the header: 'pass', 'partial' or 'fail', and why."""

    status: str
    label: str
    reasons: list[str]


def build(data: dict, plots: dict[str, str]) -> dict:
    """The template context: title, subtitle, verdict and the six sections, in page order."""
    rungs = ladder(data["verification"])
    model, episode = data["model"], data["episode"]
    return {
        "title": data["title"],
        "subtitle": (
            f"{model['algorithm']} · {episode['ways']}-way {episode['shots']}-shot · {data['bits']}-bit fixed point"
        ),
        "verdict": verdict(rungs, data["resources"]),
        "sections": [
            model_section(data),
            accuracy_section(data["accuracy"], data["bits"], plots.get("accuracy_vs_bits")),
            numerics_section(data["numerics"]),
            performance_section(data, plots.get("cycles_per_kernel")),
            resources_section(data["resources"], plots.get("resources")),
            ladder_section(rungs),
        ],
    }


def ladder(rungs: list[dict]) -> list[dict]:
    """The data's rungs in their order, then every rung of `RUNGS` they omit, as not run."""
    named = {r["rung"].lower() for r in rungs}
    missing = [{"rung": r, "status": "not run", "episodes": None, "detail": "not reported"} for r in RUNGS]
    return rungs + [r for r in missing if r["rung"].lower() not in named]


def verdict(rungs: list[dict], resources: dict | None) -> Verdict:
    """Fail if a rung failed or the design does not fit; partial if a rung was not run; else pass."""
    failed = [r["rung"] for r in rungs if r["status"] == "fail"]
    skipped = [r["rung"] for r in rungs if r["status"] == "not run"]
    reasons = [f"failed: {name}" for name in failed]
    if not_run_reason(resources) is None and not resources["fits"]:
        reasons.append(f"does not fit {resources['target']}")
    if reasons:
        return Verdict("fail", "FAIL", reasons)
    passed = f"{len(rungs) - len(skipped)} of {len(rungs)} rungs pass"
    if skipped:
        return Verdict("partial", "PASS (partial)", [passed, "not run: " + ", ".join(skipped)])
    return Verdict("pass", "PASS", [passed])


def model_section(data: dict) -> Section:
    """Section 1: the model and the episode shape."""
    model, episode = data["model"], data["episode"]
    section = Section(
        "Model and episode",
        facts=[
            ("algorithm", model["algorithm"]),
            ("checkpoint", model["checkpoint"]),
            ("backbone", f"Conv-{model['depth']}, width {model['width']}, depth {model['depth']}"),
            ("episode", f"{episode['ways']}-way {episode['shots']}-shot, {episode['queries']} queries"),
            ("bits", f"{data['bits']}-bit fixed point"),
        ],
    )
    table = data["hardware_accuracy"]
    if (reason := not_run_reason(table)) is not None:
        section.facts.append(("accuracy on the hardware", f"not measured: {reason}"))
        return section
    rows = [
        [
            row["setting"],
            f.count(row["episodes"]),
            *(
                f"{f.percent(row[key]['accuracy'])} {f.plus_minus(row[key]['ci95'])}"
                for key in ("float", "8-bit", "4-bit")
            ),
            row["4-bit quantisation"],
        ]
        for row in table["rows"]
    ]
    title = f"accuracy on the cycle simulator (P = {table['lanes']}, meta-test alphabets; {table['source']})"
    section.tables.append(
        (title, Table(["setting", "episodes", "float", "8-bit", "4-bit", "4-bit by"], rows, "lrrrrl"))
    )
    return section


def accuracy_section(acc: dict | None, bits: int, plot: str | None) -> Section:
    """Section 2: float vs fixed-point accuracy with 95% CIs, agreement, and accuracy per bit width."""
    section = Section("Accuracy")
    if (reason := not_run_reason(acc)) is not None:
        section.not_run = reason
        return section
    fl, fx = acc["float"], acc["fixed"]
    delta = 100 * (fx["accuracy"] - fl["accuracy"])
    section.facts = [
        ("episodes", f.count(acc["episodes"])),
        ("agreement with float", f.percent(acc["agreement_with_float"])),
        ("fixed − float", f"{delta:+.2f} pp"),
    ]
    rows = [["float", f.percent(fl["accuracy"]), f.plus_minus(fl["ci95"])]]
    rows.append([f"{bits}-bit fixed point", f.percent(fx["accuracy"]), f.plus_minus(fx["ci95"])])
    section.tables.append(("", Table(["model", "accuracy", "95% CI"], rows, "lrr")))
    by_bits = sorted(acc["by_bits"].items(), key=lambda kv: int(kv[0]))
    sweep = [[f"{b}-bit", f.percent(e["accuracy"]), f.plus_minus(e["ci95"])] for b, e in by_bits]
    section.tables.append(("by bit width", Table(["bits", "accuracy", "95% CI"], sweep, "lrr")))
    section.plot = plot
    return section


def numerics_section(numerics: dict | None) -> Section:
    """Section 3: per-layer SQNR and saturation counts per tensor."""
    section = Section("Numerics")
    if (reason := not_run_reason(numerics)) is not None:
        section.not_run = reason
        return section
    sqnr = [[layer, f.decibels(db)] for layer, db in numerics["sqnr_db"].items()]
    saturation = [[tensor, f.count(n)] for tensor, n in numerics["saturation"].items()]
    section.tables.append(("SQNR per layer", Table(["layer", "SQNR (dB)"], sqnr, "lr")))
    classes = ["warn" if n else "" for n in numerics["saturation"].values()]
    section.tables.append(("saturation per tensor", Table(["tensor", "saturated values"], saturation, "lr", classes)))
    return section


def performance_section(data: dict, plot: str | None) -> Section:
    """Section 4: cycles per kernel and utilisation, phase cycles, latency and throughput."""
    perf = data["performance"]
    section = Section("Performance")
    if (reason := not_run_reason(perf)) is not None:
        section.not_run = reason
        return section
    total, queries = perf["total_cycles"], data["episode"]["queries"]
    section.facts = [
        ("MAC array", f"{perf['lanes']} lanes in {perf['groups']} group(s), {perf['conv']} convs"),
        ("cycles per episode", f.count(total)),
        ("adaptation phase", _phase(perf["adaptation_cycles"], total)),
        ("query phase", _phase(perf["query_cycles"], total)),
        ("query phase per query", f"{f.count(round(perf['query_cycles'] / queries))} cycles"),
    ]
    clocks = [("nominal clock", perf["clock_mhz"])]
    fmax = measured_fmax(data)
    if fmax is not None:
        clocks.append(("measured fmax", fmax))
    else:
        section.notes.append("No fmax measured: latency and throughput are at the nominal clock only.")
    timing = []
    for name, mhz in clocks:
        seconds = total / (mhz * 1e6)
        timing.append([name, f.mhz(mhz), f.milliseconds(1e3 * seconds), f.rate(1 / seconds), f.rate(queries / seconds)])
    headers = ["clock", "frequency", "latency per episode", "episodes/s", "queries/s"]
    section.tables.append(("latency and throughput", Table(headers, timing, "lrrrr")))
    kernels = [
        [k["label"], f.count(k["cycles"]), f.percent(k["cycles"] / total), _utilisation(k["utilisation"])]
        for k in perf["kernels"]
    ]
    headers = ["kernel", "cycles", "share of episode", "MAC utilisation"]
    section.tables.append(("cycles per kernel", Table(headers, kernels, "lrrr")))
    section.plot = plot
    return section


def _phase(cycles: int, total: int) -> str:
    return f"{f.count(cycles)} cycles ({f.percent(cycles / total)})"


def _utilisation(fraction: float | None) -> str:
    return "–" if fraction is None else f.percent(fraction)  # None: the op does no MAC-array work


def measured_fmax(data: dict) -> float | None:
    """The measured fmax: the performance section's, else the resources section's, else None."""
    fmax = data["performance"]["fmax_mhz"]
    if fmax is None and not_run_reason(data["resources"]) is None:
        fmax = data["resources"]["fmax_mhz"]
    return fmax


def resources_section(res: dict | None, plot: str | None) -> Section:
    """Section 5: resources used vs the device's capacity, fit, fmax and suggestions."""
    section = Section("Resources")
    if (reason := not_run_reason(res)) is not None:
        section.not_run = reason
        return section
    section.facts = [
        ("target", res["target"]),
        ("fits", "yes" if res["fits"] else "no"),
        ("fmax", "not measured" if res["fmax_mhz"] is None else f.mhz(res["fmax_mhz"])),
    ]
    rows, classes = [], []
    for name, used in res["used"].items():
        capacity = res["capacity"][name]
        share = used / capacity if capacity else float("nan")
        rows.append([name, f.count(used), f.count(capacity), f.percent(share)])
        classes.append("bad" if used > capacity else "")
    section.tables.append(("", Table(["resource", "used", "available", "used %"], rows, "lrrr", classes)))
    section.notes = list(res["suggestions"])
    section.notes_title = "suggestions"
    section.plot = plot
    return section


def ladder_section(rungs: list[dict]) -> Section:
    """Section 6: one row per rung of the verification ladder, coloured by status."""
    rows = [
        [r["rung"], r["status"], "–" if r["episodes"] is None else f.count(r["episodes"]), r["detail"]] for r in rungs
    ]
    classes = ["status-" + r["status"].replace(" ", "-") for r in rungs]
    table = Table(["rung", "status", "episodes", "detail"], rows, "lcrl", classes, wide=True, pill=1)
    return Section("Verification ladder", tables=[("", table)])
