"""The RTL plan: a Program's plan on a HardwareConfig, lowered to what the generated hardware needs.

docs/microarchitecture.md is the contract; this module fixes the parts the document leaves to
the generator (docs/rtl.md): the instruction ROM (one entry per instruction, in the
simulator's order), each engine's op descriptors (`isa.py`), the memory images (WMEM weight
words, the bias ROM, the exp tables, state initial values), the head memories, the stream
element widths, and the PPU's constant factors, update shifts and requantisation specs.
Everything here is plain Python and integers, so the generator, the testbench driver and the
tests share one description. The head ops are lowered in `lower_head.py`.

The Amaranth backend builds one lane group (G = 1) and refuses anything else with the reason.
Segment ops other than convolutions (pools, global average, residual Add, ReLU) run on the
MAP engine (`engines_map.py`); a residual's skip tensor takes a third AMEM bank.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metahw.compiler.kernels import Add, AvgPool2d, Conv2d, Flatten, GlobalAvgPool, Kernel, MaxPool2d, Requant, timing
from metahw.compiler.kernels.pool import POOL_SHIFT
from metahw.compiler.program import Buffer, Program
from metahw.errors import UserError
from metahw.hardware import HardwareConfig
from metahw.hw.amaranth.isa import (
    ADD,
    AVG_POOL,
    CONV,
    ENGINE_KINDS,
    ENGINE_NAMES,
    FLATTEN,
    GLOBAL_AVG,
    IO_IMAGE,
    IO_LABELS,
    IO_OUT,
    MAP,
    MAX_POOL,
    PASS,
    SUPPORTED,
    ConvLayer,
    FlattenOp,
    HeadBuffer,
    Instruction,
    MapOp,
    RequantSpec,
    refuse,
)
from metahw.hw.amaranth.lower_head import lower_head_op, lower_init
from metahw.hw.amaranth.rom import bank_depths
from metahw.hw.amaranth.store import memory_depths
from metahw.qformat import QFormat
from metahw.sim.plan import INIT, OP, SEGMENT, STREAM_IN, STREAM_OUT, Plan, activation_banks, build_plan, check_fits

#: segment kernels the MAP engine runs
MAP_KERNELS = (MaxPool2d, AvgPool2d, GlobalAvgPool, Add, Requant)
#: every embedding-segment op the RTL builds: convolutions (conv engine), the MAP engine's ops, Flatten
SEGMENT_KERNELS = (Conv2d, Flatten, *MAP_KERNELS)

__all__ = [
    "ENGINE_KINDS",
    "ENGINE_NAMES",
    "IO_IMAGE",
    "IO_LABELS",
    "SUPPORTED",
    "HeadBuffer",
    "Instruction",
    "RequantSpec",
    "RtlPlan",
    "rtl_plan",
]


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
    #: the PPU's constant scale factors (index 0 is 1) and update shifts (addend << a) - (scaled << g)
    factors: list[int] = field(default_factory=lambda: [1])
    updates: list[tuple[int, int]] = field(default_factory=list)
    #: head memories by name: program buffers, op scratch, state initial values
    heads: dict[str, HeadBuffer] = field(default_factory=dict)
    #: engine code -> its op descriptors (an instruction's `op` indexes this list)
    ops: dict[int, list[Any]] = field(default_factory=dict)
    #: WMEM words (P weights each) and bias ROM words (P aligned biases each)
    weight_words: list[list[int]] = field(default_factory=list)
    bias_words: list[list[int]] = field(default_factory=list)
    #: the exp ROM: every softmax spec's table, concatenated
    exp_table: list[int] = field(default_factory=list)
    exp_bits: int = 1
    #: softmax spec -> its table's first entry in the exp ROM
    exp_bases: dict[Any, int] = field(default_factory=dict)
    #: rows of the softmax row registers (max, sum, reciprocal) and of the rsqrt row registers
    softmax_rows: int = 0
    norm_rows: int = 0
    #: bits of the widest sum of squares rsqrt normalises
    norm_bits: int = 1
    weight_bits: int = 1
    act_bits: int = 1
    amem_depth: int = 1
    #: activation banks: 2, or 3 where a residual's skip tensor stays live
    amem_banks: int = 2
    in_bits: int = 1
    out_bits: int = 1
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

    def factor_index(self, factor: int) -> int:
        """Index of a constant PPU scale factor (added on first use)."""
        if factor not in self.factors:
            self.factors.append(factor)
        return self.factors.index(factor)

    def update_index(self, addend_shift: int, step_shift: int) -> int:
        """The PPU's update case for (addend << a) - (scaled << g): 1 + its index (0 is no update)."""
        key = (addend_shift, step_shift)
        if key not in self.updates:
            self.updates.append(key)
        return 1 + self.updates.index(key)

    def engine_ops(self, engine: int) -> list[Any]:
        """The op descriptors of an engine, in ROM op-index order."""
        return self.ops.get(engine, [])

    def emit(self, engine: int, beats: int, descriptor: Any, label: str, **fields: Any) -> int:
        """Append an instruction running `descriptor` (stored once per engine); returns its op index."""
        ops = self.ops.setdefault(engine, [])
        if descriptor not in ops:
            ops.append(descriptor)
        index = ops.index(descriptor)
        self.instructions.append(Instruction(engine, beats, op=index, label=label, **fields))
        return index

    def store(self, buf: Buffer, init: tuple[int, ...] = ()) -> HeadBuffer:
        """The head memory of a program buffer ([rows, cols]: axis 0 by the rest; 0-d and 1-d are one row)."""
        if buf.channel_fracs is not None:
            raise refuse(f"'{buf.name}' has per-channel formats")
        shape = buf.shape
        rows, cols = (shape[0], int(np.prod(shape[1:]))) if len(shape) > 1 else (1, int(np.prod(shape)))
        return self._head(HeadBuffer(buf.name, rows, cols, buf.qformat, init))

    def scratch(self, role: str, rows: int, cols: int, fmt: QFormat, init: tuple[int, ...] = ()) -> str:
        """The memory of an op intermediate ("logits 0"; shared by ops of equal shape and format), or a ROM."""
        want = HeadBuffer("", rows, cols, fmt, init)
        for head in self.heads.values():
            if head.name.rsplit(" ", 1)[0] == role and dataclasses.replace(head, name="") == want:
                return head.name
        taken = set(self.heads) | {b.name for b in self.program.buffers}
        k = 0
        while f"{role} {k}" in taken:
            k += 1
        return self._head(dataclasses.replace(want, name=f"{role} {k}")).name

    def _head(self, head: HeadBuffer) -> HeadBuffer:
        old = self.heads.get(head.name)
        if old is not None:
            head = dataclasses.replace(head, init=old.init, unaligned=old.unaligned or head.unaligned)
        self.heads[head.name] = head
        return head

    def memories(self) -> list[dict]:
        """The data memories the generator builds: name, width and depth in words, bits (for the manifest)."""
        p = self.lanes
        depths = bank_depths(len(self.weight_words), p * self.weight_bits)
        mems = [
            (f"wmem (bank {k})" if len(depths) > 1 else "wmem", p * self.weight_bits, depth)
            for k, depth in enumerate(depths)
        ]
        mems += [
            ("bias_rom", p * self.hw.acc_bits, max(2, len(self.bias_words))),
            ("amem0", p * self.act_bits, max(2, self.amem_depth)),
            ("amem1", p * self.act_bits, max(2, self.amem_depth)),
        ]
        for head in self.heads.values():
            depths = memory_depths(head.rows, head.cols, p, head.unaligned)
            for k, depth in enumerate(depths):
                bank = f" (bank {k})" if len(depths) > 1 else ""
                mems.append((f"head {head.name}{bank}", p * head.qformat.bits, depth))
        if self.exp_table:
            mems.append(("exp_table", self.exp_bits, max(2, len(self.exp_table))))
        return [{"name": n, "width": w, "depth": d, "bits": w * d} for n, w, d in mems]

    def depth(self, engine: int) -> int:
        """Pipeline depth of an engine's instructions (docs/microarchitecture.md §6)."""
        return timing.depth(ENGINE_KINDS[engine], self.hw)


