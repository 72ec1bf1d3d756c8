"""Move memory initial values out of the Verilog into `$readmemh` files.

Amaranth's Verilog backend writes a memory's initial contents as one assignment per word in
an `initial begin ... end` block. For the weight memories that is tens of thousands of
lines, and Yosys's Verilog frontend needs minutes to read them (docs/rtl.md has the
measurement). This pass rewrites each such block into
`initial $readmemh("<memory>.hex", <memory>);` and returns the hex files' text, one word per
line, most significant digit first. Yosys and Verilator both read the files relative to
the Verilog's folder (the Verilator testbench runs there); vendor tools do the same.
Zero-initialised memories that single-port RAM must hold lose their block altogether.

The rewrite is strict: a block that does not have exactly the shape the backend writes is
an error, never silently kept or dropped.
"""

from __future__ import annotations

import re
from collections.abc import Collection

_DECLARATION = re.compile(r"^\s*reg \[(\d+):0\] (\S+) \[(\d+):0\];$")
_ASSIGNMENT = re.compile(r"^\s*(\S+)\[(\d+)\] = (\d+)'([hdb])([0-9a-fA-F]+);$")
_BASES = {"h": 16, "d": 10, "b": 2}


def _file_name(memory: str, taken: Collection[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", memory).strip("_") or "mem"
    name, k = f"{stem}.hex", 1
    while name in taken:
        k += 1
        name = f"{stem}_{k}.hex"
    return name


def _read_block(lines: list[str], start: int, memory: str, width: int, depth: int) -> tuple[list[str], int]:
    """The words of the `initial begin` block at `start` (a zero word where none is assigned); index after `end`."""
    digits = -(-width // 4)
    words = ["0" * digits] * depth
    k = start + 1
    while lines[k].strip() != "end":
        match = _ASSIGNMENT.match(lines[k])
        if not match or match.group(1) != memory or int(match.group(3)) != width:
            raise ValueError(f"unexpected line in the initial block of memory {memory}: {lines[k].strip()!r}")
        address = int(match.group(2))
        if address >= depth:
            raise ValueError(f"memory {memory} initialises word {address} beyond its depth {depth}")
        value = int(match.group(5), _BASES[match.group(4)])
        words[address] = f"{value:0{digits}x}"
        k += 1
    return words, k + 1


def split_memory_init(verilog: str, uninitialised: Collection[str] = ()) -> tuple[str, dict[str, str]]:
    """The Verilog with every memory's initial block replaced by `$readmemh`, and {file name: hex text}.

    The memories named in `uninitialised` (all zeros in Amaranth) lose their initial block
    instead: a RAM that holds initial contents cannot map onto the iCE40's SPRAM.
    """
    lines = verilog.split("\n")
    out: list[str] = []
    files: dict[str, str] = {}
    k = 0
    while k < len(lines):
        line = lines[k]
        out.append(line)
        k += 1
        declared = _DECLARATION.match(line)
        if not declared or k >= len(lines) or lines[k].strip() != "initial begin":
            continue
        memory, width, depth = declared.group(2), int(declared.group(1)) + 1, int(declared.group(3)) + 1
        words, k = _read_block(lines, k, memory, width, depth)
        if memory in uninitialised:
            if any(int(word, 16) for word in words):
                raise ValueError(f"memory {memory} has non-zero initial contents and cannot go without them")
            continue
        name = _file_name(memory, files)
        files[name] = "\n".join(words) + "\n"
        indent = line[: len(line) - len(line.lstrip())]
        out.append(f'{indent}initial $readmemh("{name}", {memory});')
    if any(line.strip() == "initial begin" for line in out):
        raise ValueError("an initial block that does not initialise a declared memory is left in the Verilog")
    return "\n".join(out), files
