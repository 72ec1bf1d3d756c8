"""The C simulation's g++ builds: cached objects are reused for an unchanged project and never served stale.

The checks on the all-kernels design (its prelude, a rebuild linked from the cache, a changed
design compiled anew) are in test_hls4ml_csim.py, on the worker that builds that design.
"""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import pytest

from metahw.errors import UserError
from metahw.hw.hls4ml.gxx import build_library, cache_root, library_opt

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


def test_the_librarys_optimisation_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    assert library_opt() == "-O0"  # the suite's (tests/conftest.py)
    monkeypatch.delenv("METAHW_HLS_CSIM_OPT")
    assert library_opt() == "-O3"  # hls4ml's build_lib.sh
    monkeypatch.setenv("METAHW_HLS_CSIM_OPT", "-Ofast")
    with pytest.raises(UserError, match="METAHW_HLS_CSIM_OPT is '-Ofast'; accepted are -O0, -O1, -O2, -O3"):
        library_opt()
