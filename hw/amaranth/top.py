"""The accelerator top level: controller, memories and the shared datapath of one RtlPlan; engines elsewhere.

docs/microarchitecture.md is the contract and docs/rtl.md says how this generator fills it
in. The controller fetches one instruction per step from the instruction ROM and runs it as
T_ISSUE + beats + depth cycles: the *issue* cycle loads the instruction's engine, the engine
then issues one beat per cycle (a stream beat waits for its handshake), and the controller
waits out the pipeline depth before the next issue. The engines (`wiring.Component`s of
`engines_*.py`, `engine.py`) turn beats into memory addresses and datapath control; they share
the MAC array, the PPU and the head memories and never run two instructions at once, so each
shared input is the OR of the engines' (zero when idle) contributions: `attach` connects an
engine's signature to the bus signals of the same paths.

Ports (no others, all plain signals): `start`, `busy`, `done`, `error`, `error_code`;
`in_valid`, `in_ready`, `in_data` (E elements of `in_bits`); `out_valid`, `out_ready`,
`out_data` (E elements of `out_bits`); `issue` and `pc` (the instruction index, for tracing).
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from metahw.hw.amaranth.engine import (
    MAC_CONTROLS,
    MAC_LANES,
    PPU_CONTROLS,
    PPU_LANES,
    ROWS,
    Bus,
    Engine,
    instruction_fields,
    port_name,
)
from metahw.hw.amaranth.engines_embed import ConvEngine, FlattenEngine, StreamIn, StreamOut
from metahw.hw.amaranth.engines_head import OuterEngine, ReduceEngine, RowReduceEngine, ScanEngine, WideEngine
from metahw.hw.amaranth.engines_map import MapEngine
from metahw.hw.amaranth.engines_sfu import ExpEngine, RecipEngine, RsqrtEngine
from metahw.hw.amaranth.engines_vector import VectorEngine
from metahw.hw.amaranth.isa import (
    AVG_POOL,
    CONV,
    ENGINE_NAMES,
    ERROR_CLASS_COUNT,
    ERROR_LABEL_RANGE,
    EXP,
    FLATTEN,
    GLOBAL_AVG,
    IO_IMAGE,
    IO_LABELS,
    MAP,
    OUTER,
    RECIP,
    REDUCE,
    ROWRED,
    RSQRT,
    SCAN,
    VECTOR,
    WIDE,
)
from metahw.hw.amaranth.mac import MacArray
from metahw.hw.amaranth.ppu import PpuLane
from metahw.hw.amaranth.rom import BankedRom
from metahw.hw.amaranth.spec import RtlPlan
from metahw.hw.amaranth.store import LinearStore
from metahw.hw.amaranth.util import OrDrivers, case

__all__ = ["ERROR_CLASS_COUNT", "ERROR_LABEL_RANGE", "Accelerator"]

#: controller states
STATES = ("IDLE", "ISSUE", "BEATS", "DRAIN", "DONE", "ERROR")
#: the engines by submodule name, each with the ISA engine whose ops it runs (built where the
#: program has some; None: the streams, always built)
ENGINES: tuple[tuple[str, int | None, type[Engine]], ...] = (
    ("stream_in", None, StreamIn),
    ("conv", CONV, ConvEngine),
    ("flatten", FLATTEN, FlattenEngine),
    ("stream_out", None, StreamOut),
    ("map", MAP, MapEngine),
    ("scan", SCAN, ScanEngine),
    ("wide", WIDE, WideEngine),
    ("reduce", REDUCE, ReduceEngine),
    ("rowred", ROWRED, RowReduceEngine),
    ("outer", OUTER, OuterEngine),
    ("vector", VECTOR, VectorEngine),
    ("exp", EXP, ExpEngine),
    ("recip", RECIP, RecipEngine),
    ("rsqrt", RSQRT, RsqrtEngine),
)


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
        # the engines' flags (`active`, `mine`, `beat_of`), made as `attach` connects them: in a
        # module of their own, so that no open If/Elif chain takes in their logic
        self._flag_logic = m.submodules.flags = Module()
        self._flags: dict[tuple[int, int | str | None], Signal] = {}
        self._drivers = OrDrivers()
        #: the engines, in the order attached
        self.engines: list[Engine] = []
        bus = Bus(self.rp)
        self._datapath(m, bus)
        self._memories(m, bus)
        self._controller(m)
        self.bus = self._bus()
        for name, engine, kind in ENGINES:
            if engine is None or (self.rp.convs if engine == CONV else self.rp.engine_ops(engine)):
                self.attach(m, name, kind(self.rp))
        self._drivers.combine(m)
        return m

    # ------------------------------------------------------------------ engines
    def attach(self, m: Module, name: str, engine: Engine) -> None:
        """Add an engine as submodule `name`: each `In` member from the bus signal at its path, each `Out` ORed in."""
        m.submodules[name] = engine
        self.engines.append(engine)
        for path, member, value in engine.signature.flatten(engine):
            there = self.bus_at(path)
            if member.flow == In:
                if path[0] == "heads" and path[-1] == "rd_lanes":
                    self.bus_at(path[:-1]).note_rotated_lanes(engine.rotated[path[1]], engine.starts[path[1]])
                m.d.comb += value.eq(there)
                continue
            if path[0] == "heads" and path[-1] == "wr_mask" and path[1] in engine.windows:
                self.bus_at(path[:-1]).note_window_writes()
            self._drivers.add(there, value)

    def _bus(self) -> dict:
        """The accelerator's signals by their path on the bus (`engine.py`), the engines' flags aside."""
        mac, rds, wrs = self.mac, self.amem_rd, self.amem_wr
        ppu = {name: getattr(self, f"ppu_{name}") for name in (*PPU_CONTROLS, *PPU_LANES, "vec_valid")}
        ppu.update(valid=self.ppu_valid, result=self.ppu_result, raw=self.ppu_raw)
        macs = {name: getattr(mac, name) for name in MAC_CONTROLS if name != "sum_preload"}  # the top holds sum_preload
        macs.update(dict(zip(MAC_LANES, (self.mac_x, self.mac_y, self.mac_preload))), sum_preload=self.sum_preload)
        return {
            "issuing": self.issuing,
            "beat": self.beat,
            "beating": self.beating,
            "cur": self.cur,
            "fetched": self.fetched,
            "amem": {
                "rd_addr": [rd.addr for rd in rds],
                "rd_data": [rd.data for rd in rds],
                "wr_addr": [wr.addr for wr in wrs],
                "wr_data": [wr.data for wr in wrs],
                "wr_en": [wr.en for wr in wrs],
            },
            "wmem": {"addr": self.wmem.addr, "data": self.wmem.data},
            "bias": {"addr": self.bias_rd.addr, "data": self.bias_rd.data},
            "mac": macs,
            "ppu": ppu,
            "heads": {port_name(name): store for name, store in self.stores.items()},
            "rows": {name: getattr(self, name) for name in ROWS},
            "labels": {port_name(name): regs for name, regs in self.labels.items()},
            "tables": self.tables,
            **{name: getattr(self, name) for name in ("stall", "out_stall", "scan_error")},
            **{name: getattr(self, name) for name in ("in_valid", "in_ready", "in_data", "out_valid", "out_ready")},
            "out_data": self.out_data,
        }

    def bus_at(self, path: tuple) -> object:
        """The bus signal at `path`; an engine's flags (`map.beat`, `map.mine[2]`) are made on first use."""
        if path[0] in ENGINE_NAMES:
            engine, flag = ENGINE_NAMES.index(path[0]), path[1]
            if flag == "mine":
                return self.mine(engine, path[2])
            return {"issued": self.issued, "active": self.active, "beat": self.beat_of}[flag](engine)
        node = self.bus
        for key in path:
            node = node[key] if isinstance(node, (dict, list)) else getattr(node, key)
        return node

    # ------------------------------------------------------------------ engine flags
    def active(self, engine: int) -> Signal:
        """The current instruction belongs to `engine` (from its issue to its last drain cycle)."""
        return self._current_flag(engine, None)

    def mine(self, engine: int, op: int) -> Signal:
        """The current instruction runs op descriptor `op` of `engine`."""
        return self._current_flag(engine, op)

    def _current_flag(self, engine: int, op: int | None) -> Signal:
        """A register that holds `cur.engine == engine (and cur.op == op)`, loaded at issue with `cur`.

        The engines gate every shared input with these flags; as registers they start the
        paths that fan out to the MAC array, the PPU and the memories, instead of the
        comparators of `cur` (at P = 16 the engine select into the PPU was the critical path).
        """
        key = (engine, op)
        if key not in self._flags:
            name = f"cur_is_{ENGINE_NAMES[engine]}" + ("" if op is None else f"_{op}")
            flag = Signal(name=name, init=engine == 0 and op in (None, 0))  # `cur` resets to engine 0, op 0
            fetched = self.fetched["engine"] == engine
            if op is not None:
                fetched &= self.fetched["op"] == op
            with self._flag_logic.If(self.issuing):
                self._flag_logic.d.sync += flag.eq(fetched)
            self._flags[key] = flag
        return self._flags[key]

    def issued(self, engine: int) -> object:
        """This cycle issues an instruction of `engine`."""
        return self.issuing & (self.fetched["engine"] == engine)

    def beat_of(self, engine: int) -> object:
        """A beat of `engine` happens this cycle.

        The same as `beat & active(engine)`, built from registers: the engine's own beats flag
        and the out stream's stall, the one stall that outlives its instruction. A streamed-in
        beat's wait for `in_valid` stalls only the stream-in engines, which are the current
        instruction then, so it stays off every other engine's beat (the handshake into all
        the engines' loop counters was the demo design's critical path at 110.7 MHz).
        """
        if engine in (IO_IMAGE, IO_LABELS):
            return self.beat & self.active(engine)
        return self._beating(engine) & ~self.out_stall

    def _beating(self, engine: int) -> Signal:
        """A register that holds `state == BEATS and cur.engine == engine`: set at issue, cleared with the last beat."""
        key = (engine, "beats")
        if key not in self._flags:
            flag = Signal(name=f"beating_{ENGINE_NAMES[engine]}")
            with self._flag_logic.If(self.issuing):
                self._flag_logic.d.sync += flag.eq(self.fetched["engine"] == engine)
            with self._flag_logic.Elif(self.last_beat):
                self._flag_logic.d.sync += flag.eq(0)
            self._flags[key] = flag
        return self._flags[key]

    # ------------------------------------------------------------------ datapath
    def _datapath(self, m: Module, bus: Bus) -> None:
        """The MAC array and the P PPU lanes, with the engine-driven signals that feed them."""
        rp, p = self.rp, self.lanes
        a, ob = rp.hw.acc_bits, rp.hw.operand_bits
        self.mac = m.submodules.mac = MacArray(p, ob, a, rp.hw.hard_multipliers, rp.hw.winograd)
        self.mac_x, self.mac_y, self.mac_preload = (
            [Signal(bus.mac_shapes[name], name=f"mac_{name}{k}") for k in range(p)] for name in MAC_LANES
        )
        self.sum_preload = Signal(bus.mac_shapes["sum_preload"], name="sum_preload")
        for k in range(p):
            m.d.comb += [self.mac.x[k].eq(self.mac_x[k]), self.mac.y[k].eq(self.mac_y[k])]
            m.d.comb += self.mac.preload[k].eq(self.mac_preload[k])
        m.d.comb += self.mac.sum_preload.eq(self.sum_preload)
        for name in PPU_CONTROLS:
            setattr(self, f"ppu_{name}", Signal(bus.ppu_shapes[name], name=f"ppu_{name}"))
        self.ppu_vec_valid = Signal(name="ppu_vec_valid")
        for name in PPU_LANES:
            setattr(self, f"ppu_{name}", [Signal(bus.ppu_shapes[name], name=f"ppu_{name}{k}") for k in range(p)])
        mac = self.mac
        self.ppu = []
        # REDUCE writes lane 0 only: the other lanes need no logic for the specs only REDUCE uses
        reduce_only = {d.requant for d in rp.engine_ops(REDUCE)} - _lane_specs(rp)
        for k in range(p):
            built = frozenset(range(len(rp.requants))) - (reduce_only if k else set())
            lane = PpuLane(
                a,
                ob,
                rp.factors,
                rp.updates,
                rp.requants,
                rp.program.meta.rounding,
                rp.program.meta.overflow,
                built or None,
                leaky=_uses_leaky(rp),
                accumulate=_uses_running_sum(rp),
            )
            m.submodules[f"ppu{k}"] = lane
            self.ppu.append(lane)
            value = Mux(mac.lane_valid, mac.lane_acc[k], self.ppu_vec[k])
            if k == 0:
                value = Mux(mac.sum_valid, mac.sum, value)
            m.d.comb += [
                lane.valid.eq(mac.lane_valid | mac.sum_valid | self.ppu_vec_valid),
                lane.value.eq(value),
                lane.relu.eq(self.ppu_relu),
                lane.first.eq(self.ppu_first),
                lane.emit.eq(self.ppu_emit),
                lane.scale.eq(self.ppu_scale),
                lane.leaky.eq(self.ppu_leaky),
                lane.negative_scale.eq(self.ppu_negative_scale),
                lane.accumulate.eq(self.ppu_accumulate),
                lane.variable.eq(self.ppu_variable),
                lane.operand.eq(self.ppu_operand[k]),
                lane.update.eq(self.ppu_update),
                lane.addend.eq(self.ppu_addend[k]),
                lane.select.eq(self.ppu_select | self.ppu_lane_select[k]),
            ]
        self.ppu_valid = self.ppu[0].out_valid
        self.ppu_result = [lane.result for lane in self.ppu]
        self.ppu_raw = [lane.raw for lane in self.ppu]

    # ------------------------------------------------------------------ memories
    def _memories(self, m: Module, bus: Bus) -> None:
        rp, p = self.rp, self.lanes
        wbits = rp.weight_bits
        self.wmem = m.submodules.wmem = BankedRom("wmem", p * wbits, [_pack(word, wbits) for word in rp.weight_words])
        self.bias = m.submodules.bias_rom = memory.Memory(
            shape=unsigned(p * rp.hw.acc_bits),
            depth=max(2, len(rp.bias_words)),
            init=[_pack(word, rp.hw.acc_bits) for word in rp.bias_words],
        )
        self.bias_rd = self.bias.read_port()
        self.amem, self.amem_rd, self.amem_wr = [], [], []
        for name in rp.activation_banks():
            # single-port banks ask Yosys for "huge" RAM (the iCE40's SPRAM; its cost model picks EBR)
            attrs = {"ram_style": "huge"} if rp.hw.act_ports == 1 else None
            mem = memory.Memory(shape=unsigned(p * rp.act_bits), depth=max(2, rp.amem_depth), init=[], attrs=attrs)
            m.submodules[name] = mem
            self.amem.append(mem)
            self.amem_rd.append(mem.read_port())
            self.amem_wr.append(mem.write_port(granularity=rp.act_bits))
            if rp.hw.act_ports == 1:
                self.amem_rd[-1], self.amem_wr[-1] = _single_port(m, name, self.amem_rd[-1], self.amem_wr[-1])
        self.stores: dict[str, LinearStore] = {}
        for name, head in rp.heads.items():
            store = LinearStore(
                head.rows,
                head.cols,
                p,
                head.qformat.bits,
                list(head.init),
                window_writes=False,
                unaligned=head.unaligned,
                rotated_lanes=0,
                rotated_starts=frozenset(),
            )
            m.submodules[f"head_{_safe(name)}"] = store
            self.stores[name] = store
        self._row_registers(bus)
        #: the SCAN ops' per-class index tables, `Bus.tables`
        self.tables = {
            f"scan{op}": [[Signal(shape, name=f"idx{op}_{n}_{k}") for k in range(shots)] for n in range(ways)]
            for op, (shape, ways, shots) in enumerate(bus.table_shapes)
        }
        buffers = rp.program.buffer_map
        self.labels = {
            name: [
                Signal(buffers[name].qformat.bits, name=f"label_{_safe(name)}_{k}")
                for k in range(buffers[name].shape[0])
            ]
            for name in rp.label_inputs
        }

    def _row_registers(self, bus: Bus) -> None:
        """Per-row results of the softmax (max, exp sum, reciprocal) and of rsqrt (sum of squares, r, e)."""
        for name in ROWS:
            shape, count = bus.row_shapes[name]
            setattr(self, name, [Signal(shape, name=f"{name}{r}") for r in range(count)])

    # ------------------------------------------------------------------ controller
    def _controller(self, m: Module) -> None:
        rp = self.rp
        instrs = rp.instructions
        fields = instruction_fields(rp)
        beats_bits = dict((name, w) for w, name in fields)["beats"]
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
        # pc + 1 (the instruction fetched during this one) kept in a register beside pc, so no
        # adder sits in front of the instruction ROM
        next_pc = Signal(range(len(instrs) + 2), init=1)
        count = Signal(beats_bits)
        # the last beat's count, loaded at issue: the last-beat test is then an equality of two
        # registers, with no subtraction's carry chain in front of the beats flags
        last_count = Signal(beats_bits)
        drain = Signal(8)
        self.stall = Signal()
        #: the part of `stall` that the out stream drives (its out register full and unread)
        self.out_stall = Signal()
        #: this cycle is the instruction's last beat
        self.last_beat = Signal()
        self.beat = Signal()
        self.beating = Signal()
        self.issuing = Signal()
        self.scan_error = Signal(2)
        depth = Signal(8)
        engines = len(ENGINE_NAMES)
        with m.Switch(cur["engine"]):
            for engine in range(engines):
                with case(m, engine, engines):
                    m.d.comb += depth.eq(rp.depth(engine))
        m.d.comb += [self.pc.eq(pc), self.issue.eq(self.issuing)]
        finish = Signal()  # the instruction's last cycle: go on to the next issue, done or error
        # the controller's state, decoded with if/else (a complete, lint-clean decoder)
        state = Signal(range(len(STATES)), name="controller_state")
        idle, issue, beats, draining, done, error = (state == STATES.index(n) for n in STATES)

        def goto(name: str) -> object:
            return state.eq(STATES.index(name))

        def finish_instruction() -> None:
            m.d.comb += finish.eq(1)
            m.d.sync += [pc.eq(pc + 1), next_pc.eq(next_pc + 1)]
            with m.If(self.scan_error != 0):
                m.d.sync += goto("ERROR")
            with m.Elif(pc == len(instrs) - 1):
                m.d.sync += goto("DONE")
            with m.Else():
                m.d.sync += goto("ISSUE")

        m.d.comb += [self.busy.eq(~idle), self.done.eq(done), self.error.eq(error), self.issuing.eq(issue)]
        m.d.comb += [self.beating.eq(beats), self.beat.eq(beats & ~self.stall)]
        m.d.comb += rom_rd.addr.eq(Mux(idle, 0, next_pc))
        with m.If(idle):
            with m.If(self.start):
                m.d.sync += [pc.eq(0), next_pc.eq(1), goto("ISSUE")]
        with m.Elif(issue):
            m.d.sync += [cur[name].eq(fetched[name]) for name in cur]
            m.d.sync += [count.eq(0), last_count.eq(fetched["beats"] - 1), goto("BEATS")]
        with m.Elif(beats):
            with m.If(~self.stall):
                m.d.sync += [count.eq(count + 1), drain.eq(depth)]
                m.d.comb += self.last_beat.eq(count == last_count)
                with m.If(self.last_beat):
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


