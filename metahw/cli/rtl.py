"""`metahw build --backend amaranth` and `metahw simulate --rtl verilator`: the generated RTL and its check."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from metahw.cli.episodes import describe, echo_runs, finish
from metahw.compiler.compile import rtl_check_folder
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.hardware import HardwareConfig
from metahw.hw.amaranth.build import FORMAT_TAG, MANIFEST, build_rtl
from metahw.hw.amaranth.check import check_rtl_episodes
from metahw.hw.amaranth.verilator import RtlMismatch, lint
from metahw.hw.synth.devices import DEVICES
from metahw.models.episodes import EpisodeSet


def is_rtl_build(folder: Path) -> bool:
    """Whether `folder` is an earlier `metahw build --backend amaranth` output (its manifest says so)."""
    try:
        return json.loads((folder / MANIFEST).read_text()).get("format") == FORMAT_TAG
    except (OSError, ValueError, AttributeError):
        return False


def build_amaranth(program: Program, hw: HardwareConfig, out: Path, as_json: bool) -> None:
    """Write the Verilog, the manifest and the instruction listing; lint the Verilog with Verilator."""
    started = time.perf_counter()
    build_rtl(program, hw, out)
    seconds = time.perf_counter() - started
    lint(out)
    manifest = json.loads((out / "manifest.json").read_text())
    report = {
        "out": str(out),
        "build_seconds": seconds,
        "lint": "verilator --lint-only clean (WIDTH waived)",
        **manifest,
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    hwj = manifest["hardware"]
    soft = hw.lanes - hw.hard_multipliers
    multipliers = f" ({soft} multiplying in LUTs)" if soft else ""
    groups = f" in {hw.groups} groups of {hw.group_lanes}" if hw.groups > 1 else ""
    typer.echo(
        f"wrote {out / manifest['verilog']} in {seconds:.1f} s: P={hwj['lanes']} lanes{groups}{multipliers}, "
        f"{hwj['operand_bits']}-bit operands, {hwj['acc_bits']}-bit accumulators, "
        f"{manifest['instructions']} instructions, "
        f"{manifest['episode_cycles']:,} cycles per episode; verilator --lint-only clean"
    )
    memory_bits = sum(m["bits"] for m in manifest["memories"])
    typer.echo(
        f"  memories: {memory_bits / 8192:.1f} KiB in {len(manifest['memories'])} memories; "
        f"next: metahw report {out} --target {_first_target(memory_bits)}"
    )


def _first_target(memory_bits: int) -> str:
    """The smallest FPGA with place and route whose block RAM holds the bits, else the largest one.

    Raw bits only: `metahw report` checks the memories block by block.
    """
    placed = sorted((d for d in DEVICES.values() if d.has_pnr), key=lambda d: d.bram_blocks * d.bram_block_kbit)
    fitting = [d for d in placed if d.bram_blocks * d.bram_block_kbit * 1024 >= memory_bits]
    return (fitting or placed[-1:])[0].name


def simulate_rtl(
    program: Program,
    hw: HardwareConfig,
    build: Path,
    episodes: EpisodeSet,
    seeds: tuple[int, int],
    as_json: bool,
    progress: bool,
    predictions: Path | None = None,
) -> None:
    """Episodes in Verilator against the simulator: outputs and cycle counts side by side, exit 1 on a difference.

    `seeds` are the episodes' seed and the stall seed (0: the stream never stalls), both recorded in the report.
    """
    seed, stall_seed = seeds
    folder = rtl_check_folder(build, hw.lanes)
    try:
        check = check_rtl_episodes(program, hw, episodes, folder, stall_seed, progress and not as_json)
    except RtlMismatch as exc:
        typer.echo(f"metahw: RTL and simulator disagree: {exc}", err=True)
        raise typer.Exit(1) from None
    report = {
        "build": str(build),
        "rtl": str(folder),
        "lanes": hw.lanes,
        "seed": seed,
        "stall_seed": stall_seed,
        **check.to_dict(),
    }
    finish(report, episodes, {"rtl": check.predictions}, predictions)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    n = check.episodes
    typer.echo(
        f"Verilator RTL vs cycle simulator, {describe(episodes)}, P={hw.lanes}: {check.matched}/{n} "
        f"identical (every output element, every instruction's issue cycle)"
    )
    typer.echo(
        f"  cycles per episode   RTL {check.rtl_cycles:,}   simulator {check.sim_cycles:,}   "
        f"difference {check.rtl_cycles - check.sim_cycles}"
    )
    shown = "not known (no query labels)" if check.accuracy is None else f"{100 * check.accuracy:.2f} %"
    typer.echo(f"  accuracy             {shown}")
    echo_runs(report)
    typer.echo(
        f"  Verilator            {report['rtl_cycles_per_second'] / 1e6:.1f} M cycles/s "
        f"(build {check.build_seconds:.0f} s)"
    )


def refuse_unknown_rtl(rtl: str | None) -> None:
    """Only Verilator runs the RTL here."""
    if rtl is not None and rtl != "verilator":
        raise UserError(f"unknown --rtl {rtl!r}; accepted is verilator")
