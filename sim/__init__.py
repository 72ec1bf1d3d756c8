"""Python cycle simulator of the metahw accelerator (docs/microarchitecture.md).

`Simulator(program, hw).run(inputs)` executes one episode of a `Program` on a
`HardwareConfig` with its own datapath model, bit-identical to the golden executor and
cycle-exact against the closed form `episode_cycles`.
"""

from metahw.hardware import HardwareConfig, default_groups, derive_hardware
from metahw.sim.cost import CycleBudget, episode_cycles
from metahw.sim.simulator import Event, SimRun, Simulator, simulate

__all__ = [
    "CycleBudget",
    "Event",
    "HardwareConfig",
    "SimRun",
    "Simulator",
    "default_groups",
    "derive_hardware",
    "episode_cycles",
    "simulate",
]
