"""The RTL plan: a Program's plan on a HardwareConfig, lowered to what the generated hardware needs.

docs/microarchitecture.md is the contract; this module fixes the parts the document leaves to
the generator (docs/rtl.md): the instruction ROM (one entry per instruction, in the
simulator's order), each engine's op descriptors (`isa.py`), the memory images (WMEM weight
words, the bias ROM, the exp tables, state initial values), the head memories, the stream
element widths, and the PPU's constant factors, update shifts and requantisation specs.
Everything here is plain Python and integers, so the generator, the testbench driver and the
tests share one description. Each op's lowering is in `ops/<family>.py` (registered in
`ops.LOWERINGS`, the package's docstring says what each place takes); this module dispatches
through it, and the head ops' shared helpers are in `lower_head.py`.

Embedding segments run G images at once (lane groups: image slot g of an activation word is
lanes g*L .. g*L + L - 1, docs/microarchitecture.md §3); the head runs the whole array as one
group of P lanes (`timing`). Segment ops other than convolutions (pools, global average,
residual Add, ReLU) run on the MAP engine (`engines_map.py`); a residual's skip tensor takes a
third AMEM bank.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metahw.compiler.kernels import Kernel, timing
from metahw.compiler.kernels.datapath import signed_bits
from metahw.compiler.program import Buffer, Program
from metahw.errors import UserError
from metahw.hardware import HardwareConfig
from metahw.hw.amaranth import ops
from metahw.hw.amaranth.isa import (
    CONV,
    ENGINE_KINDS,
    ENGINE_NAMES,
    FLATTEN,
    IO_IMAGE,
    IO_LABELS,
    IO_OUT,
    MAP,
    ConvLayer,
    HeadBuffer,
    Instruction,
    MapOp,
    RequantSpec,
    refuse,
)
from metahw.hw.amaranth.lower_head import lower_init
from metahw.hw.amaranth.rom import bank_depths
from metahw.hw.amaranth.store import held_in_register, memory_depths
from metahw.qformat import QFormat
from metahw.sim.plan import INIT, OP, SEGMENT, STREAM_IN, STREAM_OUT, Plan, activation_banks, build_plan, check_fits

__all__ = [
    "ENGINE_KINDS",
    "ENGINE_NAMES",
    "IO_IMAGE",
    "IO_LABELS",
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
    #: elements per image of each streamed image input (an IO_IMAGE instruction's op indexes it)
    image_sizes: list[int] = field(default_factory=list)

    @property
    def lanes(self) -> int:
        """P."""
        return self.hw.lanes

    @property
    def group_lanes(self) -> int:
        """L = P / G: the lanes of one image slot of an activation word (the channel tile of a segment op)."""
        return self.hw.group_lanes

    def requant_index(self, spec: RequantSpec) -> int:
        """Index of a requantisation spec in the PPU's table (added on first use)."""
        if spec not in self.requants:
            self.requants.append(spec)
        return self.requants.index(spec)

    def image_size_index(self, elements: int) -> int:
        """Index of a streamed image size in `image_sizes` (added on first use)."""
        if elements not in self.image_sizes:
            self.image_sizes.append(elements)
        return self.image_sizes.index(elements)

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

    def activation_banks(self) -> list[str]:
        """The activation banks' memory names, as the Verilog declares them (`amem0`, `amem1`, ...)."""
        return [f"amem{bank}" for bank in range(self.amem_banks)]

    def memories(self) -> list[dict]:
        """The data memories the generator builds: name, width and depth in words, bits (for the manifest)."""
        p = self.lanes
        depths = bank_depths(len(self.weight_words), p * self.weight_bits)
        mems = [
            (f"wmem (bank {k})" if len(depths) > 1 else "wmem", p * self.weight_bits, depth)
            for k, depth in enumerate(depths)
        ]
        mems.append(("bias_rom", p * self.hw.acc_bits, max(2, len(self.bias_words))))
        mems += [(name, p * self.act_bits, max(2, self.amem_depth)) for name in self.activation_banks()]
        for head in self.heads.values():
            if held_in_register(head.rows, head.cols, p, head.unaligned):  # flip-flops, not a memory
                continue
            depths = memory_depths(head.rows, head.cols, p, head.unaligned)
            for k, depth in enumerate(depths):
                bank = f" (bank {k})" if len(depths) > 1 else ""
                mems.append((f"head {head.name}{bank}", p * head.qformat.bits, depth))
        if self.exp_table:
            mems.append(("exp_table", self.exp_bits, max(2, len(self.exp_table))))
        return [{"name": n, "width": w, "depth": d, "bits": w * d} for n, w, d in mems]

    def depth(self, engine: int) -> int:
        """Pipeline depth of an engine's instructions (docs/microarchitecture.md §6)."""
        kind = timing.WINO if engine == CONV and self.hw.winograd else ENGINE_KINDS[engine]
        return timing.depth(kind, self.hw)


