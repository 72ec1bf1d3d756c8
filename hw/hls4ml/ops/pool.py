"""hls4ml lowerings of MaxPool2d, AvgPool2d and GlobalAvgPool.

MaxPool2d / AvgPool2d: `MaxPooling2D` / `AveragePooling2D` (the average exact, as for a
Conv2d's fused pool). GlobalAvgPool: `GlobalAveragePooling2D` (exact division by H*W at `shift`
more fractional bits) when H*W is a power of two; otherwise the program's
`sum * scale * 2^-shift` is not hls4ml's division, and the metahw layer `MetahwGlobalAverage`
computes it (nnet_metahw.h).
"""

from __future__ import annotations

from hls4ml.model.types import FixedPrecisionType

from metahw.compiler.kernels import AvgPool2d, GlobalAvgPool, MaxPool2d
from metahw.hw.hls4ml.embedding_ops import LayerList, Value, output_value, pool_layer
from metahw.hw.hls4ml.ops import EMBEDDING, lowers
from metahw.hw.hls4ml.precision import Exact, fixed, type_string


@lowers(EMBEDDING, MaxPool2d, AvgPool2d)
def window_pool(out: LayerList, op: MaxPool2d | AvgPool2d, name: str, values: dict[str, Value]) -> Value:
    """MaxPool2d or AvgPool2d as hls4ml layers."""
    x = values[op.input]
    mode = "max" if isinstance(op, MaxPool2d) else "avg"
    last, _ = pool_layer(out, name, x.layer, Exact.of(x.fmt), mode, x.shape)
    out.cast(last, out.buffers[op.output].qformat)
    return output_value(out, op, last)


@lowers(EMBEDDING, GlobalAvgPool)
def global_avg(out: LayerList, op: GlobalAvgPool, name: str, values: dict[str, Value]) -> Value:
    """GlobalAvgPool as hls4ml layers."""
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
        return output_value(out, op, last)
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
    return output_value(out, op, layer["name"])