def rtl_plan(program: Program, hw: HardwareConfig) -> RtlPlan:
    """Lower the program's plan on `hw` to instructions, engine constants and memory images (or refuse)."""
    if hw.groups != 1:
        raise refuse(f"G = {hw.groups} lane groups were asked for")
    if hw.stream_elements > hw.lanes or hw.lanes % hw.stream_elements:
        raise UserError(
            f"the Amaranth backend needs the stream's {hw.stream_elements} elements per beat to divide "
            f"the {hw.lanes} lanes (set `stream_elements` to {min(hw.lanes, hw.stream_elements)} or use more lanes)",
            ("HardwareConfig.stream_elements",),
        )
    check_fits(program, hw)
    rp = RtlPlan(program, hw, build_plan(program, hw))
    buffers = program.buffer_map
    for step in rp.plan.steps:
        if step.kind == INIT:
            lower_init(rp, buffers[step.buffer])
        elif step.kind == SEGMENT:
            _segment(rp, step.segment, buffers)
        elif step.kind == STREAM_IN:
            _labels_input(rp, buffers[step.buffer])
        elif step.kind == OP:
            lower_head_op(rp, step.op, buffers)
        elif step.kind == STREAM_OUT:
            _stream_out(rp, buffers[step.buffer])
    _finish(rp, buffers)
    return rp


