"""The head engines on the MAC array: SCAN, WIDE, REDUCE, ROWRED and OUTER.

docs/microarchitecture.md §8 and docs/rtl.md. Each engine has shared loop counters and operand
registers; its op descriptors (`isa.py`) select the memories, loop limits and PPU controls.
Beat at cycle t: the head memories are addressed at t and answer at t + 1, the operands are
formed into registers at t + 2, the engine's operand registers feed the MAC array at t + 3, the
lane accumulators reach the PPU at t + 7 (the REDUCE tree's sum at t + 7 + lg P), and the PPU's
requantised result is written at t + 12 (t + 12 + lg P): the named offsets of `pipeline.py`.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from metahw.hw.amaranth.argtree import ArgTree
from metahw.hw.amaranth.engine import PPU_CONTROLS, Bus, Engine
from metahw.hw.amaranth.engines_embed import block_mask
from metahw.hw.amaranth.isa import (
    ERROR_CLASS_COUNT,
    ERROR_LABEL_RANGE,
    OUTER,
    REDUCE,
    ROWRED,
    SCAN,
    WIDE,
    PrototypeSums,
    ReduceOp,
    RowReduce,
    WeightUpdate,
)
from metahw.hw.amaranth.pipeline import ADDEND_READ, COMPARE, DATA, MAC_WRITE, OPERANDS, PRELOAD_READ, at
from metahw.hw.amaranth.spec import RtlPlan
from metahw.hw.amaranth.util import delay, or_all, pick, put


def _blocks(n: int, p: int) -> int:
    return -(-n // p)


class _Loops:
    """Nested counters (outer, block, inner) of an engine: reset at issue, advanced per beat to each op's limits."""

    def __init__(self, m: Module, flags: wiring.PureInterface, limits: list[tuple[int, int, int]], name: str) -> None:
        self.m, self.flags, self.limits, self.name = m, flags, limits, name
        self.outer, self.block, self.inner = (Signal(16, name=f"{name}_{n}") for n in ("outer", "block", "inner"))
        self._sums: dict[tuple[int, int, int, int], Signal] = {}
        with m.If(flags.issued):
            m.d.sync += [self.outer.eq(0), self.block.eq(0), self.inner.eq(0)]
        for op, (_, blocks, count) in enumerate(limits):
            with m.Elif(flags.beat & flags.mine[op]):
                m.d.sync += self.inner.eq(self.inner + 1)
                with m.If(self.inner == count - 1):
                    m.d.sync += [self.inner.eq(0), self.block.eq(self.block + 1)]
                    with m.If(self.block == blocks - 1):
                        m.d.sync += [self.block.eq(0), self.outer.eq(self.outer + 1)]

    def linear(self, op: int, outer: int, block: int, inner: int, tag: str) -> Signal:
        """`outer * o + block * b + inner * i` over op `op`'s beats, as a running sum.

        An address such as `row * cols + block * P` is then a register: no constant multiplier
        (a MULT18X18D or an adder chain) between the loop counters and a head memory's address.
        Equal to the product form in every beat of the op; reset at issue.
        """
        key = (op, outer, block, inner)
        if key in self._sums:
            return self._sums[key]
        outers, blocks, count = self.limits[op]
        m = self.m
        total = Signal(range(outer * outers + block * blocks + inner * count + 1), name=f"{self.name}{op}_{tag}")
        with m.If(self.flags.issued):
            m.d.sync += total.eq(0)
        with m.Elif(self.flags.beat & self.flags.mine[op]):
            with m.If(self.inner != count - 1):
                m.d.sync += total.eq(total + inner)
            with m.Elif(self.block != blocks - 1):
                m.d.sync += total.eq(total + (block - inner * (count - 1)))
            with m.Else():
                m.d.sync += total.eq(total + (outer - block * (blocks - 1) - inner * (count - 1)))
        self._sums[key] = total
        return total


