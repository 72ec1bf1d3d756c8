"""Engines as `wiring.Component`s: the shared datapath's signals each one reads and drives.

docs/rtl.md ("Engines"). The engines share the MAC array, the PPU lanes, the activation banks
(AMEM), the weight and bias ROMs, the head memories and the row registers; they never run two
instructions at once. An engine's signature names the *bus* signals it uses by their path on
the accelerator's bus (`ppu.scale`, `amem.rd_addr[1]`, `heads.logits.wr_start`, `map.beat`):
its `In` members are the controller's flags of its ISA engine, the `cur` fields, memory read
data and PPU outputs it reads, its `Out` members its contribution to each shared input (zero
while it is idle) and the row registers it owns. The accelerator (`Accelerator.attach`)
connects every `In` member from the bus signal of the same path and ORs every `Out` member
into it. `Bus` gives each member's shape from the RtlPlan, to the engines' signatures and to
the accelerator's own signals alike.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.hdl import ShapeCastable
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from metahw.hw.amaranth.isa import EXP, RECIP, ROWRED, SCAN, HeadBuffer
from metahw.hw.amaranth.sfu import RSQRT_ROOT_BITS
from metahw.hw.amaranth.spec import RtlPlan
from metahw.hw.amaranth.util import OrDrivers, bits_for, delay, extend, pick

#: the PPU's controls shared by all its lanes, and its per-lane inputs
PPU_CONTROLS = (
    "scale",
    "select",
    "update",
    "relu",
    "first",
    "emit",
    "variable",
    "leaky",
    "negative_scale",
    "accumulate",
)
PPU_LANES = ("vec", "operand", "addend", "lane_select")
#: the MAC array's controls and its per-lane inputs
MAC_CONTROLS = ("valid", "first", "last", "subtract", "square", "reduce", "wino", "signs", "sum_preload")
MAC_LANES = ("x", "y", "preload")
#: the per-row registers of the softmax (max, exp sum, reciprocal) and of rsqrt (sum of squares, r, e)
ROWS = ("rowmax", "rowsum", "recip", "norm_sum", "rsqrt_r", "rsqrt_e")


def instruction_fields(rp: RtlPlan) -> list[tuple[int, str]]:
    """The instruction ROM word's fields, (bits, name) from bit 0: engine, beats, op, image and the banks."""
    instrs = rp.instructions
    fields = [
        (4, "engine"),
        (max(i.beats for i in instrs).bit_length() + 1, "beats"),
        (bits_for(max(i.op for i in instrs) + 1), "op"),
        (bits_for(max(i.image for i in instrs) + 1), "image"),
        (1, "bank"),
    ]
    if rp.amem_banks > 2:  # three activation banks: each segment op names its source, destination and skip
        bank_bits = bits_for(rp.amem_banks)
        fields[-1:] = [(bank_bits, "bank"), (bank_bits, "dst"), (bank_bits, "skip")]
    return fields


def port_name(buffer: str) -> str:
    """A head memory's or label input's member name on the bus (its buffer name as an identifier)."""
    safe = "".join(c if c.isalnum() else "_" for c in buffer)
    return safe if safe[:1].isalpha() else f"b_{safe}"


def _group(members: dict) -> Out:
    return Out(wiring.Signature(members))


