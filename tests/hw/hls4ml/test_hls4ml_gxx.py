"""The C simulation's g++ builds: cached objects are reused for an unchanged project and never served stale."""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import pytest

from metahw.hw.hls4ml import HlsSimulation, ProjectOptions, build_design
from metahw.hw.hls4ml.gxx import build_library, cache_root, prelude_text
from tests.hw.hls4ml.hls_programs import all_kernels_program, random_inputs

MAIN, BRIDGE = "firmware/demo.cpp", "demo_bridge.cpp"


def _mini_project(folder: Path, value: int) -> Path:
    """A project shaped like hls4ml's (firmware/<p>.h, firmware/<p>.cpp, <p>_bridge.cpp) returning a header's value."""
    (folder / "firmware").mkdir(parents=True)
    _write_header(folder, value)
    (folder / MAIN).write_text('#include "demo.h"\nint demo_main() { return DEMO_VALUE; }\n')
    _write_bridge(folder, 1)
    return folder


def _write_header(folder: Path, value: int) -> None:
    (folder / "firmware" / "demo.h").write_text(f"#define DEMO_VALUE {value}\nint demo_main();\n")


def _write_bridge(folder: Path, value: int) -> None:
    (folder / BRIDGE).write_text(
        '#include "firmware/demo.h"\n'
        f'extern "C" int demo_value() {{ return 1000 * {value} + demo_main(); }}\n'
        'extern "C" const char *demo_weights() { return WEIGHTS_DIR; }\n'
    )


def _run(library: Path) -> tuple[int, str]:
    lib = ctypes.CDLL(str(library))  # a new path per build: dlopen would hand back an already loaded one
    lib.demo_weights.restype = ctypes.c_char_p
    return lib.demo_value(), lib.demo_weights().decode()


def test_a_changed_header_or_source_is_recompiled_and_an_unchanged_one_comes_from_the_cache(tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on PATH")
    project = _mini_project(tmp_path / "a", 7)
    first = build_library(project, "demo", tmp_path / "lib1.so")
    assert first.compiled == (MAIN, BRIDGE) and first.cached == ()
    assert _run(first.output) == (1007, str(project / "firmware" / "weights"))

    _write_header(project, 8)
    header = build_library(project, "demo", tmp_path / "lib2.so")
    assert header.compiled == (MAIN, BRIDGE)  # both include the header
    assert _run(header.output)[0] == 1008

    _write_bridge(project, 2)
    bridge = build_library(project, "demo", tmp_path / "lib3.so")
    assert bridge.compiled == (BRIDGE,) and bridge.cached == (MAIN,)
    assert _run(bridge.output)[0] == 2008

    moved = tmp_path / "elsewhere"
    shutil.copytree(project, moved)
    again = build_library(moved, "demo", tmp_path / "lib4.so")
    assert again.compiled == () and again.cached == (MAIN, BRIDGE)
    assert _run(again.output) == (2008, str(moved / "firmware" / "weights"))  # no path is cached in an object
    assert len(list(cache_root().glob("*.o"))) >= 5


def test_the_prelude_compiles_hls4ml_im2col_code_at_O0_after_its_own_includes(all_kernels):
    prelude = prelude_text(all_kernels.build.folder, "metahw_episode").splitlines()
    code_gen = prelude.index('#include "nnet_utils/nnet_code_gen.h"')
    assert prelude[code_gen - 2 : code_gen + 2] == [
        "#pragma GCC push_options",
        '#pragma GCC optimize("O0")',
        '#include "nnet_utils/nnet_code_gen.h"',
        "#pragma GCC pop_options",
    ]
    assert prelude[1] == '#include "metahw_episode.h"' and '#include "nnet_utils/nnet_mult.h"' in prelude[:code_gen]


def test_a_rebuilt_design_links_from_the_cache_and_a_changed_one_is_compiled(all_kernels, tmp_path):
    options = ProjectOptions()
    again = HlsSimulation.build(all_kernels.simulation.design, tmp_path / "again", options)  # fixture built it
    assert again.compile_seconds < 5
    again.run_episode(random_inputs(all_kernels.program, 3), 3)  # raises HlsMismatch at a difference

    # other rounding and overflow modes: the same top-level .cpp, other types in the headers
    program = all_kernels_program("truncate", "saturate")
    objects = set(cache_root().glob("*.o"))
    changed = HlsSimulation.build(build_design(program), tmp_path / "changed", options)
    top = "firmware/metahw_episode.cpp"
    assert (tmp_path / "changed" / top).read_text() == (tmp_path / "again" / top).read_text()
    assert len(set(cache_root().glob("*.o")) - objects) == 2  # both translation units compiled anew
    for episode in range(2):
        changed.run_episode(random_inputs(program, episode), episode)
