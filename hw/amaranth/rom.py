"""A read-only memory in banks of block-RAM depth, each bank's output registered before the bank select.

docs/rtl.md (module list) and docs/hardware_reports.md ("fmax"). A block RAM's read data
leaves it late: on the ECP5 a DP16KD's clock-to-out is 5.8 ns without its output register,
which Yosys does not use. A ROM deeper
than one block is several blocks whose outputs Yosys multiplexes by the address's upper
bits, and that multiplexer after the clock-to-out was the demo design's critical path (the
weight memory: 3,492 words of 64 bits, seven 512-word rows of two DP16KD each, 9.9 ns). Here
every bank of at most `BANK_WORDS` words ends in a register of its own, and the bank select
follows them: the address of cycle c gives its word in cycle c + 2, the same latency as a
block RAM read into an operand register.

Banks are cut only for words of at least `BANKED_WIDTH` bits. For those, 512 words are whole
blocks on every family (one DP16KD at 512 x 36, one RAMB36E1 at 512 x 72, two iCE40 EBRs at
256 x 16), so banking costs no block. A narrower ROM stays one memory, free to take deeper,
narrower block configurations (1024 x 18 on the ECP5, 1024 x 4 on the iCE40) that 512-word
banks would leave half empty: on the UP5K's 6-bit P = 2 design (12-bit words) the banks took 33
EBRs where one memory takes 30.
"""

from __future__ import annotations

from amaranth import Module, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from metahw.hw.amaranth.util import bits_for, pick

#: words per bank: the deepest block-RAM configuration that is at least 36 bits wide on the ECP5
BANK_WORDS = 512
#: the narrowest word that is banked (the ECP5's 512 x 36 configuration)
BANKED_WIDTH = 36


def bank_depths(words: int, width: int) -> list[int]:
    """Depth of each bank of a `words`-deep ROM of `width`-bit words (every memory at least 2 words deep)."""
    if width < BANKED_WIDTH:
        return [max(2, words)]
    count = max(1, -(-words // BANK_WORDS))
    return [max(2, min(BANK_WORDS, words - k * BANK_WORDS)) for k in range(count)]


class BankedRom(wiring.Component):
    """`words` (ints of `width` bits) in banks; `addr` in cycle c gives `data` in cycle c + 2."""

    def __init__(self, name: str, width: int, words: list[int]) -> None:
        self.name, self.width = name, width
        self.words = list(words)
        self.depths = bank_depths(len(self.words), width)
        super().__init__({"addr": In(range(max(2, len(self.words)))), "data": Out(unsigned(width))})

    def elaborate(self, platform: object) -> Module:
        """One memory per bank, its read data registered, then the bank select (a registered index)."""
        m = Module()
        outputs = []
        for k, depth in enumerate(self.depths):
            init = self.words[k * BANK_WORDS : k * BANK_WORDS + depth]
            mem = memory.Memory(shape=unsigned(self.width), depth=depth, init=init)
            m.submodules[f"{self.name}_bank{k}"] = mem
            rd = mem.read_port()
            m.d.comb += rd.addr.eq(self.addr[: bits_for(depth)])
            out = Signal(self.width, name=f"bank{k}_data", reset_less=True)
            m.d.sync += out.eq(rd.data)
            outputs.append(out)
        if len(outputs) == 1:
            m.d.comb += self.data.eq(outputs[0])
            return m
        bank = self.addr >> bits_for(BANK_WORDS)
        read, chosen = Signal(range(len(outputs)), name="bank_read"), Signal(range(len(outputs)), name="bank_chosen")
        m.d.sync += [read.eq(bank), chosen.eq(read)]
        m.d.comb += self.data.eq(pick(m, outputs, chosen, f"{self.name}_data"))
        return m
