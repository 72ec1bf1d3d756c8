"""The project's own hls4ml testbench, built and run with g++ the way Vitis HLS C simulation would.

`<project>_test.cpp` reads tb_data/tb_input_features.dat line by line, calls the top function
and writes tb_data/csim_results.log. Vitis HLS compiles it with `-std=c++0x` (build_prj.tcl);
`run_testbench` does the same with g++ (`gxx.build_testbench`: -O0, the two sources in
parallel, objects cached), so the head's C++ is checked against that standard and the testbench
data files are exercised without a vendor tool. The log prints ap_fixed values with 6
significant digits (hls4ml's print_result), so it is a smoke check; the exact
comparison is `HlsSimulation`'s.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from metahw.errors import UserError
from metahw.hw.hls4ml.gxx import build_testbench
from metahw.hw.hls4ml.project import TB_OUTPUTS

CSIM_LOG = "tb_data/csim_results.log"
EXECUTABLE = "csim_testbench"


def run_testbench(folder: str | Path, project: str, outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Compile and run the testbench of the project in `folder` (a model with `outputs` outputs).

    Returns (C-simulation rows, expected rows), one row per sample: every output's values.
    """
    folder = Path(folder)
    build_testbench(folder, project, EXECUTABLE)
    done = subprocess.run([f"./{EXECUTABLE}"], cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"'./{EXECUTABLE}' failed in {folder}: {(done.stderr or done.stdout)[-2000:]}")
    lines = _lines(folder / CSIM_LOG)  # one line per output per sample
    results = [sum(lines[i : i + outputs], []) for i in range(0, len(lines), outputs)]
    return np.array(results), np.array(_lines(folder / TB_OUTPUTS))


def _lines(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]
