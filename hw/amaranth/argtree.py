"""The PPU's compare tree: the extreme of P values and its index, lg P pipelined stages.

docs/microarchitecture.md §4: a pairwise tree in which a tie keeps the left (lower) index,
the rule `metahw.sim.ops.argreduce._tree_select` models; masked lanes never win.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


class ArgTree(wiring.Component):
    """`values` of the lanes whose `mask` bit is set -> `index` and `value` of the min (or max), lg P cycles later."""

    def __init__(self, lanes: int, width: int, prefer_greater: bool) -> None:
        self.lanes = lanes
        self.width = width
        self.prefer_greater = prefer_greater
        self.depth = (lanes - 1).bit_length()
        super().__init__(
            {
                "valid": In(1),
                "values": In(data.ArrayLayout(signed(width), lanes)),
                "mask": In(lanes),
                "out_valid": Out(1),
                "any": Out(1),
                "index": Out(range(max(2, lanes))),
                "value": Out(signed(width)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        """One register stage per tree level; with one lane the inputs pass through combinationally."""
        m = Module()
        level = [(self.values[k], self.mask[k], k) for k in range(self.lanes)]
        valid = self.valid
        for stage in range(self.depth):
            nxt = []
            for k in range(0, len(level), 2):
                (lv, lm, li), (rv, rm, ri) = level[k], level[k + 1]
                better = rv > lv if self.prefer_greater else rv < lv
                take = rm & (~lm | better)
                v = Signal(signed(self.width), name=f"v{stage}_{k // 2}")
                msk = Signal(name=f"m{stage}_{k // 2}")
                idx = Signal(range(max(2, self.lanes)), name=f"i{stage}_{k // 2}")
                m.d.sync += [v.eq(Mux(take, rv, lv)), msk.eq(lm | rm), idx.eq(Mux(take, ri, li))]
                nxt.append((v, msk, idx))
            level = nxt
            delayed = Signal(name=f"valid{stage}")
            m.d.sync += delayed.eq(valid)
            valid = delayed
        value, mask, index = level[0]
        m.d.comb += [self.value.eq(value), self.any.eq(mask), self.index.eq(index), self.out_valid.eq(valid)]
        return m
