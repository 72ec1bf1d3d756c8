"""Fixtures of the hls4ml backend tests: one compiled C simulation of every kernel (CLI runner: tests/conftest.py).

The all-kernels design is built once per session (one g++ build of a 4x4-image program) with
the modes that differ most from hls4ml's defaults: round half to even, wrap-around.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from metahw.compiler.program import Program
from metahw.hw.hls4ml import HlsBuild, HlsSimulation, ProjectOptions, build_hls_project
from tests.hw.hls4ml.hls_programs import all_kernels_program, random_inputs

TESTBENCH_SEEDS = (100, 101)


@dataclass(frozen=True)
class AllKernels:
    program: Program
    build: HlsBuild
    simulation: HlsSimulation


@pytest.fixture(scope="session")
def all_kernels(tmp_path_factory: pytest.TempPathFactory) -> AllKernels:
    """The all-kernels program's project with two testbench episodes, and a compiled C simulation of it."""
    program = all_kernels_program("half_even", "wrap")
    folder = tmp_path_factory.mktemp("hls")
    options = ProjectOptions()
    testbench = [random_inputs(program, seed) for seed in TESTBENCH_SEEDS]
    build = build_hls_project(program, folder / "testbench", options, testbench)
    return AllKernels(program, build, HlsSimulation.build(build.design, folder / "csim", options))