class ScanEngine(Engine):
    """SCAN: one label per beat into the per-class index table (owned here, read by WIDE); range and count checks."""

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        self.ops = rp.engine_ops(SCAN)
        members = {
            "scan": bus.flags(len(self.ops)),
            "labels": bus.labels(*sorted({d.labels for d in self.ops})),
            "tables": bus.tables(write=True),
            "scan_error": Out(2),
        }
        super().__init__(bus, members)

    def build(self, m: Module) -> None:
        """Per op: the row counter, the per-class counts and the table.

        The row's label is a register loaded a beat ahead (label 0 at the issue, label r + 1 with
        beat r), so the label multiplexer is not in front of the compares and the table's enables
        (the demo design's critical path at 118.9 MHz, `scan_row0 -> tables`).
        """
        flags = self.scan
        for op, scan in enumerate(self.ops):
            labels = self.label_regs(scan.labels)
            rows = len(labels)
            table = getattr(self.tables, f"scan{op}")
            counts = [Signal(range(rows + 2), name=f"count{op}_{n}") for n in range(scan.ways)]
            row = Signal(range(rows + 1), name=f"scan_row{op}")
            label = Signal.like(labels[0], name=f"scan_label{op}")
            bad_label = Signal(name=f"scan_range{op}")
            mine = flags.mine[op]
            with m.If(flags.issued):
                m.d.sync += [row.eq(0), label.eq(labels[0]), bad_label.eq(0)] + [n.eq(0) for n in counts]
            with m.Elif(flags.beat & mine):
                m.d.sync += [row.eq(row + 1), label.eq(pick(m, labels, row + 1, f"scan_next_label{op}"))]
                with m.If(label >= scan.ways):
                    m.d.sync += bad_label.eq(1)
                for n in range(scan.ways):
                    with m.If(label == n):
                        m.d.sync += counts[n].eq(counts[n] + 1)
                        for k in range(scan.shots):
                            with m.If(counts[n] == k):
                                m.d.sync += table[n][k].eq(row)
            count_bad = Cat(*[n != scan.shots for n in counts]).any()
            code = Mux(bad_label, ERROR_LABEL_RANGE, Mux(count_bad, ERROR_CLASS_COUNT, 0))
            self.drive(self.scan_error, Mux(mine, code, 0))


