"""The hls4ml model description of a Program (no compiler): types, layers, refusals, golden steps, testbench rows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from metahw.compiler import kernels as K
from metahw.compiler.golden import execute
from metahw.compiler.program import Buffer, Program
from metahw.errors import UserError
from metahw.hw.hls4ml import build as hls_build
from metahw.hw.hls4ml import build_design
from metahw.hw.hls4ml.golden_steps import golden_steps
from metahw.hw.hls4ml.precision import accumulator_type, fixed, type_string
from metahw.hw.hls4ml.taps import Source
from metahw.qformat import QFormat
from tests.hw.hls4ml.hls_programs import QUERIES, SHOTS, WAYS, all_kernels_program, random_inputs, tiny_protonet_program


@pytest.mark.parametrize(
    ("rounding", "overflow", "modes"),
    [
        ("half_up", "saturate", "AP_RND,AP_SAT"),
        ("truncate", "saturate", "AP_TRN,AP_SAT"),
        ("half_even", "wrap", "AP_RND_CONV,AP_WRAP"),
    ],
)
def test_formats_become_ap_fixed_with_the_program_modes(rounding, overflow, modes):
    assert type_string(fixed(QFormat(8, 7, signed=False), rounding, overflow)) == f"ap_ufixed<8,1,{modes}>"
    assert type_string(fixed(QFormat(6, 9), rounding, overflow)) == f"ap_fixed<6,-3,{modes}>"
    assert type_string(fixed(QFormat(12, -2))) == "ap_fixed<12,14,AP_TRN,AP_WRAP>"  # exact-only: defaults


def test_accumulator_type_holds_the_worst_case_exactly():
    x, w, b = QFormat(8, 7, signed=False), QFormat(6, 5), QFormat(12, 8)
    acc = accumulator_type(x, w, 9, b)
    assert acc.width - acc.integer == 12 and acc.signed
    worst = 9 * 255 * -32 + (-2048 << 4)
    assert -(2 ** (acc.width - 1)) <= worst < -(2 ** (acc.width - 2))  # one bit fewer would not hold it


def test_embedding_accumulates_exactly_and_requantises_once_per_conv():
    program = all_kernels_program("half_even", "wrap")
    design = build_design(program)
    precision = design.precisions
    exact = precision["block0_conv"]["accum"]
    assert "AP_TRN,AP_WRAP" in exact
    assert precision["block0_conv"]["result"] == precision["block0_relu"]["result"] == exact
    assert precision["block0_pool"]["accum"] == exact
    b1 = program.buffer_map["support.b1"].qformat
    assert precision["block0_pool"]["result"] == type_string(fixed(b1, "half_even", "wrap"))
    assert precision["block2_conv"]["result"] == type_string(
        fixed(program.buffer_map["support.b3"].qformat, "half_even", "wrap")
    )
    conv = next(layer for layer in design.layers if layer["name"] == "block0_conv")
    w = program.weights["c1.w"]  # per-channel fracs (5, 6, 7): exact reals in one aligned type
    assert conv["weight_data"][..., 1] == pytest.approx(w[1].transpose(1, 2, 0) / 64.0, abs=0)


def test_every_head_op_becomes_metahw_layers():
    design = build_design(all_kernels_program())
    classes = {layer["name"]: layer["class_name"] for layer in design.layers}
    assert classes["support_memory"] == classes["label_memory"] == "MetahwSupportMemory"
    assert [classes[n] for n in ("protos", "l2", "nearest", "init_weight", "init_bias")] == [
        "MetahwPrototypeAccumulate",
        "MetahwDistance",
        "MetahwArgReduce",
        "MetahwProtoHeadInit",
        "MetahwProtoHeadInit",
    ]
    assert [classes[f"step1_{part}"] for part in ("grad", "weight", "bias")] == [
        "MetahwSGDGrad",
        "MetahwSGDUpdate",
        "MetahwSGDUpdate",
    ]
    assert [classes[n] for n in ("head", "fixed_head", "attend", "cos", "dotp", "soft")] == [
        "MetahwDense",
        "MetahwDense",
        "MetahwCosineAttention",
        "MetahwDistance",
        "MetahwDistance",
        "MetahwSoftmax",
    ]
    per_sample = {layer["name"]: layer.get("per_sample") for layer in design.layers}
    assert not any(per_sample[n] for n in ("protos", "init_weight", "step0_grad", "step1_bias"))
    assert all(per_sample[n] for n in ("l2", "head", "attend", "cos", "soft"))
    assert [o.buffer for o in design.outputs] == [b.name for b in design.program.buffers_of("output")]


def _replace_op(program: Program, name: str, **changes) -> Program:
    ops = tuple(dataclasses.replace(op, **changes) if op.name == name else op for op in program.ops)
    return Program(program.meta, program.buffers, ops, program.weights)


def test_support_and_query_embeddings_must_be_one_computation():
    program = all_kernels_program()
    changed = _replace_op(program, "query.c1", relu=False)
    with pytest.raises(UserError, match=r"Conv2d 'support.c1' and Conv2d 'query.c1' differ"):
        build_design(changed)


def test_an_op_without_an_hls4ml_layer_is_named():
    program = all_kernels_program()
    extra = Buffer("requantised", program.buffer_map["scores"].shape, QFormat(6, 2, signed=False), "output")
    ops = (*program.ops, K.Requant(name="squash", input="scores", output="requantised"))
    with pytest.raises(UserError, match=r"Requant 'squash' has no hls4ml layer; the supported head ops are"):
        build_design(Program(program.meta, (*program.buffers, extra), ops, program.weights))


def test_a_per_query_tensor_cannot_feed_an_adaptation_op():
    program = _replace_op(tiny_protonet_program(ways=3, shots=1, queries=3), "protos", features="query.features")
    with pytest.raises(
        UserError,
        match=r"PrototypeAccumulate 'protos' reads 'query.features', which the hls4ml "
        r"design has one row of per query image",
    ):
        build_design(program)


def test_outputs_wider_than_float64_are_refused():
    program = all_kernels_program()
    buffers = [
        dataclasses.replace(b, qformat=QFormat(56, 6, signed=False)) if b.name == "scores" else b
        for b in program.buffers
    ]
    with pytest.raises(UserError, match=r"output 'scores' has 56 bits"):
        build_design(Program(program.meta, buffers, program.ops, program.weights))


def test_golden_steps_record_every_write_and_end_where_golden_ends():
    program = all_kernels_program()
    inputs = random_inputs(program, 0)
    steps, golden = golden_steps(program, inputs), execute(program, inputs)
    for name in (b.name for b in program.buffers if b.kind != "weight"):
        last = [s for s in steps if s.buffer == name]
        assert np.array_equal(steps[last[-1]], golden.values[name]), name
    assert not np.array_equal(steps[Source("step0", "head.weight")], steps[Source("step1", "head.weight")])
    assert np.array_equal(steps[Source(None, "support_labels")], inputs["support_labels"])


def test_testbench_rows_follow_the_episode_protocol():
    program = all_kernels_program()
    design = build_design(program)
    inputs = random_inputs(program, 1)
    rows_in, rows_out = hls_build.testbench_rows(design, [inputs])
    m = WAYS * SHOTS
    assert rows_in.shape == (m + QUERIES, 16 + 1)
    assert rows_in[:m, -1].tolist() == inputs["support_labels"].tolist() and set(rows_in[m:, -1]) == {-1.0}
    assert rows_in[0, :16].tolist() == (inputs["support_x"][0, 0].reshape(-1) / 128).tolist()
    assert not rows_out[:m].any()  # every output is per query: 0 on support images
    golden = execute(program, inputs).values
    scores = program.buffer_map["scores"].qformat
    assert rows_out[m + 2, :WAYS].tolist() == (golden["scores"][2] * 2.0**-scores.frac).tolist()
