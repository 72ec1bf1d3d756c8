"""The RTL plan: a Program's plan on a HardwareConfig, lowered to what the generated hardware needs.

docs/microarchitecture.md is the contract; this module fixes the parts the document leaves to
the generator (docs/rtl.md): the instruction ROM (one entry per instruction, in the
simulator's order), each engine's per-op constants, the memory images (WMEM weight words,
the bias ROM), the stream element widths, and the requantisation specs the PPU selects from.
Everything here is plain Python and integers, so the generator, the testbench driver and the
tests share one description.

The Amaranth backend builds the ops of the metric learners (Conv2d with fused ReLU/pool,
MaxPool2d, Requant, Flatten, PrototypeAccumulate, Distance l2/dot, ArgMin/ArgMax) with one
lane group (G = 1) and refuses anything else with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from metahw.compiler.kernels import (
    ArgMax,
    ArgMin,
    Conv2d,
    Distance,
    Flatten,
    Kernel,
    PrototypeAccumulate,
    timing,
)
from metahw.compiler.program import Buffer, Program
from metahw.compiler.qformat import QFormat
from metahw.errors import UserError
from metahw.sim.config import HardwareConfig
from metahw.sim.plan import OP, SEGMENT, STREAM_IN, STREAM_OUT, Plan, build_plan

#: engine codes of the instruction ROM
IO_IMAGE, IO_LABELS, CONV, FLATTEN, SCAN, WIDE, REDUCE, ROWRED, IO_OUT = range(9)
ENGINE_NAMES = ("io_image", "io_labels", "conv", "flatten", "scan", "wide", "reduce", "rowred", "io_out")
SUPPORTED = "Conv2d (ReLU, fused 2x2 pool), Flatten, PrototypeAccumulate, Distance l2/dot, ArgMin, ArgMax"


@dataclass(frozen=True)
class RequantSpec:
    """One PPU requantisation: a right shift (negative: left) into a destination format."""

    shift: int
    dst: QFormat


@dataclass(frozen=True)
class ConvLayer:
    """Constants of one convolution as the conv engine runs it (one per Conv2d op)."""

    name: str
    channels: int
    height: int
    width: int
    out_channels: int
    kernel: int
    padding: int
    pool: bool
    relu: bool
    #: the input is a streamed image in the linear AMEM layout (else the channel layout)
    linear_input: bool
    in_format: QFormat
    #: channel tiles ⌈O/L⌉
    tiles: int
    weight_base: int
    bias_base: int
    requant: int

    @property
    def fan_in(self) -> int:
        """F = C*K*K beats per tile."""
        return self.channels * self.kernel * self.kernel

    @property
    def rows(self) -> int:
        """Output rows computed (a floor-mode pool drops the last odd row)."""
        return self.height // 2 * 2 if self.pool else self.height

    @property
    def cols(self) -> int:
        """Output columns computed."""
        return self.width // 2 * 2 if self.pool else self.width

    @property
    def out_height(self) -> int:
        """Rows of the written output."""
        return self.rows // 2 if self.pool else self.rows

    @property
    def out_width(self) -> int:
        """Columns of the written output."""
        return self.cols // 2 if self.pool else self.cols


@dataclass(frozen=True)
class HeadBuffer:
    """A head buffer [rows, cols] in its own memory: P-wide row words, and an E-wide linear mirror if streamed out."""

    name: str
    rows: int
    cols: int
    qformat: QFormat
    mirror: bool


@dataclass(frozen=True)
class Instruction:
    """One ROM entry: engine, beats, the op's index among that engine's ops, and the image (segments)."""

    engine: int
    beats: int
    op: int = 0
    image: int = 0
    #: the AMEM bank a conv or flatten reads (a conv writes the other one)
    bank: int = 0
    label: str = ""
    #: the streamed buffer (IO instructions)
    buffer: str = ""


@dataclass
class RtlPlan:
    """Everything the generator needs, derived once from (program, hw)."""

    program: Program
    hw: HardwareConfig
    plan: Plan
    instructions: list[Instruction] = field(default_factory=list)
    convs: list[ConvLayer] = field(default_factory=list)
    #: (weight, bias) buffer names -> (WMEM word, bias ROM word) where that layer's words start
    weight_slots: dict[tuple[str, str | None], tuple[int, int]] = field(default_factory=dict)
    requants: list[RequantSpec] = field(default_factory=list)
    #: head op name -> index of its requantisation in `requants`
    op_requant: dict[str, int] = field(default_factory=dict)
    heads: dict[str, HeadBuffer] = field(default_factory=dict)
    #: WMEM words (P weights each) and bias ROM words (P aligned biases each)
    weight_words: list[list[int]] = field(default_factory=list)
    bias_words: list[list[int]] = field(default_factory=list)
    weight_bits: int = 1
    act_bits: int = 1
    amem_depth: int = 1
    in_bits: int = 1
    out_bits: int = 1
    #: per head op (in ROM op-index order per engine): the op
    flattens: list[Flatten] = field(default_factory=list)
    prototypes: list[PrototypeAccumulate] = field(default_factory=list)
    distances: list[Distance] = field(default_factory=list)
    rowreds: list[Kernel] = field(default_factory=list)
    label_inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def lanes(self) -> int:
        """P."""
        return self.hw.lanes

    def requant_index(self, spec: RequantSpec) -> int:
        """Index of a requantisation spec in the PPU's table (added on first use)."""
        if spec not in self.requants:
            self.requants.append(spec)
        return self.requants.index(spec)

    def depth(self, engine: int) -> int:
        """Pipeline depth of an engine's instructions (docs/microarchitecture.md §6)."""
        return timing.depth(ENGINE_KINDS[engine], self.hw)


