"""Episodes in and out of a Program: float images -> input integers; output integers -> logits.

Images in [0, 1] are quantised to the program's pixel format (`images`), labels are class
ids. A ProtoNet program's `scores` are squared distances (its prediction is their ArgMin),
so its float logits are minus the dequantised scores; every other head's scores are
logits (or class probabilities, for Matching Networks) as they are.
"""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import ArgMin
from metahw.compiler.program import Program
from metahw.models.episodes import Episode


def program_inputs(program: Program, episode: Episode) -> dict[str, np.ndarray]:
    """Integer inputs of `program` for one episode (its query count must match the program's)."""
    buffers = program.buffer_map
    pixel = buffers["support_x"].qformat
    rounding = program.meta.rounding
    return {
        "support_x": pixel.quantize(episode.support_x, rounding),
        "query_x": pixel.quantize(episode.query_x, rounding),
        "support_labels": episode.support_y.astype(np.int64),
    }


def program_logits(program: Program, scores: np.ndarray) -> np.ndarray:
    """Float logits from the integer `scores` output (negated distances for an ArgMin program)."""
    values = program.buffer_map["scores"].qformat.dequantize(scores)
    return -values if isinstance(program.ops[-1], ArgMin) else values
