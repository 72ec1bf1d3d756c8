"""Reading the RTL build folder's manifest.json (written by the Amaranth generator)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metahw.errors import UserError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Port:
    """One top-level port of the core (clock and reset excluded)."""

    name: str
    direction: str  # "in" or "out"
    width: int


@dataclass(frozen=True)
class Memory:
    """One on-chip memory of the core."""

    name: str
    depth: int
    width: int

    @property
    def bits(self) -> int:
        """Capacity in bits."""
        return self.depth * self.width


@dataclass(frozen=True)
class RtlManifest:
    """What synthesis needs to know about an RTL build folder."""

    folder: Path
    top: str
    verilog: Path
    clock: str
    reset: str
    ports: tuple[Port, ...]
    lanes: int | None = None
    bits: int | None = None
    width: int | None = None
    clock_mhz: float | None = None
    episode_cycles: int | None = None
    memories: tuple[Memory, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def input_bits(self) -> int:
        """Total width of the core's inputs (clock and reset excluded)."""
        return sum(p.width for p in self.ports if p.direction == "in")

    @property
    def output_bits(self) -> int:
        """Total width of the core's outputs."""
        return sum(p.width for p in self.ports if p.direction == "out")

    @property
    def memory_bits(self) -> int:
        """All memory bits the manifest lists."""
        return sum(m.bits for m in self.memories)


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def load_manifest(folder: Path) -> RtlManifest:
    """Read and check `folder/manifest.json`; UserError with one sentence on anything missing or malformed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"RTL build folder {folder} does not exist (expected a folder with {MANIFEST}).")
    path = folder / MANIFEST
    if not path.is_file():
        raise UserError(f"{path} not found: {folder} is not an RTL build folder (write one with the Amaranth backend).")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    if not isinstance(data, dict) or data.get("format") != "metahw.rtl":
        raise UserError(f"{path} is not a metahw RTL manifest (its 'format' is not 'metahw.rtl').")
    for key in ("top", "verilog", "ports"):
        if key not in data:
            raise UserError(f"{path} lacks the field {key!r}.")
    verilog = folder / str(data["verilog"])
    if not verilog.is_file():
        raise UserError(f"{verilog} (named by {path}) does not exist.")
    ports = []
    for entry in data["ports"]:
        try:
            port = Port(str(entry["name"]), str(entry["direction"]), int(entry["width"]))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: malformed port entry {entry!r} (needs name, direction, width).") from None
        if port.direction not in ("in", "out") or port.width < 1:
            raise UserError(f"{path}: port {port.name!r} needs direction 'in' or 'out' and a positive width.")
        ports.append(port)
    memories = []
    for entry in data.get("memories", []):
        try:
            memories.append(Memory(str(entry["name"]), int(entry["depth"]), int(entry["width"])))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: malformed memory entry {entry!r} (needs name, depth, width).") from None
    hardware = data.get("hardware") or {}
    program = data.get("program") or {}
    clock_mhz = hardware.get("clock_mhz")
    return RtlManifest(
        folder=folder,
        top=str(data["top"]),
        verilog=verilog,
        clock=str(data.get("clock", "clk")),
        reset=str(data.get("reset", "rst")),
        ports=tuple(ports),
        lanes=_positive_int(hardware.get("lanes")),
        bits=_positive_int(program.get("bits")),
        width=_positive_int(program.get("width")),
        clock_mhz=float(clock_mhz) if isinstance(clock_mhz, int | float) and clock_mhz > 0 else None,
        episode_cycles=_positive_int(data.get("episode_cycles")),
        memories=tuple(memories),
        raw=data,
    )