def _segment(rp: RtlPlan, segment, buffers: dict[str, Buffer]) -> None:  # noqa: ANN001 - sim.plan.Segment
    """Per image: stream the image in, run every conv and map op in its AMEM banks, flatten into a head buffer."""
    if segment.streamed is None:
        raise refuse(f"segment '{segment.ops[0].name}' reads its input from memory, not from the stream")
    image = buffers[segment.streamed]
    per_image = int(np.prod(image.shape[1:]))
    ops = list(segment.ops)
    body = ops[:-1]
    if (
        not isinstance(ops[-1], Flatten)
        or not body
        or not isinstance(body[0], Conv2d)
        or any(not isinstance(op, (Conv2d, *MAP_KERNELS)) or (isinstance(op, Requant) and not op.relu) for op in body)
    ):
        names = ", ".join(f"{type(op).__name__} '{op.name}'" for op in ops)
        raise refuse(f"segment {names} is not a Conv2d followed by convs, pools, Add or ReLU ending in Flatten")
    banks = activation_banks(segment)
    rp.amem_banks = max(rp.amem_banks, max(banks.values()) + 1)
    steps = []  # (engine, op index, beats, op)
    for k, op in enumerate(body):
        if isinstance(op, Conv2d):
            index = _conv_layer(rp, op, buffers, linear=k == 0)
            layer = rp.convs[index]
            steps.append((CONV, index, layer.tiles * layer.rows * layer.cols * layer.fan_in, op, None))
        else:
            descriptor = _map_op(rp, op, buffers)
            steps.append((MAP, None, descriptor.beats, op, descriptor))
    flat = ops[-1]
    last = buffers[flat.input]
    positions = last.shape[2] * last.shape[3]
    if positions > 1 and not flat.channels_last:
        raise refuse(
            f"Flatten '{flat.name}' flattens a {last.shape[2]}x{last.shape[3]} map in C order (the RTL "
            "writes maps channels last, as the compiler flattens them)"
        )
    feats = buffers[flat.output]
    head = rp.store(feats)
    if positions > 1 and last.shape[1] % rp.lanes:  # words of a position start at pos * C: inside a word
        rp.heads[feats.name] = dataclasses.replace(head, unaligned=True)
    rp.act_bits = max(rp.act_bits, last.qformat.bits)
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
        for engine, index, beats, op, descriptor in steps:
            where = dict(
                image=b,
                bank=banks[op.input],
                dst=banks[op.output],
                skip=banks[op.residual] if isinstance(op, Add) else 0,
            )
            if engine == CONV:
                rp.instructions.append(Instruction(CONV, beats, op=index, label=op.name, **where))
            else:
                rp.emit(MAP, beats, descriptor, op.name, **where)
        tiles = -(-last.shape[1] // rp.lanes)
        descriptor = FlattenOp(feats.name, last.shape[1], positions)
        rp.emit(FLATTEN, tiles * positions, descriptor, flat.name, image=b, bank=banks[flat.input])


def _map_op(rp: RtlPlan, op: Kernel, buffers: dict[str, Buffer]) -> MapOp:
    """The MAP engine's constants of one pool, global average, residual Add or ReLU pass."""
    x, out = buffers[op.input], buffers[op.output]
    _, c, h, w = x.shape
    fields: dict[str, Any] = {}
    src_frac = x.qformat.frac
    if isinstance(op, MaxPool2d):
        kind = MAX_POOL
    elif isinstance(op, AvgPool2d):
        kind, src_frac = AVG_POOL, src_frac + POOL_SHIFT
    elif isinstance(op, GlobalAvgPool):
        kind, src_frac = GLOBAL_AVG, src_frac + op.shift
        fields["scale"] = rp.factor_index(op.scale)
    elif isinstance(op, Add):
        kind, skip = ADD, buffers[op.residual]
        src_frac = op.aligned_frac(buffers)
        fields.update(
            skip_format=skip.qformat,
            shift=src_frac - x.qformat.frac,
            skip_shift=src_frac - skip.qformat.frac,
            relu=op.relu,
        )
        if op.leaky_slope is not None:
            fields.update(
                leaky=True, scale=rp.factor_index(1 << op.leaky_frac), negative_scale=rp.factor_index(op.leaky_slope)
            )
            src_frac += op.leaky_frac
    else:  # Requant with ReLU
        kind, fields["relu"] = PASS, True
    requant = rp.requant_index(RequantSpec(src_frac - out.qformat.frac, out.qformat))
    rp.act_bits = max(rp.act_bits, x.qformat.bits, out.qformat.bits)
    return MapOp(kind, -(-c // rp.lanes), h, w, x.qformat, requant, **fields)


def _conv_layer(rp: RtlPlan, op: Conv2d, buffers: dict[str, Buffer], linear: bool) -> int:
    """The engine constants of one Conv2d (shared weights and equal layers are stored once); returns its index."""
    x, w, out = buffers[op.input], buffers[op.weight], buffers[op.output]
    for buf in (x, w, out) + ((buffers[op.bias],) if op.bias else ()):
        if buf.channel_fracs is not None:
            raise refuse(f"'{buf.name}' has per-channel formats")
    o, c, k, _ = w.shape
    acc_frac = x.qformat.frac + w.qformat.frac
    requant = rp.requant_index(RequantSpec(acc_frac + op.post_frac() - out.qformat.frac, out.qformat))
    leaky = op.leaky_slope is not None
    scale = rp.factor_index(1 << op.leaky_frac) if leaky else 0
    negative_scale = rp.factor_index(op.leaky_slope) if leaky else 0
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
        stride=op.stride,
        pool=op.pool,
        relu=op.relu,
        leaky=leaky,
        scale=scale,
        negative_scale=negative_scale,
        accumulate=op.pool and op.pool_mode == "avg",
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


def _labels_input(rp: RtlPlan, buf: Buffer) -> None:
    if len(buf.shape) != 1 or buf.qformat.frac != 0:
        raise refuse(f"input '{buf.name}' {buf.shape} is streamed whole but is not a vector of class labels")
    rp.label_inputs.append(buf.name)
    beats = -(-buf.shape[0] // rp.hw.stream_elements)
    index = len(rp.label_inputs) - 1
    rp.instructions.append(Instruction(IO_LABELS, beats, op=index, label=f"stream_in {buf.name}", buffer=buf.name))


def _stream_out(rp: RtlPlan, buf: Buffer) -> None:
    rp.store(buf)
    rp.outputs.append(buf.name)
    beats = -(-int(np.prod(buf.shape)) // rp.hw.stream_elements)
    index = len(rp.outputs) - 1
    rp.instructions.append(Instruction(IO_OUT, beats, op=index, label=f"stream_out {buf.name}", buffer=buf.name))


def _finish(rp: RtlPlan, buffers: dict[str, Buffer]) -> None:
    """Widths and depths that depend on every op."""
    p = rp.lanes
    rp.weight_bits = max((buffers[weight].qformat.bits for weight, _ in rp.weight_slots), default=1)
    rp.act_bits = max([rp.act_bits] + [c.in_format.bits for c in rp.convs])
    depth = 1
    for c in rp.convs:
        if c.linear_input:
            depth = max(depth, -(-c.channels * c.height * c.width // p))
        else:
            depth = max(depth, -(-c.channels // p) * c.height * c.width)
        depth = max(depth, -(-c.out_channels // p) * c.out_height * c.out_width)
    for d in rp.engine_ops(MAP):
        depth = max(depth, d.tiles * d.height * d.width)
    rp.amem_depth = depth
    inputs = [b for b in buffers.values() if b.kind == "input"]
    rp.in_bits = max(b.qformat.bits for b in inputs)
    rp.out_bits = max(buffers[name].qformat.bits for name in rp.outputs)