class WideEngine(Engine):
    """WIDE: per tile (class and column block, or class block), `inner` beats adding P-wide words in the lanes."""

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        self.ops = rp.engine_ops(WIDE)
        sums = [d for d in self.ops if isinstance(d, PrototypeSums)]
        updates = [d for d in self.ops if not isinstance(d, PrototypeSums)]
        reads = {d.features for d in sums} | {d.grads for d in updates} | {d.bias for d in updates}
        writes = {d.out for d in sums} | {d.bias for d in updates}
        members = {
            "wide": bus.flags(len(self.ops)),
            "heads": bus.heads(reads=reads, writes=writes, windows=writes),
            "mac": bus.mac("valid", "first", "last", "x", "y"),
            "ppu": bus.ppu(*PPU_CONTROLS, *(("addend",) if updates else ())),
            "tables": bus.tables(),
        }
        super().__init__(bus, members)

    def build(self, m: Module) -> None:
        """The loops, the operands and the write of each tile."""
        rp, p, flags = self.rp, self.lanes, self.wide
        limits = []
        for d in self.ops:
            if isinstance(d, PrototypeSums):
                limits.append((d.ways, _blocks(d.dim, p), d.shots))
            else:
                limits.append((1, _blocks(d.ways, p), d.rows))
        loops = _Loops(m, flags, limits, "wide")
        blk, k = loops.block, loops.inner
        xs = [Signal(signed(rp.hw.operand_bits), name=f"wide_x{lane}", reset_less=True) for lane in range(p)]
        words: list[list] = [[] for _ in range(p)]
        lasts = []
        result = list(self.ppu.result)
        for op, d in enumerate(self.ops):
            mine = flags.mine[op]
            lasts.append(mine & (k == limits[op][2] - 1))
            if isinstance(d, PrototypeSums):
                # the SCAN's support row of each (class, shot) times the row length: registers, constant
                # from well before WIDE runs (the SCAN's drain and the issue lie between)
                offsets = []
                table = getattr(self.tables, f"scan{d.table}")
                for index, row in enumerate(r for per_class in table for r in per_class):
                    offset = Signal(range(((1 << len(row)) - 1) * d.dim + 1), name=f"wide{op}_offset{index}")
                    m.d.sync += offset.eq(row * d.dim)
                    offsets.append(offset)
                entry = pick(m, offsets, loops.linear(op, d.shots, 0, 1, "entry"), f"wide{op}_row")
                source, start, out, cols = d.features, entry + loops.linear(op, 0, p, 0, "col"), d.out, d.dim
                self.ppu_controls(mine, scale=d.scale, select=d.requant)
            else:
                source, start, out, cols = d.grads, loops.linear(op, 0, p, d.ways, "grad"), d.bias, d.ways
                self.ppu_controls(mine, scale=d.scale, select=d.requant, update=d.update)
                self.read(d.bias, at(m, blk, ADDEND_READ, f"wide{op}_blk") * p, mine)
                for lane in range(p):
                    self.drive(self.ppu.addend[lane], Mux(mine, self.lane(d.bias, lane), 0))
            self.read(source, start, mine)
            for lane in range(p):
                words[lane].append(Mux(mine, self.lane(source, lane), 0))
            here = self.ppu.valid & mine
            start6 = at(m, loops.linear(op, cols, p, 0, "out"), MAC_WRITE, f"wide{op}_out")
            self.write(out, start6, block_mask(at(m, blk, MAC_WRITE, f"wide{op}_blk6"), cols, p), result, here)
        m.d.sync += [xs[lane].eq(or_all(words[lane])) for lane in range(p)]
        v2 = at(m, flags.beat, OPERANDS, "wide_v")
        first2, last2 = at(m, k == 0, OPERANDS, "wide_first"), at(m, or_all(lasts), OPERANDS, "wide_last")
        self.drive(self.mac.valid, v2)
        self.drive(self.mac.first, Mux(v2, first2, 0))
        self.drive(self.mac.last, Mux(v2, last2, 0))
        self.drive_operands(m, flags.active, xs, [1] * p, "wide_op")


