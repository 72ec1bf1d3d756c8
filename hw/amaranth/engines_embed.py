"""The stream and embedding engines: stream in (images, labels), convolution, flatten, stream out.

docs/microarchitecture.md §5 and §7, docs/rtl.md. Conv and flatten run per image (G = 1); the
streamed image is stored linearly in AMEM0, conv outputs in the channel layout of §3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Const, Module, Mux, Signal, signed

from metahw.hw.amaranth.conv_walk import conv_walk
from metahw.hw.amaranth.isa import CONV, FLATTEN, IO_IMAGE, IO_LABELS, IO_OUT
from metahw.hw.amaranth.pipeline import ACCUMULATORS, DATA, FLAT_WRITE, MAC_WRITE, OPERANDS, PRELOAD_READ, at
from metahw.hw.amaranth.util import bits_for, case, extend, or_all
from metahw.qformat import QFormat

if TYPE_CHECKING:
    from metahw.hw.amaranth.top import Accelerator


def elaborate(top: Accelerator, m: Module) -> None:
    """Build the stream-in, conv, flatten and stream-out engines."""
    _stream_in(top, m)
    _conv(top, m)
    _flatten(top, m)
    _stream_out(top, m)


def _stream_in(top: Accelerator, m: Module) -> None:
    """IO: E elements per beat, an image into AMEM0 (linear layout) or labels into their registers."""
    rp, p, e = top.rp, top.lanes, top.elements
    active = top.active(IO_IMAGE) | top.active(IO_LABELS)
    m.d.comb += top.in_ready.eq(top.beating & active)
    top.drive(top.stall, top.beating & active & ~top.in_valid)
    element = [top.in_data[k * rp.in_bits : (k + 1) * rp.in_bits] for k in range(e)]
    longest = max([rp.amem_depth * p] + [len(regs) for regs in top.labels.values()])
    index = Signal(range(longest + e + 1), name="in_index")
    with m.If(top.issuing):
        m.d.sync += index.eq(0)
    with m.Elif(top.beat & active):
        m.d.sync += index.eq(index + e)
    wr = top.amem_wr[0]
    # each element zero-extended to an AMEM lane (the conv sign-extends by its input format)
    pad = Const(0, max(0, rp.act_bits - rp.in_bits))
    word = Cat(*[Cat(element[k][: rp.act_bits], pad) for k in range(e)] * (p // e))
    lane_group = (index & (p - 1)) >> bits_for(e) if e > 1 else index & (p - 1)
    enables = Cat(*[(lane_group == g).replicate(e) for g in range(p // e)])
    image_beat = top.beat_of(IO_IMAGE)
    top.drive(wr.addr, Mux(image_beat, index >> bits_for(p) if p > 1 else index, 0))
    top.drive(wr.data, Mux(image_beat, word, 0))
    top.drive(wr.en, Mux(image_beat, enables, 0))
    for op, name in enumerate(rp.label_inputs):
        regs = top.labels[name]
        with m.If(top.beat_of(IO_LABELS) & (top.cur["op"] == op)):
            for r, reg in enumerate(regs):
                with m.If(index == r // e * e):
                    m.d.sync += reg.eq(element[r % e])


def _conv(top: Accelerator, m: Module) -> None:
    """OUTER: lanes = output channels, one input pixel x P weights per beat; ReLU and 2x2 max in the PPU."""
    rp, p = top.rp, top.lanes
    if not rp.convs:
        return
    lop = Signal(range(max(2, len(rp.convs))), name="conv_op")
    bank = Signal.like(top.fetched["bank"], name="conv_bank")
    dst = Signal.like(top.fetched["dst"], name="conv_dst") if "dst" in top.fetched else None
    with m.If(top.issued(CONV)):
        m.d.sync += [lop.eq(top.fetched["op"]), bank.eq(top.fetched["bank"])]
        if dst is not None:
            m.d.sync += dst.eq(top.fetched["dst"])
    beat = top.beat_of(CONV)
    walk = conv_walk(
        m, rp.convs, p, rp.amem_depth, len(rp.weight_words), lop, beat, top.issued(CONV), top.fetched["op"]
    )
    active = top.active(CONV)
    # stage 0 -> 1: addresses out, control registered
    rd = top.amem_rd
    for b in range(rp.amem_banks):
        top.drive(rd[b].addr, Mux(active & (bank == b), walk.s_addr, 0))
    top.drive(top.wmem.addr, Mux(active, walk.waddr, 0))
    v1 = at(m, beat, DATA, "conv_valid")
    tap1, lane1, first1, last1 = (
        at(m, sig, DATA, f"conv_{n}")
        for sig, n in ((walk.tap, "tap"), (walk.lane, "lane"), (walk.first, "first"), (walk.last, "last"))
    )
    # stage 1 -> 2: each activation bank's word registered as it leaves its block RAM (the weight
    # ROM registers each of its banks' words itself); the operands are selected from the
    # registers into the conv's operand registers (stage 3), which feed the MAC array
    tap2, lane2 = Signal(name="conv_tap2"), Signal.like(lane1, name="conv_lane2")
    m.d.sync += [tap2.eq(tap1), lane2.eq(lane1)]
    raw = top.registered_bank_data(m, bank, "conv_word").word_select(lane2, rp.act_bits)
    x = Signal(signed(rp.hw.operand_bits), name="conv_x")
    with m.Switch(lop):
        for index, layer in enumerate(rp.convs):
            with case(m, index, len(rp.convs)):
                m.d.comb += x.eq(Mux(tap2, extend(raw, layer.in_format), 0))
    wfmt = QFormat(rp.weight_bits, 0, True)
    ys = [extend(top.wmem.data.word_select(n, rp.weight_bits), wfmt) for n in range(p)]
    v2, first2, last2 = (
        at(m, sig, OPERANDS, name, since=DATA) for sig, name in ((v1, "conv_v"), (first1, "conv_f"), (last1, "conv_l"))
    )
    mac = top.mac
    top.drive(mac.valid, v2)
    top.drive(mac.first, Mux(v2, first2, 0))
    top.drive(mac.last, Mux(v2, last2, 0))
    top.drive_operands(m, active, [x] * p, ys, "conv_op")
    # preload: the bias ROM read at PRELOAD_READ, its data with the products; the address is
    # formed a cycle earlier into a register, so the layer's base and its adder are not in
    # front of the ROM (a LUT ROM: its decode and the register are the whole read cycle)
    t3 = at(m, walk.t, PRELOAD_READ - 1, "conv_t")
    bias_base, relu, requant = (
        Signal(16, name="conv_bias_base"),
        Signal(name="conv_relu"),
        Signal.like(top.ppu_select, name="conv_requant"),
    )
    leaky, accumulate = Signal(name="conv_leaky"), Signal(name="conv_accumulate")
    scale, negative_scale = (Signal.like(top.ppu_scale, name=f"conv_{n}") for n in ("scale", "negative_scale"))
    with m.Switch(lop):
        for index, layer in enumerate(rp.convs):
            with case(m, index, len(rp.convs)):
                m.d.comb += [bias_base.eq(layer.bias_base), relu.eq(layer.relu), requant.eq(layer.requant)]
                m.d.comb += [
                    leaky.eq(layer.leaky),
                    accumulate.eq(layer.accumulate),
                    scale.eq(layer.scale),
                    negative_scale.eq(layer.negative_scale),
                ]
    bias_addr = Signal.like(top.bias_rd.addr, name="conv_bias_addr")
    m.d.sync += bias_addr.eq(Mux(active, bias_base + t3, 0))
    top.drive(top.bias_rd.addr, bias_addr)
    for n in range(p):
        bias = top.bias_rd.data.word_select(n, rp.hw.acc_bits).as_signed()
        top.drive(top.mac_preload[n], Mux(active, bias, 0))
    # PPU controls with the accumulators (ACCUMULATORS); the write with the PPU output (MAC_WRITE)
    win0_5, winlast5 = at(m, walk.win0, ACCUMULATORS, "conv_win0"), at(m, walk.winlast, ACCUMULATORS, "conv_winlast")
    oaddr6 = at(m, walk.oaddr, MAC_WRITE, "conv_oaddr")
    top.ppu_controls(
        active,
        select=requant,
        relu=relu,
        first=win0_5,
        emit=winlast5,
        scale=scale,
        leaky=leaky,
        negative_scale=negative_scale,
        accumulate=accumulate,
    )
    write = top.ppu_valid & active
    result = Cat(*[top.ppu_result[n][: rp.act_bits] for n in range(p)])
    for b in range(rp.amem_banks):
        wr = top.amem_wr[b]
        here = write & top.writes_bank(b, bank, dst)
        top.drive(wr.addr, Mux(here, oaddr6, 0))
        top.drive(wr.data, Mux(here, result, 0))
        top.drive(wr.en, Mux(here, (1 << p) - 1, 0))


def _flatten(top: Accelerator, m: Module) -> None:
    """VECTOR: one AMEM word (P channels at one map position) per beat into row `image` of a head memory.

    AMEM words are read in address order (channel tile t, then position pos); the word's P
    lanes are features pos * C + t * P + lane of the channels-last row (`FlattenOp`), a
    running sum `col` of C per position and P per tile.
    """
    rp, p = top.rp, top.lanes
    ops = rp.engine_ops(FLATTEN)
    if not ops:
        return
    block = Signal(16, name="flat_block")
    with m.If(top.issued(FLATTEN)):
        m.d.sync += block.eq(0)
    with m.Elif(top.beat_of(FLATTEN)):
        m.d.sync += block.eq(block + 1)

    bank = top.cur["bank"]
    for b in range(rp.amem_banks):
        top.drive(top.amem_rd[b].addr, Mux(top.active(FLATTEN) & (bank == b), block, 0))
    v1 = at(m, top.beat_of(FLATTEN), DATA, "flat_v")
    data = top.registered_bank_data(m, bank, "flat_data")
    v2 = at(m, v1, FLAT_WRITE, "flat_v2", since=DATA)
    if any(op.positions > 1 for op in ops):
        tile, col = _flatten_columns(top, m, ops)
        tile2, col2 = at(m, tile, FLAT_WRITE, "flat_tile"), at(m, col, FLAT_WRITE, "flat_col")
    else:  # 1x1 maps: the word index is the tile, its first feature tile * P
        tile2 = at(m, block, FLAT_WRITE, "flat_block")
        col2 = tile2 * p
    lanes = [data.word_select(n, rp.act_bits) for n in range(p)]
    for op, flat in enumerate(ops):
        cols = rp.heads[flat.out].cols
        here = v2 & top.mine(FLATTEN, op)
        start = top.cur["image"] * cols + col2
        top.write(flat.out, start, block_mask(tile2, flat.channels, p), lanes, here)


def _flatten_columns(top: Accelerator, m: Module, ops: list) -> tuple[Signal, Signal]:
    """The channel tile and the first feature column of each beat's word, for maps larger than 1x1."""
    p = top.lanes
    largest = max(op.channels * op.positions for op in ops)
    pos, tile = Signal(range(max(op.positions for op in ops) + 1), name="flat_pos"), Signal(16, name="flat_tile")
    col, tile_col = Signal(range(largest + p + 1), name="flat_col"), Signal(range(largest + p + 1), name="flat_tcol")
    channels, last_pos = Signal.like(col, name="flat_channels"), Signal.like(pos, name="flat_last_pos")
    with m.Switch(top.cur["op"]):
        for index, op in enumerate(ops):
            with case(m, index, len(ops)):
                m.d.comb += [channels.eq(op.channels), last_pos.eq(op.positions - 1)]
    with m.If(top.issued(FLATTEN)):
        m.d.sync += [pos.eq(0), tile.eq(0), col.eq(0), tile_col.eq(0)]
    with m.Elif(top.beat_of(FLATTEN)):
        with m.If(pos == last_pos):
            m.d.sync += [pos.eq(0), tile.eq(tile + 1), tile_col.eq(tile_col + p), col.eq(tile_col + p)]
        with m.Else():
            m.d.sync += [pos.eq(pos + 1), col.eq(col + channels)]
    return tile, col


def block_mask(block: object, cols: int, lanes: int) -> object:
    """The lanes holding elements of block `block` (P columns each) of a row of `cols`: all but in the last block."""
    last = -(-cols // lanes) - 1
    return Mux(block == last, (1 << (cols - last * lanes)) - 1, (1 << lanes) - 1)


def _stream_out(top: Accelerator, m: Module) -> None:
    """OUT: E elements of an output memory per beat onto the out stream, from a register; a full, unread one stalls.

    Two stages: a beat reads its word (the read port holds it while the stream stalls), then the
    out register takes the beat's E elements, so `out_data` leaves the accelerator from a register
    (D_OUT). A stall freezes both stages and the beats.
    """
    rp, e, p = top.rp, top.elements, top.lanes
    word = Signal(16, name="out_word")
    with m.If(top.issued(IO_OUT)):
        m.d.sync += word.eq(0)
    with m.Elif(top.beat_of(IO_OUT)):
        m.d.sync += word.eq(word + 1)
    read, valid = Signal(name="out_read"), Signal(name="out_valid_reg")
    stall = valid & ~top.out_ready
    top.drive(top.stall, stall)
    m.d.comb += top.out_stall.eq(stall)
    with m.If(~stall):
        m.d.sync += [read.eq(top.beat_of(IO_OUT)), valid.eq(read)]
    m.d.comb += top.out_valid.eq(valid)
    slices = p // e
    if slices > 1:
        part = Signal(range(slices), name="out_part")
        with m.If(~stall):
            m.d.sync += part.eq(word[: bits_for(slices)])
    start = (word >> bits_for(slices) if slices > 1 else word) * p
    elements = []
    for op, name in enumerate(rp.outputs):
        fmt = rp.heads[name].qformat
        mine = top.mine(IO_OUT, op)
        store = top.read(name, start, mine)
        top.drive(store.rd_hold, Mux(mine, stall, 0))
        chosen = store.rd_lanes.word_select(part, e * fmt.bits) if slices > 1 else store.rd_lanes
        parts = []
        for k in range(e):
            sig = Signal(signed(rp.out_bits + 1), name=f"out{op}_e{k}")
            m.d.comb += sig.eq(extend(chosen.word_select(k, fmt.bits), fmt))
            parts.append(sig[: rp.out_bits])
        elements.append(Mux(read & mine, Cat(*parts), 0))
    data = Signal.like(top.out_data, name="out_data_reg")
    with m.If(~stall):
        m.d.sync += data.eq(or_all(elements))
    top.drive(top.out_data, data)
