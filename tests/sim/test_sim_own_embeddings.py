"""Imported plain-PyTorch embeddings through the golden executor and the cycle simulator: every integer equal."""

import dataclasses

import pytest

from metahw.app.demo import demo_hardware
from metahw.compiler.golden import execute
from metahw.compiler.kernels import Add, AvgPool2d, Conv2d, Dense, Flatten, GlobalAvgPool, MaxPool2d
from metahw.errors import UserError
from metahw.hardware import HardwareConfig, default_groups, derive_hardware
from metahw.sim.cost import episode_cycles
from metahw.sim.episodes import differences
from metahw.sim.plan import build_plan, winograd_refusal
from metahw.sim.simulator import Simulator
from tests.compiler.own_programs import own_inputs, own_program

CASES = [
    ("protonet", "protonet"),
    ("strided", "anil"),
    ("projection", "protomaml"),
    ("rgb32", "protonet"),
    ("residual", "matchingnet"),
    ("view", "protonet"),
]


@pytest.mark.parametrize(("network", "head"), CASES)
@pytest.mark.parametrize("lanes", [4, 16])
def test_simulator_equals_golden_on_own_embeddings(network, head, lanes):
    result = own_program(network, head)
    program = result.program
    hw = HardwareConfig(lanes=lanes, groups=1)
    hw = dataclasses.replace(hw, groups=default_groups(program, lanes))
    simulator = Simulator(program, hw)
    cycles = set()
    for inputs in own_inputs(result):
        run = simulator.run(inputs)
        assert differences(run, execute(program, inputs)) == []
        budget = episode_cycles(program, hw)  # the closed-form formulas of every kernel
        assert (run.total_cycles, run.cycles) == (budget.total, budget.cycles)
        cycles.add(run.total_cycles)
    assert len(cycles) == 1


def test_own_embeddings_lower_to_the_new_kernels():
    ops = {name: {type(op) for op in own_program(name, head).program.ops} for name, head in CASES}
    assert Dense in ops["projection"] and Flatten in ops["projection"]
    strided = [op for op in own_program("strided", "anil").program.ops if isinstance(op, Conv2d)]
    assert {op.stride for op in strided} == {2} and not any(op.pool for op in strided)
    assert {Add, MaxPool2d, GlobalAvgPool} <= ops["residual"]
    assert AvgPool2d not in ops["residual"]
    flat = [op for op in own_program("strided", "anil").program.ops if isinstance(op, Flatten)]
    assert all(op.channels_last for op in flat)  # a 2x2 map: flattened as the accelerator stores it


def test_residual_skip_tensor_gets_a_third_bank():
    program = own_program("residual", "matchingnet").program
    plan = build_plan(program, HardwareConfig(lanes=8))
    memories = {p.memory for p in plan.placements}
    assert "AMEM2" in memories


def test_winograd_refuses_a_1x1_conv_and_the_demo_keeps_direct_convs():
    """A user network with a 1x1 conv: `--winograd` names it and why; the demo's default stays direct."""
    program = own_program("pointwise").program
    assert "it is 1x1, stride 1, with a fused 2x2 pool" in winograd_refusal(program)
    assert not demo_hardware(program, 4, None).winograd
    with pytest.raises(UserError, match=r"winograd=true cannot run Conv2d '[^']+': it is 1x1"):
        Simulator(program, derive_hardware(program, 4, winograd=True))
