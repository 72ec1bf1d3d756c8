"""Whole episodes of every head family on the simulator: bit-exact against golden, cycle-exact against the formula."""

import numpy as np
import pytest

from metahw.compiler.compile import compile_episode
from metahw.compiler.episode_io import program_inputs
from metahw.compiler.kernels import timing
from metahw.compiler.quant_config import QuantConfig
from metahw.models.checkpoint import load_checkpoint
from metahw.models.episode_sources import omniglot_episodes, omniglot_sampler
from metahw.models.export import episode_head, export_episode
from metahw.models.zoo import zoo_names
from metahw.sim import HardwareConfig, Simulator, default_groups
from metahw.sim.episodes import program_shape, simulate_episodes
from metahw.sim.trace import KINDS, vcd_text
from tests.compiler.program_fixtures import episode_inputs, matchingnet_program, protomaml_program, protonet_program
from tests.sim.harness import check

GEOMETRIES = [HardwareConfig(lanes=1), HardwareConfig(lanes=8, groups=2, stream_elements=3), HardwareConfig(lanes=64)]


@pytest.mark.parametrize("make", [protonet_program, protomaml_program, matchingnet_program])
@pytest.mark.parametrize("hw", GEOMETRIES, ids=lambda hw: f"P{hw.lanes}G{hw.groups}")
def test_fixture_programs(make, hw):
    check(make(), episode_inputs(3, 2, 4, seed=hw.lanes), hw)


@pytest.mark.parametrize(
    ("algorithm", "config"),
    [
        ("protonet", {}),
        ("protomaml", {"rounding": "half_even"}),
        ("maml", {"per_channel": True}),
        ("metasgd", {"overflow": "wrap"}),
        ("matchingnet", {"rounding": "truncate"}),
    ],
)
def test_lowered_episodes(lowered, test_split, algorithm, config):
    program = lowered(algorithm, **config).program
    sampler = omniglot_sampler(test_split, program_shape(program), seed=3)
    for hw in (HardwareConfig(lanes=4), HardwareConfig(lanes=16, groups=4, stream_elements=5)):
        check(program, program_inputs(program, sampler.sample()), hw)


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_episodes(omniglot, test_split, name):
    """Every shipped model, compiled at 8 bits for 5-way 1-shot: whole episodes bit-exact, and it classifies."""
    learner = load_checkpoint(f"zoo:{name}").learner
    model = export_episode(learner, episode_head(learner, 5, 1, None))
    program = compile_episode(model, QuantConfig(bits=8), omniglot.split("val"), 75, calibration_episodes=2).program
    hw = HardwareConfig(lanes=64, groups=default_groups(program, 64))
    runs = simulate_episodes(program, hw, omniglot_episodes(test_split, program_shape(program), 2, seed=1))
    assert runs.matched == 2 and runs.mismatches == []
    assert runs.accuracy.mean > 0.4  # twice chance: a trained model survives compilation and simulation


def test_conv_cycles_by_hand():
    """support.block: B=6 images, C=1, O=2, 4x4 with pool, P=4 lanes in G=2 groups (L=2)."""
    program = protonet_program(ways=3, shots=2, queries=4)
    run = Simulator(program, HardwareConfig(lanes=4, groups=2)).run(episode_inputs(3, 2, 4))
    # the 3x3 taps inside a 4x4 input with padding 1: rows 2, 3, 3, 2 of the kernel per output row
    taps = (2 + 3 + 3 + 2) * (2 + 3 + 3 + 2)
    channels, channel_tiles, groups = 1, 1, 3
    per_group = 1 + channel_tiles * channels * taps + 13  # T_ISSUE + beats + D_MAC
    assert run.cycles["conv1_s"] == groups * per_group == 342
    assert run.lane_macs["conv1_s"] == 6 * 2 * channels * taps
    # the query images stream in per group: 2 images of 16 pixels, E = 8 per beat
    assert run.cycles["stream_in query_x"] == 2 * (1 + 32 // 8 + 1)


def test_vcd_trace_follows_the_instructions():
    program = protonet_program()
    run = Simulator(program, HardwareConfig(lanes=4, clock_mhz=250)).run(episode_inputs(3, 2, 4))
    text = vcd_text(run, 250)
    assert text.startswith("$version metahw cycle simulator $end")
    assert "1=stream_in support_x" in text and "$timescale 1 ps $end" in text
    stamps = [int(line[1:]) for line in text.splitlines() if line.startswith("#")]
    assert stamps == sorted(stamps) and stamps[-1] == run.total_cycles * 4000
    assert text.count("\n1#") == 1 and text.rstrip().endswith("0#")  # done pulses once, at the end


def test_vcd_trace_has_a_code_for_every_instruction_kind():
    """A Winograd design's conv instructions (kind WINO) are in the trace's kind legend too."""
    program = protonet_program()
    run = Simulator(program, HardwareConfig(lanes=4, winograd=True)).run(episode_inputs(3, 2, 4))
    assert {e.kind for e in run.events} <= set(KINDS)
    kind_codes = next(line for line in vcd_text(run, 250).splitlines() if line.startswith("$comment kind codes"))
    assert f"={timing.WINO} " in kind_codes


def test_traffic_counts_every_written_element():
    program = protomaml_program(steps=2)
    run = Simulator(program, HardwareConfig(lanes=8)).run(episode_inputs(3, 2, 4))
    sizes = {b.name: int(np.prod(b.shape)) for b in program.buffers}
    assert run.traffic["protos"][1] == sizes["protos"]
    assert run.traffic["head.w"][1] == 3 * sizes["head.w"]  # ProtoHeadInit, then two SGD steps
    # streamed in once; the conv reads a pixel once per kernel tap that covers it: 10 x 10 taps per 4x4 image
    assert run.traffic["support_x"] == (6 * 10 * 10, sizes["support_x"])
