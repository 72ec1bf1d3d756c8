"""The VECTOR engine: P elements per beat from a head memory through the PPU into another one.

docs/microarchitecture.md §6 and §8: state initialisation (a copy of the initial value),
ProtoHeadInit's W = 2c, the softmax's p = e * r_row, SGDHeadStep's gradient and the
normalisation u = x * r_row. Lane l of beat k handles element k*P + l of the [rows, cols]
source; per-lane row and column trackers give it its row's reciprocal, rsqrt factor or label.
Beat at t: the source is read at t, per-lane values are formed at t + 1 and registered into
the PPU at t + 2, go through the PPU's five stages and are written at t + 7 (the D_VEC = 7
drain's last cycle).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib.wiring import Out

from metahw.hw.amaranth.engine import PPU_CONTROLS, Bus, Engine
from metahw.hw.amaranth.isa import ERROR_LABEL_RANGE, GRADIENT, NORMALISE, REQUANT, SOFTMAX, VECTOR, VectorOp
from metahw.hw.amaranth.pipeline import DATA, VEC_PPU, VEC_WRITE, at
from metahw.hw.amaranth.spec import RtlPlan
from metahw.hw.amaranth.util import or_all, pick


class VectorEngine(Engine):
    """The VECTOR engine for the program's vector ops: head memory through the PPU into a head memory."""

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        self.ops: list[VectorOp] = rp.engine_ops(VECTOR)
        kinds = {d.kind for d in self.ops}
        rows = (("recip",) if SOFTMAX in kinds else ()) + (("rsqrt_r", "rsqrt_e") if NORMALISE in kinds else ())
        outs, sources = {d.out for d in self.ops}, {d.source for d in self.ops}
        members = {
            "vector": bus.flags(len(self.ops)),
            "fetched": bus.instruction("op"),
            # every pass reads P elements from a word's start (`block * P`): no read rotator lanes
            "heads": bus.heads(reads=sources, writes=outs, windows=outs, rotated=dict.fromkeys(sources, 0)),
            "ppu": bus.ppu(*PPU_CONTROLS, "vec_valid", "vec", "operand", "lane_select"),
            "rows": bus.rows(reads=rows),
            "labels": bus.labels(*sorted({d.labels for d in self.ops if d.kind == GRADIENT})),
        }
        if GRADIENT in kinds:
            members["scan_error"] = Out(2)
        super().__init__(bus, members)

    def build(self, m: Module) -> None:
        """Per beat: P source elements read, per-lane values formed, the PPU driven and its result written."""
        rp, p, ops, flags = self.rp, self.lanes, self.ops, self.vector
        block = self.beats(m, flags, "vec_block")
        v1 = at(m, flags.beat, DATA, "vec_v1")
        rows, cols = self._trackers(m, v1)
        a, ob = rp.hw.acc_bits, rp.hw.operand_bits
        values = [Signal(signed(a), name=f"vec_value{k}") for k in range(p)]
        operands = [Signal(signed(ob), name=f"vec_operand{k}") for k in range(p)]
        selects = [Signal.like(self.ppu.lane_select[k], name=f"vec_select{k}") for k in range(p)]
        value_in: list[list] = [[] for _ in range(p)]
        operand_in: list[list] = [[] for _ in range(p)]
        select_in: list[list] = [[] for _ in range(p)]
        block3 = at(m, block, VEC_WRITE, "vec_block3")
        for op, d in enumerate(ops):
            mine = flags.mine[op]
            self.read(d.source, block * p, mine)
            for k in range(p):
                value, operand, select = self._lane(m, d, op, k, rows, cols)
                value_in[k].append(Mux(mine, value, 0))
                operand_in[k].append(Mux(mine, operand, 0))
                select_in[k].append(Mux(mine, select, 0))
            variable = int(d.kind in (SOFTMAX, NORMALISE))
            self.ppu_controls(mine, scale=d.scale, select=0 if d.kind == NORMALISE else d.requant, variable=variable)
            if d.kind == GRADIENT:
                self.drive(self.scan_error, Mux(mine & self.labels_bad(d.labels, d.cols), ERROR_LABEL_RANGE, 0))
            n = d.rows * d.cols
            last = -(-n // p) - 1
            mask = Mux(block3 == last, (1 << (n - last * p)) - 1, (1 << p) - 1)
            self.write(d.out, block3 * p, mask, list(self.ppu.result), self.ppu.valid & mine)
        m.d.sync += [values[k].eq(or_all(value_in[k])) for k in range(p)]
        m.d.sync += [operands[k].eq(or_all(operand_in[k])) for k in range(p)]
        m.d.sync += [selects[k].eq(or_all(select_in[k])) for k in range(p)]
        self.drive(self.ppu.vec_valid, at(m, v1, VEC_PPU, "vec_v2", since=DATA))
        for k in range(p):
            self.drive(self.ppu.vec[k], Mux(flags.active, values[k], 0))
            self.drive(self.ppu.operand[k], Mux(flags.active, operands[k], 0))
            self.drive(self.ppu.lane_select[k], Mux(flags.active, selects[k], 0))

    def _trackers(self, m: Module, v1: object) -> tuple[list, list]:
        """Per lane, the row and column of the element it handles in the data cycle (t + 1); stepped by P per beat."""
        p = self.lanes
        shaped = [(op, d) for op, d in enumerate(self.ops) if d.kind != REQUANT]
        if not shaped:
            return [], []
        most_rows = max(d.rows for _, d in shaped) + 2 * p + 2
        most_cols = max(d.cols for _, d in shaped) + p + 1
        rows = [Signal(range(most_rows), name=f"vec_row{k}") for k in range(p)]
        cols = [Signal(range(most_cols), name=f"vec_col{k}") for k in range(p)]
        with m.If(self.vector.issued):
            with m.Switch(self.fetched.op):
                for index, (op, d) in enumerate(shaped):
                    with m.Default() if index == len(shaped) - 1 else m.Case(op):
                        m.d.sync += [rows[k].eq(k // d.cols) for k in range(p)]
                        m.d.sync += [cols[k].eq(k % d.cols) for k in range(p)]
        for op, d in shaped:
            with m.Elif(v1 & self.vector.mine[op]):
                for k in range(p):
                    stepped = cols[k] + p % d.cols
                    wrap = stepped >= d.cols
                    m.d.sync += [
                        cols[k].eq(Mux(wrap, stepped - d.cols, stepped)),
                        rows[k].eq(rows[k] + p // d.cols + wrap),
                    ]
        return rows, cols

    def _lane(self, m: Module, d: VectorOp, op: int, k: int, rows: list, cols: list) -> tuple:
        """Lane k's PPU value, variable operand and requantiser select in the data cycle."""
        value = self.word_lane(d.source, k)
        tag = f"vec{op}_{k}"
        if d.kind == SOFTMAX:
            return value, pick(m, list(self.rows.recip), rows[k], f"{tag}_recip"), 0
        if d.kind == GRADIENT:
            target = pick(m, self.label_regs(d.labels), rows[k], f"{tag}_label") == cols[k]
            return value - Mux(target, d.one, 0), 0, 0
        if d.kind == NORMALISE:
            exponent = pick(m, list(self.rows.rsqrt_e), rows[k], f"{tag}_e")
            select = Signal.like(self.ppu.lane_select[k], name=f"{tag}_select")
            with m.Switch(exponent):
                for index, spec in enumerate(d.selects[1:], start=1):
                    with m.Case(d.exp_min + index):
                        m.d.comb += select.eq(spec)
                with m.Default():  # e_min, and 0 for a zero row (whose factor r is 0)
                    m.d.comb += select.eq(d.selects[0])
            return value, pick(m, list(self.rows.rsqrt_r), rows[k], f"{tag}_r"), select
        return value, 0, 0
