"""hls4ml backend: a compiled Program's whole episode as an hls4ml project, bit-exact in C simulation.

The embedding layers are hls4ml's own (Conv2D, ReLU, LeakyReLU, pools, Merge, Transpose,
Reshape, Dense; `ops/<family>.py`) with every precision set from the program's formats, except a
global average over a non-power-of-two map; that one and the head kernels are custom layers registered
through hls4ml's extension API (`layers.py`, `templates.py`, C++ in `nnet_metahw*.h`). The design
takes one image and its label per call (support images, then query images, -1 as the label
of a query image) and outputs the program's output buffers. docs/hls4ml.md describes the
design and what was checked.

- `build_hls_project(program, out, options, testbench)`: write the project folder.
- `check_hls_episodes(program, episodes, ...)`: compile the C simulation with g++ and check
  episodes (arrays: `models.episode_sources`) against the golden executor (raises `HlsMismatch`).
"""

from metahw.hw.hls4ml.build import HlsBuild, build_hls_project
from metahw.hw.hls4ml.design import HlsDesign, build_design
from metahw.hw.hls4ml.episodes import HlsEpisodeRuns, check_hls_episodes
from metahw.hw.hls4ml.project import HLS_BACKENDS, STRATEGIES, ProjectOptions
from metahw.hw.hls4ml.simulation import HlsMismatch, HlsSimulation

__all__ = [
    "HLS_BACKENDS",
    "STRATEGIES",
    "HlsBuild",
    "HlsDesign",
    "HlsEpisodeRuns",
    "HlsMismatch",
    "HlsSimulation",
    "ProjectOptions",
    "build_design",
    "build_hls_project",
    "check_hls_episodes",
]
