"""ONNX episode -> Program: import, passes, calibration, quantisation, lowering, report.

`compile_episode` is the whole compiler as one function (calibrating on seeded episodes of an
Omniglot split; `compile_calibrated` on any episodes, e.g. the user's own); `save_build` writes
its result (program.json, weights.npz, quantisation.json) into a folder atomically.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from metahw.compiler.calibrate import Range, calibrate
from metahw.compiler.ir import Graph
from metahw.compiler.lower import lower
from metahw.compiler.onnx_import import check_episode_inputs, import_model
from metahw.compiler.passes import standard_pipeline
from metahw.compiler.program import Program
from metahw.compiler.quant_config import QuantConfig
from metahw.errors import UserError
from metahw.models.data import OmniglotSplit
from metahw.models.episodes import Episode, EpisodeSampler
from metahw.outputs import writable_folder

REPORT_FILE = "quantisation.json"


@dataclass(frozen=True)
class CompileResult:
    """The program and what produced it: the passed float graph and the calibration ranges."""

    program: Program
    graph: Graph
    ranges: dict[str, Range]
    config: QuantConfig

    def report(self) -> dict:
        """Per-buffer format, float range covered, calibrated range, and the program's size."""
        buffers = []
        for buf in self.program.buffers:
            fmt = buf.qformat
            key = buf.name.split(".", 1)[1] if buf.name.split(".", 1)[0] in ("support", "query") else buf.name
            buffers.append(
                {
                    "name": buf.name,
                    "kind": buf.kind,
                    "shape": list(buf.shape),
                    "format": str(fmt),
                    "bits": fmt.bits,
                    "frac": fmt.frac,
                    "signed": fmt.signed,
                    "representable": [fmt.dequantize(fmt.min_int).item(), fmt.dequantize(fmt.max_int).item()],
                    "calibrated": list(self.ranges[key]) if key in self.ranges else None,
                    "channel_fracs": None if buf.channel_fracs is None else list(buf.channel_fracs),
                }
            )
        weight_bits = sum(int(np.prod(b.shape)) * b.qformat.bits for b in self.program.buffers_of("weight"))
        return {
            "config": self.config.to_dict(),
            "meta": self.program.meta.to_json(),
            "ops": [op.op for op in self.program.ops],
            "weight_bytes": weight_bits // 8,
            "macs": sum(op.macs(self.program.buffer_map) for op in self.program.ops),
            "buffers": buffers,
        }


def episode_feeds(split: OmniglotSplit, ways: int, shots: int, queries: int, episodes: int, seed: int) -> list[dict]:
    """Float onnxruntime feeds of seeded episodes (support_y one-hot)."""
    return calibration_feeds(calibration_episodes(split, ways, shots, queries, episodes, seed), ways)


def calibration_episodes(
    split: OmniglotSplit, ways: int, shots: int, queries: int, episodes: int = 32, seed: int = 0
) -> list[Episode]:
    """Seeded episodes of `split` with `queries` queries per class: what `compile_episode` calibrates on."""
    sampler = EpisodeSampler(split, ways, shots, queries, seed=seed)
    return [sampler.sample() for _ in range(episodes)]


def calibration_feeds(episodes: Iterable[Episode], ways: int) -> list[dict]:
    """Float onnxruntime feeds of the episodes (support_y one-hot over `ways` classes)."""
    eye = np.eye(ways, dtype=np.float32)
    return [{"support_x": e.support_x, "support_y": eye[e.support_y], "query_x": e.query_x} for e in episodes]


def episode_shape(model: onnx.ModelProto) -> tuple[int, int]:
    """(ways, shots) of an exported episode, read from its support_y input."""
    check_episode_inputs(model)
    dims = [d.dim_value for d in model.graph.input[1].type.tensor_type.shape.dim]
    return dims[1], dims[0] // dims[1]


