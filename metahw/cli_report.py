"""`metahw report`: synthesis and place-and-route of an RTL build folder on an FPGA target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from metahw.cli import app
from metahw.hw.synth import DEVICES, SynthReport, check_synthesis_inputs, synthesize


def _amount(value: float) -> str:
    return f"{value:,.1f}" if value != int(value) else f"{int(value):,}"


def _table(report: SynthReport) -> Table:
    table = Table(title=f"{report.top} on {report.target} ({report.part})", title_justify="left")
    for column, justify in (("resource", "left"), ("used", "right"), ("available", "right"), ("used %", "right"),
                            ("unit", "left")):  # fmt: skip
        table.add_column(column, justify=justify)
    for line in report.resources:
        percent = "-" if not line.capacity else f"{line.percent:.1f}"
        style = None if line.fits else "bold red"
        table.add_row(line.resource, _amount(line.used), _amount(line.capacity), percent, line.unit, style=style)
    return table


def _summary(report: SynthReport) -> list[str]:
    lines = []
    if report.fmax_mhz is not None:
        lines.append(f"fmax       {report.fmax_mhz:.1f} MHz (nextpnr, target {report.target_mhz:g} MHz, clock "
                     f"{report.clock_net})")  # fmt: skip
    else:
        lines.append(
            f"fmax       not measured (no place-and-route); latency below at the target {report.target_mhz:g} MHz"
        )
    if report.latency_ms is not None and report.episodes_per_s is not None:
        lines.append(f"latency    {report.episode_cycles:,} cycles per episode = {report.latency_ms:.4g} ms at "
                     f"{report.latency_clock_mhz:g} MHz; {report.episodes_per_s:,.1f} episodes/s")  # fmt: skip
    lines.append(f"fits       {'yes' if report.fits else 'no'}")
    times = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.seconds.items())
    lines.append(f"tools      {', '.join(report.tools.values())} ({times})")
    lines += [f"note       {note}" for note in report.notes]
    lines += [f"suggestion {text}" for text in report.suggestions]
    lines.append(f"logs       {Path(report.logs['yosys']).parent}")
    return lines


@app.command("report")
def report_command(
    build: Annotated[Path, typer.Argument(help="RTL build folder (with manifest.json) of the Amaranth backend.")],
    target: Annotated[str, typer.Option(help=f"FPGA target: {', '.join(DEVICES)}.")],
    no_pnr: Annotated[bool, typer.Option("--no-pnr", help="Synthesis only: no place-and-route, no fmax.")] = False,
    pnr: Annotated[str, typer.Option(help="Placement: timing (timing-driven) or fast (lower-bound fmax).")] = "timing",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    progress: bool = True,
) -> None:
    """Synthesise (Yosys) and place and route (nextpnr) the RTL for a target: resources, fit, fmax, latency."""
    check_synthesis_inputs(build, target, pnr)
    report = synthesize(build, target, place_and_route=not no_pnr, progress=progress and not as_json, pnr_effort=pnr)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    console = Console(width=max(100, Console().width))
    console.print(_table(report))
    for line in _summary(report):
        typer.echo(line)
