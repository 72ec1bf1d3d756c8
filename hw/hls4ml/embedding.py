"""The embedding as hls4ml layers, one image per call: input `image` [H, W, C] -> ... -> `features` [D].

The support chain's ops are lowered in program order (`ops/<family>.py`: one or more layers
per op, exact intermediate types, one cast to the op's output format); a residual Add reads
the layer of an earlier op. Each op's last layer is tapped against the golden value of its
output on every image (support image m: row m of the support chain's buffer; query image q:
row q of the query chain's). The last layer is renamed `features`, which the head reads.
The program's integer weights enter hls4ml as the exact float64 reals k * 2^-f, which hls4ml
writes with f decimals; per-channel formats are aligned to their finest frac.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from metahw.compiler.kernels import Flatten
from metahw.compiler.program import Program
from metahw.hw.hls4ml.embedding_ops import LayerList, Value, lower_op
from metahw.hw.hls4ml.precision import fixed, type_string
from metahw.hw.hls4ml.structure import EpisodeStructure
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
    pixels = program.buffer_map[structure.support_images]
    _, channels, height, width = pixels.shape
    out = LayerList(program)
    out.layers.append({"name": IMAGE_INPUT, "class_name": "InputLayer", "input_shape": [height, width, channels]})
    out.precisions[IMAGE_INPUT] = {"result": type_string(fixed(pixels.qformat, *out.modes))}
    values = {structure.support_images: Value(IMAGE_INPUT, pixels.qformat, (channels, height, width))}
    taps: list[Tap] = []
    for index, (s_op, q_op) in enumerate(zip(structure.support_chain, structure.query_chain)):
        value = lower_op(out, s_op, f"block{index}", values)
        values[s_op.output] = value
        if not isinstance(s_op, Flatten):  # a Flatten moves no value: its input's tap covers it
            sources = (Source(s_op.name, s_op.output), Source(q_op.name, q_op.output))
            taps.append(Tap(value.layer, IMAGE, sources, channels_last=len(value.shape) == 3))
    last = values[structure.support_features].layer
    layers, precisions, taps = _renamed(out.layers, out.precisions, taps, last, FEATURES)
    return EmbeddingLayers(layers, precisions, taps, [height, width, channels])


def _renamed(layers: list[dict], precisions: dict, taps: list[Tap], old: str, new: str) -> tuple:
    """Layers, precisions and taps with layer `old` called `new`."""

    def name(layer: str) -> str:
        return new if layer == old else layer

    layers = [
        layer
        | {"name": name(layer["name"]), **({"inputs": [name(i) for i in layer["inputs"]]} if "inputs" in layer else {})}
        for layer in layers
    ]
    precisions = {name(k): v for k, v in precisions.items()}
    return layers, precisions, [replace(tap, layer=name(tap.layer)) for tap in taps]
