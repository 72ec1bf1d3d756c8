"""g++ builds of a written hls4ml project: the C simulation library and the testbench, fast and cached.

hls4ml's `build_lib.sh` compiles `firmware/<project>.cpp` and `<project>_bridge.cpp` one after
the other at -O3. Nearly all of that time goes into `firmware/nnet_utils/nnet_code_gen.h`, the
im2col code hls4ml generates for each io_parallel convolution (one block of ap_fixed assignments
per output pixel: 56,448 assignments for a 3x3 convolution of 32 channels on a 14x14 map), which
GCC's optimisers take minutes over and which costs next to nothing at run time. These builds
compile the same sources with hls4ml's flags, except that `nnet_code_gen.h` is compiled at
-O0: a forced-include prelude (`g++ -include`, `PRELUDE`) includes the project header and
`nnet_code_gen.h`'s own includes, then `nnet_code_gen.h` itself between `#pragma GCC
push_options` / `optimize("O0")` / `pop_options`; its include guard keeps `parameters.h` from
reading it again. GCC does not inline across optimisation levels, so the arithmetic (ap_fixed,
the dense products, activations, pools, the metahw head) is compiled exactly as before. No file
hls4ml wrote is changed: vendor synthesis reads the firmware as it is.

The translation units compile in parallel (one g++ per core), and every object is cached in
`cache_root()` under the SHA-256 of what it is made of (`object_key`): the compiler's identity,
the flags, the source and every header of the project (all of `firmware/` but the weights'
.txt, which the C simulation reads at run time). An unchanged design links from the cache in
well under a second; any change to a source, a header, the flags or the compiler makes a new
key. Objects hold no path of the project: the library's `WEIGHTS_DIR` is a symbol defined by a
one-line translation unit compiled for each build.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from metahw.atomic import atomic_path
from metahw.errors import UserError
from metahw.models.data import cache_dir

#: the prelude that every translation unit reads first (project root)
PRELUDE = "csim_prelude.h"
#: hls4ml's generated im2col code, compiled at -O0
CODE_GEN = "firmware/nnet_utils/nnet_code_gen.h"
#: the library's weights folder: a C string that a one-line translation unit (project root) defines per build
WEIGHTS_SYMBOL, WEIGHTS_UNIT = "metahw_csim_weights_dir", "csim_weights_dir.cpp"
#: the library's optimisation level (hls4ml's build_lib.sh), unless $METAHW_HLS_CSIM_OPT names another
LIBRARY_OPT = "-O3"
#: the levels $METAHW_HLS_CSIM_OPT accepts: the test suite sets -O0 for its tiny designs, which then
#: build in about a third less CPU time (the C++ front end's template instantiation is most of it) and
#: run their few episodes in a second or two
LIBRARY_OPT_LEVELS = ("-O0", "-O1", "-O2", "-O3")
#: the testbench's (Vitis csim's default): it runs a few samples, and -O1 built the tests' small design's
#: firmware unit in 16 s against 12 s at -O0 (the demo episode's testbench: 41 s either way)
TESTBENCH_OPT = "-O0"
_OBJECT_FORMAT = "metahw-gxx-1"
_CLOSING = {'"': '"', "<": ">"}


@dataclass(frozen=True)
class GxxBuild:
    """One finished build: its output, wall seconds, and which sources were compiled or came from the cache."""

    output: Path
    seconds: float
    compiled: tuple[str, ...]
    cached: tuple[str, ...]


def cache_root() -> Path:
    """Folder of cached objects: $METAHW_CACHE/hls4ml-csim, else ~/.cache/metahw/hls4ml-csim."""
    return cache_dir() / "hls4ml-csim"


def library_opt() -> str:
    """The library's optimisation flag: $METAHW_HLS_CSIM_OPT, default `LIBRARY_OPT` (hls4ml's -O3)."""
    value = os.environ.get("METAHW_HLS_CSIM_OPT", LIBRARY_OPT)
    if value not in LIBRARY_OPT_LEVELS:
        raise UserError(f"METAHW_HLS_CSIM_OPT is {value!r}; accepted are {', '.join(LIBRARY_OPT_LEVELS)}.")
    return value


def build_library(folder: str | Path, project: str, library: str | Path) -> GxxBuild:
    """Build the project's C simulation library (what `build_lib.sh` builds) at `library`.

    The library loads its weights from `folder`/firmware/weights, as hls4ml's does.
    """
    _require_gxx()
    folder = Path(folder).resolve()
    flags = (
        library_opt(),
        "-fPIC",
        *_language_flags(),
        "-Ifirmware/ap_types/",
        "-Ifirmware/",
        f"-DWEIGHTS_DIR={WEIGHTS_SYMBOL}",
    )
    weights = folder / WEIGHTS_UNIT
    weights.write_text(f'extern const char {WEIGHTS_SYMBOL}[] = "{_c_string(folder / "firmware" / "weights")}";\n')
    sources = (f"firmware/{project}.cpp", f"{project}_bridge.cpp")
    prelude = prelude_text(folder, project, f"extern const char {WEIGHTS_SYMBOL}[];")
    return _build(folder, sources, flags, prelude, ("-shared", WEIGHTS_UNIT), Path(library))


def build_testbench(folder: str | Path, project: str, executable: str) -> GxxBuild:
    """Build the project's testbench `<project>_test.cpp` with g++ -std=c++0x (Vitis csim's standard)."""
    _require_gxx()
    folder = Path(folder).resolve()
    flags = (TESTBENCH_OPT, "-std=c++0x", "-Ifirmware/ap_types/", "-Ifirmware/", '-DWEIGHTS_DIR="firmware/weights"')
    sources = (f"{project}_test.cpp", f"firmware/{project}.cpp")
    return _build(folder, sources, flags, prelude_text(folder, project), (), folder / executable)


def object_key(folder: Path, source: str, flags: Sequence[str], prelude: str) -> str:
    """SHA-256 of what the object of `source` is made of: compiler, flags, prelude, source, project headers."""
    digest = hashlib.sha256(f"{_OBJECT_FORMAT}\n{_compiler_identity()}\n{' '.join(flags)}\n".encode())
    digest.update(prelude.encode())
    for path in (folder / source, *_project_headers(folder)):
        digest.update(f"\0{path.relative_to(folder)}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prelude_text(folder: Path, project: str, declaration: str = "") -> str:
    """The forced include: the project header, nnet_code_gen.h's includes, then nnet_code_gen.h at -O0."""
    code_gen = folder / CODE_GEN
    lines = [f'#include "{project}.h"']
    if declaration:
        lines.append(declaration)
    if code_gen.is_file():
        for opening, name in re.findall(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', code_gen.read_text(), re.MULTILINE):
            local = opening == '"' and (code_gen.parent / name).is_file()
            lines.append(f'#include "nnet_utils/{name}"' if local else f"#include {opening}{name}{_CLOSING[opening]}")
        lines += [
            "#pragma GCC push_options",
            '#pragma GCC optimize("O0")',
            '#include "nnet_utils/nnet_code_gen.h"',
            "#pragma GCC pop_options",
        ]
    header = "// metahw: read first by every C-simulation translation unit (g++ -include), see hw/hls4ml/gxx.py\n"
    return header + "\n".join(lines) + "\n"


def _build(
    folder: Path, sources: Sequence[str], flags: Sequence[str], prelude: str, link: Sequence[str], output: Path
) -> GxxBuild:
    """Compile `sources` (from the cache where it has them, in parallel otherwise) and link them with `link`."""
    started = time.perf_counter()
    (folder / PRELUDE).write_text(prelude)
    compile_flags = (*flags, "-include", PRELUDE)
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    objects = {source: cache / f"{object_key(folder, source, compile_flags, prelude)}.o" for source in sources}
    missing = [source for source in sources if not objects[source].is_file()]
    with ThreadPoolExecutor(max_workers=max(1, min(len(missing), os.cpu_count() or 1))) as pool:
        list(pool.map(lambda source: _compile(folder, source, compile_flags, objects[source]), missing))
    _run(["g++", *flags, *[str(objects[source]) for source in sources], *link, "-o", str(output)], folder)
    cached = tuple(source for source in sources if source not in missing)
    return GxxBuild(output, time.perf_counter() - started, tuple(missing), cached)


def _compile(folder: Path, source: str, flags: Sequence[str], target: Path) -> None:
    """Compile one translation unit into the cache, atomically (a concurrent build may write the same key)."""
    with atomic_path(target) as tmp:
        _run(["g++", *flags, "-c", source, "-o", str(tmp)], folder)


def _run(command: list[str], folder: Path) -> None:
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"'{' '.join(command)}' failed in {folder}: {(done.stderr or done.stdout)[-2000:]}")


