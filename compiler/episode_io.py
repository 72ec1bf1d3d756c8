"""Episodes in and out of a Program: float images -> input integers; output integers -> logits.

Images in [0, 1] are quantised to the program's pixel format, labels are class ids; the
program's roles (`EpisodeRoles`) say which input buffer takes which. A ProtoNet program's
scores are squared distances (the op writing its prediction is an ArgMin), so its float
logits are minus the dequantised scores; every other head's scores are logits (or class
probabilities, for Matching Networks) as they are.
"""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import ArgMin
from metahw.compiler.program import Program
from metahw.models.episodes import Episode


def program_inputs(program: Program, episode: Episode) -> dict[str, np.ndarray]:
    """Integer inputs of `program` for one episode (its query count must match the program's)."""
    roles, user = program.roles, "feeding an episode to the program"
    support, query = roles.require("support_images", user), roles.require("query_images", user)
    buffers, rounding = program.buffer_map, program.meta.rounding
    return {
        support: buffers[support].qformat.quantize(episode.support_x, rounding),
        query: buffers[query].qformat.quantize(episode.query_x, rounding),
        roles.require("support_labels", user): episode.support_y.astype(np.int64),
    }


def program_logits(program: Program, scores: np.ndarray) -> np.ndarray:
    """Float logits from the integer scores output (negated distances for an ArgMin program)."""
    user = "turning scores into logits"
    scores_buffer = program.buffer_map[program.roles.require("scores", user)]
    prediction = program.roles.require("prediction", user)
    predictor = next(op for op in program.ops if prediction in op.writes())
    values = scores_buffer.qformat.dequantize(scores)
    return -values if isinstance(predictor, ArgMin) else values