class ReduceEngine(Engine):
    """REDUCE: per output, ⌈D/P⌉ beats of P products summed by the adder tree (bias preloaded)."""

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        self.ops: list[ReduceOp] = rp.engine_ops(REDUCE)
        ops = self.ops
        lanes = {d.a for d in ops} | {d.b for d in ops if d.b is not None}
        elements = {d.bias for d in ops if d.bias is not None} - lanes  # read at their start only
        writes = {d.out for d in ops if d.out is not None}
        members = {
            "reduce": bus.flags(len(ops)),
            "heads": bus.heads(reads=lanes | elements, writes=writes, rotated=dict.fromkeys(elements, 0)),
            "mac": bus.mac("valid", "first", "last", "subtract", "square", "reduce", "x", "y", "sum_preload"),
            "ppu": bus.ppu(*PPU_CONTROLS, reads=("valid", "result", "raw")),
            "rows": bus.rows(writes=("norm_sum",) if any(d.out is None for d in ops) else ()),
        }
        super().__init__(bus, members)

    def build(self, m: Module) -> None:
        """The loops, the operands, the bias preload and the write of each output."""
        rp, p, flags, mac = self.rp, self.lanes, self.reduce, self.mac
        td = (p - 1).bit_length()  # the MAC array's adder tree depth (`MacArray.tree_depth`)
        limits = [(d.rows_a, d.rows_b, _blocks(d.dim, p)) for d in self.ops]
        loops = _Loops(m, flags, limits, "red")
        i, j, blk = loops.outer, loops.block, loops.inner
        lin = Signal(24, name="red_lin")
        with m.If(flags.issued):
            m.d.sync += lin.eq(0)
        for op, (_, _, words) in enumerate(limits):
            with m.Elif(flags.beat & flags.mine[op] & (blk == words - 1)):
                m.d.sync += lin.eq(lin + 1)
        blk1 = at(m, blk, DATA, "red_blk")
        xs_in: list[list] = [[] for _ in range(p)]
        ys_in: list[list] = [[] for _ in range(p)]
        lasts = []
        i6, lin6 = at(m, i, MAC_WRITE + td, "red_i6"), at(m, lin, MAC_WRITE + td, "red_lin6")
        for op, d in enumerate(self.ops):
            mine = flags.mine[op]
            lasts.append(mine & (blk1 == limits[op][2] - 1))
            self.read(d.a, loops.linear(op, d.dim, 0, p, "a"), mine)
            if d.b is not None:
                self.read(d.b, loops.linear(op, 0, d.dim, p, "b"), mine)
            for lane in range(p):
                inside = blk1 * p + lane < d.dim
                xs_in[lane].append(Mux(mine & inside, self.lane(d.a, lane) << d.a_shift, 0))
                if d.b is not None:
                    ys_in[lane].append(Mux(mine & inside, self.lane(d.b, lane) << d.b_shift, 0))
            self.drive(mac.subtract, Mux(mine, int(d.l2), 0))
            self.drive(mac.square, Mux(mine, int(d.l2 or d.b is None), 0))
            if d.bias is not None:
                self.read(d.bias, at(m, j, PRELOAD_READ + td, f"red{op}_bias_j"), mine)
                self.drive(mac.sum_preload, Mux(mine, self.element(d.bias) << d.bias_shift, 0))
            self.ppu_controls(mine, scale=d.scale, select=0 if d.requant is None else d.requant, relu=int(d.relu))
            here = self.ppu.valid & mine
            if d.out is not None:
                self.write(d.out, lin6, 1, [self.ppu.result[0]], here)
            else:
                put(m, list(self.rows.norm_sum), i6, self.ppu.raw[0], here)
        xs = [Signal(signed(rp.hw.operand_bits), name=f"red_x{lane}", reset_less=True) for lane in range(p)]
        ys = [Signal(signed(rp.hw.operand_bits), name=f"red_y{lane}", reset_less=True) for lane in range(p)]
        m.d.sync += [xs[lane].eq(or_all(xs_in[lane])) for lane in range(p)]
        if any(d.b is not None for d in self.ops):
            m.d.sync += [ys[lane].eq(or_all(ys_in[lane])) for lane in range(p)]
        v2 = at(m, flags.beat, OPERANDS, "red_v")
        first2 = at(m, blk1 == 0, OPERANDS, "red_f", since=DATA)
        last2 = at(m, or_all(lasts), OPERANDS, "red_l", since=DATA)
        self.drive(mac.valid, v2)
        self.drive(mac.first, Mux(v2, first2, 0))
        self.drive(mac.last, Mux(v2, last2, 0))
        self.drive(mac.reduce, Mux(flags.active, 1, 0))
        self.drive_operands(m, flags.active, xs, ys, "red_op")