def compile_episode(
    model: onnx.ModelProto,
    config: QuantConfig,
    calibration: OmniglotSplit,
    queries: int,
    calibration_episodes: int = 32,
    seed: int = 0,
) -> CompileResult:
    """Compile an exported episode to a Program, calibrating on seeded episodes of `calibration`."""
    ways, shots = episode_shape(model)
    image, query = (tuple(d.dim_value for d in i.type.tensor_type.shape.dim[1:]) for i in model.graph.input[::2])
    split_image = (1, *calibration.images.shape[2:])
    if image == query and image != split_image:  # (unequal shapes: the importer names both)
        raise UserError(
            f"the episode's images are {list(image)} but the Omniglot calibration images are "
            f"{list(split_image)}: calibrate on your own episodes with `compile_calibrated`.",
            ("compile_calibrated",),
        )
    if ways > calibration.num_classes:
        raise UserError(
            f"the episode is {ways}-way but the Omniglot {calibration.name} split has only "
            f"{calibration.num_classes} classes to calibrate on: calibrate on your own episodes with "
            "`compile_calibrated`.",
            ("compile_calibrated",),
        )
    feeds = episode_feeds(calibration, ways, shots, max(1, min(queries // ways, 5)), calibration_episodes, seed)
    return _compile(model, config, feeds, queries)


def compile_calibrated(
    model: onnx.ModelProto, config: QuantConfig, calibration: Iterable[Episode], queries: int
) -> CompileResult:
    """Compile an exported episode to a Program, calibrating on the given episodes (the user's own data)."""
    ways, _ = episode_shape(model)
    return _compile(model, config, calibration_feeds(calibration, ways), queries)


def check_compilable(model: onnx.ModelProto, config: QuantConfig, queries: int) -> None:
    """Refuse, before any calibration, an episode that cannot be compiled with `config` (UserError).

    Imports, passes and lowers the graph with a placeholder range [-1, 1] on every value:
    unsupported ops and attributes, an episode shape the lowering rejects, and overrides naming
    no tensor of the program are all found in well under a second, not after calibration.
    """
    if queries < 1:
        raise UserError(f"the program must classify at least 1 query (got {queries}).")
    graph = standard_pipeline(import_model(model))
    values = {v for node in model.graph.node for v in node.output} | {i.name for i in model.graph.input}
    lower(graph, dict.fromkeys(values, (-1.0, 1.0)), config, queries)


def _compile(model: onnx.ModelProto, config: QuantConfig, feeds: list[dict], queries: int) -> CompileResult:
    """Import, pass, calibrate on the float feeds, and lower to a Program classifying `queries` queries."""
    graph = standard_pipeline(import_model(model))
    ranges = calibrate(model, feeds)
    return CompileResult(lower(graph, ranges, config, queries), graph, ranges, config)


#: what a build folder holds: an existing folder with anything else in it is not replaced
BUILD_FILES = frozenset({"program.json", "weights.npz", REPORT_FILE})
#: besides them, the RTL that `metahw simulate --rtl` checks the build with (`rtl_check_folder`)
_RTL_CHECK = re.compile(r"rtl_p[0-9]+")


def rtl_check_folder(build: str | os.PathLike, lanes: int) -> Path:
    """Where `metahw simulate BUILD --rtl` keeps the RTL of P = `lanes`: inside the build, replaced with it."""
    return Path(build) / f"rtl_p{lanes}"


def _written_with_a_build(entry: Path) -> bool:
    return entry.name in BUILD_FILES or (entry.is_dir() and _RTL_CHECK.fullmatch(entry.name) is not None)


def check_build_target(out: str | os.PathLike) -> Path:
    """`out` as a build folder to write: new, empty, or an earlier build (nothing else in it); else UserError.

    Writing a build replaces the folder, so a folder holding files the compiler did not write
    (or a file at that path, or a place that cannot be written) is refused rather than
    deleted. An earlier build may hold the RTL that `simulate --rtl` checked it with. Call it
    before any work is done.
    """
    return writable_folder(out, "build", lambda folder: all(map(_written_with_a_build, folder.iterdir())), BUILD_FILES)


def save_build(result: CompileResult, out: str | os.PathLike) -> Path:
    """Write program.json, weights.npz and quantisation.json into `out`, replacing it atomically.

    `out` must pass `check_build_target`: a new or empty folder, or an earlier build.
    """
    out = check_build_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        result.program.save(tmp)
        (tmp / REPORT_FILE).write_text(json.dumps(result.report(), indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
