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

from typing import TYPE_CHECKING

from amaranth import Cat, Module, Mux, Signal, signed

from metahw.hw.amaranth.isa import ADD, AVG_POOL, GLOBAL_AVG, MAP, MAX_POOL, MapOp
from metahw.hw.amaranth.pipeline import VEC_PPU, VEC_WRITE, at
from metahw.hw.amaranth.util import case, extend, or_all

if TYPE_CHECKING:
    from metahw.hw.amaranth.top import Accelerator


def elaborate(top: Accelerator, m: Module) -> None:
    """Build the MAP engine for the program's map ops."""
    rp, p = top.rp, top.lanes
    ops: list[MapOp] = rp.engine_ops(MAP)
    if not ops:
        return
    read, first, emit, out_addr = _walk(top, m, ops)
    bank = top.cur["bank"]
    skip, dst = top.cur.get("skip", 0), top.cur.get("dst", 0)
    active = top.active(MAP)
    for b in range(rp.amem_banks):
        wanted = (bank == b) | (Mux(_is(top, ops, ADD), skip == b, 0) if "skip" in top.cur else 0)
        top.drive(top.amem_rd[b].addr, Mux(active & wanted, read, 0))
    source = Signal(p * rp.act_bits, name="map_source")
    other = Signal(p * rp.act_bits, name="map_skip")
    m.d.comb += [source.eq(top.bank_data(bank)), other.eq(top.bank_data(skip) if "skip" in top.cur else 0)]
    a = rp.hw.acc_bits
    first2, emit2 = at(m, first, VEC_PPU, "map_first"), at(m, emit, VEC_PPU, "map_emit")
    values = [Signal(signed(a), name=f"map_value{k}") for k in range(p)]
    value_in: list[list] = [[] for _ in range(p)]
    for index, d in enumerate(ops):
        mine = top.mine(MAP, index)
        for k in range(p):
            x = extend(source.word_select(k, rp.act_bits), d.in_format)
            if d.kind == ADD:
                y = extend(other.word_select(k, rp.act_bits), d.skip_format)
                x = (x << d.shift) + (y << d.skip_shift)
            value_in[k].append(Mux(mine, x, 0))
        top.ppu_controls(
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
    top.drive(top.ppu_vec_valid, at(m, top.beat_of(MAP), VEC_PPU, "map_valid"))
    for k in range(p):
        top.drive(top.ppu_vec[k], Mux(active, values[k], 0))
    write = top.ppu_valid & active
    result = Cat(*[top.ppu_result[n][: rp.act_bits] for n in range(p)])
    addr3 = at(m, out_addr, VEC_WRITE, "map_out")
    for b in range(rp.amem_banks):
        wr = top.amem_wr[b]
        here = write & (dst == b if "dst" in top.cur else top.writes_bank(b, bank, 0))
        top.drive(wr.addr, Mux(here, addr3, 0))
        top.drive(wr.data, Mux(here, result, 0))
        top.drive(wr.en, Mux(here, (1 << p) - 1, 0))


def _is(top: Accelerator, ops: list[MapOp], kind: str) -> object:
    """The running MAP op is of `kind`."""
    return or_all([top.cur["op"] == index for index, d in enumerate(ops) if d.kind == kind] or [0])


def _walk(top: Accelerator, m: Module, ops: list[MapOp]) -> tuple[Signal, Signal, Signal, Signal]:
    """Per beat: the read address, the first and last beat of the PPU's window, and the output word.

    Each op only chooses constants (its kind, W, H*W and its last pooled row and column); the
    counters and running sums are shared by all ops.
    """
    depth = max(d.tiles * d.height * d.width for d in ops) + 2
    read, out = Signal(range(depth), name="map_read"), Signal(range(depth), name="map_out")
    first, emit = Signal(name="map_first"), Signal(name="map_emit")
    beat = top.beat_of(MAP)
    count, pos = Signal(range(depth), name="map_count"), Signal(range(depth), name="map_pos")
    wx, wy = Signal(name="map_wx"), Signal(name="map_wy")
    px, py = Signal(range(depth), name="map_px"), Signal(range(depth), name="map_py")
    row, tile, col = (Signal(range(2 * depth), name=f"map_{n}") for n in ("row", "tile", "col"))
    pool, average = Signal(name="map_is_pool"), Signal(name="map_is_global")
    width, positions = Signal(range(depth), name="map_width"), Signal(range(depth), name="map_positions")
    last_px, last_py = Signal(range(depth), name="map_last_px"), Signal(range(depth), name="map_last_py")
    with m.Switch(top.cur["op"]):
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
    with m.If(top.issued(MAP)):
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