def _uses_leaky(rp: RtlPlan) -> bool:
    """Some conv or residual Add applies a LeakyReLU (the PPU then builds the slope factor choice)."""
    return any(c.leaky for c in rp.convs) or any(d.leaky for d in rp.engine_ops(MAP))


def _uses_running_sum(rp: RtlPlan) -> bool:
    """Some op sums a window in the PPU (a 2x2 average, a global average)."""
    return any(c.accumulate for c in rp.convs) or any(d.kind in (AVG_POOL, GLOBAL_AVG) for d in rp.engine_ops(MAP))


def _lane_specs(rp: RtlPlan) -> set[int]:
    """The requantisation specs that engines writing all P lanes use (conv, WIDE, OUTER, VECTOR, MAP)."""
    specs = {layer.requant for layer in rp.convs}
    for engine in (WIDE, OUTER, VECTOR, MAP):
        for d in rp.engine_ops(engine):
            specs.add(d.requant)
            specs.update(getattr(d, "selects", ()))
    return specs


class _BankPort(NamedTuple):
    """What the engines see of one port of an activation bank: its address, data and (write) enables."""

    addr: Signal
    data: Signal
    en: Signal | None = None


def _single_port(m: Module, name: str, rd: memory.ReadPort, wr: memory.WritePort) -> tuple[_BankPort, _BankPort]:
    """Give a bank's read and write port one address, the write's in a cycle that writes (iCE40 SPRAM).

    Yosys maps a memory whose ports share an address onto single-port RAM (`synth_ice40 -spram`).
    The engines keep their own read and write addresses; the schedule never reads a bank in a
    cycle that writes it (a read there would return stale data, which the bit-exact RTL checks
    would catch), so the cycles are those of the dual-port bank.
    """
    rd_addr = Signal.like(rd.addr, name=f"{name}_rd_addr")
    wr_addr = Signal.like(wr.addr, name=f"{name}_wr_addr")
    writing = wr.en.any()
    m.d.comb += [rd.addr.eq(Mux(writing, wr_addr, rd_addr)), wr.addr.eq(rd.addr), rd.en.eq(~writing)]
    return _BankPort(rd_addr, rd.data), _BankPort(wr_addr, wr.data, wr.en)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def _pack(values: list[int], bits: int) -> int:
    """Lane values (two's complement, `bits` each) packed lane 0 first."""
    word = 0
    mask = (1 << bits) - 1
    for k, v in enumerate(values):
        word |= (int(v) & mask) << (k * bits)
    return word