def rtl_plan(program: Program, hw: HardwareConfig) -> RtlPlan:
    """Lower the program's plan on `hw` to instructions, engine constants and memory images (or refuse)."""
    group = hw.group_lanes
    if hw.stream_elements > group or group % hw.stream_elements:
        lanes = f"the {group} lanes of a group" if hw.groups > 1 else f"the {hw.lanes} lanes"
        raise UserError(
            f"the Amaranth backend needs the stream's {hw.stream_elements} elements per beat to divide "
            f"{lanes} (set `stream_elements` to {min(group, hw.stream_elements)} or use more lanes)",
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
            _head_op(rp, step.op, buffers)
        elif step.kind == STREAM_OUT:
            _stream_out(rp, buffers[step.buffer])
    _finish(rp, buffers)
    return rp


def _segment(rp: RtlPlan, segment, buffers: dict[str, Buffer]) -> None:  # noqa: ANN001 - sim.plan.Segment
    """Per group of G images: stream them in, run each conv and map op in its AMEM banks, flatten into a head buffer."""
    if segment.streamed is None:
        raise refuse(f"segment '{segment.ops[0].name}' reads its input from memory, not from the stream")
    image = buffers[segment.streamed]
    per_image = int(np.prod(image.shape[1:]))
    groups, elements = rp.hw.groups, rp.hw.stream_elements
    if groups > 1 and per_image % elements:
        raise refuse(
            f"an image of '{image.name}' has {per_image} elements, not a multiple of the stream's {elements} "
            f"per beat, and G = {groups} streams images back to back (use G = 1 or stream_elements dividing it)"
        )
    seg_ops = list(segment.ops)
    lowerings = [ops.lowering(op, ops.CONV, ops.MAP, ops.FLATTEN) for op in seg_ops]
    places = [None if found is None else found[0] for found in lowerings]
    body = seg_ops[:-1]
    if (
        places[-1] != ops.FLATTEN
        or not body
        or places[0] != ops.CONV
        or any(p not in (ops.CONV, ops.MAP) for p in places[:-1])
    ):
        names = ", ".join(f"{type(op).__name__} '{op.name}'" for op in seg_ops)
        raise refuse(f"segment {names} is not a Conv2d followed by convs, pools, Add or ReLU ending in Flatten")
    banks = activation_banks(segment)
    rp.amem_banks = max(rp.amem_banks, max(banks.values()) + 1)
    steps = []  # (engine, op index, beats, op)
    for k, (op, (place, lower)) in enumerate(zip(body, lowerings)):
        if place == ops.CONV:
            index = lower(rp, op, buffers, linear=k == 0)
            layer = rp.convs[index]
            steps.append((CONV, index, layer.beats(rp.hw.winograd), op, None))
        else:
            descriptor = _map_op(rp, op, buffers, *lower(rp, op, buffers))
            steps.append((MAP, None, descriptor.beats, op, descriptor))
    flat = seg_ops[-1]
    flatten, flatten_beats = lowerings[-1][1](rp, flat, buffers)
    for b in range(0, segment.batch, groups):
        count = min(groups, segment.batch - b)
        rp.instructions.append(
            Instruction(
                IO_IMAGE,
                -(-count * per_image // elements),
                op=rp.image_size_index(per_image),
                image=b,
                images=count,
                label=f"stream_in {image.name}",
                buffer=image.name,
            )
        )
        for engine, index, beats, op, descriptor in steps:
            where = dict(
                image=b,
                bank=banks[op.input],
                dst=banks[op.output],
                skip=banks[op.residual] if hasattr(op, "residual") else 0,
            )
            if engine == CONV:
                rp.instructions.append(Instruction(CONV, beats, op=index, label=op.name, **where))
            else:
                rp.emit(MAP, beats, descriptor, op.name, **where)
        rp.emit(FLATTEN, flatten_beats, flatten, flat.name, image=b, bank=banks[flat.input])


def _map_op(rp: RtlPlan, op: Kernel, buffers: dict[str, Buffer], kind: str, src_frac: int, fields: dict) -> MapOp:
    """The MAP engine's constants of one op: its lowering's kind, source frac and fields; shape; requantiser."""
    x, out = buffers[op.input], buffers[op.output]
    _, c, h, w = x.shape
    requant = rp.requant_index(RequantSpec(src_frac - out.qformat.frac, out.qformat))
    rp.act_bits = max(rp.act_bits, x.qformat.bits, out.qformat.bits)
    return MapOp(kind, -(-c // rp.group_lanes), h, w, x.qformat, requant, **fields)


def _head_op(rp: RtlPlan, op: Kernel, buffers: dict[str, Buffer]) -> None:
    """Append the instructions of one head op (or refuse it)."""
    found = ops.lowering(op, ops.HEAD)
    if found is None:
        raise refuse(f"{type(op).__name__} '{op.name}' has no RTL engine")
    found[1](rp, op, buffers)


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
    """Widths and depths that depend on every op (an activation word holds L lanes of each image slot)."""
    p = rp.group_lanes
    rp.weight_bits = max((buffers[weight].qformat.bits for weight, _ in rp.weight_slots), default=1)
    if rp.hw.winograd and rp.weight_words:  # the words hold the transformed weights
        words = np.asarray(rp.weight_words)
        rp.weight_bits = signed_bits(int(words.min()), int(words.max()))
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