class RowReduceEngine(Engine):
    """ROWRED: per row, ⌈N/P⌉ beats into a compare tree: the index of the min/max, or the row max for a softmax."""

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        self.ops: list[RowReduce] = rp.engine_ops(ROWRED)
        ops = self.ops
        # a row's blocks start inside a word where cols is no multiple of P, and take min(P, cols) lanes;
        # block b of row q starts at q * cols + b * P, at lane q * cols mod P of its word
        p = bus.lanes
        rotated: dict[str, int] = {}
        starts: dict[str, frozenset[int]] = {}
        for d in ops:
            rotated[d.source] = max(rotated.get(d.source, 0), min(p, d.cols))
            row_starts = frozenset(q * d.cols % p for q in range(d.rows))
            starts[d.source] = starts.get(d.source, frozenset()) | row_starts
        members = {
            "rowred": bus.flags(len(ops)),
            "heads": bus.heads(
                reads=set(rotated),
                writes={d.out for d in ops if d.out is not None},
                rotated=rotated,
                starts=starts,
            ),
            "rows": bus.rows(writes=("rowmax",) if any(d.out is None for d in ops) else ()),
        }
        super().__init__(bus, members)

    def build(self, m: Module) -> None:
        """The loops, then one compare tree per direction (min, max) with its running best."""
        rp, p, ops, flags = self.rp, self.lanes, self.ops, self.rowred
        limits = [(1, d.rows, _blocks(d.cols, p)) for d in ops]
        loops = _Loops(m, flags, limits, "rr")
        q, blk = loops.block, loops.inner
        v1, blk1, q1 = at(m, flags.beat, DATA, "rr_v"), at(m, blk, DATA, "rr_b"), at(m, q, DATA, "rr_q")
        for greater in (False, True):
            mine_ops = [(op, d) for op, d in enumerate(ops) if d.greater == greater]
            if not mine_ops:
                continue
            tag = "max" if greater else "min"
            width = max(rp.heads[d.source].qformat.bits for _, d in mine_ops) + 1
            tree = ArgTree(p, width, greater)
            m.submodules[f"argtree_{tag}"] = tree
            mine_tree = or_all([flags.mine[op] for op, _ in mine_ops])
            values: list[list] = [[] for _ in range(p)]
            masks: list[list] = [[] for _ in range(p)]
            for op, d in mine_ops:
                mine = flags.mine[op]
                self.read(d.source, loops.linear(op, 0, d.cols, p, "start"), mine)
                for lane in range(min(p, d.cols)):  # a row's block never reaches the lanes past its columns
                    values[lane].append(Mux(mine, self.lane(d.source, lane), 0))
                    masks[lane].append(mine & (blk1 * p + lane < d.cols))
            m.d.sync += [tree.values[lane].eq(or_all(values[lane] or [0])) for lane in range(p)]
            m.d.sync += tree.mask.eq(Cat(*[or_all(masks[lane] or [0]) for lane in range(p)]))
            m.d.comb += tree.valid.eq(at(m, v1 & mine_tree, COMPARE, f"rr_{tag}_v2", since=DATA))
            out = COMPARE + tree.depth  # the tree's winner
            blk_t, q_t = at(m, blk1, out, f"rr_{tag}_bt", since=DATA), at(m, q1, out, f"rr_{tag}_qt", since=DATA)
            best = Signal(signed(width), name=f"rr_{tag}_best")
            best_index = Signal(16, name=f"rr_{tag}_index")
            index = blk_t * p + tree.index
            better = (tree.value > best) if greater else (tree.value < best)
            take = (blk_t == 0) | better
            with m.If(tree.out_valid & take):
                m.d.sync += [best.eq(tree.value), best_index.eq(index)]
            emit_index, emit_q = Signal(16, name=f"rr_{tag}_ei"), Signal(16, name=f"rr_{tag}_eq")
            emit_value = Signal(signed(width), name=f"rr_{tag}_ev")
            m.d.sync += [
                emit_index.eq(Mux(take, index, best_index)),
                emit_value.eq(Mux(take, tree.value, best)),
                emit_q.eq(q_t),
            ]
            for op, d in mine_ops:
                emit = Signal(name=f"rr{op}_emit")
                m.d.sync += emit.eq(tree.out_valid & (blk_t == limits[op][2] - 1) & flags.mine[op])
                if d.out is not None:
                    self.write(d.out, emit_q, 1, [emit_index], emit)
                else:
                    put(m, list(self.rows.rowmax), emit_q, emit_value, emit)


