"""The head ops as metahw layers (hls4ml extension API), with the exact types their C++ needs.

The design sees one image per call, with its label on the `label` input (-1: a query image).
Two support memories turn the per-image features and labels into the episode's support set;
program weights (and head states' episode-start values) become constant layers. Then every
head op becomes one layer, except ProtoHeadInit (weight and bias layers) and SGDHeadStep
(the error G, then the weight and the bias update). A layer is *per sample* when it reads the
query image's features (one row per query image; 0 on support images) and *per episode*
otherwise (computed once, on the first query image). Intermediate types are exact; every
output type is the program buffer's format with the program's rounding and overflow modes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from hls4ml.model.types import FixedPrecisionType

from metahw.compiler.kernels import (
    Kernel,
    SoftmaxSpec,
)
from metahw.compiler.kernels.sfu import constant_reciprocal
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.hw.hls4ml.embedding import FEATURES
from metahw.hw.hls4ml.precision import (
    ROUNDING,
    aligned,
    dequantize,
    exact_type,
    fixed,
    integer,
    type_string,
)
from metahw.hw.hls4ml.structure import EpisodeStructure
from metahw.hw.hls4ml.taps import EPISODE, QUERY, Source, Tap
from metahw.qformat import QFormat

#: name of the model input that carries the image's support label, or -1 for a query image
LABEL_INPUT = "label"


@dataclass(frozen=True)
class Tensor:
    """An hls4ml layer output standing for a program buffer (or one row of it, per query image)."""

    layer: str
    level: str
    shape: tuple[int, ...]
    fmt: QFormat


@dataclass(frozen=True)
class HeadLayers:
    """The head's layer dicts, taps, the model outputs (layer names) and the program buffers they hold."""

    layers: list[dict]
    taps: list[Tap]
    outputs: list[str]
    output_buffers: list[str]
    label_format: QFormat


def label_format(labels: QFormat) -> QFormat:
    """The label input's format: the support labels' integers and -1 (query image)."""
    return QFormat(max(labels.bits + 1, 2), 0, signed=True)


def head_layers(program: Program, structure: EpisodeStructure, taken: set[str]) -> HeadLayers:
    """Support memories, constants and one layer per head op (two or three for the split ops)."""
    from metahw.hw.hls4ml.ops import HEAD, lowered_at  # the lowerings import this module

    lowerings = lowered_at(HEAD)
    head = Head(program, taken)
    buffers = program.buffer_map
    labels = buffers[structure.labels]
    ctrl = Tensor(LABEL_INPUT, QUERY, (1,), label_format(labels.qformat))
    features = buffers[structure.query_features]
    query = Tensor(FEATURES, QUERY, features.shape[1:], features.qformat)
    head.tensors[structure.query_features] = query
    support = buffers[structure.support_features]
    memory = head.add(
        "MetahwSupportMemory",
        "support_memory",
        [query],
        support.shape,
        support.qformat,
        False,
        "support_memory",
        {"n_rows": support.shape[0], "n_in": support.shape[1]},
    )
    head.define(structure.support_chain[-1].name, structure.support_features, memory)
    label_memory = head.add(
        "MetahwSupportMemory",
        "label_memory",
        [ctrl],
        labels.shape,
        labels.qformat,
        False,
        "support_memory",
        {"n_rows": labels.shape[0], "n_in": 1},
    )
    head.define(None, structure.labels, label_memory)
    for op in structure.head:
        lower = lowerings.get(type(op))
        if lower is None:
            supported = ", ".join(sorted(cls.op for cls in lowerings))
            raise UserError(f"{op.op} '{op.name}' has no hls4ml layer; the supported head ops are {supported}")
        lower(head, op)
    outputs, output_buffers = [], []
    for buf in program.buffers_of("output"):
        tensor = head.tensors[buf.name]
        if head.readers[tensor.layer]:  # an output port is never read back: copy it
            size = int(np.prod(tensor.shape))
            tensor = head.add(
                "MetahwOutput",
                f"{buf.name}_out",
                [tensor],
                tensor.shape,
                tensor.fmt,
                tensor.level == QUERY,
                "output",
                {"n_out": size},
                ctrl=False,
                trace=False,
            )
        outputs.append(tensor.layer)
        output_buffers.append(buf.name)
    return HeadLayers(head.layers, head.taps, outputs, output_buffers, ctrl.fmt)


