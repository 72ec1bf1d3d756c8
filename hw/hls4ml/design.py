"""A Program as one hls4ml model description: the layer list, the embedding precisions, taps and outputs.

The model has two inputs, `image` (one image, [H, W, C]) and `label` (its support label, or
-1 for a query image), and one output per program output buffer. An episode runs as its
support images, in order, then its query images. Nothing here calls a compiler: `project.py`
turns an `HlsDesign` into an hls4ml ModelGraph and a project folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.hw.hls4ml.embedding import IMAGE_INPUT, embedding_layers
from metahw.hw.hls4ml.head import LABEL_INPUT, head_layers
from metahw.hw.hls4ml.precision import fixed, type_string
from metahw.hw.hls4ml.structure import EpisodeStructure, episode_structure
from metahw.hw.hls4ml.taps import EPISODE, QUERY, Tap
from metahw.qformat import QFormat

#: integers travel through hls4ml's predict/trace interface as float64: exact up to this many bits
DOUBLE_BITS = 53


@dataclass(frozen=True)
class Output:
    """A model output: its layer, the program buffer it holds, and its level (taps.QUERY or taps.EPISODE)."""

    layer: str
    buffer: str
    level: str


@dataclass(frozen=True)
class HlsDesign:
    """Everything hls4ml needs to build the episode's model, and how its values map to the golden ones."""

    program: Program
    structure: EpisodeStructure
    layers: list[dict]
    #: hls4ml LayerName precision config of the standard (embedding and input) layers
    precisions: dict[str, dict[str, str]]
    outputs: list[Output]
    taps: list[Tap]
    #: [H, W, C] of one image
    image_shape: list[int]
    label_format: QFormat
    #: buffers with a matching layer whose values are too wide to compare through float64 traces
    unchecked: list[str]

    @property
    def inputs(self) -> list[str]:
        """The model's input layers: the image, then its label."""
        return [IMAGE_INPUT, LABEL_INPUT]


def build_design(program: Program) -> HlsDesign:
    """The hls4ml model description of `program`'s whole episode (UserError if a part cannot be expressed)."""
    structure = episode_structure(program)
    embedding = embedding_layers(program, structure)
    taken = {layer["name"] for layer in embedding.layers} | {LABEL_INPUT, "input"}
    head = head_layers(program, structure, taken)
    label_input = {"name": LABEL_INPUT, "class_name": "InputLayer", "input_shape": [1]}
    precisions = embedding.precisions | {LABEL_INPUT: {"result": type_string(fixed(head.label_format))}}
    layers = [embedding.layers[0], label_input, *embedding.layers[1:], *head.layers]
    levels = {layer["name"]: layer.get("per_sample") for layer in head.layers}
    outputs = [
        Output(layer, buffer, QUERY if levels[layer] else EPISODE)
        for layer, buffer in zip(head.outputs, head.output_buffers)
    ]
    buffers = program.buffer_map
    for out in outputs:
        if buffers[out.buffer].qformat.bits > DOUBLE_BITS:
            raise UserError(
                f"output '{out.buffer}' has {buffers[out.buffer].qformat.bits} bits; hls4ml's C simulation "
                f"interface passes values as float64, exact up to {DOUBLE_BITS} bits"
            )
    taps = [tap for tap in embedding.taps + head.taps if _traceable(program, tap)]
    unchecked = sorted({s.buffer for tap in embedding.taps + head.taps if tap not in taps for s in tap.sources})
    return HlsDesign(
        program, structure, layers, precisions, outputs, taps, embedding.image_shape, head.label_format, unchecked
    )


def _traceable(program: Program, tap: Tap) -> bool:
    """A tap is compared when its values pass exactly through float64 traces."""
    return all(program.buffer_map[s.buffer].qformat.bits <= DOUBLE_BITS for s in tap.sources)
