"""Imported plain-PyTorch embeddings in Verilator: every output and the cycle count equal to the cycle simulator.

The networks exercise what the RTL gained for them: stride-2 convolutions without padding
or pooling (`strided`), a Linear projection after the flatten (`projection`), 3-channel
signed inputs with LeakyReLU, a 2x2 average and a bias-free convolution, and a final 6 x 2 x 2
map flattened channels last across lane words (`leaky_average`), and a residual block (Add + ReLU
in the MAP engine, its skip tensor in a third activation bank), a standalone max pool and a
7x7 global average with its 16-bit reciprocal (`residual`). Two of them run with single-port
activation banks (`act_ports` 1, the iCE40's SPRAM): a bank read in a cycle that writes it
would return stale data and fail the comparison. Three run two lane groups (G = 2: two images
at once in each activation word, the heads on the whole array): the SGD head, the attention
head and the prototype head after a strided, a residual and a channels-last flattened embedding.
"""

from __future__ import annotations

import pytest

from metahw.hardware import HardwareConfig, derive_hardware
from metahw.hw.amaranth.build import build_rtl
from metahw.hw.amaranth.spec import rtl_plan
from metahw.hw.amaranth.verilator import compare_with_sim, compile_testbench, run_rtl
from metahw.sim.simulator import Simulator
from tests.compiler.own_programs import own_inputs, own_program


@pytest.mark.parametrize(
    ("network", "head", "lanes", "groups", "act_ports"),
    [
        ("strided", "anil", 8, 2, 1),
        ("projection", "protomaml", 4, 1, 2),
        ("leaky_average", "protonet", 8, 2, 2),
        ("pointwise", "protonet", 4, 1, 2),
        ("residual", "matchingnet", 16, 2, 1),
    ],
)
def test_own_embedding_in_verilator_equals_the_simulator(network, head, lanes, groups, act_ports, tmp_path):
    program = own_program(network, head).program
    hw = derive_hardware(program, base=HardwareConfig(lanes=lanes, groups=groups, act_ports=act_ports))
    out = build_rtl(program, hw, tmp_path / "rtl")
    rp = rtl_plan(program, hw)
    episodes = own_inputs(own_program(network, head), count=2)
    runs = run_rtl(compile_testbench(out), rp, episodes, tmp_path / "run")
    simulator = Simulator(program, hw)
    for k, (run, inputs) in enumerate(zip(runs, episodes)):
        sim = simulator.run(inputs)
        compare_with_sim(rp, run, sim, k)
        assert run.total_cycles == sim.total_cycles
