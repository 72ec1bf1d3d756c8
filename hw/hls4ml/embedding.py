"""The embedding chain as hls4ml's own layers (Conv2D, ReLU, MaxPooling2D, Transpose, Reshape), one image per call.

Each Conv2d op becomes hls4ml layers with the program's integer weights dequantised exactly
(float64 values k * 2^-f, written by hls4ml with f decimals) and these precisions:

- weight and bias: the buffer's format (per-channel formats aligned to the finest frac);
- conv accumulator and result, ReLU result, pool accumulator: the exact accumulator type
  (docs/numerics.md §3), so nothing rounds or overflows before the end of the op;
- the op's last layer (the pool, else the ReLU, else the conv) casts once into the output
  buffer's format with the program's rounding and overflow modes.

That is the golden order (exact accumulation incl. bias, ReLU, 2x2 max, one requantisation);
ReLU and max commute with the monotone requantisation, so the integers are the same.
hls4ml works channels last ([H, W, C]); Flatten is a Transpose to [C, H, W] then a Reshape,
so the features are in the program's (PyTorch) order.
"""

from __future__ import annotations

from dataclasses import dataclass

from metahw.compiler.kernels import Conv2d
from metahw.compiler.program import Program
from metahw.compiler.qformat import QFormat
from metahw.errors import UserError
from metahw.hw.hls4ml.precision import accumulator_type, aligned, dequantize, fixed, type_string
from metahw.hw.hls4ml.structure import SUPPORT_IMAGES, EpisodeStructure
from metahw.hw.hls4ml.taps import IMAGE, Source, Tap

#: name of the model input that carries one image [H, W, C]
IMAGE_INPUT = "image"
#: name of the layer whose output is one image's feature vector
FEATURES = "features"


@dataclass(frozen=True)
class EmbeddingLayers:
    """hls4ml layer dicts of the embedding, their precisions (hls4ml's LayerName config), taps."""

    layers: list[dict]
    precisions: dict[str, dict[str, str]]
    taps: list[Tap]
    #: [H, W, C] of one input image
    image_shape: list[int]


def embedding_layers(program: Program, structure: EpisodeStructure) -> EmbeddingLayers:
    """The layers that embed one image: input `image` -> ... -> `features` [D]."""
    pixels = program.buffer_map[SUPPORT_IMAGES]
    _, channels, height, width = pixels.shape
    modes = (program.meta.rounding, program.meta.overflow)
    layers: list[dict] = [{"name": IMAGE_INPUT, "class_name": "InputLayer", "input_shape": [height, width, channels]}]
    precisions = {IMAGE_INPUT: {"result": type_string(fixed(pixels.qformat, *modes))}}
    taps: list[Tap] = []
    current, fmt, shape = IMAGE_INPUT, pixels.qformat, (channels, height, width)
    for index, (s_op, q_op) in enumerate(zip(structure.support_chain, structure.query_chain)):
        sources = (Source(s_op.name, s_op.output), Source(q_op.name, q_op.output))
        if isinstance(s_op, Conv2d):
            block = _conv_block(program, s_op, f"block{index}", current, fmt, shape)
            layers += block.layers
            precisions |= block.precisions
            current, shape = block.layers[-1]["name"], block.shape
            fmt = program.buffer_map[s_op.output].qformat
            taps.append(Tap(current, IMAGE, sources, channels_last=True))
        else:  # Flatten: channels last -> the program's [C, H, W] order
            transpose = f"{FEATURES}_chw"
            layers.append({"name": transpose, "class_name": "Transpose", "inputs": [current], "perm": [2, 0, 1]})
            layers.append({"name": FEATURES, "class_name": "Reshape", "inputs": [transpose],
                           "target_shape": [shape[0] * shape[1] * shape[2]]})  # fmt: skip
            taps.append(Tap(transpose, IMAGE, sources))
    return EmbeddingLayers(layers, precisions, taps, [height, width, channels])


@dataclass(frozen=True)
class _Block:
    layers: list[dict]
    precisions: dict[str, dict[str, str]]
    shape: tuple[int, int, int]


def _conv_block(program: Program, op: Conv2d, name: str, previous: str, x: QFormat, shape: tuple) -> _Block:
    """Conv2D (+ ReLU) (+ MaxPooling2D) for one Conv2d op on [C, H, W] inputs of format `x`."""
    buffers = program.buffer_map
    channels, height, width = shape
    weight = buffers[op.weight]
    filters, _, size, _ = weight.shape
    w_fmt = _aligned(op, weight.qformat, weight.axis0_fracs())
    conv = {
        "name": f"{name}_conv", "class_name": "Conv2D", "inputs": [previous], "data_format": "channels_last",
        "in_height": height, "in_width": width, "n_chan": channels, "n_filt": filters,
        "filt_height": size, "filt_width": size, "stride_height": 1, "stride_width": 1,
        "out_height": height, "out_width": width, "pad_top": op.padding, "pad_bottom": op.padding,
        "pad_left": op.padding, "pad_right": op.padding,
        # [O, C, K, K] -> hls4ml's [K, K, C, O]
        "weight_data": dequantize(program.weights[op.weight], weight.axis0_fracs()).transpose(2, 3, 1, 0),
        "bias_data": None,
    }  # fmt: skip
    conv_precision = {"weight": type_string(fixed(w_fmt))}
    b_fmt = None
    if op.bias is not None:
        bias = buffers[op.bias]
        b_fmt = _aligned(op, bias.qformat, bias.axis0_fracs())
        conv["bias_data"] = dequantize(program.weights[op.bias], bias.axis0_fracs())
        conv_precision["bias"] = type_string(fixed(b_fmt))
    exact = type_string(accumulator_type(x, w_fmt, channels * size * size, b_fmt))
    conv_precision |= {"accum": exact, "result": exact}
    layers, precisions = [conv], {conv["name"]: conv_precision}
    if op.relu:
        layers.append({"name": f"{name}_relu", "class_name": "Activation", "activation": "relu",
                       "inputs": [layers[-1]["name"]]})  # fmt: skip
        precisions[layers[-1]["name"]] = {"result": exact}
    if op.pool:
        layers.append({
            "name": f"{name}_pool", "class_name": "MaxPooling2D", "inputs": [layers[-1]["name"]],
            "data_format": "channels_last", "in_height": height, "in_width": width, "n_filt": filters,
            "pool_height": 2, "pool_width": 2, "stride_height": 2, "stride_width": 2, "out_height": height // 2,
            "out_width": width // 2, "pad_top": 0, "pad_bottom": 0, "pad_left": 0, "pad_right": 0,
        })  # fmt: skip
        height, width = height // 2, width // 2
        precisions[layers[-1]["name"]] = {"accum": exact}
    out = type_string(fixed(buffers[op.output].qformat, program.meta.rounding, program.meta.overflow))
    precisions[layers[-1]["name"]]["result"] = out
    return _Block(layers, precisions, (filters, height, width))


def _aligned(op: Conv2d, fmt: QFormat, fracs) -> QFormat:  # noqa: ANN001 - numpy array
    try:
        return aligned(fmt, fracs)
    except ValueError as exc:
        raise UserError(
            f"{op.op} '{op.name}': its per-channel formats cannot share one ap_fixed type ({exc})"
        ) from None
