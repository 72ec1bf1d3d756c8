"""The controller's plan for a Program: ordered steps, embedding segments, memory placement, phases.

docs/microarchitecture.md §3 and §5. The plan is a pure function of the Program and the
HardwareConfig's group count; the simulator executes it, the cost model sums it, and the
hardware generator turns it into the controller's step list and memory map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metahw.compiler.kernels import Conv2d, Kernel, Softmax
from metahw.compiler.kernels.datapath import nbytes
from metahw.compiler.kernels.softmax import SoftmaxSpec
from metahw.compiler.kernels.winograd import unsupported as winograd_unsupported
from metahw.compiler.program import Buffer, Program
from metahw.compiler.widths import width_needs
from metahw.errors import UserError
from metahw.hardware import HardwareConfig

#: a third activation bank holds the skip tensor of a residual Add while the branch computes
MEMORIES = ("WMEM", "AMEM0", "AMEM1", "AMEM2", "SMEM", "QBUF")
INIT, STREAM_IN, SEGMENT, OP, STREAM_OUT = "init", "stream_in", "segment", "op", "stream_out"


@dataclass(frozen=True)
class Segment:
    """Consecutive segment ops forming a chain, run for each group of G images of batch `batch`."""

    ops: tuple[Kernel, ...]
    batch: int
    #: the input buffer streamed in group by group (None: the source is read from SMEM/QBUF)
    streamed: str | None

    @property
    def source(self) -> str:
        """The buffer the first op reads."""
        return self.ops[0].input

    @property
    def output(self) -> str:
        """The whole buffer the last op writes."""
        return self.ops[-1].output


@dataclass(frozen=True)
class Step:
    """One step of the plan: state init, a whole-input stream-in, a segment, a head op, or a stream-out."""

    kind: str
    query: bool
    buffer: str | None = None
    op: Kernel | None = None
    segment: Segment | None = None

    @property
    def label(self) -> str:
        """Short name for reports and traces."""
        if self.kind == SEGMENT:
            return f"segment {self.segment.ops[0].name}..{self.segment.ops[-1].name}"
        if self.kind == OP:
            return self.op.name
        return f"{self.kind} {self.buffer}"


@dataclass(frozen=True)
class Placement:
    """Where something lives: a buffer (or a table, a state's initial value, op scratch) in a memory."""

    name: str
    memory: str
    offset: int
    nbytes: int

    @property
    def end(self) -> int:
        """First byte after it."""
        return self.offset + self.nbytes


@dataclass(frozen=True)
class Plan:
    """Steps in execution order (each marked with its phase) and memory placements."""

    steps: tuple[Step, ...]
    placements: tuple[Placement, ...]

    def memory_use(self) -> dict[str, Placement]:
        """Per memory, the placement that ends last (the memory's required size is its `end`)."""
        last: dict[str, Placement] = {}
        for p in self.placements:
            if p.memory not in last or p.end > last[p.memory].end:
                last[p.memory] = p
        return last


def _size(buf: Buffer) -> int:
    return int(np.prod(buf.shape))


def query_dependent(program: Program) -> frozenset[str]:
    """The query inputs (role `query_images`, or `query_features` in a head program) and all computed from them."""
    roles = program.roles
    query = {b.name for b in program.buffers_of("input") if b.name in (roles.query_images, roles.query_features)}
    for op in program.ops:
        if any(name in query for name in op.reads()):
            query.update(op.writes())
    return frozenset(query)


def _segments(program: Program) -> list[Kernel | Segment]:
    """Program ops grouped into segments (maximal chains of segment ops) and single head ops."""
    buffers = program.buffer_map
    readers: dict[str, list[int]] = {}
    for i, op in enumerate(program.ops):
        for name in op.reads():
            readers.setdefault(name, []).append(i)
    ops = program.ops
    units: list[Kernel | Segment] = []
    i = 0
    while i < len(ops):
        if not ops[i].segment:
            units.append(ops[i])
            i += 1
            continue
        batch = _batch(buffers[ops[i].input])
        j = i
        while (
            j + 1 < len(ops)
            and ops[j + 1].segment
            and ops[j + 1].input == ops[j].output
            and readers.get(ops[j].output, [])[:1] == [j + 1]
            and buffers[ops[j].output].kind == "activation"
            and _batch(buffers[ops[j + 1].input]) == batch
        ):
            j += 1
        # a skip tensor read by a residual Add after the segment's end cannot stay in an activation bank
        while j > i and any(r > j for op in ops[i:j] for r in readers.get(op.output, [])):
            j -= 1
        source = buffers[ops[i].input]
        streamed = source.name if source.kind == "input" and readers[source.name] == [i] else None
        units.append(Segment(tuple(ops[i : j + 1]), batch, streamed))
        i = j + 1
    return units


def _batch(buf: Buffer) -> int:
    return buf.shape[0] if buf.shape else 1


def build_plan(program: Program, hw: HardwareConfig) -> Plan:
    """The plan of `program` on `hw` (docs/microarchitecture.md §5)."""
    query = query_dependent(program)
    units = _segments(program)
    streamed = {u.streamed for u in units if isinstance(u, Segment) and u.streamed}
    whole_inputs = [b.name for b in program.buffers_of("input") if b.name not in streamed]
    inits = [b.name for b in program.buffers_of("state") if b.name in program.weights]

    steps = [Step(INIT, False, buffer=name) for name in inits]
    pending = list(whole_inputs)
    read_anywhere = {name for op in program.ops for name in op.reads()}
    for name in [n for n in pending if n not in read_anywhere]:
        steps.append(Step(STREAM_IN, name in query, buffer=name))
        pending.remove(name)
    for unit in units:
        ops = unit.ops if isinstance(unit, Segment) else (unit,)
        reads = {name for op in ops for name in op.reads()}
        for name in [n for n in pending if n in reads]:
            steps.append(Step(STREAM_IN, name in query, buffer=name))
            pending.remove(name)
        if isinstance(unit, Segment):
            steps.append(Step(SEGMENT, unit.output in query, segment=unit))
        else:
            steps.append(Step(OP, any(name in query for name in unit.writes()), op=unit))
    steps += [Step(STREAM_OUT, b.name in query, buffer=b.name) for b in program.buffers_of("output")]
    return Plan(tuple(steps), tuple(_place(program, hw, units, query, inits)))


def _place(
    program: Program, hw: HardwareConfig, units: list[Kernel | Segment], query: frozenset[str], inits: list[str]
) -> list[Placement]:
    """Static placements in WMEM, SMEM and QBUF; per-group placements at offset 0 of AMEM0/AMEM1."""
    buffers = program.buffer_map
    offsets = dict.fromkeys(MEMORIES, 0)
    out: list[Placement] = []

    def static(name: str, memory: str, size: int) -> None:
        out.append(Placement(name, memory, offsets[memory], size))
        offsets[memory] += size

    def whole(buf: Buffer) -> int:
        return nbytes(_size(buf), buf.qformat.bits)

    for buf in program.buffers_of("weight"):
        static(buf.name, "WMEM", whole(buf))
    for name in inits:
        static(f"{name} (initial value)", "WMEM", whole(buffers[name]))
    for spec in _softmax_specs(program.ops):
        static(f"exp table {spec}", "WMEM", nbytes(spec.table_size, spec.exp_frac + 1))

    placed: set[str] = set()
    for unit in units:
        if not isinstance(unit, Segment):
            continue
        for name, bank in activation_banks(unit).items():
            buf = buffers[name]
            per_group = hw.groups * int(np.prod(buf.shape[1:])) if buf.shape else 1
            out.append(Placement(name, f"AMEM{bank}", 0, nbytes(per_group, buf.qformat.bits)))
            placed.add(name)
        last = buffers[unit.output]
        if last.kind == "activation" and last.name in query:
            static(last.name, "QBUF", whole(last))
            placed.add(last.name)
    for buf in program.buffers:
        if buf.kind != "weight" and buf.name not in placed:
            static(buf.name, "SMEM", whole(buf))
    scratch = max((op.scratch_bytes(buffers) for op in program.ops), default=0)
    if scratch:
        static("head scratch", "SMEM", scratch)
    return out


def activation_banks(segment: Segment) -> dict[str, int]:
    """The AMEM bank of each tensor a segment keeps for one group: the lowest bank free while the tensor is live.

    A tensor is live from the op that writes it (or the stream-in) to its last reader; a plain
    chain alternates AMEM0, AMEM1; the skip tensor of a residual Add keeps its bank, so the
    branch between them uses AMEM2.
    """
    ops = segment.ops
    chain = ([segment.streamed] if segment.streamed else []) + [op.output for op in ops[:-1]]
    born = {
        name: (-1 if name == segment.streamed else next(k for k, op in enumerate(ops) if op.output == name))
        for name in chain
    }
    last = {name: max(k for k, op in enumerate(ops) if name in op.reads()) for name in chain}
    banks: dict[str, int] = {}
    for name in chain:
        busy = {banks[other] for other in banks if last[other] >= born[name]}
        banks[name] = min(b for b in range(len(chain) + 1) if b not in busy)
    return banks


def _softmax_specs(ops: tuple[Kernel, ...]) -> list[SoftmaxSpec]:
    specs: list[SoftmaxSpec] = []
    for op in ops:
        spec = op.spec if isinstance(op, Softmax) else getattr(op, "softmax", None)
        if isinstance(spec, SoftmaxSpec) and spec not in specs:
            specs.append(spec)
    return specs


def check_fits(program: Program, hw: HardwareConfig) -> None:
    """Raise UserError when `program` needs more memory or a wider datapath than `hw` has.

    Memory: every placement of the plan against its memory's capacity (the first that
    overflows, in placement order). Widths: every operand and accumulator the program needs
    (`compiler.widths.width_needs`) against `operand_bits` and `acc_bits`.
    """
    capacity = hw.memory_bytes()
    for used in build_plan(program, hw).placements:
        if used.end > capacity[used.memory]:
            raise UserError(
                f"{used.name} needs {used.nbytes:,} bytes of {used.memory} at offset {used.offset:,}, "
                f"but {used.memory} has {capacity[used.memory]:,} bytes ({_field_of(used.memory)})"
            )
    if hw.winograd:
        check_winograd(program)
    limits = {"operand": hw.operand_bits, "accumulator": hw.acc_bits}
    for need in width_needs(program, hw.winograd):
        if need.bits > limits[need.kind]:
            field = "operand_bits" if need.kind == "operand" else "acc_bits"
            raise UserError(
                f"{need.where}: {need.what} needs {need.bits}-bit {need.kind}s, but the config has {field}="
                f"{limits[need.kind]}"
            )


def winograd_refusal(program: Program) -> str | None:
    """Why the Winograd conv engine cannot run `program` (None: it can run every Conv2d), naming the first conv."""
    buffers = program.buffer_map
    for op in program.ops:
        if isinstance(op, Conv2d):
            reason = winograd_unsupported(op, buffers)
            if reason is not None:
                return f"Conv2d '{op.name}': {reason}"
    return None


def check_winograd(program: Program) -> None:
    """Raise UserError naming the first Conv2d the Winograd conv engine cannot run (winograd=true needs all)."""
    refusal = winograd_refusal(program)
    if refusal is not None:
        raise UserError(f"hardware winograd=true cannot run {refusal}")


def _field_of(memory: str) -> str:
    return {
        "WMEM": "weight_bytes",
        "AMEM0": "act_bytes",
        "AMEM1": "act_bytes",
        "AMEM2": "act_bytes",
        "SMEM": "support_bytes",
        "QBUF": "query_bytes",
    }[memory]