class OuterEngine(Engine):
    """OUTER: per tile (row, block of P columns), one beat per term: a group operand times P lane operands."""

    def __init__(self, rp: RtlPlan) -> None:
        bus = Bus(rp)
        self.ops = rp.engine_ops(OUTER)
        updates = [d for d in self.ops if isinstance(d, WeightUpdate)]
        sums = [d for d in self.ops if not isinstance(d, WeightUpdate)]
        lanes = {d.features for d in updates} | {d.weight for d in updates}
        elements = ({d.grads for d in updates} | {d.attention for d in sums}) - lanes  # read at their start only
        writes = {d.weight for d in updates} | {d.out for d in sums}
        rotated = dict.fromkeys(elements, 0)
        members = {
            "outer": bus.flags(len(self.ops)),
            "heads": bus.heads(reads=lanes | elements, writes=writes, windows=writes, rotated=rotated),
            "labels": bus.labels(*sorted({d.labels for d in sums})),
            "mac": bus.mac("valid", "first", "last", "x", "y"),
            "ppu": bus.ppu(*PPU_CONTROLS, *(("addend",) if updates else ())),
        }
        if sums:
            members["scan_error"] = Out(2)
        super().__init__(bus, members)

    def build(self, m: Module) -> None:
        """The loops, the group and lane operands, the weight addend and the write of each tile."""
        rp, p, flags = self.rp, self.lanes, self.outer
        limits = []
        for d in self.ops:
            if isinstance(d, WeightUpdate):
                limits.append((d.ways, _blocks(d.dim, p), d.rows))
            else:
                limits.append((d.queries, _blocks(d.ways, p), d.supports))
        loops = _Loops(m, flags, limits, "outer")
        blk, k = loops.block, loops.inner
        blk1 = at(m, blk, DATA, "outer_blk")
        ob = rp.hw.operand_bits
        group = Signal(signed(ob), name="outer_group", reset_less=True)
        xs = [Signal(signed(ob), name=f"outer_x{lane}", reset_less=True) for lane in range(p)]
        group_in, lanes_in, lasts = [], [[] for _ in range(p)], []
        result = list(self.ppu.result)
        for op, d in enumerate(self.ops):
            mine = flags.mine[op]
            lasts.append(mine & (k == limits[op][2] - 1))
            if isinstance(d, WeightUpdate):
                self.read(d.grads, loops.linear(op, 1, 0, d.ways, "grad"), mine)
                self.read(d.features, loops.linear(op, 0, p, d.dim, "feature"), mine)
                group_in.append(Mux(mine, self.element(d.grads), 0))
                for lane in range(p):
                    lanes_in[lane].append(Mux(mine, self.lane(d.features, lane), 0))
                self.ppu_controls(mine, scale=d.scale, select=d.requant, update=d.update)
                self.read(d.weight, at(m, loops.linear(op, d.dim, p, 0, "out"), ADDEND_READ, f"outer{op}_w"), mine)
                for lane in range(p):
                    self.drive(self.ppu.addend[lane], Mux(mine, self.lane(d.weight, lane), 0))
                out, cols = d.weight, d.dim
            else:
                self.read(d.attention, loops.linear(op, d.supports, 0, 1, "attention"), mine)
                group_in.append(Mux(mine, self.element(d.attention), 0))
                label = delay(m, self.label_at(m, d.labels, k, f"outer{op}"), 1, f"outer{op}_label")
                for lane in range(p):
                    lanes_in[lane].append(Mux(mine & (label == blk1 * p + lane), 1, 0))
                self.ppu_controls(mine, select=d.requant)
                self.drive(self.scan_error, Mux(mine & self.labels_bad(d.labels, d.ways), ERROR_LABEL_RANGE, 0))
                out, cols = d.out, d.ways
            start6 = at(m, loops.linear(op, cols, p, 0, "out"), MAC_WRITE, f"outer{op}_out")
            mask = block_mask(at(m, blk, MAC_WRITE, f"outer{op}_blk6"), cols, p)
            self.write(out, start6, mask, result, self.ppu.valid & mine)
        m.d.sync += group.eq(or_all(group_in))
        m.d.sync += [xs[lane].eq(or_all(lanes_in[lane])) for lane in range(p)]
        v2 = at(m, flags.beat, OPERANDS, "outer_v")
        first2, last2 = at(m, k == 0, OPERANDS, "outer_first"), at(m, or_all(lasts), OPERANDS, "outer_last")
        self.drive(self.mac.valid, v2)
        self.drive(self.mac.first, Mux(v2, first2, 0))
        self.drive(self.mac.last, Mux(v2, last2, 0))
        self.drive_operands(m, flags.active, xs, [group] * p, "outer_op")