def _require_gxx() -> None:
    if shutil.which("g++") is None:
        raise UserError("g++ is not on PATH; the hls4ml C simulation needs it")


def _project_headers(folder: Path) -> list[Path]:
    """Every file a translation unit may include from the project: all of firmware/ but weights' .txt and builds."""
    skip = {".txt", ".so", ".o"}
    return sorted(p for p in (folder / "firmware").rglob("*") if p.is_file() and p.suffix not in skip)


@functools.cache
def _compiler_identity() -> str:
    """The resolved g++ and its version text: a different compiler never shares an object."""
    path = shutil.which("g++")
    version = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout
    return f"{Path(path).resolve() if path else 'g++'}\n{version}"


@functools.cache
def _language_flags() -> tuple[str, ...]:
    """hls4ml's build_lib.sh choices: -std=c++23 if g++ has it (else c++11), -fno-gnu-unique if it has it."""
    flags = ["-std=c++23" if _accepts("-std=c++23") else "-std=c++11"]
    if _accepts("-fno-gnu-unique"):
        flags.append("-fno-gnu-unique")
    return tuple(flags)


def _accepts(flag: str) -> bool:
    command = ["g++", "-Werror", "-fsyntax-only", flag, "-xc++", "-", "-o", os.devnull]
    return subprocess.run(command, input="", capture_output=True, text=True).returncode == 0


def _c_string(path: Path) -> str:
    """`path` as the body of a C string literal."""
    return str(path).replace("\\", "\\\\").replace('"', '\\"')
