"""`metahw report`: synthesis and place-and-route of an RTL build folder on an FPGA target, or an ASIC area report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from metahw.cli.command import app
from metahw.hw.synth import (
    ASIC_TARGETS,
    DEVICES,
    AsicReport,
    SynthReport,
    check_synthesis_inputs,
    synthesize,
    synthesize_asic,
)


def _amount(value: float) -> str:
    return f"{value:,.1f}" if value != int(value) else f"{int(value):,}"


def _table(report: SynthReport) -> Table:
    table = Table(title=f"{report.top} on {report.target} ({report.part})", title_justify="left")
    for column, justify in (
        ("resource", "left"),
        ("used", "right"),
        ("available", "right"),
        ("used %", "right"),
        ("unit", "left"),
    ):
        table.add_column(column, justify=justify)
    for line in report.resources:
        percent = "-" if not line.capacity else f"{line.percent:.1f}"
        style = None if line.fits else "bold red"
        table.add_row(line.resource, _amount(line.used), _amount(line.capacity), percent, line.unit, style=style)
    return table


def _summary(report: SynthReport) -> list[str]:
    lines = []
    if report.fmax_mhz is not None:
        lines.append(
            f"fmax       {report.fmax_mhz:.1f} MHz (nextpnr, target {report.target_mhz:g} MHz, clock "
            f"{report.clock_net})"
        )
    else:
        why = "no place-and-route"
        if report.pnr_outcome == "overflow":
            why = "the packed design does not fit"
        elif report.pnr_outcome == "timeout":
            why = f"place-and-route stopped at its {report.pnr_timeout_s:g} s limit"
        lines.append(f"fmax       not measured ({why}); latency below at the target {report.target_mhz:g} MHz")
    path = report.critical_path
    if path is not None:
        share = 100 * path["routing_ns"] / path["delay_ns"] if path["delay_ns"] else 0.0
        lines.append(
            f"critical   {path['start_module']} -> {path['end_module']}, {path['delay_ns']:.1f} ns: "
            f"{path['logic_levels']} logic levels, {share:.0f} % routing ({path['start_cell']} -> {path['end_cell']})"
        )
        lines += [f"  source   {source}" for source in path["sources"]]
    if report.latency_ms is not None and report.episodes_per_s is not None:
        lines.append(
            f"latency    {report.episode_cycles:,} cycles per episode = {report.latency_ms:.4g} ms at "
            f"{report.latency_clock_mhz:g} MHz; {report.episodes_per_s:,.1f} episodes/s"
        )
    lines.append(f"fits       {'yes' if report.fits else 'no'}")
    times = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.seconds.items())
    lines.append(f"tools      {', '.join(report.tools.values())} ({times})")
    lines += [f"note       {note}" for note in report.notes]
    lines += [f"suggestion {text}" for text in report.suggestions]
    lines.append(f"logs       {Path(report.logs['yosys']).parent}")
    return lines


def _asic_tables(report: AsicReport) -> list[Table]:
    cells = Table(title=f"{report.top} on {report.target} ({report.library})", title_justify="left")
    for column, justify in (("cell kind", "left"), ("cells", "right"), ("area um^2", "right"), ("area %", "right")):
        cells.add_column(column, justify=justify)
    total = report.std_cell_area_um2 or 1.0
    for kind, (count, area) in report.kinds().items():
        cells.add_row(kind, f"{count:,}", f"{area:,.1f}", f"{100 * area / total:.1f}")
    cells.add_row("total", f"{report.cell_count:,}", f"{report.std_cell_area_um2:,.1f}", "100.0", style="bold")
    memories = Table(title="memories (kept as memories: SRAM macros, no area)", title_justify="left")
    for column, justify in (
        ("memory", "left"),
        ("width x depth", "right"),
        ("bits", "right"),
        ("ports r/w", "right"),
        ("read", "left"),
        ("contents", "left"),
    ):
        memories.add_column(column, justify=justify)
    for m in report.memories:
        contents = "initialised" if m.initialised else "-"
        memories.add_row(
            m.name, f"{m.width} x {m.depth:,}", f"{m.bits:,}", f"{m.read_ports}/{m.write_ports}", m.read, contents
        )
    memories.add_row("total", "", f"{report.memory_bits:,}", "", "", "", style="bold")
    return [cells, memories]


def _asic_summary(report: AsicReport) -> list[str]:
    share = 100 * report.sequential_area_um2 / report.std_cell_area_um2 if report.std_cell_area_um2 else 0.0
    lines = [
        f"process    {report.process}, cells {report.library} from {report.library_source}",
        f"area       {report.std_cell_area_um2:,.1f} um^2 standard cells ({report.std_cell_area_um2 / 1e6:.4f} mm^2), "
        f"{report.cell_count:,} cells; flip-flops {report.sequential_area_um2:,.1f} um^2 ({share:.1f} %)",
        f"flip-flops {report.flip_flops:,}",
        f"memories   {len(report.memories)}, {report.memory_bits:,} bits (manifest: {report.manifest_memory_bits:,})",
    ]
    lines += [f"n/a        {what}: {why}" for what, why in report.unavailable.items()]
    times = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.seconds.items())
    lines.append(f"tools      {', '.join(report.tools.values())} ({times})")
    lines += [f"note       {note}" for note in report.notes]
    lines.append(f"logs       {Path(report.logs['yosys']).parent}")
    return lines


@app.command("report")
def report_command(
    build: Annotated[Path, typer.Argument(help="RTL build folder (with manifest.json) of the Amaranth backend.")],
    target: Annotated[
        str, typer.Option(help=f"FPGA target: {', '.join(DEVICES)}; or ASIC (area only): {', '.join(ASIC_TARGETS)}.")
    ],
    no_pnr: Annotated[bool, typer.Option("--no-pnr", help="Synthesis only: no place-and-route, no fmax.")] = False,
    pnr: Annotated[str, typer.Option(help="Placement: timing (timing-driven) or fast (lower-bound fmax).")] = "timing",
    pnr_timeout: Annotated[
        float | None,
        typer.Option(help="Stop place-and-route after this many seconds (no fmax then; default: no limit)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    progress: bool = True,
) -> None:
    """Synthesise (Yosys) and place and route (nextpnr) the RTL for a target: resources, fit, fmax, latency.

    An ASIC target gives standard-cell area, cell kinds, flip-flops and memories instead (no place-and-route).
    """
    check_synthesis_inputs(build, target, pnr, pnr_timeout)
    console = Console(width=max(100, Console().width))
    if target in ASIC_TARGETS:
        asic = synthesize_asic(build, target, progress=progress and not as_json)
        if as_json:
            typer.echo(json.dumps(asic.to_dict(), indent=2))
            return
        for table in _asic_tables(asic):
            console.print(table)
        for line in _asic_summary(asic):
            typer.echo(line)
        return
    report = synthesize(
        build,
        target,
        place_and_route=not no_pnr,
        progress=progress and not as_json,
        pnr_effort=pnr,
        pnr_timeout=pnr_timeout,
    )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    console.print(_table(report))
    for line in _summary(report):
        typer.echo(line)
