"""Every kernel op of the registry runs on every engine: the golden executor, the simulator, the RTL, hls4ml.

A new op registered in `compiler/kernels` fails here until each engine has its lowering, or
until the op is listed below with the documented reason an engine refuses it.
"""

from __future__ import annotations

import inspect

import pytest

from metahw.compiler.kernels import KERNELS, Kernel
from metahw.hw.amaranth.ops import LOWERINGS as RTL
from metahw.hw.hls4ml.ops import LOWERINGS as HLS
from metahw.sim.machine import SCHEDULES
from metahw.sim.simulator import Simulator  # noqa: F401 - importing the simulator registers every op's schedule

#: each engine's lowerings as (kernel class, function) pairs: each function lives in a module named like its kernel's
LOWERINGS = {
    "simulator": list(SCHEDULES.items()),
    "rtl": [(kernel, fn) for kernel, places in RTL.items() for fn in places.values()],
    "hls4ml": [(kernel, fn) for kernel, places in HLS.items() for fn in places.values()],
}

#: ops an engine refuses, with the reason (documented in the engine's docs page); none today
REFUSED: dict[str, dict[str, str]] = {"rtl": {}, "hls4ml": {}}

ENGINES = {
    "simulator": set(SCHEDULES),
    "rtl": set(RTL),
    "hls4ml": set(HLS),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_op_has_semantics_cycles_and_a_lowering_on_every_engine(name: str):
    kernel = KERNELS[name]
    assert issubclass(kernel, Kernel) and not inspect.isabstract(kernel)  # execute, cycles, macs, infer defined
    missing = [engine for engine, ops in ENGINES.items() if kernel not in ops and name not in REFUSED.get(engine, {})]
    assert missing == [], f"{name} has no lowering on {', '.join(missing)} and no documented refusal"


def test_the_engines_lower_only_registered_ops():
    registered = set(KERNELS.values())
    for engine, ops in ENGINES.items():
        assert ops <= registered, (engine, ops - registered)


def family(module: str) -> str:
    """The kernel family of a module: its last name (`metahw.sim.ops.pool` -> `pool`)."""
    return module.rsplit(".", 1)[1]


@pytest.mark.parametrize("engine", sorted(LOWERINGS))
def test_each_lowering_lives_in_the_module_named_like_its_kernels(engine: str):
    misplaced = {
        kernel.__name__: fn.__module__
        for kernel, fn in LOWERINGS[engine]
        if family(fn.__module__) != family(kernel.__module__)
    }
    assert misplaced == {}, f"{engine}: each op's lowering belongs in <backend>/ops/<kernel module>.py"


def test_segment_ops_lower_to_the_segment_engines_and_head_ops_to_the_head():
    for kernel, places in RTL.items():
        assert set(places) <= ({"conv", "map", "flatten"} if kernel.segment else {"head"}), (kernel.__name__, places)
