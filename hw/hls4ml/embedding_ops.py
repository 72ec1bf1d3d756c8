"""Each embedding op as hls4ml layers with exact intermediate types and one cast to the op's output format.

Every op becomes one or more layers; each layer but the last holds its values in their exact
type (`precision.Exact`: width from the worst case), and the op's last layer assigns into the
output buffer's format with the program's rounding and overflow modes, the golden single
requantisation (docs/numerics.md §2). ReLU, LeakyReLU, max and average commute with nothing
here: they act on the exact values, in the golden order. Layouts are hls4ml's channels last
([H, W, C]); a `Value` keeps the golden (PyTorch) shape.

Each op's lowering is in `ops/<family>.py` (registered at `ops.EMBEDDING`); here is what they
share: the layer list, the output `Value`, activations and the 2x2 pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hls4ml.model.types import FixedPrecisionType

from metahw.compiler.kernels import Kernel
from metahw.compiler.kernels.pool import POOL_SHIFT
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.hw.hls4ml.precision import Exact, aligned, dequantize, fixed, type_string
from metahw.qformat import QFormat


@dataclass(frozen=True)
class Value:
    """A program buffer (one image's row) held by an hls4ml layer: its layer, format and golden shape."""

    layer: str
    fmt: QFormat
    #: (C, H, W) of a feature map, (D,) of a vector
    shape: tuple[int, ...]


class LayerList:
    """The embedding's layer dicts and their precisions (hls4ml LayerName config)."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.buffers = program.buffer_map
        self.modes = (program.meta.rounding, program.meta.overflow)
        self.layers: list[dict] = []
        self.precisions: dict[str, dict[str, str]] = {}

    def add(self, layer: dict, **precision: FixedPrecisionType | None) -> str:
        """Append a layer (inputs set by the caller) with the given precisions (None: not set); its name."""
        self.layers.append(layer)
        self.precisions[layer["name"]] = {k: type_string(v) for k, v in precision.items() if v is not None}
        return layer["name"]

    def cast(self, layer: str, fmt: QFormat) -> None:
        """Make `layer` the op's last: its result is `fmt` with the program's rounding and overflow."""
        self.precisions.setdefault(layer, {})["result"] = type_string(fixed(fmt, *self.modes))


def lower_op(out: LayerList, op: Kernel, name: str, values: dict[str, Value]) -> Value:
    """The layers of one embedding op named `name`_*, reading `values`; the Value of its output buffer."""
    from metahw.hw.hls4ml.ops import EMBEDDING, LOWERINGS  # the lowerings import this module

    return LOWERINGS[type(op)][EMBEDDING](out, op, name, values)


def activation(
    out: LayerList, name: str, last: str, acc: Exact, relu: bool, slope: int | None, slope_frac: int
) -> tuple[str, Exact]:
    """ReLU or LeakyReLU (if any) after `last`, on exact values; the last layer and its values."""
    if relu:
        layer = {"name": f"{name}_relu", "class_name": "Activation", "activation": "relu", "inputs": [last]}
        return out.add(layer, result=acc.type), acc
    if slope is not None:
        acc = acc.leaky(slope, slope_frac)
        layer = {
            "name": f"{name}_leaky",
            "class_name": "LeakyReLU",
            "activation": "LeakyReLU",
            "activ_param": slope * 2.0**-slope_frac,
            "inputs": [last],
        }
        param = FixedPrecisionType(width=slope_frac, integer=0, signed=False)
        return out.add(layer, param=param, result=acc.type), acc
    return last, acc


def pool_layer(out: LayerList, name: str, last: str, acc: Exact, mode: str, shape: tuple) -> tuple[str, Exact]:
    """A 2x2 stride-2 max or average pool (floor mode) of a [C, H, W] map; the window sum is exact."""
    channels, height, width = shape
    if mode == "avg":
        acc = acc.summed(4, POOL_SHIFT)
    layer = {
        "name": f"{name}_pool",
        "class_name": "MaxPooling2D" if mode == "max" else "AveragePooling2D",
        "inputs": [last],
        "data_format": "channels_last",
        "in_height": height,
        "in_width": width,
        "n_filt": channels,
        "pool_height": 2,
        "pool_width": 2,
        "stride_height": 2,
        "stride_width": 2,
        "out_height": height // 2,
        "out_width": width // 2,
        "pad_top": 0,
        "pad_bottom": 0,
        "pad_left": 0,
        "pad_right": 0,
    }
    return out.add(layer, accum=acc.type, result=acc.type), acc


def output_value(out: LayerList, op: Kernel, layer: str) -> Value:
    """The Value of `op`'s output buffer held by `layer`."""
    buf = out.buffers[op.output]
    return Value(layer, buf.qformat, tuple(buf.shape[1:]))


def weight_and_bias(out: LayerList, op: Kernel) -> tuple[QFormat, QFormat | None, np.ndarray | None]:
    """A Conv2d's or Dense's weight format, and its bias format and dequantised bias (None without a bias)."""
    weight = out.buffers[op.weight]
    w_fmt = aligned_format(op, weight.qformat, weight.axis0_fracs())
    if op.bias is None:
        return w_fmt, None, None
    b_buf = out.buffers[op.bias]
    bias = dequantize(out.program.weights[op.bias], b_buf.axis0_fracs())
    return w_fmt, aligned_format(op, b_buf.qformat, b_buf.axis0_fracs()), bias


def aligned_format(op: Kernel, fmt: QFormat, fracs: np.ndarray) -> QFormat:
    """One ap_fixed format for per-channel fracs (or the error naming the op)."""
    try:
        return aligned(fmt, fracs)
    except ValueError as exc:
        raise UserError(
            f"{op.op} '{op.name}': its per-channel formats cannot share one ap_fixed type ({exc})"
        ) from None
