"""Users' own embeddings through the hls4ml backend: the layers they map onto, refusals, and C simulation == golden."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from metahw.compiler import kernels as K
from metahw.compiler.golden import execute
from metahw.compiler.program import Program
from metahw.errors import UserError
from metahw.hw.hls4ml import HlsSimulation, ProjectOptions, build_design
from tests.hw.hls4ml.user_programs import user_inputs, user_program


@pytest.fixture(scope="module")
def programs() -> dict[str, Program]:
    return {name: user_program(name) for name in ("mixed32", "strided")}


def test_each_op_maps_onto_hls4ml_layers_with_exact_types(programs):
    design = build_design(programs["mixed32"])
    classes = {layer["name"]: layer["class_name"] for layer in design.layers}
    layer = {layer["name"]: layer for layer in design.layers}
    assert [classes[f"block0_{part}"] for part in ("conv", "leaky")] == ["Conv2D", "LeakyReLU"]
    assert layer["block0_conv"]["stride_height"] == 2 and layer["block0_conv"]["pad_top"] == 0
    assert layer["block0_conv"]["out_height"] == 15 and layer["block0_conv"]["bias_data"] is None
    assert [classes[f"block1_{part}"] for part in ("conv", "leaky", "pool")] == [
        "Conv2D",
        "LeakyReLU",
        "AveragePooling2D",
    ]
    assert (classes["block4_add"], classes["block4_relu"], classes["block5_pool"]) == (
        "Merge",
        "Activation",
        "AveragePooling2D",
    )
    assert layer["block4_add"]["inputs"] == ["block3_conv", "block1_pool"]  # the skip connection
    assert classes["block6_gap"] == "MetahwGlobalAverage"  # 3x3: sum times the program's reciprocal
    assert classes["features"] == "Dense"  # the projection ends the embedding; the head reads it
    # LeakyReLU: the slope exactly in its param type, the result at slope_frac more fractional bits
    stem = next(op for op in design.structure.support_chain if isinstance(op, K.Conv2d))
    leaky = design.precisions["block1_leaky"]
    assert layer["block0_leaky"]["activ_param"] * 2**stem.leaky_frac == stem.leaky_slope
    assert design.precisions["block0_leaky"]["param"] == f"ap_ufixed<{stem.leaky_frac},0,AP_TRN,AP_WRAP>"
    # the average's window sum: 2 more fractional bits than the LeakyReLU result, so hls4ml's /4 is exact
    frac = {
        name: int(p.split("<")[1].split(",")[0]) - int(p.split(",")[1])
        for name, p in (("leaky", leaky["result"]), ("pool", design.precisions["block1_pool"]["accum"]))
    }
    assert frac["pool"] == frac["leaky"] + 2
    assert not design.unchecked


def test_a_power_of_two_global_average_is_hls4mls_own_layer():
    program = user_program("mixed32", (3, 36, 36))  # 17x17 -> 8x8 -> 4x4: the average of 16 values
    design = build_design(program)
    gap = next(layer for layer in design.layers if layer["name"] == "block6_gap")
    assert gap["class_name"] == "GlobalAveragePooling2D"
    pooled = program.buffer_map[next(op.input for op in program.ops if isinstance(op, K.GlobalAvgPool))].qformat
    accum = design.precisions["block6_gap"]["accum"]  # hls4ml divides by 16 at 4 more fractional bits: exact
    assert int(accum.split("<")[1].split(",")[0]) - int(accum.split(",")[1]) == pooled.frac + 4


def test_channels_last_flatten_is_a_reshape_of_hls4mls_layout(programs):
    design = build_design(programs["strided"])
    classes = [layer["class_name"] for layer in design.layers if layer["name"].startswith(("block", "features"))]
    assert classes == ["Conv2D", "Activation"] * 3 + ["Reshape"]
    assert [layer["stride_height"] for layer in design.layers if layer["class_name"] == "Conv2D"] == [2, 2, 2]


def test_a_residual_from_another_position_of_the_chain_is_a_different_computation(programs):
    program = programs["mixed32"]
    query_add = next(op for op in program.ops if isinstance(op, K.Add) and op.name.startswith("query"))
    conv_a = [op for op in program.ops if isinstance(op, K.Conv2d) and op.name.startswith("query")][2]
    ops = tuple(dataclasses.replace(op, residual=conv_a.output) if op is query_add else op for op in program.ops)
    with pytest.raises(UserError, match=r"Add 'support.embedding./Add' and Add 'query.embedding./Add' differ"):
        build_design(Program(program.meta, program.buffers, ops, program.weights))


@pytest.mark.parametrize("name", ["mixed32", "strided"])
def test_user_embeddings_c_simulation_equals_golden(programs, tmp_path, name):
    program = programs[name]
    simulation = HlsSimulation.build(build_design(program), tmp_path / name, ProjectOptions())
    for episode in range(2):
        inputs = user_inputs(program, episode)
        result = simulation.run_episode(inputs, episode)  # raises HlsMismatch at the first difference
        golden = execute(program, inputs)
        for buf in program.buffers_of("output"):
            assert np.array_equal(result.outputs[buf.name], golden.values[buf.name]), buf.name
        assert result.compared > 5000
