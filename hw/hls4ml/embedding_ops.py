"""Each embedding op as hls4ml layers with exact intermediate types and one cast to the op's output format.

Every op becomes one or more layers; each layer but the last holds its values in their exact
type (`precision.Exact`: width from the worst case), and the op's last layer assigns into the
output buffer's format with the program's rounding and overflow modes, the golden single
requantisation (docs/numerics.md §2). ReLU, LeakyReLU, max and average commute with nothing
here: they act on the exact values, in the golden order. Layouts are hls4ml's channels last
([H, W, C]); a `Value` keeps the golden (PyTorch) shape.

- Conv2d: `Conv2D` (stride, symmetric explicit padding) [+ `Activation(relu)` | `LeakyReLU`]
  [+ `MaxPooling2D` | `AveragePooling2D`]. hls4ml's LeakyReLU computes `alpha * x` in full
  precision with `alpha` of its `param` type: `ap_ufixed<slope_frac, 0>` holds the program's
  slope exactly. hls4ml's average divides the window sum (in `accum_t`) by 4; an `accum_t` at
  2 more fractional bits makes that division exact.
- MaxPool2d / AvgPool2d: `MaxPooling2D` / `AveragePooling2D` as above.
- GlobalAvgPool: `GlobalAveragePooling2D` (exact division by H*W at `shift` more fractional bits)
  when H*W is a power of two; otherwise the program's `sum * scale * 2^-shift` is not hls4ml's
  division, and the metahw layer `MetahwGlobalAverage` computes it (nnet_metahw.h).
- Add: `Merge(add)` (full-precision sum) [+ `Activation(relu)` | `LeakyReLU`].
- Requant: `Activation(relu)` or `Activation(linear)` (a cast, which hls4ml keeps).
- Flatten: `Reshape` of the channels-last map (the `channels_last` order, and any [C, 1, 1]);
  the PyTorch order is a `Transpose` to [C, H, W] first.
- Dense: hls4ml `Dense` [+ `Activation(relu)`].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hls4ml.model.types import FixedPrecisionType

from metahw.compiler.kernels import Add, AvgPool2d, Conv2d, Dense, Flatten, GlobalAvgPool, Kernel, MaxPool2d, Requant
from metahw.compiler.kernels.pool import POOL_SHIFT
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.hw.hls4ml.precision import Exact, accumulator_range, aligned, dequantize, fixed, type_string
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
    return EMBEDDING_LOWERINGS[type(op)](out, op, name, values)


def _conv(out: LayerList, op: Conv2d, name: str, values: dict[str, Value]) -> Value:
    x = values[op.input]
    channels, height, width = x.shape
    weight = out.buffers[op.weight]
    filters, _, size, _ = weight.shape
    rows, cols = op.conv_shape(out.buffers)
    w_fmt = _aligned(op, weight.qformat, weight.axis0_fracs())
    b_fmt, bias = None, None
    if op.bias is not None:
        b_buf = out.buffers[op.bias]
        b_fmt = _aligned(op, b_buf.qformat, b_buf.axis0_fracs())
        bias = dequantize(out.program.weights[op.bias], b_buf.axis0_fracs())
    acc = accumulator_range(x.fmt, w_fmt, channels * size * size, b_fmt)
    last = out.add(
        {
            "name": f"{name}_conv",
            "class_name": "Conv2D",
            "inputs": [x.layer],
            "data_format": "channels_last",
            "in_height": height,
            "in_width": width,
            "n_chan": channels,
            "n_filt": filters,
            "filt_height": size,
            "filt_width": size,
            "stride_height": op.stride,
            "stride_width": op.stride,
            "out_height": rows,
            "out_width": cols,
            "pad_top": op.padding,
            "pad_bottom": op.padding,
            "pad_left": op.padding,
            "pad_right": op.padding,
            # [O, C, K, K] -> hls4ml's [K, K, C, O]
            "weight_data": dequantize(out.program.weights[op.weight], weight.axis0_fracs()).transpose(2, 3, 1, 0),
            "bias_data": bias,
        },
        weight=fixed(w_fmt),
        bias=fixed(b_fmt) if b_fmt else None,
        accum=acc.type,
        result=acc.type,
    )
    last, acc = _activation(out, name, last, acc, op.relu, op.leaky_slope, op.leaky_frac)
    if op.pool:
        last, acc = _pool(out, name, last, acc, op.pool_mode, (filters, rows, cols))
    out.cast(last, out.buffers[op.output].qformat)
    return _value(out, op, last)


def _activation(
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


def _pool(out: LayerList, name: str, last: str, acc: Exact, mode: str, shape: tuple) -> tuple[str, Exact]:
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


def _max_pool(out: LayerList, op: MaxPool2d, name: str, values: dict[str, Value]) -> Value:
    x = values[op.input]
    last, _ = _pool(out, name, x.layer, Exact.of(x.fmt), "max", x.shape)
    out.cast(last, out.buffers[op.output].qformat)
    return _value(out, op, last)


def _avg_pool(out: LayerList, op: AvgPool2d, name: str, values: dict[str, Value]) -> Value:
    x = values[op.input]
    last, _ = _pool(out, name, x.layer, Exact.of(x.fmt), "avg", x.shape)
    out.cast(last, out.buffers[op.output].qformat)
    return _value(out, op, last)


def _global_avg(out: LayerList, op: GlobalAvgPool, name: str, values: dict[str, Value]) -> Value:
    x = values[op.input]
    channels, height, width = x.shape
    result = type_string(fixed(out.buffers[op.output].qformat, *out.modes))
    if op.scale == 1:  # H*W = 2^shift: hls4ml's division is exact at `shift` more fractional bits
        accum = Exact.of(x.fmt).summed(height * width, op.shift)
        layer = {
            "name": f"{name}_gap",
            "class_name": "GlobalAveragePooling2D",
            "inputs": [x.layer],
            "data_format": "channels_last",
            "in_height": height,
            "in_width": width,
            "n_filt": channels,
        }
        last = out.add(layer, accum=accum.type)
        out.cast(last, out.buffers[op.output].qformat)
        return _value(out, op, last)
    bits = op.scale.bit_length()
    layer = {
        "name": f"{name}_gap",
        "class_name": "MetahwGlobalAverage",
        "inputs": [x.layer],
        "cpp_function": "global_average",
        "out_shape": [channels],
        "out_precision": result,
        "per_sample": True,
        "cpp_ints": {"n_pixels": height * width, "n_chan": channels, "factor_raw": op.scale},
        "cpp_types": {
            "sum_t": type_string(Exact.of(x.fmt).summed(height * width).type),
            "factor_t": type_string(FixedPrecisionType(width=bits, integer=bits - op.shift, signed=False)),
        },
        "cpp_tables": {},
        "trace": True,
    }
    out.layers.append(layer)
    return _value(out, op, layer["name"])


def _add(out: LayerList, op: Add, name: str, values: dict[str, Value]) -> Value:
    a, r = values[op.input], values[op.residual]
    total = Exact.of(a.fmt).plus(Exact.of(r.fmt))
    layer = {"name": f"{name}_add", "class_name": "Merge", "op": "add", "inputs": [a.layer, r.layer]}
    last = out.add(layer, result=total.type)
    last, _ = _activation(out, name, last, total, op.relu, op.leaky_slope, op.leaky_frac)
    out.cast(last, out.buffers[op.output].qformat)
    return _value(out, op, last)


def _requant(out: LayerList, op: Requant, name: str, values: dict[str, Value]) -> Value:
    x = values[op.input]
    layer = {
        "name": f"{name}_requant",
        "class_name": "Activation",
        "activation": "relu" if op.relu else "linear",
        "inputs": [x.layer],
    }
    last = out.add(layer)
    out.cast(last, out.buffers[op.output].qformat)
    return _value(out, op, last)


def _flatten(out: LayerList, op: Flatten, name: str, values: dict[str, Value]) -> Value:
    x = values[op.input]
    if len(x.shape) == 1:
        return Value(x.layer, x.fmt, x.shape)
    last = x.layer
    if not op.channels_last and x.shape[1:] != (1, 1):  # the PyTorch order: [H, W, C] -> [C, H, W] first
        layer = {"name": f"{name}_chw", "class_name": "Transpose", "inputs": [last], "perm": [2, 0, 1]}
        last = out.add(layer, result=fixed(x.fmt))
    size = int(np.prod(x.shape))
    out.layers.append({"name": f"{name}_flat", "class_name": "Reshape", "inputs": [last], "target_shape": [size]})
    return Value(out.layers[-1]["name"], x.fmt, (size,))


def _dense(out: LayerList, op: Dense, name: str, values: dict[str, Value]) -> Value:
    x = values[op.input]
    weight = out.buffers[op.weight]
    n_out, n_in = weight.shape
    w_fmt = _aligned(op, weight.qformat, weight.axis0_fracs())
    b_fmt, bias = None, None
    if op.bias is not None:
        b_buf = out.buffers[op.bias]
        b_fmt = _aligned(op, b_buf.qformat, b_buf.axis0_fracs())
        bias = dequantize(out.program.weights[op.bias], b_buf.axis0_fracs())
    acc = accumulator_range(x.fmt, w_fmt, n_in, b_fmt)
    layer = {
        "name": f"{name}_dense",
        "class_name": "Dense",
        "inputs": [x.layer],
        "n_in": n_in,
        "n_out": n_out,
        "weight_data": dequantize(out.program.weights[op.weight], weight.axis0_fracs()).T,
        "bias_data": bias,
    }
    last = out.add(layer, weight=fixed(w_fmt), bias=fixed(b_fmt) if b_fmt else None, accum=acc.type, result=acc.type)
    last, _ = _activation(out, name, last, acc, op.relu, None, 0)
    out.cast(last, out.buffers[op.output].qformat)
    return _value(out, op, last)


def _value(out: LayerList, op: Kernel, layer: str) -> Value:
    buf = out.buffers[op.output]
    return Value(layer, buf.qformat, tuple(buf.shape[1:]))


def _aligned(op: Kernel, fmt: QFormat, fracs: np.ndarray) -> QFormat:
    try:
        return aligned(fmt, fracs)
    except ValueError as exc:
        raise UserError(
            f"{op.op} '{op.name}': its per-channel formats cannot share one ap_fixed type ({exc})"
        ) from None


#: every embedding op the hls4ml backend builds, and its lowering onto hls4ml layers
EMBEDDING_LOWERINGS: dict[type, Callable[[LayerList, Kernel, str, dict[str, Value]], Value]] = {
    Conv2d: _conv,
    MaxPool2d: _max_pool,
    AvgPool2d: _avg_pool,
    GlobalAvgPool: _global_avg,
    Add: _add,
    Requant: _requant,
    Flatten: _flatten,
    Dense: _dense,
}