class Head:
    """Accumulates the head's layer dicts and taps; maps program buffers to the layers holding them."""

    def __init__(self, program: Program, taken: set[str]) -> None:
        self.program = program
        self.buffers = program.buffer_map
        self.modes = (program.meta.rounding, program.meta.overflow)
        self.layers: list[dict] = []
        self.taps: list[Tap] = []
        self.tensors: dict[str, Tensor] = {}
        self.readers: Counter[str] = Counter()
        self.names = set(taken)

    def add(
        self,
        class_name: str,
        base: str,
        inputs: list[Tensor],
        shape: tuple[int, ...],
        fmt: QFormat,
        per_sample: bool,
        function: str,
        ints: dict[str, int] | None = None,
        types: dict[str, FixedPrecisionType] | None = None,
        tables: dict[str, tuple[np.ndarray, str]] | None = None,
        ctrl: bool = True,
        trace: bool = True,
    ) -> Tensor:
        """Append one metahw layer writing `shape` values of `fmt` (requantised with the program's modes)."""
        name = self._name(base)
        self.layers.append(
            {
                "name": name,
                "class_name": class_name,
                "inputs": [t.layer for t in inputs] + ([LABEL_INPUT] if ctrl else []),
                "cpp_function": function,
                "out_shape": list(shape) or [1],
                "out_precision": type_string(fixed(fmt, *self.modes)),
                "per_sample": per_sample,
                "cpp_ints": dict(ints or {}),
                "cpp_types": {k: type_string(v) for k, v in (types or {}).items()},
                "cpp_tables": dict(tables or {}),
                "trace": trace,
            }
        )
        self.readers.update(t.layer for t in inputs)
        return Tensor(name, QUERY if per_sample else EPISODE, tuple(shape) or (1,), fmt)

    def define(self, op: str | None, buffer: str, tensor: Tensor) -> None:
        """`buffer` now lives in `tensor`, which must equal the golden value op `op` leaves in it."""
        self.tensors[buffer] = tensor
        self.taps.append(Tap(tensor.layer, tensor.level, (Source(op, buffer),)))

    def read(self, buffer: str) -> Tensor:
        """The tensor holding `buffer` now (a weight or a state's start value becomes a constant layer)."""
        if buffer not in self.tensors:
            self.tensors[buffer] = self._constant(buffer)
        return self.tensors[buffer]

    def episode(self, op: Kernel, buffer: str) -> Tensor:
        """A tensor that `op` needs once per episode (not one row per query image)."""
        tensor = self.read(buffer)
        if tensor.level == QUERY:
            raise UserError(
                f"{op.op} '{op.name}' reads '{buffer}', which the hls4ml design has one row of per query "
                "image, where it needs the whole episode's values"
            )
        return tensor

    def rows(self, op: Kernel, buffer: str) -> tuple[Tensor, int]:
        """A row-wise input of `op` and how many rows one layer call handles (1 per query image)."""
        tensor = self.read(buffer)
        return tensor, 1 if tensor.level == QUERY else tensor.shape[0]

    def out_shape(self, buffer: str, level: str) -> tuple[int, ...]:
        """Shape of the layer output holding `buffer` (its rows one at a time when per query image)."""
        shape = self.buffers[buffer].shape
        return shape[1:] if level == QUERY else shape

    def _constant(self, buffer: str) -> Tensor:
        buf = self.buffers[buffer]  # the program guarantees a value: a weight, or a state's start value
        fracs = buf.axis0_fracs() if buf.channel_fracs is not None else buf.qformat.frac
        fmt = aligned(buf.qformat, fracs) if buf.channel_fracs is not None else buf.qformat
        values = dequantize(self.program.weights[buffer], fracs).reshape(-1)
        return self.add(
            "MetahwConstant",
            f"const_{buffer}",
            [],
            buf.shape,
            fmt,
            False,
            "constant",
            {"n_out": values.size},
            tables={"values": (values, type_string(fixed(fmt)))},
            trace=False,
        )

    def _name(self, base: str) -> str:
        name = re.sub(r"\W", "_", base)
        name = f"op_{name}" if not name or name[0].isdigit() else name
        unique, count = name, 1
        while unique in self.names:
            unique, count = f"{name}_{count}", count + 1
        self.names.add(unique)
        return unique


def count_factor(count: int, recip_frac: int) -> tuple[FixedPrecisionType, int]:
    """divide_by_count's factor as (type, raw integer): 2^-k for count = 2^k, else round_half_up(2^r / count) * 2^-r."""
    if count & (count - 1) == 0:
        return FixedPrecisionType(width=1, integer=2 - count.bit_length(), signed=False), 1
    factor = constant_reciprocal(count, recip_frac)
    bits = factor.bit_length()
    return FixedPrecisionType(width=bits, integer=bits - recip_frac, signed=False), factor


def softmax_config(spec: SoftmaxSpec, x: QFormat, rounding: str) -> tuple[dict, dict, dict]:
    """Config constants, types and the exp table of the integer softmax over values of format `x`."""
    span = x.max_int - x.min_int
    index = exact_type(-(span << max(0, spec.index_frac - x.frac)) - 1, 0, spec.index_frac)
    index.rounding_mode = ROUNDING[rounding]  # the table index rounds like the program (never overflows)
    ints = {"sm_size": spec.table_size, "sm_exp_frac": spec.exp_frac, "sm_recip_bits": spec.recip_bits}
    types = {
        "sm_index_t": index,
        "sm_prod_t": FixedPrecisionType(width=spec.exp_frac + spec.recip_bits + 1, integer=1, signed=False),
    }
    table = (spec.table().astype(np.float64), type_string(integer(spec.exp_frac + 1, signed=False)))
    return ints, types, {"table": table}


def wide_type(x: QFormat, dim: int) -> tuple[FixedPrecisionType, int]:
    """Type and frac that hold x_d * r at frac e exactly for every row of `dim` values of `x` (normalize)."""
    top = max(-x.min_int, x.max_int)
    length = (dim * top * top).bit_length()
    frac = 31 - (32 - length) // 2  # 31 + ceil((L - 32) / 2): the largest e; every e >= 16
    return exact_type(x.min_int << frac, x.max_int << frac, frac), frac  # |x_d * r| <= |x_d| 2^16, shift <= frac - 16