ENGINE_KINDS = {
    IO_IMAGE: timing.IO,
    IO_LABELS: timing.IO,
    CONV: timing.OUTER,
    FLATTEN: timing.VECTOR,
    SCAN: timing.SCAN,
    WIDE: timing.WIDE,
    REDUCE: timing.REDUCE,
    ROWRED: timing.ROWRED,
    IO_OUT: timing.IO,
}


def _refuse(what: str) -> UserError:
    return UserError(f"the Amaranth backend cannot build this program: {what} (it builds {SUPPORTED}, with G = 1)")


def _per_tensor(buf: Buffer) -> None:
    if buf.channel_fracs is not None:
        raise _refuse(f"'{buf.name}' has per-channel formats")


def rtl_plan(program: Program, hw: HardwareConfig) -> RtlPlan:
    """Lower the program's plan on `hw` to instructions, engine constants and memory images (or refuse)."""
    if hw.groups != 1:
        raise _refuse(f"G = {hw.groups} lane groups were asked for")
    if hw.stream_elements > hw.lanes or hw.lanes % hw.stream_elements:
        raise UserError(
            f"the Amaranth backend needs the stream's {hw.stream_elements} elements per beat to divide "
            f"the {hw.lanes} lanes (use --stream-elements {min(hw.lanes, hw.stream_elements)} or more lanes)"
        )
    hw.validate(program)
    rp = RtlPlan(program, hw, build_plan(program, hw))
    buffers = program.buffer_map
    for step in rp.plan.steps:
        if step.kind == SEGMENT:
            _segment(rp, step.segment, buffers)
        elif step.kind == STREAM_IN:
            _labels_input(rp, buffers[step.buffer])
        elif step.kind == OP:
            _head_op(rp, step.op, buffers)
        elif step.kind == STREAM_OUT:
            _stream_out(rp, buffers[step.buffer])
        else:
            raise _refuse(f"plan step '{step.label}' (state initialisation)")
    _finish(rp, buffers)
    return rp