class Bus:
    """The shapes of the accelerator's shared signals for one RtlPlan, and engine members over them.

    Every method returns one signature member, named by the caller as the bus names it (the
    group `amem`, `mac`, `ppu`, `heads`, `rows`, `labels`, `cur`, `fetched` or the engine's
    name), with flows as the engine sees them.
    """

    def __init__(self, rp: RtlPlan) -> None:
        hw, p = rp.hw, rp.hw.lanes
        a, ob = hw.acc_bits, hw.operand_bits
        self.rp, self.lanes = rp, p
        #: the head memories (port names) declared as written in windows, by `heads`
        self.windows: set[str] = set()
        #: per head memory read (port name), the lanes its windows that start inside a word take, by `head`
        self.rotated: dict[str, int] = {}
        #: per head memory read (port name), the lanes of a word its windows may start at (None: any), by `head`
        self.starts: dict[str, frozenset[int] | None] = {}
        self.fields = {name: bits for bits, name in instruction_fields(rp)}
        select, scale = range(max(2, len(rp.requants))), range(max(2, len(rp.factors)))
        self.ppu_shapes: dict[str, ShapeCastable | int | range] = dict.fromkeys(PPU_CONTROLS, 1)
        self.ppu_shapes.update(scale=scale, negative_scale=scale, select=select, update=range(len(rp.updates) + 2))
        self.ppu_shapes.update(vec=signed(a), operand=signed(ob), addend=signed(a), lane_select=select)
        #: the width of the PPU's requantised result (`PpuLane.result`): the widest format, signed
        self.result_bits = max(s.dst.bits + (0 if s.dst.signed else 1) for s in rp.requants)
        self.mac_shapes: dict[str, ShapeCastable | int] = dict.fromkeys(MAC_CONTROLS, 1)
        self.mac_shapes.update(sum_preload=signed(a), x=signed(ob), y=signed(ob), preload=signed(a), signs=8)
        maxima = [rp.heads[d.source].qformat.bits for d in rp.engine_ops(ROWRED) if d.out is None]
        sums = [rp.exp_bits + d.cols.bit_length() for d in rp.engine_ops(EXP)]
        recips = [d.recip_bits + 1 for d in rp.engine_ops(RECIP)]
        self.row_shapes = {
            "rowmax": (signed(max(maxima, default=1) + 1), rp.softmax_rows),
            "rowsum": (unsigned(max(sums, default=1)), rp.softmax_rows),
            "recip": (unsigned(max(recips, default=1)), rp.softmax_rows),
            "norm_sum": (unsigned(rp.norm_bits), rp.norm_rows),
            "rsqrt_r": (unsigned(RSQRT_ROOT_BITS), rp.norm_rows),
            "rsqrt_e": (unsigned(6), rp.norm_rows),
        }
        buffers = rp.program.buffer_map
        self.table_shapes = [(range(max(2, buffers[d.labels].shape[0])), d.ways, d.shots) for d in rp.engine_ops(SCAN)]
        self.label_shapes = {
            name: (unsigned(buffers[name].qformat.bits), buffers[name].shape[0]) for name in rp.label_inputs
        }

    # ------------------------------------------------------------------ controller
    def flags(self, ops: int = 0) -> Out:
        """One ISA engine's flags: `issued` (its instruction issues this cycle), `active`, `beat`, `mine` per op."""
        members = {"issued": In(1), "active": In(1), "beat": In(1)}
        if ops:
            members["mine"] = In(1).array(ops)
        return _group(members)

    def instruction(self, *names: str) -> Out:
        """Fields of the instruction (`cur`: the running one; `fetched`: the one issuing)."""
        return _group({name: In(self.fields[name]) for name in names if name in self.fields})

    # ------------------------------------------------------------------ memories
    def amem(self, *, read: bool = False, write: bool = False) -> Out:
        """The activation banks' read addresses and data, and write ports."""
        rp, p = self.rp, self.lanes
        addr, word, banks = range(max(2, rp.amem_depth)), unsigned(p * rp.act_bits), rp.amem_banks
        members = {}
        if read:
            members.update(rd_addr=Out(addr).array(banks), rd_data=In(word).array(banks))
        if write:
            members.update(wr_addr=Out(addr).array(banks), wr_data=Out(word).array(banks), wr_en=Out(p).array(banks))
        return _group(members)

    def wmem(self) -> Out:
        """The weight ROM: its address, and its word two cycles later."""
        rp = self.rp
        return _group({"addr": Out(range(max(2, len(rp.weight_words)))), "data": In(self.lanes * rp.weight_bits)})

    def bias(self) -> Out:
        """The bias ROM: its address, and its word a cycle later."""
        rp = self.rp
        return _group({"addr": Out(range(max(2, len(rp.bias_words)))), "data": In(self.lanes * rp.hw.acc_bits)})

    def heads(
        self,
        reads: set[str] = frozenset(),
        writes: set[str] = frozenset(),
        windows: set[str] = frozenset(),
        holds: set[str] = frozenset(),
        rotated: dict[str, int] | None = None,
        starts: dict[str, frozenset[int]] | None = None,
    ) -> Out:
        """Head memories: a read window of each in `reads` (its data held by `rd_hold` for those in
        `holds`), a write port of each in `writes`.

        A memory in `windows` is written windows of up to P elements (noted in `Bus.windows`);
        any other only single elements, and its write mask is one bit (the accelerator builds a
        memory that no engine writes in windows without a write rotator: `LinearStore.note_window_writes`).
        `rotated`: of a memory read, how many lanes its windows that may start inside a word take
        (default all P; 0: every read starts on a word or takes only the element at its start,
        `element`), so its read rotator is no wider
        (`LinearStore.rotated_lanes`). `starts`: of a memory read, the lanes of a word at which its
        windows may start (default any), so its read rotator has no other case
        (`LinearStore.rotated_starts`).
        """
        members = {}
        rotated, starts = rotated or {}, starts or {}
        for name in sorted(set(reads) | set(writes)):
            members[port_name(name)] = self.head(
                name,
                read=name in reads,
                write=name in writes,
                window=name in windows,
                hold=name in holds,
                rotated=rotated.get(name),
                starts=starts.get(name),
            )
        return _group(members)

    def head(
        self,
        name: str,
        *,
        read: bool,
        write: bool,
        window: bool,
        hold: bool = False,
        rotated: int | None = None,
        starts: frozenset[int] | None = None,
    ) -> Out:
        """One head memory's ports (`LinearStore`'s), as an engine uses them; `hold` freezes its read data."""
        head: HeadBuffer = self.rp.heads[name]
        p, bits = self.lanes, head.qformat.bits
        start = range(head.rows * head.cols + p + 1)
        members = {}
        if read:
            members.update(rd_start=Out(start), rd_lanes=In(p * bits), rd_elem=In(bits))
            self.rotated[port_name(name)] = p if rotated is None else rotated
            self.starts[port_name(name)] = starts
        if hold:
            members["rd_hold"] = Out(1)
        if write:
            members.update(wr_start=Out(start), wr_mask=Out(p if window else 1), wr_data=Out(p * bits))
        if window:
            self.windows.add(port_name(name))
        return _group(members)

    # ------------------------------------------------------------------ datapath
    def mac(self, *names: str) -> Out:
        """MAC array inputs the engine drives (`MAC_CONTROLS`, `MAC_LANES`: P of each)."""
        members = {n: Out(self.mac_shapes[n]) for n in names}
        return _group({n: m.array(self.lanes) if n in MAC_LANES else m for n, m in members.items()})

    def ppu(self, *names: str, reads: tuple[str, ...] = ("valid", "result")) -> Out:
        """PPU inputs the engine drives (`PPU_CONTROLS`, `PPU_LANES`: P of each) and outputs it reads.

        `vec_valid` (a vector pass's values enter the PPU); `valid`, the PPU's result is out,
        `result`, each lane's requantised result, `raw`, its value before requantisation.
        """
        a = self.rp.hw.acc_bits
        members = {}
        for n in names:
            shape = 1 if n == "vec_valid" else self.ppu_shapes[n]
            members[n] = Out(shape).array(self.lanes) if n in PPU_LANES else Out(shape)
        result = signed(self.result_bits)
        outputs = {"valid": In(1), "result": In(result).array(self.lanes), "raw": In(signed(a)).array(self.lanes)}
        members.update({n: outputs[n] for n in reads})
        return _group(members)

    def rows(self, *, reads: tuple[str, ...] = (), writes: tuple[str, ...] = ()) -> Out:
        """Row registers read (`In`) or owned and written (`Out`) by the engine; see `ROWS`."""
        members = {}
        for n in reads + writes:
            shape, count = self.row_shapes[n]
            members[n] = (Out if n in writes else In)(shape).array(count)
        return _group(members)

    def tables(self, *, write: bool = False) -> Out:
        """The SCAN ops' per-class index tables (`scan<op>[class][shot]`): owned by SCAN, read by WIDE."""
        members = {}
        for op, (shape, ways, shots) in enumerate(self.table_shapes):
            members[f"scan{op}"] = (Out if write else In)(shape).array(ways, shots)
        return _group(members)

    def labels(self, *names: str, write: bool = False) -> Out:
        """The label registers of streamed label inputs: read, or (the stream-in engine) owned and written."""
        members = {}
        for name in names:
            shape, count = self.label_shapes[name]
            members[port_name(name)] = (Out if write else In)(shape).array(count)
        return _group(members)


