"""The golden executor's integers after every op, for comparing intermediate hls4ml layers.

`golden.execute` returns each buffer's final value; a state buffer rewritten by several ops
(the head weight after each SGD step) keeps only its last. This runs the same ops the same
way (`op.execute` on one `Env`, in program order) and records what each op wrote.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from metahw.compiler.golden import check_inputs
from metahw.compiler.kernels import Env
from metahw.compiler.program import Program
from metahw.hw.hls4ml.taps import Source


def golden_steps(program: Program, inputs: Mapping[str, np.ndarray]) -> dict[Source, np.ndarray]:
    """Source(op, buffer) -> the integers op left in buffer; Source(None, name) -> each program input."""
    checked = check_inputs(program, inputs)
    values = {name: np.array(w, dtype=np.int64) for name, w in program.weights.items()} | checked
    env = Env(program.buffer_map, values, program.meta.rounding, program.meta.overflow)
    steps = {Source(None, name): value for name, value in checked.items()}
    for op in program.ops:
        op.execute(env)
        steps |= {Source(op.name, name): env.values[name] for name in op.writes()}
    return steps
