"""hls4ml lowering of Conv2d.

`Conv2D` (stride, symmetric explicit padding) [+ `Activation(relu)` | `LeakyReLU`]
[+ `MaxPooling2D` | `AveragePooling2D`]. hls4ml's LeakyReLU computes `alpha * x` in full
precision with `alpha` of its `param` type: `ap_ufixed<slope_frac, 0>` holds the program's
slope exactly. hls4ml's average divides the window sum (in `accum_t`) by 4; an `accum_t` at
2 more fractional bits makes that division exact.
"""

from __future__ import annotations

from metahw.compiler.kernels import Conv2d
from metahw.hw.hls4ml.embedding_ops import LayerList, Value, activation, output_value, pool_layer, weight_and_bias
from metahw.hw.hls4ml.ops import EMBEDDING, lowers
from metahw.hw.hls4ml.precision import accumulator_range, dequantize, fixed


@lowers(EMBEDDING, Conv2d)
def conv(out: LayerList, op: Conv2d, name: str, values: dict[str, Value]) -> Value:
    """Conv2d as hls4ml layers."""
    x = values[op.input]
    channels, height, width = x.shape
    weight = out.buffers[op.weight]
    filters, _, size, _ = weight.shape
    rows, cols = op.conv_shape(out.buffers)
    w_fmt, b_fmt, bias = weight_and_bias(out, op)
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
    last, acc = activation(out, name, last, acc, op.relu, op.leaky_slope, op.leaky_frac)
    if op.pool:
        last, acc = pool_layer(out, name, last, acc, op.pool_mode, (filters, rows, cols))
    out.cast(last, out.buffers[op.output].qformat)
    return output_value(out, op, last)