class Engine(wiring.Component):
    """One engine of the shared datapath; a subclass declares its members (`Bus`) and builds in `build`.

    Each `Out` member an engine drives is the OR of the contributions given to `drive`, each
    zero while it is not their turn, so several ops of one engine share a member.
    """

    def __init__(self, bus: Bus, members: dict[str, Out]) -> None:
        self.rp, self.lanes = bus.rp, bus.lanes
        #: the head memories this engine writes in windows (port names)
        self.windows = frozenset(bus.windows)
        #: the lanes of each head memory read (port name) that windows starting inside a word take
        self.rotated = dict(bus.rotated)
        #: the lanes of a word at which each head memory read's windows may start (None: any)
        self.starts = dict(bus.starts)
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        """Build the engine (`build`), then drive each shared member with the OR of its contributions."""
        m = Module()
        self._drivers = OrDrivers()
        self.build(m)
        self._drivers.combine(m)
        return m

    def build(self, m: Module) -> None:
        """The engine's logic (subclasses)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ counters
    @staticmethod
    def beats(m: Module, flags: wiring.PureInterface, name: str, width: int = 16) -> Signal:
        """The beats the running instruction of `flags`' engine has had: 0 at issue, one more per beat."""
        count = Signal(width, name=name)
        with m.If(flags.issued):
            m.d.sync += count.eq(0)
        with m.Elif(flags.beat):
            m.d.sync += count.eq(count + 1)
        return count

    # ------------------------------------------------------------------ shared inputs
    def drive(self, port: Signal, value: object) -> None:
        """Add one contribution to an `Out` member (OR-combined; 0 when not its turn)."""
        self._drivers.add(port, value)

    def ppu_controls(
        self,
        enable: object,
        *,
        scale: object = 0,
        select: object = 0,
        update: int = 0,
        relu: object = 0,
        first: object = 1,
        emit: object = 1,
        variable: int = 0,
        leaky: object = 0,
        negative_scale: object = 0,
        accumulate: object = 0,
    ) -> None:
        """Drive the PPU's shared controls for one op while `enable` (the engine declares all of `PPU_CONTROLS`)."""
        values = dict(
            scale=scale,
            select=select,
            update=update,
            relu=relu,
            first=first,
            emit=emit,
            variable=variable,
            leaky=leaky,
            negative_scale=negative_scale,
            accumulate=accumulate,
        )
        for name in PPU_CONTROLS:
            self.drive(getattr(self.ppu, name), Mux(enable, values[name], 0))

    def drive_operands(self, m: Module, active: object, xs: list, ys: list, name: str) -> None:
        """The MAC operands: lane k multiplies xs[k] by ys[k], given a cycle before `pipeline.OPERANDS`.

        Each distinct value goes through one register of the engine's own (0 while the engine is
        idle) before the engines' OR into the MAC array's input register, so an engine's operand
        selection (the conv's bank, pixel and padding select) and that OR are a cycle apart.
        """
        registered: dict[int, object] = {}

        def operand(value: object, tag: str) -> object:
            if id(value) not in registered:
                registered[id(value)] = delay(m, Mux(active, value, 0), 1, f"{name}_{tag}")
            return registered[id(value)]

        for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
            self.drive(self.mac.x[k], operand(x, f"x{k}"))
            self.drive(self.mac.y[k], operand(y, f"y{k}"))

    # ------------------------------------------------------------------ activation banks
    def bank_data(self, bank: object) -> object:
        """The read data of activation bank `bank` (a signal), in the cycle after the read."""
        return _select_bank(bank, list(self.amem.rd_data))

    def registered_bank_data(self, m: Module, bank: object, name: str) -> object:
        """The read data of activation bank `bank`, a cycle later than `bank_data`.

        Each bank's word is registered as it leaves its block RAM and the bank is selected after
        the registers, so no multiplexer follows the block RAM's clock-to-out.
        """
        words = [Signal(len(data), name=f"{name}{b}", reset_less=True) for b, data in enumerate(self.amem.rd_data)]
        m.d.sync += [word.eq(data) for word, data in zip(words, self.amem.rd_data)]
        return _select_bank(bank, words)

    def writes_bank(self, b: int, bank: object, dst: object) -> object:
        """Whether a segment op reading `bank` writes activation bank `b` (the other one of two; else `dst`)."""
        return bank != b if self.rp.amem_banks == 2 else dst == b

    # ------------------------------------------------------------------ head memories
    def _head(self, name: str) -> object:
        return getattr(self.heads, port_name(name))

    def read(self, name: str, start: object, enable: object) -> object:
        """Drive a head memory's read window (element `start`) when `enable`; returns its ports (data next cycle)."""
        port = self._head(name)
        self.drive(port.rd_start, Mux(enable, start, 0))
        return port

    def write(self, name: str, start: object, mask: object, lanes: list, enable: object) -> None:
        """Write lanes[l] to element start + l of a head memory for the lanes l set in `mask`, when `enable`."""
        port, bits = self._head(name), self.rp.heads[name].qformat.bits
        if port_name(name) not in self.windows and not (isinstance(mask, int) and mask <= 1):
            raise ValueError(f"{name}: a window write, but its members were declared for single elements")
        self.drive(port.wr_start, Mux(enable, start, 0))
        self.drive(port.wr_mask, Mux(enable, mask, 0))
        data = Cat(*[lane[:bits] for lane in lanes], *[Const(0, bits)] * (self.lanes - len(lanes)))
        self.drive(port.wr_data, Mux(enable, data, 0))

    def lane(self, name: str, k: int) -> object:
        """Lane k of a head memory's read window, as the integer it holds (k below its declared `rotated` lanes)."""
        if k >= self.rotated[port_name(name)]:
            raise ValueError(f"{name}: lane {k} read, but the engine declared {self.rotated[port_name(name)]} lanes")
        return self.word_lane(name, k)

    def word_lane(self, name: str, k: int) -> object:
        """Lane k of a head memory's read window that starts on a word, as the integer it holds (no rotator lane)."""
        fmt = self.rp.heads[name].qformat
        return extend(self._head(name).rd_lanes.word_select(k, fmt.bits), fmt)

    def element(self, name: str) -> object:
        """The element at a head memory's read start, as the integer it holds."""
        return extend(self._head(name).rd_elem, self.rp.heads[name].qformat)

    # ------------------------------------------------------------------ labels
    def label_regs(self, name: str) -> list:
        """The label registers of a streamed label input."""
        return list(getattr(self.labels, port_name(name)))

    def label_at(self, m: Module, name: str, index: object, tag: str) -> Signal:
        """Label register `index` of a streamed label input."""
        return pick(m, self.label_regs(name), index, f"{tag}_label")

    def labels_bad(self, name: str, ways: int) -> object:
        """Some label of `name` lies outside 0..ways-1."""
        return Cat(*[reg >= ways for reg in self.label_regs(name)]).any()


def _select_bank(bank: object, words: list) -> object:
    """words[bank]: a multiplexer over the activation banks' words."""
    if len(words) == 2:
        return Mux(bank, words[1], words[0])
    data = words[-1]
    for b in reversed(range(len(words) - 1)):
        data = Mux(bank == b, words[b], data)
    return data
