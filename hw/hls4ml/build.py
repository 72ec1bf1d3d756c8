"""`metahw build --backend hls4ml`: the whole episode as an hls4ml project folder, with testbench data.

The folder is what hls4ml writes (firmware/ with the model, the metahw head sources in
firmware/nnet_utils/, weights, build_prj.tcl for Vitis/Vivado HLS, <project>_test.cpp) plus
tb_data/tb_input_features.dat (one image and its label per line) and
tb_data/tb_output_predictions.dat (the golden outputs of each line, by the episode protocol).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metahw.compiler.program import Program
from metahw.hw.hls4ml.design import HlsDesign, build_design
from metahw.hw.hls4ml.golden_steps import golden_steps
from metahw.hw.hls4ml.project import ProjectOptions, claim_folder, hls_model, write_project
from metahw.hw.hls4ml.protocol import episode_samples, expected_outputs, final_outputs, output_reals


@dataclass(frozen=True)
class HlsBuild:
    """A written project: its folder, the design, and how many testbench samples it holds."""

    folder: Path
    design: HlsDesign
    testbench_samples: int


def testbench_rows(design: HlsDesign, episodes: Sequence[Mapping[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Input rows (image values, label) and golden output rows of whole episodes, in the protocol's order."""
    buffers = design.program.buffer_map
    held = {o.buffer: np.zeros(buffers[o.buffer].shape, np.int64) for o in design.outputs}
    inputs, expected = [], []
    for episode in episodes:
        final = final_outputs(design, golden_steps(design.program, episode))
        support = len(episode[design.structure.labels])
        for index, (image, label) in enumerate(episode_samples(design, episode)):
            query = index - support if index >= support else None
            inputs.append(np.concatenate([image.reshape(-1), label]))
            expected.append(output_reals(design, expected_outputs(design, final, held, query)))
        held = final
    return np.array(inputs), np.array(expected)


def build_hls_project(
    program: Program, out: str | Path, options: ProjectOptions, testbench: Sequence[Mapping[str, np.ndarray]] = ()
) -> HlsBuild:
    """Write `program`'s hls4ml project into `out` (replacing an earlier project there) with testbench episodes."""
    design = build_design(program)
    rows = testbench_rows(design, testbench) if testbench else None
    out = claim_folder(out)
    write_project(hls_model(design, out, options), rows)
    return HlsBuild(out, design, 0 if rows is None else len(rows[0]))
