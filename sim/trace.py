"""The instruction trace of a simulated episode as a VCD file, to compare against the RTL in a waveform viewer.

Signals change at instruction boundaries only (no clock toggles), so a trace stays small:
`start`, `busy`, `done`; `step` (a code per op or I/O step, legend in the header), `kind`
(instruction kind, legend in the header), `group` (image group of a segment instruction,
x for head instructions), `issue` (high while the instruction issues its beats, low while
it decodes and drains), `query` (high in the query phase). Time is in picoseconds at the
config's clock target.
"""

from __future__ import annotations

from pathlib import Path

from metahw.atomic import write_text_atomic
from metahw.compiler.kernels import timing
from metahw.sim.simulator import SimRun

KINDS = (
    timing.OUTER,
    timing.WIDE,
    timing.REDUCE,
    timing.WINO,
    timing.VECTOR,
    timing.SCAN,
    timing.ROWRED,
    timing.EXP,
    timing.RECIP,
    timing.RSQRT,
    timing.IO,
    timing.OUT,
)
#: (name, width, VCD identifier)
SIGNALS = (
    ("start", 1, "!"),
    ("busy", 1, '"'),
    ("done", 1, "#"),
    ("issue", 1, "$"),
    ("query", 1, "%"),
    ("step", 16, "&"),
    ("kind", 4, "'"),
    ("group", 16, "("),
)


def _value(width: int, ident: str, value: int | None) -> str:
    if width == 1:
        return f"{value}{ident}"
    return f"b{'x' if value is None else format(value, 'b')} {ident}"


def vcd_text(run: SimRun, clock_mhz: float) -> str:
    """The VCD document of `run` (see the module docstring for the signals)."""
    period = round(1e6 / clock_mhz)
    steps = list(dict.fromkeys(e.label for e in run.events))
    codes = {label: i + 1 for i, label in enumerate(steps)}
    kinds = {kind: i + 1 for i, kind in enumerate(KINDS)}
    changes: dict[int, dict[str, int | None]] = {}

    def at(cycle: int, **values: int | None) -> None:
        changes.setdefault(cycle, {}).update(values)

    at(0, start=1, busy=0, done=0, issue=0, query=0, step=0, kind=0, group=None)
    at(timing.T_START, start=0, busy=1)
    for e in run.events:
        at(e.start, step=codes[e.label], kind=kinds[e.kind], group=e.group, issue=0, query=int(e.query))
        if e.beats:
            at(e.start + timing.T_ISSUE, issue=1)
            at(e.start + timing.T_ISSUE + e.beats, issue=0)
    end = run.total_cycles - timing.T_DONE
    at(end, busy=0, done=1, issue=0, step=0, kind=0, group=None)
    at(run.total_cycles, done=0)

    legend = " ".join(f"{code}={label}" for label, code in codes.items())
    kind_legend = " ".join(f"{code}={kind}" for kind, code in kinds.items())
    lines = [
        "$version metahw cycle simulator $end",
        f"$comment step codes: {legend} $end",
        f"$comment kind codes: {kind_legend} $end",
        "$timescale 1 ps $end",
        "$scope module accelerator $end",
        *(f"$var wire {width} {ident} {name} $end" for name, width, ident in SIGNALS),
        "$upscope $end",
        "$enddefinitions $end",
    ]
    widths = {name: (width, ident) for name, width, ident in SIGNALS}
    for cycle in sorted(changes):
        lines.append(f"#{cycle * period}")
        lines += [_value(*widths[name], value) for name, value in changes[cycle].items()]
    return "\n".join(lines) + "\n"


def write_vcd(run: SimRun, clock_mhz: float, path: str | Path) -> Path:
    """Write the trace of `run` to `path` (atomically)."""
    path = Path(path)
    write_text_atomic(path, vcd_text(run, clock_mhz))
    return path
