"""The simulator's op schedules, one module per kernel family, named like `compiler/kernels/<family>.py`.

Each module registers its kernels' schedules with `sim.machine.simulates` into
`sim.machine.SCHEDULES`; importing this package imports every module in it, so a new family
module needs no edit here. Sequences several ops share live in `sim/sequences.py`.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
