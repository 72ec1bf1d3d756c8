"""The accelerator top level: controller, memories, engines and the shared datapath of one RtlPlan.

docs/microarchitecture.md is the contract and docs/rtl.md says how this generator fills it
in. The controller fetches one instruction per step from the instruction ROM and runs it as
T_ISSUE + beats + depth cycles: the *issue* cycle loads the instruction's engine, the engine
then issues one beat per cycle (a stream beat waits for its handshake), and the controller
waits out the pipeline depth before the next issue. Engines turn beats into memory addresses
and datapath control; they share the MAC array, the PPU and the requantisers, which never
run two instructions at once, so each shared input is the OR of the engines' (zero when idle)
outputs.

Ports (no others, all plain signals): `start`, `busy`, `done`, `error`, `error_code`;
`in_valid`, `in_ready`, `in_data` (E elements of `in_bits`); `out_valid`, `out_ready`,
`out_data` (E elements of `out_bits`); `issue` and `pc` (the instruction index, for tracing).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from metahw.compiler.qformat import QFormat
from metahw.hw.amaranth.argtree import ArgTree
from metahw.hw.amaranth.mac import MacArray
from metahw.hw.amaranth.requant import Requantiser
from metahw.hw.amaranth.spec import (
    CONV,
    FLATTEN,
    IO_IMAGE,
    IO_LABELS,
    IO_OUT,
    REDUCE,
    ROWRED,
    SCAN,
    WIDE,
    RtlPlan,
)

#: controller states
STATES = ("IDLE", "ISSUE", "BEATS", "DRAIN", "DONE", "ERROR")
#: error codes on `error_code`
ERROR_LABEL_RANGE, ERROR_CLASS_COUNT = 1, 2


def case(m: Module, index: int, count: int) -> object:
    """`m.Case(index)`, or `m.Default()` for the last of `count` cases (a complete case statement)."""
    return m.Default() if index == count - 1 else m.Case(index)


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _delay(m: Module, signal: object, cycles: int, name: str) -> object:
    """`signal` delayed by `cycles` registers."""
    for k in range(cycles):
        reg = Signal.like(signal, name=f"{name}_d{k + 1}")
        m.d.sync += reg.eq(signal)
        signal = reg
    return signal


def _extend(raw: object, fmt: QFormat) -> object:
    """A stored element (its format's bits) as the integer it holds."""
    return raw[: fmt.bits].as_signed() if fmt.signed else raw[: fmt.bits]


class Accelerator(wiring.Component):
    """The generated accelerator for one program on one hardware configuration."""

    def __init__(self, rp: RtlPlan) -> None:
        self.rp = rp
        hw = rp.hw
        self.lanes = hw.lanes
        self.elements = hw.stream_elements
        super().__init__(
            {
                "start": In(1),
                "busy": Out(1),
                "done": Out(1),
                "error": Out(1),
                "error_code": Out(2),
                "in_valid": In(1),
                "in_ready": Out(1),
                "in_data": In(self.elements * rp.in_bits),
                "out_valid": Out(1),
                "out_ready": In(1),
                "out_data": Out(self.elements * rp.out_bits),
                "issue": Out(1),
                "pc": Out(range(len(rp.instructions) + 1)),
            }
        )

    # ------------------------------------------------------------------ top
    def elaborate(self, platform: object) -> Module:
        """Instantiate memories, datapath and engines and wire them to the controller."""
        m = Module()
        rp = self.rp
        self.mac = m.submodules.mac = MacArray(self.lanes, rp.hw.operand_bits, rp.hw.acc_bits)
        ob = rp.hw.operand_bits
        self.mac_x = [Signal(signed(ob), name=f"mac_x{k}") for k in range(self.lanes)]
        self.mac_y = [Signal(signed(ob), name=f"mac_y{k}") for k in range(self.lanes)]
        self.mac_preload = [Signal(signed(rp.hw.acc_bits), name=f"mac_preload{k}") for k in range(self.lanes)]
        for k in range(self.lanes):
            m.d.comb += [self.mac.x[k].eq(self.mac_x[k]), self.mac.y[k].eq(self.mac_y[k])]
            m.d.comb += self.mac.preload[k].eq(self.mac_preload[k])
        self.rq = []
        for k in range(self.lanes):
            rq = Requantiser(rp.requants, rp.hw.acc_bits, rp.program.meta.rounding, rp.program.meta.overflow)
            m.submodules[f"requant{k}"] = rq
            self.rq.append(rq)
        self.scales = [1]
        self.ppu_relu, self.ppu_first, self.ppu_emit = (
            Signal(name="ppu_relu"),
            Signal(name="ppu_first"),
            Signal(name="ppu_emit"),
        )
        self.ppu_scale = Signal(4, name="ppu_scale")
        self.ppu_sel = Signal(range(max(2, len(rp.requants))), name="ppu_sel")
        self.ppu_sel_out = Signal.like(self.ppu_sel, name="ppu_sel_out")
        self.ppu_valid = Signal(name="ppu_valid")
        self.ppu_out = [Signal(signed(rp.hw.acc_bits), name=f"ppu_out{k}") for k in range(self.lanes)]
        self.beating = Signal(name="beating")
        self._memories(m)
        self._controller(m)
        self._stream_in(m)
        self._conv(m)
        self._flatten(m)
        self._scan(m)
        self._wide(m)
        self._reduce(m)
        self._rowred(m)
        self._stream_out(m)
        self._ppu(m)
        self._combine(m)
        return m

    # ------------------------------------------------------------------ shared-port plumbing
    def _drive(self, port: object, value: object) -> None:
        """Collect one engine's contribution to a shared input (OR-combined in `_combine`)."""
        if not isinstance(port, Signal):
            raise TypeError(f"shared inputs are driven as whole signals, got {port!r}")
        self._drivers.setdefault(id(port), (port, []))[1].append(value)

    def _combine(self, m: Module) -> None:
        for port, values in self._drivers.values():
            total = values[0]
            for v in values[1:]:
                total = total | v
            m.d.comb += port.eq(total)

    # ------------------------------------------------------------------ memories
    def _memories(self, m: Module) -> None:
        rp, p = self.rp, self.lanes
        self._drivers: dict[object, tuple[object, list]] = {}
        wbits = rp.weight_bits
        self.wmem = m.submodules.wmem = memory.Memory(
            shape=unsigned(p * wbits),
            depth=max(2, len(rp.weight_words)),
            init=[_pack(word, wbits) for word in rp.weight_words],
        )
        self.wmem_rd = self.wmem.read_port()
        self.bias = m.submodules.bias_rom = memory.Memory(
            shape=unsigned(p * rp.hw.acc_bits),
            depth=max(2, len(rp.bias_words)),
            init=[_pack(word, rp.hw.acc_bits) for word in rp.bias_words],
        )
        self.bias_rd = self.bias.read_port()
        self.amem, self.amem_rd, self.amem_wr = [], [], []
        for bank in range(2):
            mem = memory.Memory(shape=unsigned(p * rp.act_bits), depth=max(2, rp.amem_depth), init=[])
            m.submodules[f"amem{bank}"] = mem
            self.amem.append(mem)
            self.amem_rd.append(mem.read_port())
            self.amem_wr.append(mem.write_port(granularity=rp.act_bits))
        self.head_mem, self.head_rd, self.head_wr, self.mirror_rd, self.mirror_wr = {}, {}, {}, {}, {}
        for name, head in rp.heads.items():
            bits = head.qformat.bits
            safe = name.replace(".", "_")
            words = head.rows * -(-head.cols // p)
            mem = memory.Memory(shape=unsigned(p * bits), depth=max(2, words), init=[])
            m.submodules[f"head_{safe}"] = mem
            self.head_mem[name] = mem
            self.head_rd[name] = mem.read_port()
            self.head_wr[name] = mem.write_port(granularity=bits)
            if head.mirror:
                e = self.elements
                mirror = memory.Memory(shape=unsigned(e * bits), depth=max(2, -(-head.rows * head.cols // e)), init=[])
                m.submodules[f"out_{safe}"] = mirror
                self.mirror_rd[name] = mirror.read_port()
                self.mirror_wr[name] = mirror.write_port(granularity=bits)
        meta_labels = {name: rp.program.buffer_map[name] for name in rp.label_inputs}
        self.labels = {
            name: [Signal(buf.qformat.bits, name=f"label_{name}_{k}") for k in range(buf.shape[0])]
            for name, buf in meta_labels.items()
        }

    # ------------------------------------------------------------------ controller
    def _controller(self, m: Module) -> None:
        rp = self.rp
        instrs = rp.instructions
        beats_bits = max(i.beats for i in instrs).bit_length() + 1
        op_bits = _bits(max(i.op for i in instrs) + 1)
        image_bits = _bits(max(i.image for i in instrs) + 1)
        fields = [(4, "engine"), (beats_bits, "beats"), (op_bits, "op"), (image_bits, "image"), (1, "bank")]
        width = sum(w for w, _ in fields)
        words = []
        for ins in instrs:
            word, shift = 0, 0
            for w, name in fields:
                word |= int(getattr(ins, name)) << shift
                shift += w
            words.append(word)
        rom = m.submodules.instructions = memory.Memory(shape=unsigned(width), depth=max(2, len(words)), init=words)
        rom_rd = rom.read_port()
        fetched, shift = {}, 0
        for w, name in fields:
            fetched[name] = rom_rd.data[shift : shift + w]
            shift += w
        self.fetched = fetched

        cur = {name: Signal(w, name=f"cur_{name}") for w, name in fields}
        self.cur = cur
        pc = Signal(range(len(instrs) + 1))
        count = Signal(beats_bits)
        drain = Signal(8)
        self.stall = Signal()
        self.beat = Signal()
        self.issuing = Signal()
        self.scan_error = Signal(2)
        depth = Signal(8)
        with m.Switch(cur["engine"]):
            for engine in range(9):
                with case(m, engine, 9):
                    m.d.comb += depth.eq(rp.depth(engine))
        m.d.comb += [self.pc.eq(pc), self.issue.eq(self.issuing)]
        finish = Signal()  # the instruction's last cycle: go on to the next issue, done or error
        # the controller's state, one-hot-free and decoded with if/else (a complete, lint-clean decoder)
        state = Signal(range(len(STATES)), name="controller_state")
        idle, issue, beats, draining, done, error = (state == STATES.index(n) for n in STATES)

        def goto(name: str) -> object:
            return state.eq(STATES.index(name))

        def finish_instruction() -> None:
            m.d.comb += finish.eq(1)
            m.d.sync += pc.eq(pc + 1)
            with m.If(self.scan_error != 0):
                m.d.sync += goto("ERROR")
            with m.Elif(pc == len(instrs) - 1):
                m.d.sync += goto("DONE")
            with m.Else():
                m.d.sync += goto("ISSUE")

        m.d.comb += [self.busy.eq(~idle), self.done.eq(done), self.error.eq(error), self.issuing.eq(issue)]
        m.d.comb += [self.beating.eq(beats), self.beat.eq(beats & ~self.stall)]
        m.d.comb += rom_rd.addr.eq(Mux(idle, 0, pc + 1))
        with m.If(idle):
            with m.If(self.start):
                m.d.sync += [pc.eq(0), goto("ISSUE")]
        with m.Elif(issue):
            m.d.sync += [cur[name].eq(fetched[name]) for name in cur]
            m.d.sync += [count.eq(0), goto("BEATS")]
        with m.Elif(beats):
            with m.If(~self.stall):
                m.d.sync += [count.eq(count + 1), drain.eq(depth)]
                with m.If(count == cur["beats"] - 1):
                    with m.If(depth == 0):
                        finish_instruction()
                    with m.Else():
                        m.d.sync += goto("DRAIN")
        with m.Elif(draining):
            with m.If(~self.stall):
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 1):
                    finish_instruction()
        with m.Else():  # DONE, ERROR: one cycle each
            m.d.sync += goto("IDLE")
        error_code = Signal(2)
        with m.If(self.start & ~self.busy):
            m.d.sync += error_code.eq(0)
        with m.Elif(finish & (self.scan_error != 0)):
            m.d.sync += error_code.eq(self.scan_error)
        m.d.comb += self.error_code.eq(error_code)

    # ------------------------------------------------------------------ engines
    def _active(self, engine: int) -> object:
        return self.cur["engine"] == engine

    def _issued(self, engine: int) -> object:
        return self.issuing & (self.fetched["engine"] == engine)

    def _beat(self, engine: int) -> object:
        return self.beat & self._active(engine)

    def _gate(self, engine: int, value: object) -> object:
        return Mux(self._active(engine), value, 0)

    def _stream_in(self, m: Module) -> None:
        """IO: E elements per beat, an image into AMEM0 (linear layout) or labels into their registers."""
        rp, p, e = self.rp, self.lanes, self.elements
        active = self._active(IO_IMAGE) | self._active(IO_LABELS)
        m.d.comb += self.in_ready.eq(self.beating & active)
        self._drive(self.stall, self.beating & active & ~self.in_valid)
        element = [self.in_data[k * rp.in_bits : (k + 1) * rp.in_bits] for k in range(e)]
        index = Signal(range(rp.amem_depth * p + e + 1))
        with m.If(self.issuing):
            m.d.sync += index.eq(0)
        with m.Elif(self.beat & active):
            m.d.sync += index.eq(index + e)
        wr = self.amem_wr[0]
        word = Cat(*[element[k][: rp.act_bits] for k in range(e)] * (p // e))
        lane_group = (index & (p - 1)) >> _bits(e) if e > 1 else index & (p - 1)
        enables = Cat(*[(lane_group == g).replicate(e) for g in range(p // e)])
        image_beat = self._beat(IO_IMAGE)
        self._drive(wr.addr, Mux(image_beat, index >> _bits(p) if p > 1 else index, 0))
        self._drive(wr.data, Mux(image_beat, word, 0))
        self._drive(wr.en, Mux(image_beat, enables, 0))
        for op, name in enumerate(rp.label_inputs):
            regs = self.labels[name]
            with m.If(self._beat(IO_LABELS) & (self.cur["op"] == op)):
                for r, reg in enumerate(regs):
                    with m.If(index == r // e * e):
                        m.d.sync += reg.eq(element[r % e])

    def _conv(self, m: Module) -> None:
        """OUTER: lanes = output channels, one input pixel x P weights per beat; ReLU and 2x2 max in the PPU."""
        rp, p = self.rp, self.lanes
        lop = Signal(range(max(2, len(rp.convs))))
        bank = Signal()
        with m.If(self._issued(CONV)):
            m.d.sync += [lop.eq(self.fetched["op"]), bank.eq(self.fetched["bank"])]
        big = 24
        t, py, px, wy, wx, c, i, j = (
            Signal(big, name=f"conv_{n}") for n in ("t", "py", "px", "wy", "wx", "c", "i", "j")
        )
        k, wtile, otile = Signal(big, name="conv_k"), Signal(big, name="conv_wtile"), Signal(big, name="conv_otile")
        yy, xx = Signal(signed(big), name="conv_yy"), Signal(signed(big), name="conv_xx")
        s_addr, lane = Signal(big, name="conv_addr"), Signal(range(p), name="conv_lane")
        oaddr = Signal(big, name="conv_oaddr")
        tap, first, last, win0, winlast = (
            Signal(name=f"conv_{n}") for n in ("tap", "first", "last", "win0", "winlast")
        )
        beat = self._beat(CONV)
        registers = dict(t=t, py=py, px=px, wy=wy, wx=wx, c=c, i=i, j=j, k=k, yy=yy, xx=xx, s_addr=s_addr, lane=lane,
                         oaddr=oaddr, tap=tap, first=first, last=last, win0=win0, winlast=winlast, otile=otile,
                         wtile=wtile, beat=beat)  # fmt: skip
        with m.Switch(lop):
            for index, layer in enumerate(rp.convs):
                with case(m, index, len(rp.convs)):
                    self._conv_layer(m, layer, registers)
        with m.If(self._issued(CONV)):
            with m.Switch(self.fetched["op"]):
                for index, layer in enumerate(rp.convs):
                    with case(m, index, len(rp.convs)):
                        m.d.sync += [wtile.eq(layer.weight_base), otile.eq(0)]
            m.d.sync += [r.eq(0) for r in (t, py, px, wy, wx, c, i, j, k)]
        # stage 0 -> 1: addresses out, control registered
        rd, wrd = self.amem_rd, self.wmem_rd
        for b in range(2):
            self._drive(rd[b].addr, Mux(self._active(CONV) & (bank == b), s_addr, 0))
        self._drive(wrd.addr, self._gate(CONV, wtile + k))
        v1 = _delay(m, beat, 1, "conv_valid")
        tap1, lane1, first1, last1 = (
            _delay(m, sig, 1, f"conv_{n}")
            for sig, n in ((tap, "tap"), (lane, "lane"), (first, "first"), (last, "last"))
        )
        # stage 1 -> 2: operand registers
        pixel = Signal(signed(rp.hw.operand_bits), name="conv_pixel")
        raw = Mux(bank, rd[1].data, rd[0].data).word_select(lane1, rp.act_bits)
        with m.Switch(lop):
            for index, layer in enumerate(rp.convs):
                with case(m, index, len(rp.convs)):
                    m.d.comb += pixel.eq(Mux(tap1, _extend(raw, layer.in_format), 0))
        x = Signal(signed(rp.hw.operand_bits), name="conv_x")
        ys = [Signal(signed(rp.hw.operand_bits), name=f"conv_w{n}", reset_less=True) for n in range(p)]
        m.d.sync += x.eq(pixel)
        wfmt = QFormat(rp.weight_bits, 0, True)
        m.d.sync += [ys[n].eq(_extend(wrd.data.word_select(n, rp.weight_bits), wfmt)) for n in range(p)]
        v2, first2, last2 = _delay(m, v1, 1, "conv_v"), _delay(m, first1, 1, "conv_f"), _delay(m, last1, 1, "conv_l")
        mac = self.mac
        self._drive(mac.valid, v2)
        self._drive(mac.first, Mux(v2, first2, 0))
        self._drive(mac.last, Mux(v2, last2, 0))
        for n in range(p):
            self._drive(self.mac_x[n], self._gate(CONV, x))
            self._drive(self.mac_y[n], self._gate(CONV, ys[n]))
        # preload: bias ROM read at stage 3, data with the products at stage 4
        t3 = _delay(m, t, 3, "conv_t")
        bias_base, relu, requant = (
            Signal(16, name="conv_bias_base"),
            Signal(name="conv_relu"),
            Signal.like(self.ppu_sel),
        )
        with m.Switch(lop):
            for index, layer in enumerate(rp.convs):
                with case(m, index, len(rp.convs)):
                    m.d.comb += [bias_base.eq(layer.bias_base), relu.eq(layer.relu), requant.eq(layer.requant)]
        self._drive(self.bias_rd.addr, self._gate(CONV, bias_base + t3))
        for n in range(p):
            self._drive(
                self.mac_preload[n], self._gate(CONV, self.bias_rd.data.word_select(n, rp.hw.acc_bits).as_signed())
            )
        # PPU controls with the accumulators (stage 5); the write with the PPU output (stage 6)
        win0_5, winlast5 = _delay(m, win0, 5, "conv_win0"), _delay(m, winlast, 5, "conv_winlast")
        oaddr6 = _delay(m, oaddr, 6, "conv_oaddr")
        self._drive(self.ppu_relu, self._gate(CONV, relu))
        self._drive(self.ppu_sel, self._gate(CONV, requant))
        self._drive(self.ppu_first, self._gate(CONV, win0_5))
        self._drive(self.ppu_emit, self._gate(CONV, winlast5))
        write = self.ppu_valid & self._active(CONV)
        result = Cat(*[self.rq[n].result[: rp.act_bits] for n in range(p)])
        for b in range(2):
            wr = self.amem_wr[b]
            here = write & (bank != b)
            self._drive(wr.addr, Mux(here, oaddr6, 0))
            self._drive(wr.data, Mux(here, result, 0))
            self._drive(wr.en, Mux(here, (1 << p) - 1, 0))

    def _conv_layer(self, m: Module, layer, v: dict) -> None:
        """One layer's address arithmetic and loop advance (constants folded in)."""
        p, lg = self.lanes, _bits(self.lanes) if self.lanes > 1 else 0
        t, py, px, wy, wx, c, i, j, k = (v[n] for n in ("t", "py", "px", "wy", "wx", "c", "i", "j", "k"))
        yy, xx, s_addr, lane, oaddr = v["yy"], v["xx"], v["s_addr"], v["lane"], v["oaddr"]
        kk, pad, hgt, wid = layer.kernel, layer.padding, layer.height, layer.width
        y = (py * 2 + wy) if layer.pool else py
        x = (px * 2 + wx) if layer.pool else px
        m.d.comb += [yy.eq(y + i - pad), xx.eq(x + j - pad)]
        m.d.comb += v["tap"].eq((yy >= 0) & (yy < hgt) & (xx >= 0) & (xx < wid))
        if layer.linear_input:
            linear = (c * (hgt * wid) + yy * wid + xx)[:24]
            m.d.comb += [s_addr.eq(linear >> lg), lane.eq(linear & (p - 1))]
        else:
            m.d.comb += [s_addr.eq((c >> lg) * (hgt * wid) + yy * wid + xx), lane.eq(c & (p - 1))]
        m.d.comb += oaddr.eq(v["otile"] + py * layer.out_width + px)
        last_tap = k == layer.fan_in - 1
        m.d.comb += [v["first"].eq(k == 0), v["last"].eq(last_tap)]
        m.d.comb += v["win0"].eq((wy == 0) & (wx == 0))
        m.d.comb += v["winlast"].eq((wy == 1) & (wx == 1) if layer.pool else 1)
        with m.If(v["beat"]):
            m.d.sync += [j.eq(j + 1), k.eq(k + 1)]
            with m.If(j == kk - 1):
                m.d.sync += [j.eq(0), i.eq(i + 1)]
                with m.If(i == kk - 1):
                    m.d.sync += [i.eq(0), c.eq(c + 1)]
                    with m.If(c == layer.channels - 1):
                        m.d.sync += [c.eq(0), k.eq(0)]
                        self._advance_position(m, layer, v)

    def _advance_position(self, m: Module, layer, v: dict) -> None:
        """Next output position in pool-window order, then the next channel tile."""
        t, py, px, wy, wx = (v[n] for n in ("t", "py", "px", "wy", "wx"))

        def next_pixel() -> None:
            m.d.sync += px.eq(px + 1)
            with m.If(px == layer.out_width - 1):
                m.d.sync += [px.eq(0), py.eq(py + 1)]
                with m.If(py == layer.out_height - 1):
                    m.d.sync += [py.eq(0), t.eq(t + 1)]
                    m.d.sync += v["wtile"].eq(v["wtile"] + layer.fan_in)
                    m.d.sync += v["otile"].eq(v["otile"] + layer.out_height * layer.out_width)

        if layer.pool:
            m.d.sync += wx.eq(wx + 1)
            with m.If(wx == 1):
                m.d.sync += [wx.eq(0), wy.eq(wy + 1)]
                with m.If(wy == 1):
                    m.d.sync += wy.eq(0)
                    next_pixel()
        else:
            next_pixel()

    def _flatten(self, m: Module) -> None:
        """VECTOR: one AMEM word (P channels of a 1x1 map) per beat into the image's row of the head buffer."""
        rp, p = self.rp, self.lanes
        block = Signal(16, name="flat_block")
        with m.If(self._issued(FLATTEN)):
            m.d.sync += block.eq(0)
        with m.Elif(self._beat(FLATTEN)):
            m.d.sync += block.eq(block + 1)
        bank = self.cur["bank"]
        for b in range(2):
            self._drive(self.amem_rd[b].addr, Mux(self._active(FLATTEN) & (bank == b), block, 0))
        v1, block1 = _delay(m, self._beat(FLATTEN), 1, "flat_v"), _delay(m, block, 1, "flat_block")
        data = Signal(p * rp.act_bits, name="flat_data")
        m.d.sync += data.eq(Mux(bank, self.amem_rd[1].data, self.amem_rd[0].data))
        v2, block2 = _delay(m, v1, 1, "flat_v2"), _delay(m, block1, 1, "flat_b2")
        image2 = self.cur["image"]
        for op, flat in enumerate(rp.flattens):
            head = rp.heads[flat.output]
            words = -(-head.cols // p)
            bits = head.qformat.bits
            here = v2 & (self.cur["op"] == op)
            word = Cat(*[data.word_select(n, rp.act_bits)[:bits] for n in range(p)])
            wr = self.head_wr[head.name]
            self._drive(wr.addr, Mux(here, image2 * words + block2, 0))
            self._drive(wr.data, Mux(here, word, 0))
            self._drive(wr.en, Mux(here, Cat(*[block2 * p + n < head.cols for n in range(p)]), 0))

    def _scan(self, m: Module) -> None:
        """SCAN: one label per beat into the per-class index table, with the range and count checks."""
        rp = self.rp
        self.tables = []
        for op, proto in enumerate(rp.prototypes):
            labels = self.labels[proto.labels]
            rows = len(labels)
            table = [[Signal(range(max(2, rows)), name=f"idx{op}_{n}_{k}") for k in range(proto.shots)]
                     for n in range(proto.ways)]  # fmt: skip
            counts = [Signal(range(rows + 2), name=f"count{op}_{n}") for n in range(proto.ways)]
            self.tables.append(table)
            row = Signal(range(rows + 1), name=f"scan_row{op}")
            bad_label = Signal(name=f"scan_range{op}")
            mine = self.cur["op"] == op
            with m.If(self._issued(SCAN)):
                m.d.sync += [row.eq(0), bad_label.eq(0)] + [n.eq(0) for n in counts]
            with m.Elif(self._beat(SCAN) & mine):
                m.d.sync += row.eq(row + 1)
                label = Signal(labels[0].shape(), name=f"scan_label{op}")
                with m.Switch(row):
                    for r in range(rows):
                        with case(m, r, rows):
                            m.d.comb += label.eq(labels[r])
                with m.If(label >= proto.ways):
                    m.d.sync += bad_label.eq(1)
                for n in range(proto.ways):
                    with m.If(label == n):
                        m.d.sync += counts[n].eq(counts[n] + 1)
                        for k in range(proto.shots):
                            with m.If(counts[n] == k):
                                m.d.sync += table[n][k].eq(row)
            count_bad = Cat(*[n != proto.shots for n in counts]).any()
            code = Mux(bad_label, ERROR_LABEL_RANGE, Mux(count_bad, ERROR_CLASS_COUNT, 0))
            self._drive(self.scan_error, Mux(self._active(SCAN) & mine, code, 0))

    def _wide(self, m: Module) -> None:
        """WIDE: per class and block of P columns, K beats adding the feature words of its shots."""
        rp, p = self.rp, self.lanes
        for op, proto in enumerate(rp.prototypes):
            features, out = rp.heads[proto.features], rp.heads[proto.output]
            words = -(-features.cols // p)
            n, blk, k = (Signal(16, name=f"wide{op}_{x}") for x in ("n", "blk", "k"))
            mine = self._active(WIDE) & (self.cur["op"] == op)
            beat = self.beat & mine
            with m.If(self._issued(WIDE)):
                m.d.sync += [n.eq(0), blk.eq(0), k.eq(0)]
            with m.Elif(beat):
                m.d.sync += k.eq(k + 1)
                with m.If(k == proto.shots - 1):
                    m.d.sync += [k.eq(0), blk.eq(blk + 1)]
                    with m.If(blk == words - 1):
                        m.d.sync += [blk.eq(0), n.eq(n + 1)]
            row = Signal(range(max(2, features.rows)), name=f"wide{op}_row")
            with m.Switch(Cat(k, n)):
                for cls in range(proto.ways):
                    for shot in range(proto.shots):
                        with m.Case(shot | (cls << len(k))):
                            m.d.comb += row.eq(self.tables[op][cls][shot])
                with m.Default():
                    m.d.comb += row.eq(0)
            rd = self.head_rd[features.name]
            self._drive(rd.addr, Mux(mine, row * words + blk, 0))
            v1 = _delay(m, beat, 1, f"wide{op}_v")
            xs = [Signal(signed(rp.hw.operand_bits), name=f"wide{op}_x{lane}", reset_less=True) for lane in range(p)]
            bits = features.qformat.bits
            m.d.sync += [xs[lane].eq(_extend(rd.data.word_select(lane, bits), features.qformat)) for lane in range(p)]
            v2 = _delay(m, v1, 1, f"wide{op}_v2")
            first2, last2 = _delay(m, k == 0, 2, f"wide{op}_first"), _delay(m, k == proto.shots - 1, 2, f"wide{op}_l")
            self._drive(self.mac.valid, v2)
            self._drive(self.mac.first, Mux(v2, first2, 0))
            self._drive(self.mac.last, Mux(v2, last2, 0))
            for lane in range(p):
                self._drive(self.mac_x[lane], Mux(mine, xs[lane], 0))
                self._drive(self.mac_y[lane], Mux(mine, 1, 0))
            scale = self._scale_index(proto)
            requant = rp.op_requant[proto.name]
            self._drive(self.ppu_scale, Mux(mine, scale, 0))
            self._drive(self.ppu_sel, Mux(mine, requant, 0))
            self._drive(self.ppu_first, Mux(mine, 1, 0))
            self._drive(self.ppu_emit, Mux(mine, 1, 0))
            addr6 = _delay(m, n * words + blk, 6, f"wide{op}_addr")
            blk6 = _delay(m, blk, 6, f"wide{op}_blk")
            here = self.ppu_valid & mine
            wr = self.head_wr[out.name]
            result = Cat(*[self.rq[lane].result[: out.qformat.bits] for lane in range(p)])
            self._drive(wr.addr, Mux(here, addr6, 0))
            self._drive(wr.data, Mux(here, result, 0))
            self._drive(wr.en, Mux(here, Cat(*[blk6 * p + lane < out.cols for lane in range(p)]), 0))

    def _scale_index(self, proto) -> int:
        if proto.shots & (proto.shots - 1) == 0:
            return 0
        factor = ((1 << (proto.recip_frac + 1)) + proto.shots) // (2 * proto.shots)
        if factor not in self.scales:
            self.scales.append(factor)
        return self.scales.index(factor)

    def _reduce(self, m: Module) -> None:
        """REDUCE: per (query, reference) pair, ⌈D/P⌉ beats of P products summed by the adder tree."""
        rp, p = self.rp, self.lanes
        td = self.mac.tree_depth
        for op, dist in enumerate(rp.distances):
            qh, rh, out = rp.heads[dist.queries], rp.heads[dist.refs], rp.heads[dist.output]
            words = -(-qh.cols // p)
            q, n, blk = (Signal(16, name=f"red{op}_{x}") for x in ("q", "n", "blk"))
            lin = Signal(24, name=f"red{op}_lin")
            mine = self._active(REDUCE) & (self.cur["op"] == op)
            beat = self.beat & mine
            with m.If(self._issued(REDUCE)):
                m.d.sync += [q.eq(0), n.eq(0), blk.eq(0), lin.eq(0)]
            with m.Elif(beat):
                m.d.sync += blk.eq(blk + 1)
                with m.If(blk == words - 1):
                    m.d.sync += [blk.eq(0), n.eq(n + 1), lin.eq(lin + 1)]
                    with m.If(n == rh.rows - 1):
                        m.d.sync += [n.eq(0), q.eq(q + 1)]
            self._drive(self.head_rd[qh.name].addr, Mux(mine, q * words + blk, 0))
            self._drive(self.head_rd[rh.name].addr, Mux(mine, n * words + blk, 0))
            v1, blk1 = _delay(m, beat, 1, f"red{op}_v"), _delay(m, blk, 1, f"red{op}_blk")
            if dist.metric == "l2":
                f = max(qh.qformat.frac, rh.qformat.frac)
                qshift, rshift = f - qh.qformat.frac, f - rh.qformat.frac
            else:
                qshift = rshift = 0
            xs, ys = [], []
            for lane in range(p):
                inside = blk1 * p + lane < qh.cols
                qv = _extend(self.head_rd[qh.name].data.word_select(lane, qh.qformat.bits), qh.qformat)
                rv = _extend(self.head_rd[rh.name].data.word_select(lane, rh.qformat.bits), rh.qformat)
                x = Signal(signed(rp.hw.operand_bits), name=f"red{op}_x{lane}", reset_less=True)
                y = Signal(signed(rp.hw.operand_bits), name=f"red{op}_y{lane}", reset_less=True)
                m.d.sync += [x.eq(Mux(inside, qv << qshift, 0)), y.eq(Mux(inside, rv << rshift, 0))]
                xs.append(x)
                ys.append(y)
            v2 = _delay(m, v1, 1, f"red{op}_v2")
            first2, last2 = _delay(m, blk1 == 0, 1, f"red{op}_f"), _delay(m, blk1 == words - 1, 1, f"red{op}_l")
            l2 = int(dist.metric == "l2")
            self._drive(self.mac.valid, v2)
            self._drive(self.mac.first, Mux(v2, first2, 0))
            self._drive(self.mac.last, Mux(v2, last2, 0))
            self._drive(self.mac.reduce, Mux(mine, 1, 0))
            self._drive(self.mac.subtract, Mux(mine, l2, 0))
            self._drive(self.mac.square, Mux(mine, l2, 0))
            for lane in range(p):
                self._drive(self.mac_x[lane], Mux(mine, xs[lane], 0))
                self._drive(self.mac_y[lane], Mux(mine, ys[lane], 0))
            requant = rp.op_requant[dist.name]
            self._drive(self.ppu_sel, Mux(mine, requant, 0))
            self._drive(self.ppu_first, Mux(mine, 1, 0))
            self._drive(self.ppu_emit, Mux(mine, 1, 0))
            q6, n6, lin6 = (_delay(m, sig, 6 + td, f"red{op}_{x}6") for sig, x in ((q, "q"), (n, "n"), (lin, "lin")))
            here = self.ppu_valid & mine
            self._write_element(m, out, q6, n6, lin6, self.rq[0].result, here)

    def _write_element(
        self, m: Module, head, row: object, col: object, linear: object, value: object, enable: object
    ) -> None:
        """One element into a head buffer's row words and its stream mirror."""
        p, e, bits = self.lanes, self.elements, head.qformat.bits
        words = -(-head.cols // p)
        lg_p = _bits(p) if p > 1 else 0
        wr = self.head_wr[head.name]
        self._drive(wr.addr, Mux(enable, row * words + (col >> lg_p), 0))
        self._drive(wr.data, Mux(enable, value[:bits].replicate(p), 0))
        self._drive(wr.en, Mux(enable, Const(1, p) << col[:lg_p], 0))
        if head.mirror:
            lg_e = _bits(e) if e > 1 else 0
            mw = self.mirror_wr[head.name]
            self._drive(mw.addr, Mux(enable, linear >> lg_e, 0))
            self._drive(mw.data, Mux(enable, value[:bits].replicate(e), 0))
            self._drive(mw.en, Mux(enable, Const(1, e) << linear[:lg_e], 0))

    def _rowred(self, m: Module) -> None:
        """ROWRED: per row, ⌈N/P⌉ beats into the compare tree; the index of the row's min (max) is written."""
        rp, p = self.rp, self.lanes
        for op, red in enumerate(rp.rowreds):
            src, out = rp.heads[red.input], rp.heads[red.output]
            words = -(-src.cols // p)
            greater = type(red).__name__ == "ArgMax"
            tree = ArgTree(p, src.qformat.bits + 1, greater)
            m.submodules[f"argtree{op}"] = tree
            q, blk = Signal(16, name=f"rr{op}_q"), Signal(16, name=f"rr{op}_blk")
            mine = self._active(ROWRED) & (self.cur["op"] == op)
            beat = self.beat & mine
            with m.If(self._issued(ROWRED)):
                m.d.sync += [q.eq(0), blk.eq(0)]
            with m.Elif(beat):
                m.d.sync += blk.eq(blk + 1)
                with m.If(blk == words - 1):
                    m.d.sync += [blk.eq(0), q.eq(q + 1)]
            rd = self.head_rd[src.name]
            self._drive(rd.addr, Mux(mine, q * words + blk, 0))
            v1, blk1, q1 = _delay(m, beat, 1, f"rr{op}_v"), _delay(m, blk, 1, f"rr{op}_b"), _delay(m, q, 1, f"rr{op}_q")
            valid2 = Signal(name=f"rr{op}_v2")
            m.d.sync += valid2.eq(v1)
            for lane in range(p):
                value = _extend(rd.data.word_select(lane, src.qformat.bits), src.qformat)
                m.d.sync += [tree.values[lane].eq(value), tree.mask[lane].eq(blk1 * p + lane < src.cols)]
            m.d.comb += tree.valid.eq(valid2)
            td = tree.depth
            blk_t, q_t = _delay(m, blk1, 1 + td, f"rr{op}_bt"), _delay(m, q1, 1 + td, f"rr{op}_qt")
            best = Signal(signed(src.qformat.bits + 1), name=f"rr{op}_best")
            best_index = Signal(16, name=f"rr{op}_index")
            index = blk_t * p + tree.index
            better = (tree.value > best) if greater else (tree.value < best)
            take = (blk_t == 0) | better
            new_index = Mux(take, index, best_index)
            with m.If(tree.out_valid):
                with m.If(take):
                    m.d.sync += [best.eq(tree.value), best_index.eq(index)]
            emit = Signal(name=f"rr{op}_emit")
            emit_index, emit_q = Signal(16, name=f"rr{op}_ei"), Signal(16, name=f"rr{op}_eq")
            m.d.sync += [
                emit.eq(tree.out_valid & (blk_t == words - 1) & mine),
                emit_index.eq(new_index),
                emit_q.eq(q_t),
            ]
            self._write_element(m, out, Const(0), emit_q, emit_q, emit_index, emit)

    def _stream_out(self, m: Module) -> None:
        """IO: one E-element mirror word per beat onto the out stream; a full, unread out register stalls."""
        rp, e = self.rp, self.elements
        word = Signal(16, name="out_word")
        active = self._active(IO_OUT)
        with m.If(self._issued(IO_OUT)):
            m.d.sync += word.eq(0)
        with m.Elif(self._beat(IO_OUT)):
            m.d.sync += word.eq(word + 1)
        valid = Signal(name="out_valid_reg")
        stall = valid & ~self.out_ready
        self._drive(self.stall, stall)
        with m.If(~stall):
            m.d.sync += valid.eq(self._beat(IO_OUT))
        m.d.comb += self.out_valid.eq(valid)
        for op, name in enumerate(rp.outputs):
            head = rp.heads[name]
            rd = self.mirror_rd[name]
            mine = active & (self.cur["op"] == op)
            self._drive(rd.addr, Mux(mine, word, 0))
            m.d.comb += rd.en.eq(~stall)
            bits = head.qformat.bits
            elements = [_extend(rd.data.word_select(k, bits), head.qformat) for k in range(e)]
            self._drive(self.out_data, Mux(valid & mine, self._pack_out(m, elements, op), 0))

    def _pack_out(self, m: Module, elements: list, op: int) -> object:
        rp = self.rp
        parts = []
        for k, el in enumerate(elements):
            sig = Signal(signed(rp.out_bits + 1), name=f"out{op}_e{k}")
            m.d.comb += sig.eq(el)
            parts.append(sig[: rp.out_bits])
        return Cat(*parts)

    def _ppu(self, m: Module) -> None:
        """PPU stage: ReLU, running 2x2 max, scale multiply; registered into the requantisers."""
        rp, p, mac = self.rp, self.lanes, self.mac
        a = rp.hw.acc_bits
        valid_in = mac.lane_valid | mac.sum_valid
        held = [Signal(signed(a), name=f"ppu_max{k}") for k in range(p)]
        for k in range(p):
            v = Mux(mac.sum_valid, mac.sum, mac.lane_acc[k]) if k == 0 else mac.lane_acc[k]
            relu = Mux(self.ppu_relu & (v < 0), 0, v)
            running = Mux(self.ppu_first | (relu > held[k]), relu, held[k])
            scaled = Signal(signed(a), name=f"ppu_scaled{k}")
            with m.Switch(self.ppu_scale):
                for index, factor in enumerate(self.scales):
                    with case(m, index, len(self.scales)):
                        m.d.comb += scaled.eq(running * factor)
            with m.If(valid_in):
                m.d.sync += held[k].eq(running)
                with m.If(self.ppu_emit):
                    m.d.sync += self.ppu_out[k].eq(scaled)
            m.d.comb += [self.rq[k].value.eq(self.ppu_out[k]), self.rq[k].select.eq(self.ppu_sel_out)]
        m.d.sync += [self.ppu_valid.eq(valid_in & self.ppu_emit), self.ppu_sel_out.eq(self.ppu_sel)]


def _pack(values: list[int], bits: int) -> int:
    """Lane values (two's complement, `bits` each) packed lane 0 first."""
    word = 0
    mask = (1 << bits) - 1
    for k, v in enumerate(values):
        word |= (int(v) & mask) << (k * bits)
    return word
