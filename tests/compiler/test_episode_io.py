"""Episodes in and out of a Program (compiler/episode_io.py)."""

import numpy as np

from metahw.compiler.episode_io import program_logits
from metahw.compiler.golden import execute
from tests.sim.random_programs import draw_config


def test_the_logits_rank_classes_as_the_prediction_does():
    """argmax of program_logits is the program's prediction, whichever op writes it and wherever it stands."""
    seen = set()
    # seed 0 index 97: an ArgMin prediction followed by other head ops
    for seed, index in [(7, i) for i in range(40)] + [(0, 97)]:
        config = draw_config(seed, index)
        program = config.program
        roles = program.roles
        if roles.scores is None or roles.prediction is None:
            continue
        predictor = next(op for op in program.ops if roles.prediction in op.writes())
        if program.buffer_map[predictor.input].name != roles.scores:
            continue
        run = execute(program, config.inputs)
        logits = program_logits(program, run.values[roles.scores])
        assert np.array_equal(logits.argmax(-1), run.values[roles.prediction]), index
        seen.add((predictor.op, program.ops[-1] is predictor))
    assert {("ArgMin", True), ("ArgMin", False), ("ArgMax", True), ("ArgMax", False)} <= seen, seen
