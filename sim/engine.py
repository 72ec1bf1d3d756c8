"""The cycle simulator as an engine of `compiler.compare`: float vs fixed point measured on the hardware model.

`metahw compare --engine simulator` and `benchmarks/hardware_accuracy.py` run their
fixed-point rows here. Like the golden engine, the embedding runs once per image of the
episode pool and the head once per episode (`compiler.stages`); every part runs on the
accelerator that `metahw build` builds for the whole program (`derive_hardware`), and the
first episode also runs whole, which gives the cycles per episode and checks the split.
"""

from __future__ import annotations

from metahw.compiler.compare import Engine, Runner
from metahw.compiler.program import Program
from metahw.hardware import HardwareConfig, derive_hardware
from metahw.sim.simulator import Simulator


def simulator_engine(lanes: int | None = None, base: HardwareConfig | None = None) -> Engine:
    """An engine running program parts on the cycle simulator of the whole program's derived hardware."""

    def runner(part: Program, program: Program) -> Runner:
        return Simulator(part, derive_hardware(program, lanes, base=base)).run

    return Engine("simulator" if lanes is None else f"simulator, P = {lanes}", runner, whole_check=True)