def _segment(rp: RtlPlan, segment, buffers: dict[str, Buffer]) -> None:
    """Per image: stream the image in, run every conv, flatten into a head buffer."""
    if segment.streamed is None:
        raise _refuse(f"segment '{segment.ops[0].name}' reads its input from memory, not from the stream")
    image = buffers[segment.streamed]
    per_image = int(np.prod(image.shape[1:]))
    convs, ops = [], list(segment.ops)
    if not isinstance(ops[-1], Flatten) or any(not isinstance(op, Conv2d) for op in ops[:-1]):
        names = ", ".join(f"{type(op).__name__} '{op.name}'" for op in ops)
        raise _refuse(f"segment {names} is not a chain of Conv2d ops ending in Flatten")
    for k, op in enumerate(ops[:-1]):
        convs.append(_conv_layer(rp, op, buffers, linear=k == 0))
    flat = ops[-1]
    last = buffers[flat.input]
    if last.shape[2:] != (1, 1):
        raise _refuse(f"Flatten '{flat.name}' flattens {last.shape[2]}x{last.shape[3]} maps (the RTL needs 1x1)")
    feats = buffers[flat.output]
    _head(rp, feats, mirror=feats.kind == "output")
    rp.flattens.append(flat)
    for b in range(segment.batch):
        rp.instructions.append(
            Instruction(
                IO_IMAGE,
                -(-per_image // rp.hw.stream_elements),
                image=b,
                label=f"stream_in {image.name}",
                buffer=image.name,
            )
        )
        for k, conv in enumerate(convs):
            layer = rp.convs[conv]
            beats = layer.tiles * layer.rows * layer.cols * layer.fan_in
            rp.instructions.append(Instruction(CONV, beats, op=conv, image=b, bank=k % 2, label=ops[k].name))
        tiles = -(-last.shape[1] // rp.lanes)
        rp.instructions.append(
            Instruction(FLATTEN, tiles, op=len(rp.flattens) - 1, image=b, bank=len(convs) % 2, label=flat.name)
        )


def _conv_layer(rp: RtlPlan, op: Conv2d, buffers: dict[str, Buffer], linear: bool) -> int:
    """The engine constants of one Conv2d (shared weights and equal layers are stored once); returns its index."""
    x, w, out = buffers[op.input], buffers[op.weight], buffers[op.output]
    for buf in (x, w, out) + ((buffers[op.bias],) if op.bias else ()):
        _per_tensor(buf)
    o, c, k, _ = w.shape
    acc_frac = x.qformat.frac + w.qformat.frac
    requant = rp.requant_index(RequantSpec(acc_frac - out.qformat.frac, out.qformat))
    p = rp.lanes
    tiles = -(-o // p)
    key = (op.weight, op.bias)
    if key not in rp.weight_slots:
        rp.weight_slots[key] = (len(rp.weight_words), len(rp.bias_words))
        weights = np.zeros((tiles * p, c * k * k), dtype=np.int64)
        weights[:o] = rp.program.weights[op.weight].reshape(o, -1)
        for t in range(tiles):
            rp.weight_words += weights[t * p : (t + 1) * p].T.tolist()
        bias = np.zeros(tiles * p, dtype=np.int64)
        if op.bias is not None:
            bias[:o] = np.left_shift(rp.program.weights[op.bias], acc_frac - buffers[op.bias].qformat.frac)
        rp.bias_words += bias.reshape(tiles, p).tolist()
    weight_base, bias_base = rp.weight_slots[key]
    layer = ConvLayer(
        name=op.weight,
        channels=c,
        height=x.shape[2],
        width=x.shape[3],
        out_channels=o,
        kernel=k,
        padding=op.padding,
        pool=op.pool,
        relu=op.relu,
        linear_input=linear,
        in_format=x.qformat,
        tiles=tiles,
        weight_base=weight_base,
        bias_base=bias_base,
        requant=requant,
    )
    if layer not in rp.convs:
        rp.convs.append(layer)
    return rp.convs.index(layer)


def _head(rp: RtlPlan, buf: Buffer, mirror: bool) -> HeadBuffer:
    _per_tensor(buf)
    rows, cols = (buf.shape[0], int(np.prod(buf.shape[1:]))) if len(buf.shape) > 1 else (1, buf.shape[0])
    old = rp.heads.get(buf.name)
    head = HeadBuffer(buf.name, rows, cols, buf.qformat, mirror or (old is not None and old.mirror))
    rp.heads[buf.name] = head
    return head


def _labels_input(rp: RtlPlan, buf: Buffer) -> None:
    if len(buf.shape) != 1 or buf.qformat.frac != 0:
        raise _refuse(f"input '{buf.name}' {buf.shape} is streamed whole but is not a vector of class labels")
    rp.label_inputs.append(buf.name)
    beats = -(-buf.shape[0] // rp.hw.stream_elements)
    index = len(rp.label_inputs) - 1
    rp.instructions.append(Instruction(IO_LABELS, beats, op=index, label=f"stream_in {buf.name}", buffer=buf.name))


def _head_op(rp: RtlPlan, op: Kernel, buffers: dict[str, Buffer]) -> None:
    p = rp.lanes
    if isinstance(op, PrototypeAccumulate):
        if op.labels not in rp.label_inputs:
            raise _refuse(f"PrototypeAccumulate '{op.name}' reads labels that are not a streamed input")
        f, out = buffers[op.features], buffers[op.output]
        _head(rp, out, out.kind == "output")
        extra = op.shots.bit_length() - 1 if op.shots & (op.shots - 1) == 0 else op.recip_frac
        rp.op_requant[op.name] = rp.requant_index(RequantSpec(f.qformat.frac + extra - out.qformat.frac, out.qformat))
        rp.prototypes.append(op)
        index = len(rp.prototypes) - 1
        rows = f.shape[0]
        rp.instructions.append(Instruction(SCAN, rows, op=index, label=op.name))
        rp.instructions.append(Instruction(WIDE, op.ways * -(-f.shape[1] // p) * op.shots, op=index, label=op.name))
    elif isinstance(op, Distance):
        if op.metric == "cosine":
            raise _refuse(f"Distance '{op.name}' uses the cosine metric (rsqrt is not built yet)")
        q, r, out = buffers[op.queries], buffers[op.refs], buffers[op.output]
        _head(rp, out, out.kind == "output")
        f = max(q.qformat.frac, r.qformat.frac) if op.metric == "l2" else 0
        frac = 2 * f if op.metric == "l2" else q.qformat.frac + r.qformat.frac
        rp.op_requant[op.name] = rp.requant_index(RequantSpec(frac - out.qformat.frac, out.qformat))
        rp.distances.append(op)
        outputs, d = q.shape[0] * r.shape[0], q.shape[1]
        rp.instructions.append(Instruction(REDUCE, outputs * -(-d // p), op=len(rp.distances) - 1, label=op.name))
    elif isinstance(op, ArgMin | ArgMax):
        x, out = buffers[op.input], buffers[op.output]
        if len(x.shape) != 2:
            raise _refuse(f"{type(op).__name__} '{op.name}' reduces a {len(x.shape)}-d tensor (the RTL reduces rows)")
        _head(rp, out, out.kind == "output")
        rp.rowreds.append(op)
        beats = x.shape[0] * -(-x.shape[1] // p)
        rp.instructions.append(Instruction(ROWRED, beats, op=len(rp.rowreds) - 1, label=op.name))
    else:
        raise _refuse(f"{type(op).__name__} '{op.name}' has no RTL engine yet")


def _stream_out(rp: RtlPlan, buf: Buffer) -> None:
    _head(rp, buf, mirror=True)
    rp.outputs.append(buf.name)
    beats = -(-int(np.prod(buf.shape)) // rp.hw.stream_elements)
    index = len(rp.outputs) - 1
    rp.instructions.append(Instruction(IO_OUT, beats, op=index, label=f"stream_out {buf.name}", buffer=buf.name))


def _finish(rp: RtlPlan, buffers: dict[str, Buffer]) -> None:
    """Widths and depths that depend on every op."""
    p = rp.lanes
    rp.weight_bits = max((buffers[weight].qformat.bits for weight, _ in rp.weight_slots), default=1)
    amem = [c.in_format for c in rp.convs] + [buffers[op.input].qformat for op in rp.flattens]
    rp.act_bits = max(f.bits for f in amem) if amem else 1
    depth = 1
    for c in rp.convs:
        if c.linear_input:
            depth = max(depth, -(-c.channels * c.height * c.width // p))
        else:
            depth = max(depth, -(-c.channels // p) * c.height * c.width)
        depth = max(depth, -(-c.out_channels // p) * c.out_height * c.out_width)
    rp.amem_depth = depth
    inputs = [b for b in buffers.values() if b.kind == "input"]
    rp.in_bits = max(b.qformat.bits for b in inputs)
    rp.out_bits = max(buffers[name].qformat.bits for name in rp.outputs)
    for head in rp.heads.values():
        if head.name in rp.label_inputs:
            raise _refuse(f"'{head.name}' is both a label input and a head buffer")
