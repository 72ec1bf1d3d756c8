"""The clock's critical path from nextpnr's `--report` JSON: where it starts and ends, and what it is made of.

nextpnr lists, per clock domain pair, the worst path as a chain of elements: `clk-to-q` of
the launching register, then `routing` (a net, with the Amaranth source lines Yosys kept as
its `src` attribute) and `logic` (a LUT, carry or DSP stage) in turn, and `setup` at the
capturing register. Cell names keep the design's hierarchy (`core.<module>.<signal>_<cell
suffix>`), so the module a path starts and ends in is the cell name up to its last dot.
This is what someone raising fmax needs first: which module to register, and how much of
the period is wire.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

#: the kinds of path elements nextpnr reports
_KINDS = ("clk-to-q", "logic", "routing", "setup")


@dataclass(frozen=True)
class CriticalPath:
    """One register-to-register path of the core clock: its ends, its delay split, its logic depth."""

    start_cell: str
    end_cell: str
    start_module: str
    end_module: str
    delay_ns: float
    logic_ns: float
    routing_ns: float
    #: logic elements (LUTs, carries, DSP stages) between the two registers
    logic_levels: int
    #: the Amaranth source lines of the nets along the path, in path order, each once
    sources: tuple[str, ...]

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {**asdict(self), "sources": list(self.sources)}


def module_of(cell: str) -> str:
    """The hierarchical module of a cell name: everything before its last dot ('core' for a top-level signal)."""
    return cell.rsplit(".", 1)[0] if "." in cell else cell


def critical_path(data: dict, clock_net: str, root: str | os.PathLike | None = None) -> CriticalPath | None:
    """The worst path from `clock_net` to `clock_net` in a nextpnr report object (None if it lists none).

    Source lines under `root` are shown relative to it (the repository, so they read as
    `hw/amaranth/top.py:120`).
    """
    for entry in data.get("critical_paths", []):
        if _clock_of(entry.get("from")) == clock_net and _clock_of(entry.get("to")) == clock_net:
            return _path(entry.get("path", []), root)
    return None


def _clock_of(name: object) -> str | None:
    """'posedge clk$glb' -> 'clk$glb' (nextpnr prefixes the clock edge); '<async>' stays itself."""
    if not isinstance(name, str):
        return None
    return name.split(" ", 1)[1] if " " in name else name


def _path(elements: list[dict], root: str | os.PathLike | None) -> CriticalPath | None:
    if not elements:
        return None
    delay = {kind: sum(float(e.get("delay", 0.0)) for e in elements if e.get("type") == kind) for kind in _KINDS}
    sources: list[str] = []
    for element in elements:
        for source in map(str, element.get("sources", [])):
            shown = _relative(source, root)
            if source.rpartition(":")[0].endswith(".py") and shown not in sources:  # not Yosys's own cell maps
                sources.append(shown)
    start = elements[0]["from"]["cell"]
    end = elements[-1]["to"]["cell"]
    return CriticalPath(
        start_cell=start,
        end_cell=end,
        start_module=module_of(start),
        end_module=module_of(end),
        delay_ns=round(sum(delay.values()), 3),
        logic_ns=round(delay["logic"] + delay["clk-to-q"] + delay["setup"], 3),
        routing_ns=round(delay["routing"], 3),
        logic_levels=sum(1 for e in elements if e.get("type") == "logic"),
        sources=tuple(sources),
    )


def _relative(source: str, root: str | os.PathLike | None) -> str:
    """A 'path:line' source relative to `root` where it lies under it."""
    if root is None:
        return source
    path, _, line = source.rpartition(":")
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        return source
    return source if rel.startswith("..") else f"{rel}:{line}"
