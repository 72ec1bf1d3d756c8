"""The MAP engine: vector passes over activation maps in AMEM (pools, global average, residual Add, ReLU).

docs/microarchitecture.md §7 and docs/rtl.md. Each beat reads one word (P channels at one
position of the channel layout) from the op's source bank, and for a residual Add the word
at the same address of the skip bank; the PPU keeps a running max (2x2 max pool) or sum
(2x2 average, global average) over a window's beats, applies ReLU or LeakyReLU and
requantises; the window's last beat writes one word into the destination bank. Beat at t:
the banks are read at t, the lane values are formed at t + 1 and registered into the PPU at
t + 2, scaled, rectified, kept as the running value, shifted and rounded over the PPU's five
stages and written at t + 7 (the D_VEC = 7 drain's last cycle).

Read order: a 2x2 pool walks tile, output row, output column, then the window (wy, wx), so
the read address is a running row base plus a column plus the window offset; every other
kind reads the words in address order.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed

from metahw.hw.amaranth.engine import PPU_CONTROLS, Bus, Engine
from metahw.hw.amaranth.isa import ADD, AVG_POOL, GLOBAL_AVG, MAP, MAX_POOL, MapOp
from metahw.hw.amaranth.pipeline import VEC_PPU, VEC_WRITE, at
from metahw.hw.amaranth.spec import RtlPlan
from metahw.hw.amaranth.util import case, extend, or_all


class MapEngine(Engine):
    """The MAP engine for the program's map ops: AMEM words through the PPU into AMEM."""

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        self.ops: list[MapOp] = rp.engine_ops(MAP)
        super().__init__(
            bus,
            {
                "map": bus.flags(len(self.ops)),
                "cur": bus.instruction("op", "bank", "skip", "dst"),
                "amem": bus.amem(read=True, write=True),
                "ppu": bus.ppu(*PPU_CONTROLS, "vec_valid", "vec"),
            },
        )

    def build(self, m: Module) -> None:
        """Read, form the lane values, drive the PPU and write its result."""
        rp, p, ops, flags = self.rp, self.lanes, self.ops, self.map
        read, first, emit, out_addr = self._walk(m)
        three = rp.amem_banks > 2  # the instruction names the skip and destination banks
        bank = self.cur.bank
        skip, dst = (self.cur.skip, self.cur.dst) if three else (0, 0)
        for b in range(rp.amem_banks):
            wanted = (bank == b) | (Mux(self._is(ADD), skip == b, 0) if three else 0)
            self.drive(self.amem.rd_addr[b], Mux(flags.active & wanted, read, 0))
        source = Signal(p * rp.act_bits, name="map_source")
        other = Signal(p * rp.act_bits, name="map_skip")
        m.d.comb += [source.eq(self.bank_data(bank)), other.eq(self.bank_data(skip) if three else 0)]
        a = rp.hw.acc_bits
        first2, emit2 = at(m, first, VEC_PPU, "map_first"), at(m, emit, VEC_PPU, "map_emit")
        values = [Signal(signed(a), name=f"map_value{k}") for k in range(p)]
        value_in: list[list] = [[] for _ in range(p)]
        for index, d in enumerate(ops):
            mine = flags.mine[index]
            for k in range(p):
                x = extend(source.word_select(k, rp.act_bits), d.in_format)
                if d.kind == ADD:
                    y = extend(other.word_select(k, rp.act_bits), d.skip_format)
                    x = (x << d.shift) + (y << d.skip_shift)
                value_in[k].append(Mux(mine, x, 0))
            self.ppu_controls(
                mine,
                select=d.requant,
                relu=int(d.relu),
                scale=d.scale,
                leaky=int(d.leaky),
                negative_scale=d.negative_scale,
                accumulate=int(d.kind in (AVG_POOL, GLOBAL_AVG)),
                first=first2,
                emit=emit2,
            )
        m.d.sync += [values[k].eq(or_all(value_in[k])) for k in range(p)]
        self.drive(self.ppu.vec_valid, at(m, flags.beat, VEC_PPU, "map_valid"))
        for k in range(p):
            self.drive(self.ppu.vec[k], Mux(flags.active, values[k], 0))
        write = self.ppu.valid & flags.active
        result = Cat(*[self.ppu.result[n][: rp.act_bits] for n in range(p)])
        addr3 = at(m, out_addr, VEC_WRITE, "map_out")
        for b in range(rp.amem_banks):
            here = write & (dst == b if three else self.writes_bank(b, bank, 0))
            self.drive(self.amem.wr_addr[b], Mux(here, addr3, 0))
            self.drive(self.amem.wr_data[b], Mux(here, result, 0))
            self.drive(self.amem.wr_en[b], Mux(here, (1 << p) - 1, 0))

    def _is(self, kind: str) -> object:
        """The running MAP op is of `kind`."""
        return or_all([self.cur.op == index for index, d in enumerate(self.ops) if d.kind == kind] or [0])

    def _walk(self, m: Module) -> tuple[Signal, Signal, Signal, Signal]:
        """Per beat: the read address, the first and last beat of the PPU's window, and the output word.

        Each op only chooses constants (its kind, W, H*W and its last pooled row and column); the
        counters and running sums are shared by all ops.
        """
        ops = self.ops
        depth = max(d.tiles * d.height * d.width for d in ops) + 2
        read, out = Signal(range(depth), name="map_read"), Signal(range(depth), name="map_out")
        first, emit = Signal(name="map_first"), Signal(name="map_emit")
        beat = self.map.beat
        count, pos = Signal(range(depth), name="map_count"), Signal(range(depth), name="map_pos")
        wx, wy = Signal(name="map_wx"), Signal(name="map_wy")
        px, py = Signal(range(depth), name="map_px"), Signal(range(depth), name="map_py")
        row, tile, col = (Signal(range(2 * depth), name=f"map_{n}") for n in ("row", "tile", "col"))
        pool, average = Signal(name="map_is_pool"), Signal(name="map_is_global")
        width, positions = Signal(range(depth), name="map_width"), Signal(range(depth), name="map_positions")
        last_px, last_py = Signal(range(depth), name="map_last_px"), Signal(range(depth), name="map_last_py")
        with m.Switch(self.cur.op):
            for index, d in enumerate(ops):
                with case(m, index, len(ops)):
                    m.d.comb += [
                        pool.eq(d.kind in (MAX_POOL, AVG_POOL)),
                        average.eq(d.kind == GLOBAL_AVG),
                        width.eq(d.width),
                        positions.eq(d.height * d.width),
                        last_px.eq(max(0, d.width // 2 - 1)),
                        last_py.eq(max(0, d.height // 2 - 1)),
                    ]
        window_end = wx & wy
        m.d.comb += [
            read.eq(Mux(pool, row + col + Mux(wy, width, 0) + wx, count)),
            first.eq(Mux(pool, ~wx & ~wy, Mux(average, pos == 0, 1))),
            emit.eq(Mux(pool, window_end, Mux(average, pos == positions - 1, 1))),
        ]
        with m.If(self.map.issued):
            m.d.sync += [r.eq(0) for r in (count, pos, wx, wy, px, py, row, tile, col, out)]
        with m.Elif(beat):
            m.d.sync += [count.eq(count + 1), pos.eq(Mux(pos == positions - 1, 0, pos + 1))]
            with m.If(emit):
                m.d.sync += out.eq(out + 1)
            with m.If(pool):  # the window (wy, wx), then the next output column, row and tile
                m.d.sync += wx.eq(~wx)
                with m.If(wx):
                    m.d.sync += wy.eq(~wy)
                with m.If(window_end):
                    m.d.sync += [px.eq(px + 1), col.eq(col + 2)]
                    with m.If(px == last_px):
                        m.d.sync += [px.eq(0), col.eq(0), py.eq(py + 1), row.eq(row + 2 * width)]
                        with m.If(py == last_py):
                            m.d.sync += [py.eq(0), tile.eq(tile + positions), row.eq(tile + positions)]
        return read, first, emit, out
