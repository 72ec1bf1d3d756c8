"""A tiny accelerator-shaped Amaranth design (MAC lanes over a weight memory) written as an RTL build folder."""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module, Signal, signed
from amaranth.lib import memory

TOP = "metahw_accel"
BITS = 8
ACC_BITS = 24


class TinyMac(Elaboratable):
    """`lanes` signed 8-bit multiply-accumulate lanes; lane i multiplies word i of a weight ROM row by `in_data`."""

    def __init__(self, lanes: int, depth: int) -> None:
        self.lanes, self.depth = lanes, depth
        self.start = Signal()
        self.in_data = Signal(BITS)
        self.in_valid = Signal()
        self.out_data = Signal(ACC_BITS * lanes)
        self.done = Signal()

    def ports(self) -> dict[str, tuple[Signal, str]]:
        return {
            "start": (self.start, "in"),
            "in_data": (self.in_data, "in"),
            "in_valid": (self.in_valid, "in"),
            "out_data": (self.out_data, "out"),
            "done": (self.done, "out"),
        }

    def elaborate(self, platform: object) -> Module:
        m = Module()
        init = [
            sum((((r * 37 + i * 11) % 251) & 0xFF) << (BITS * i) for i in range(self.lanes)) for r in range(self.depth)
        ]
        m.submodules.wmem = wmem = memory.Memory(shape=BITS * self.lanes, depth=self.depth, init=init)
        rd = wmem.read_port()
        addr = Signal(range(self.depth))
        busy = Signal()
        m.d.comb += [rd.addr.eq(addr), self.done.eq(~busy)]
        with m.If(self.start):
            m.d.sync += [addr.eq(0), busy.eq(1)]
        with m.Elif(busy & self.in_valid):
            m.d.sync += addr.eq(addr + 1)
            with m.If(addr == self.depth - 1):
                m.d.sync += busy.eq(0)
        b = Signal(signed(BITS), reset_less=True)  # registers feeding DSPs are reset-less (DESIGN.md section 7)
        m.d.sync += b.eq(self.in_data.as_signed())
        for lane in range(self.lanes):
            a = Signal(signed(BITS), reset_less=True, name=f"a{lane}")
            prod = Signal(signed(2 * BITS), reset_less=True, name=f"prod{lane}")
            acc = Signal(signed(ACC_BITS), name=f"acc{lane}")
            m.d.sync += [a.eq(rd.data[BITS * lane : BITS * (lane + 1)].as_signed()), prod.eq(a * b)]
            with m.If(self.start):
                m.d.sync += acc.eq(0)
            with m.Else():
                m.d.sync += acc.eq(acc + prod)
            m.d.comb += self.out_data[ACC_BITS * lane : ACC_BITS * (lane + 1)].eq(acc)
        return m


def write_build(folder: Path, lanes: int = 2, depth: int = 256, clock_mhz: float = 48.0) -> Path:
    """Write `folder/metahw_accel.v` and `folder/manifest.json` (format metahw.rtl v1) for a TinyMac; return folder."""
    folder.mkdir(parents=True, exist_ok=True)
    design = TinyMac(lanes, depth)
    ports = design.ports()
    text = verilog.convert(design, name=TOP, ports=[sig for sig, _ in ports.values()])
    (folder / f"{TOP}.v").write_text(text)
    manifest = {
        "format": "metahw.rtl",
        "version": 1,
        "top": TOP,
        "verilog": f"{TOP}.v",
        "clock": "clk",
        "reset": "rst",
        "ports": [{"name": n, "direction": d, "width": len(s)} for n, (s, d) in ports.items()],
        "hardware": {"lanes": lanes, "groups": 1, "operand_bits": BITS, "acc_bits": ACC_BITS, "clock_mhz": clock_mhz},
        "program": {"algorithm": "protonet", "ways": 5, "shots": 1, "queries": 75, "bits": BITS, "width": 4},
        "episode_cycles": depth + 3,
        "memories": [{"name": "wmem", "depth": depth, "width": BITS * lanes, "bits": depth * BITS * lanes}],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder
