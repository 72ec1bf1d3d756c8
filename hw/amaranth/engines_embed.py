"""The stream and embedding engines: stream in (images, labels), convolution, flatten, stream out.

docs/microarchitecture.md §5 and §7, docs/rtl.md. Each instruction runs a group of G images:
image g of the group lives in slot g of every activation word (lanes g*L .. g*L + L - 1). A
streamed image is stored linearly in its slot of AMEM0, conv outputs in the channel layout of §3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib.wiring import In, Out

from metahw.compiler.kernels import timing
from metahw.hw.amaranth.conv_walk import conv_walk
from metahw.hw.amaranth.engine import PPU_CONTROLS, Bus, Engine
from metahw.hw.amaranth.isa import FLATTEN
from metahw.hw.amaranth.pipeline import (
    ACCUMULATORS,
    DATA,
    FLAT_WRITE,
    LANE_PRELOAD_READ,
    MAC_WRITE,
    OPERANDS,
    at,
)
from metahw.hw.amaranth.spec import RtlPlan
from metahw.hw.amaranth.util import bits_for, case, delay, extend, or_all
from metahw.hw.amaranth.wino_walk import beat_signs, patch_transform, wino_walk
from metahw.qformat import QFormat


class StreamIn(Engine):
    """IO: E elements per beat, a group's images into their slots of AMEM0 (linear layout), or labels into registers."""

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        super().__init__(
            bus,
            {
                "io_image": bus.flags(),
                "io_labels": bus.flags(),
                "cur": bus.instruction("op"),
                "issuing": In(1),
                "beat": In(1),
                "beating": In(1),
                "in_valid": In(1),
                "in_data": In(rp.hw.stream_elements * rp.in_bits),
                "in_ready": Out(1),
                "stall": Out(1),
                "amem": bus.amem(write=True),
                "labels": bus.labels(*rp.label_inputs, write=True),
            },
        )

    def build(self, m: Module) -> None:
        """The element index, the AMEM0 word write and the label registers."""
        rp, p, e = self.rp, self.lanes, self.rp.hw.stream_elements
        lanes = rp.group_lanes
        active = self.io_image.active | self.io_labels.active
        self.drive(self.in_ready, self.beating & active)
        self.drive(self.stall, self.beating & active & ~self.in_valid)
        element = [self.in_data[k * rp.in_bits : (k + 1) * rp.in_bits] for k in range(e)]
        labels = [self.label_regs(name) for name in rp.label_inputs]
        longest = max([rp.amem_depth * lanes] + [len(regs) for regs in labels])
        index = Signal(range(longest + e + 1), name="in_index")
        with m.If(self.issuing):
            m.d.sync += index.eq(0)
        with m.Elif(self.beat & active):
            m.d.sync += index.eq(index + e)
        slot = self._slot(m, index) if rp.hw.groups > 1 else 0
        # each element zero-extended to an AMEM lane (the conv sign-extends by its input format)
        pad = Const(0, max(0, rp.act_bits - rp.in_bits))
        word = Cat(*[Cat(element[k][: rp.act_bits], pad) for k in range(e)] * (p // e))
        blocks = lanes // e  # blocks of E lanes in a slot
        lane_block = (index & (lanes - 1)) >> bits_for(e) if e > 1 else index & (lanes - 1)
        block = lane_block + slot * blocks if rp.hw.groups > 1 else lane_block
        enables = Cat(*[(block == g).replicate(e) for g in range(p // e)])
        image_beat = self.io_image.beat
        self.drive(self.amem.wr_addr[0], Mux(image_beat, index >> bits_for(lanes) if lanes > 1 else index, 0))
        self.drive(self.amem.wr_data[0], Mux(image_beat, word, 0))
        self.drive(self.amem.wr_en[0], Mux(image_beat, enables, 0))
        for op, regs in enumerate(labels):
            with m.If(self.io_labels.beat & (self.cur.op == op)):
                for r, reg in enumerate(regs):
                    with m.If(index == r // e * e):
                        m.d.sync += reg.eq(element[r % e])

    def _slot(self, m: Module, index: Signal) -> Signal:
        """The image slot of a group's stream (G > 1): `index` counts within an image and restarts at the next.

        An image's elements are a whole number of beats (`spec`), so a beat never straddles two
        images; the image size comes from the instruction's op (`RtlPlan.image_sizes`).
        """
        rp, e = self.rp, self.rp.hw.stream_elements
        slot = Signal(range(rp.hw.groups), name="in_slot")
        last = Signal.like(index, name="in_last")
        with m.Switch(self.cur.op):
            for k, size in enumerate(rp.image_sizes):
                with case(m, k, len(rp.image_sizes)):
                    m.d.comb += last.eq(size - e)
        with m.If(self.issuing):
            m.d.sync += slot.eq(0)
        with m.Elif(self.io_image.beat & (index == last)):
            m.d.sync += [index.eq(0), slot.eq(slot + 1)]
        return slot


#: the MAC array's controls that only the Winograd conv drives
WINO_CONTROLS = ("wino", "signs")


class ConvEngine(Engine):
    """CONV: lanes = output channels, per beat each image slot's input pixel x L weights; ReLU, 2x2 max in the PPU.

    Group g's L lanes multiply the pixel of slot g by the weight word's L weights (the word
    holds them once per group), so a tile writes G x L outputs: slot g, channels t*L .. t*L + L - 1.
    A `winograd` design multiplies slot g's transformed input V by the transformed weights
    instead, 16 beats per pool window and input channel (`_winograd`, `wino_walk.py`).
    """

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        super().__init__(
            bus,
            {
                "conv": bus.flags(),
                "fetched": bus.instruction("op", "bank", "dst"),
                "amem": bus.amem(read=True, write=True),
                "wmem": bus.wmem(),
                "bias": bus.bias(),
                "mac": bus.mac("valid", "first", "last", "x", "y", "preload", *WINO_CONTROLS[: 2 * rp.hw.winograd]),
                "ppu": bus.ppu(*PPU_CONTROLS),
            },
        )

    def build(self, m: Module) -> None:
        """The loop nest, the operands, the bias preload, the PPU controls and the write."""
        rp, p, flags, fetched = self.rp, self.lanes, self.conv, self.fetched
        lop = Signal(range(max(2, len(rp.convs))), name="conv_op")
        three = rp.amem_banks > 2  # the instruction names the destination bank
        bank = Signal.like(fetched.bank, name="conv_bank")
        dst = Signal.like(fetched.dst, name="conv_dst") if three else None
        with m.If(flags.issued):
            m.d.sync += [lop.eq(fetched.op), bank.eq(fetched.bank)]
            if dst is not None:
                m.d.sync += dst.eq(fetched.dst)
        active = flags.active
        if rp.hw.winograd:
            t, first, emit, oaddr = self._winograd(m, lop, bank)
        else:
            t, first, emit, oaddr = self._direct(m, lop, bank)
        # preload: the bias ROM read at LANE_PRELOAD_READ, its data registered in the MAC array, then
        # with the products; the address is formed a cycle earlier into a register, so the layer's
        # base and its adder are not in front of the ROM (a LUT ROM: its decode and the register
        # are the whole read cycle)
        t3 = at(m, t, LANE_PRELOAD_READ - 1, "conv_t")
        bias_base, relu, requant = (
            Signal(16, name="conv_bias_base"),
            Signal(name="conv_relu"),
            Signal.like(self.ppu.select, name="conv_requant"),
        )
        leaky, accumulate = Signal(name="conv_leaky"), Signal(name="conv_accumulate")
        scale, negative_scale = (Signal.like(self.ppu.scale, name=f"conv_{n}") for n in ("scale", "negative_scale"))
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
        bias_addr = Signal.like(self.bias.addr, name="conv_bias_addr")
        m.d.sync += bias_addr.eq(Mux(active, bias_base + t3, 0))
        self.drive(self.bias.addr, bias_addr)
        for n in range(p):
            bias = self.bias.data.word_select(n, rp.hw.acc_bits).as_signed()
            self.drive(self.mac.preload[n], Mux(active, bias, 0))
        self.ppu_controls(
            active,
            select=requant,
            relu=relu,
            first=first,
            emit=emit,
            scale=scale,
            leaky=leaky,
            negative_scale=negative_scale,
            accumulate=accumulate,
        )
        write = self.ppu.valid & active
        result = Cat(*[self.ppu.result[n][: rp.act_bits] for n in range(p)])
        for b in range(rp.amem_banks):
            here = write & self.writes_bank(b, bank, dst)
            self.drive(self.amem.wr_addr[b], Mux(here, oaddr, 0))
            self.drive(self.amem.wr_data[b], Mux(here, result, 0))
            self.drive(self.amem.wr_en[b], Mux(here, (1 << p) - 1, 0))

    def _walk(self, m: Module, walker: Callable, lop: Signal, bank: Signal) -> Any:
        """Build the loop nest with `walker` (`conv_walk`, `wino_walk`); its beat addresses the input bank and WMEM."""
        rp, flags = self.rp, self.conv
        convs, depth, words = rp.convs, rp.amem_depth, len(rp.weight_words)
        walk = walker(m, convs, rp.group_lanes, depth, words, lop, flags.beat, flags.issued, self.fetched.op)
        for b in range(rp.amem_banks):
            self.drive(self.amem.rd_addr[b], Mux(flags.active & (bank == b), walk.s_addr, 0))
        self.drive(self.wmem.addr, Mux(flags.active, walk.waddr, 0))
        return walk

    def _inputs(self, m: Module, lop: Signal, bank: Signal, lane: Signal, width: int, name: str) -> list[Signal]:
        """Each image slot's input element of a beat at DATA + 1, `width` bits signed: its lane (`lane`, of
        that stage) of the bank's word, registered as it leaves its block RAM, extended by the layer's format."""
        rp, groups = self.rp, self.rp.hw.groups
        word = self.registered_bank_data(m, bank, f"{name}_word")
        slot_bits = rp.group_lanes * rp.act_bits
        raws = [word[g * slot_bits : (g + 1) * slot_bits].word_select(lane, rp.act_bits) for g in range(groups)]
        xs = [Signal(signed(width), name=f"{name}_x" + (f"{g}" if groups > 1 else "")) for g in range(groups)]
        with m.Switch(lop):
            for index, layer in enumerate(rp.convs):
                with case(m, index, len(rp.convs)):
                    m.d.comb += [x.eq(extend(raw, layer.in_format)) for x, raw in zip(xs, raws)]
        return xs

    def _weights(self) -> list:
        """The P lanes' weights of the WMEM word (the ROM registers its words: at DATA + 1)."""
        wfmt = QFormat(self.rp.weight_bits, 0, True)
        return [extend(self.wmem.data.word_select(n, self.rp.weight_bits), wfmt) for n in range(self.lanes)]

    def _multiply(self, m: Module, valid: object, walk: Any, xs: list) -> Signal:
        """The MAC array's beat at `OPERANDS`: `valid` (returned, at that stage), the walk's first and last, slot
        g's operand `xs[g]` (given a cycle earlier) times each lane's weight."""
        controls = ((valid, "conv_v"), (walk.first, "conv_f"), (walk.last, "conv_l"))
        valid, first, last = (at(m, sig, OPERANDS, name) for sig, name in controls)
        self.drive(self.mac.valid, valid)
        self.drive(self.mac.first, Mux(valid, first, 0))
        self.drive(self.mac.last, Mux(valid, last, 0))
        xs = [x for x in xs for _ in range(self.rp.group_lanes)]
        self.drive_operands(m, self.conv.active, xs, self._weights(), "conv_op")
        return valid

    def _direct(self, m: Module, lop: Signal, bank: Signal) -> tuple:
        """The direct conv's loop nest and operands: (the beat's channel tile, the PPU's first and emit at
        `ACCUMULATORS`, the output word at `MAC_WRITE`)."""
        rp, flags = self.rp, self.conv
        walk = self._walk(m, conv_walk, lop, bank)
        # stage 1 -> 2: each activation bank's word registered as it leaves its block RAM (the weight
        # ROM registers each of its banks' words itself); the operands are selected from the
        # registers into the conv's operand registers (stage 3), which feed the MAC array
        lane2 = at(m, walk.lane, DATA + 1, "conv_lane")
        xs = self._inputs(m, lop, bank, lane2, rp.hw.operand_bits, "conv")
        self._multiply(m, flags.beat, walk, xs)
        # PPU controls with the accumulators (ACCUMULATORS); the write with the PPU output (MAC_WRITE)
        win0_5, winlast5 = (
            at(m, walk.win0, ACCUMULATORS, "conv_win0"),
            at(m, walk.winlast, ACCUMULATORS, "conv_winlast"),
        )
        return walk.t, win0_5, winlast5, at(m, walk.oaddr, MAC_WRITE, "conv_oaddr")

    def _winograd(self, m: Module, lop: Signal, bank: Signal) -> tuple:
        """The Winograd conv's loop nests, patch transforms and operands (`wino_walk`), as `_direct` returns.

        A window's 4 sums reach the PPU in the 4 cycles after `ACCUMULATORS` (the first resets its
        running max, the last emits), so its output is written `WINO_DRAIN` cycles after `MAC_WRITE`.
        """
        rp, beat = self.rp, self.conv.beat
        walk = self._walk(m, wino_walk, lop, bank)
        # the read side: each element into its patch register at DATA + 1 (0 outside the input)
        width = rp.act_bits + 1
        elements = self._inputs(m, lop, bank, at(m, walk.lane, DATA + 1, "wino_lane"), width, "wino")
        place = {name: at(m, getattr(walk, name), DATA + 1, f"wino_{name}2") for name in ("row", "col", "bank")}
        write, inside = at(m, beat, DATA + 1, "wino_write"), at(m, walk.inside, DATA + 1, "wino_inside2")
        xs = [
            patch_transform(m, f"wino{g}", width, write, Mux(inside, x, 0), place, walk.use, walk.u, walk.v)
            for g, x in enumerate(elements)
        ]
        valid = self._multiply(m, walk.product, walk, xs)
        self.drive(self.mac.wino, valid)
        self.drive(self.mac.signs, Mux(valid, at(m, beat_signs(m, walk.u, walk.v), OPERANDS, "wino_signs"), 0))
        first = at(m, walk.product & walk.last, ACCUMULATORS + 1, "wino_first_sum")
        emit = delay(m, first, timing.WINO_DRAIN - 1, "wino_emit")
        return walk.t, first, emit, at(m, walk.oaddr, MAC_WRITE + timing.WINO_DRAIN, "wino_oaddr")


class FlattenEngine(Engine):
    """FLATTEN: per beat one image slot of an AMEM word (L channels at one map position) into that image's row.

    For each slot g of the group in turn (row `image + g` of the head memory; a slot past the
    batch writes nothing), the AMEM words are read in address order (channel tile t, then
    position pos); the slot's L lanes are features pos * C + t * L + lane of the channels-last
    row (`FlattenOp`), a running sum `col` of C per position and L per tile.
    """

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        self.ops = rp.engine_ops(FLATTEN)
        outs = {op.out for op in self.ops}
        super().__init__(
            bus,
            {
                "flatten": bus.flags(len(self.ops)),
                "cur": bus.instruction("op", "bank", "image"),
                "amem": bus.amem(read=True),
                "heads": bus.heads(writes=outs, windows=outs),
            },
        )

    def build(self, m: Module) -> None:
        """The word counter, the AMEM read and the head memory write."""
        rp, ops, flags = self.rp, self.ops, self.flatten
        lanes = rp.group_lanes
        if rp.hw.groups > 1:
            block, slot, wrap = self._slots(m)
        else:
            block, slot, wrap = self.beats(m, flags, "flat_block"), 0, None
        bank = self.cur.bank
        for b in range(rp.amem_banks):
            self.drive(self.amem.rd_addr[b], Mux(flags.active & (bank == b), block, 0))
        v1 = at(m, flags.beat, DATA, "flat_v")
        data = self.registered_bank_data(m, bank, "flat_data")
        v2 = at(m, v1, FLAT_WRITE, "flat_v2", since=DATA)
        if any(op.positions > 1 for op in ops):
            tile, col = self._columns(m, wrap)
            tile2, col2 = at(m, tile, FLAT_WRITE, "flat_tile"), at(m, col, FLAT_WRITE, "flat_col")
        else:  # 1x1 maps: the word index is the tile, its first feature tile * L
            tile2 = at(m, block, FLAT_WRITE, "flat_block")
            col2 = tile2 * lanes
        row = self.cur.image
        if rp.hw.groups > 1:
            slot2 = at(m, slot, FLAT_WRITE, "flat_slot")
            data = data.word_select(slot2, lanes * rp.act_bits)
            row = row + slot2
        values = [data.word_select(n, rp.act_bits) for n in range(lanes)]
        for op, flat in enumerate(ops):
            head = rp.heads[flat.out]
            here = v2 & flags.mine[op]
            if rp.hw.groups > 1:
                here &= row < head.rows  # the last group's idle slots
            start = row * head.cols + col2
            self.write(flat.out, start, block_mask(tile2, flat.channels, lanes), values, here)

    def _slots(self, m: Module) -> tuple[Signal, Signal, Signal]:
        """G > 1: the word index within a slot's pass, the slot, and whether this beat ends a slot's pass."""
        ops, flags = self.ops, self.flatten
        words = [-(-op.channels // self.rp.group_lanes) * op.positions for op in ops]  # per slot's pass
        block = Signal(range(max(words) + 1), name="flat_block")
        slot = Signal(range(self.rp.hw.groups), name="flat_slot")
        last, wrap = Signal.like(block, name="flat_last_block"), Signal(name="flat_wrap")
        with m.Switch(self.cur.op):
            for index, count in enumerate(words):
                with case(m, index, len(ops)):
                    m.d.comb += last.eq(count - 1)
        m.d.comb += wrap.eq(flags.beat & (block == last))
        with m.If(flags.issued):
            m.d.sync += [block.eq(0), slot.eq(0)]
        with m.Elif(wrap):
            m.d.sync += [block.eq(0), slot.eq(slot + 1)]
        with m.Elif(flags.beat):
            m.d.sync += block.eq(block + 1)
        return block, slot, wrap

    def _columns(self, m: Module, wrap: Signal | None) -> tuple[Signal, Signal]:
        """The channel tile and the first feature column of each beat's word, for maps larger than 1x1.

        `wrap`: the beat ends a slot's pass (G > 1), so the next beat starts the map again.
        """
        p, ops, flags = self.rp.group_lanes, self.ops, self.flatten
        largest = max(op.channels * op.positions for op in ops)
        pos, tile = Signal(range(max(op.positions for op in ops) + 1), name="flat_pos"), Signal(16, name="flat_tile")
        col = Signal(range(largest + p + 1), name="flat_col")
        tile_col = Signal(range(largest + p + 1), name="flat_tcol")
        channels, last_pos = Signal.like(col, name="flat_channels"), Signal.like(pos, name="flat_last_pos")
        with m.Switch(self.cur.op):
            for index, op in enumerate(ops):
                with case(m, index, len(ops)):
                    m.d.comb += [channels.eq(op.channels), last_pos.eq(op.positions - 1)]
        with m.If(flags.issued if wrap is None else flags.issued | wrap):
            m.d.sync += [pos.eq(0), tile.eq(0), col.eq(0), tile_col.eq(0)]
        with m.Elif(flags.beat):
            with m.If(pos == last_pos):
                m.d.sync += [pos.eq(0), tile.eq(tile + 1), tile_col.eq(tile_col + p), col.eq(tile_col + p)]
            with m.Else():
                m.d.sync += [pos.eq(pos + 1), col.eq(col + channels)]
        return tile, col


def block_mask(block: object, cols: int, lanes: int) -> object:
    """The lanes holding elements of block `block` (`lanes` columns each) of a row of `cols`: all but in the last."""
    last = -(-cols // lanes) - 1
    return Mux(block == last, (1 << (cols - last * lanes)) - 1, (1 << lanes) - 1)


class StreamOut(Engine):
    """OUT: E elements of an output memory per beat onto the out stream, from a register; a full, unread one stalls.

    Two stages: a beat reads its word (the read port holds it while the stream stalls), then the
    out register takes the beat's E elements, so `out_data` leaves the accelerator from a register
    (D_OUT). A stall freezes both stages and the beats.
    """

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        outputs = set(rp.outputs)
        super().__init__(
            bus,
            {
                "io_out": bus.flags(len(rp.outputs)),
                # every read starts on a word: no read rotator for this engine
                "heads": bus.heads(reads=outputs, holds=outputs, rotated=dict.fromkeys(outputs, 0)),
                "out_ready": In(1),
                "out_valid": Out(1),
                "out_data": Out(rp.hw.stream_elements * rp.out_bits),
                "stall": Out(1),
                "out_stall": Out(1),
            },
        )

    def build(self, m: Module) -> None:
        """The word counter, the read stage and the out register."""
        rp, e, p, flags = self.rp, self.rp.hw.stream_elements, self.lanes, self.io_out
        word = self.beats(m, flags, "out_word")
        read, valid = Signal(name="out_read"), Signal(name="out_valid_reg")
        stall = valid & ~self.out_ready
        self.drive(self.stall, stall)
        self.drive(self.out_stall, stall)
        with m.If(~stall):
            m.d.sync += [read.eq(flags.beat), valid.eq(read)]
        self.drive(self.out_valid, valid)
        slices = p // e
        if slices > 1:
            part = Signal(range(slices), name="out_part")
            with m.If(~stall):
                m.d.sync += part.eq(word[: bits_for(slices)])
        start = (word >> bits_for(slices) if slices > 1 else word) * p
        elements = []
        for op, name in enumerate(rp.outputs):
            fmt = rp.heads[name].qformat
            mine = flags.mine[op]
            port = self.read(name, start, mine)
            self.drive(port.rd_hold, Mux(mine, stall, 0))
            chosen = port.rd_lanes.word_select(part, e * fmt.bits) if slices > 1 else port.rd_lanes
            parts = []
            for k in range(e):
                sig = Signal(signed(rp.out_bits + 1), name=f"out{op}_e{k}")
                m.d.comb += sig.eq(extend(chosen.word_select(k, fmt.bits), fmt))
                parts.append(sig[: rp.out_bits])
            elements.append(Mux(read & mine, Cat(*parts), 0))
        data = Signal.like(self.out_data, name="out_data_reg")
        with m.If(~stall):
            m.d.sync += data.eq(or_all(elements))
        self.drive(self.out_data, data)
