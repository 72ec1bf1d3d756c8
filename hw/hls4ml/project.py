"""An `HlsDesign` as an hls4ml ModelGraph and project folder (Vitis or Vivado HLS, io_parallel).

`hls_model` converts the design with hls4ml (`ModelGraph.from_layer_list`, its own layers for
the embedding, the registered metahw layers for the head); `write_project` writes the
project (firmware, build scripts, testbench) and its testbench data; `compile_project` builds
the C simulation library that `hls_model.compile()` builds, faster and with cached objects
(`gxx.py`). Vendor synthesis (`hls_model.build()`, Vitis/Vivado HLS) is not run here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hls4ml.model import ModelGraph

from metahw.errors import UserError
from metahw.hw.hls4ml.design import HlsDesign
from metahw.hw.hls4ml.extension import register_extension
from metahw.hw.hls4ml.gxx import build_library

#: --hls-backend value -> hls4ml backend
HLS_BACKENDS = {"vitis": "Vitis", "vivado": "Vivado"}
#: --strategy value -> hls4ml strategy of the embedding layers (the head's C++ does not depend on it)
STRATEGIES = {"latency": "Latency", "resource": "Resource"}
#: hls4ml's own default for layers the design leaves unspecified (none of them carries a program value)
DEFAULT_PRECISION = "ap_fixed<16,6>"
TB_INPUTS, TB_OUTPUTS = "tb_data/tb_input_features.dat", "tb_data/tb_output_predictions.dat"
CONFIG_FILE = "hls4ml_config.yml"


@dataclass(frozen=True)
class ProjectOptions:
    """hls4ml project settings: HLS backend, FPGA part, clock, embedding strategy and reuse factor, name."""

    hls_backend: str = "vitis"
    part: str = "xcvu13p-flga2577-2-e"
    clock_period: float = 5.0
    strategy: str = "latency"
    reuse_factor: int = 1
    project_name: str = "metahw_episode"

    def __post_init__(self) -> None:
        if self.hls_backend not in HLS_BACKENDS:
            raise UserError(
                f"unknown `hls_backend` {self.hls_backend!r}; accepted are {', '.join(HLS_BACKENDS)}", ("hls_backend",)
            )
        if self.strategy not in STRATEGIES:
            raise UserError(
                f"unknown `strategy` {self.strategy!r}; accepted are {', '.join(STRATEGIES)}", ("strategy",)
            )
        if self.reuse_factor < 1 or self.clock_period <= 0:
            raise UserError(
                f"`reuse_factor` must be >= 1 and `clock_period` > 0 (got {self.reuse_factor}, {self.clock_period})",
                ("reuse_factor", "clock_period"),
            )
        if not self.project_name.isidentifier():
            raise UserError(f"project name {self.project_name!r} must be a C identifier")


def claim_folder(out: str | Path) -> Path:
    """Make `out` ready for a new project: new, empty, or an earlier hls4ml project (removed); else UserError."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CONFIG_FILE).is_file())):
        raise UserError(f"'{out}' exists and is not an hls4ml project folder; give a new or empty folder")
    shutil.rmtree(out, ignore_errors=True)
    return out


def hls_config(design: HlsDesign, out_dir: Path, options: ProjectOptions) -> dict:
    """The hls4ml configuration: precisions of the embedding layers, tracing of every tapped layer."""
    layer_config = {name: {"Precision": dict(precision)} for name, precision in design.precisions.items()}
    traced = {layer["name"] for layer in design.layers if "cpp_function" not in layer}
    for tap in design.taps:
        if tap.layer in traced:
            layer_config.setdefault(tap.layer, {})["Trace"] = True
    return {
        "Backend": HLS_BACKENDS[options.hls_backend],
        "OutputDir": str(out_dir),
        "ProjectName": options.project_name,
        "Part": options.part,
        "ClockPeriod": options.clock_period,
        "IOType": "io_parallel",
        "TraceOutput": True,
        "HLSConfig": {
            "Model": {
                "Precision": DEFAULT_PRECISION,
                "ReuseFactor": options.reuse_factor,
                "Strategy": STRATEGIES[options.strategy],
            },
            "LayerName": layer_config,
        },
        "WriterConfig": {"Namespace": None, "WriteWeightsTxt": True, "WriteTar": False, "TBOutputStream": "both"},
    }


def hls_model(design: HlsDesign, out_dir: str | Path, options: ProjectOptions) -> ModelGraph:
    """Convert the design with hls4ml (nothing is written yet)."""
    register_extension()
    config = hls_config(design, Path(out_dir).resolve(), options)
    outputs = [out.layer for out in design.outputs]
    return ModelGraph.from_layer_list(config, [dict(layer) for layer in design.layers], design.inputs, outputs)


def write_project(model: ModelGraph, testbench: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Write the hls4ml project, and the testbench's input and expected-output rows when given."""
    model.write()
    out = Path(model.config.get_output_dir())
    if testbench is not None:
        inputs, expected = testbench
        _write_rows(out / TB_INPUTS, inputs)
        _write_rows(out / TB_OUTPUTS, expected)
    return out


def compile_project(model: ModelGraph) -> tuple[Path, float]:
    """Write the project and build its C simulation library with g++; returns (library, seconds).

    The library is the one `hls_model.compile()` builds (same sources, same path), built by
    `gxx.build_library`: hls4ml's im2col code at -O0, translation units in parallel, objects cached.
    """
    model.write()
    folder = Path(model.config.get_output_dir())
    project = model.config.get_project_name()
    library = folder / "firmware" / f"{project}-{model.config.get_config_value('Stamp')}.so"
    build = build_library(folder, project, library)
    return build.output, build.seconds


def _write_rows(path: Path, rows: np.ndarray) -> None:
    """One sample per line, values separated by spaces (hls4ml's .dat format), exact decimals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(repr(float(v)) for v in row) + "\n" for row in rows))
