"""`build_rtl`: a Program on a HardwareConfig -> Verilog, manifest and instruction listing (deterministic).

Memory contents (weights, biases, the instruction ROM, zeroed working memories) are
initial values an FPGA loads with the bitstream; they go into one `$readmemh` file per
memory next to the Verilog (see `meminit`), which keeps Yosys fast. Two builds of the same
inputs give byte-identical files: nothing time- or path-dependent is written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from amaranth import Shape
from amaranth.back import verilog
from amaranth.lib.wiring import Flow

from metahw.atomic import write_text_atomic
from metahw.compiler.program import Program
from metahw.hardware import HardwareConfig
from metahw.hw.amaranth.digests import generator_digest, program_digest
from metahw.hw.amaranth.meminit import split_memory_init
from metahw.hw.amaranth.spec import ENGINE_NAMES, RtlPlan, rtl_plan
from metahw.hw.amaranth.top import Accelerator
from metahw.sim.cost import episode_cycles

TOP = "metahw_accel"
MANIFEST = "manifest.json"
FORMAT_TAG = "metahw.rtl"


def generate_verilog(rp: RtlPlan) -> tuple[str, Accelerator]:
    """The Verilog text of the accelerator for an RTL plan (memory contents inline), and its component."""
    top = Accelerator(rp)
    return verilog.convert(top, name=TOP, emit_src=False), top


def _ports(top: Accelerator) -> list[dict]:
    return [
        {
            "name": name,
            "direction": "in" if member.flow == Flow.In else "out",
            "width": Shape.cast(member.shape).width,
        }
        for name, member in top.signature.members.items()
    ]


def _backbone_width(program: Program) -> int:
    convs = [b for b in program.buffers if b.kind == "weight" and len(b.shape) == 4]
    return max((b.shape[0] for b in convs), default=0)


def _previous_init_files(out: Path) -> list[str]:
    try:
        return list(json.loads((out / MANIFEST).read_text()).get("init_files", []))
    except (OSError, ValueError):
        return []


def build_rtl(program: Program, hw: HardwareConfig, out: str | Path) -> Path:
    """Write `out/metahw_accel.v`, its memories' `.hex` files, `manifest.json` and `instructions.json`."""
    out = Path(out)
    rp = rtl_plan(program, hw)
    inline, top = generate_verilog(rp)
    single_port = rp.activation_banks() if hw.act_ports == 1 else []
    text, init_files = split_memory_init(inline, uninitialised=single_port)
    meta = program.meta
    bits = max((b.qformat.bits for b in program.buffers if b.kind == "weight" and len(b.shape) == 4), default=0)
    manifest = {
        "format": FORMAT_TAG,
        "version": 1,
        "top": TOP,
        "verilog": f"{TOP}.v",
        "verilog_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "init_files": sorted(init_files),
        "program_digest": program_digest(program),
        "generator_digest": generator_digest(),
        "clock": "clk",
        "reset": "rst",
        "ports": _ports(top),
        "hardware": hw.to_json(),
        "program": {
            "algorithm": meta.algorithm,
            "ways": meta.ways,
            "shots": meta.shots,
            "queries": meta.queries,
            "bits": bits,
            "width": _backbone_width(program),
            "rounding": meta.rounding,
            "overflow": meta.overflow,
        },
        "stream": {"elements": hw.stream_elements, "in_bits": rp.in_bits, "out_bits": rp.out_bits},
        "episode_cycles": episode_cycles(program, hw).total,
        "instructions": len(rp.instructions),
        "memories": rp.memories(),
    }
    listing = [
        {"index": k, "engine": ENGINE_NAMES[i.engine], "beats": i.beats, "label": i.label, "image": i.image}
        for k, i in enumerate(rp.instructions)
    ]
    out.mkdir(parents=True, exist_ok=True)
    for stale in set(_previous_init_files(out)) - set(init_files):  # only files an earlier build wrote
        (out / stale).unlink(missing_ok=True)
    for name, words in init_files.items():
        write_text_atomic(out / name, words)
    write_text_atomic(out / f"{TOP}.v", text)
    write_text_atomic(out / "instructions.json", json.dumps(listing, indent=1) + "\n")
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return out
