"""The controller's plan of lowered programs: segments, stream order, phases, memory placement, fit."""

import pytest

from metahw.compiler.kernels.datapath import nbytes
from metahw.errors import UserError
from metahw.sim import HardwareConfig
from metahw.sim.plan import build_plan, check_fits
from tests.compiler.program_fixtures import matchingnet_program, protonet_program


def test_protonet_plan_streams_embeds_adapts_then_classifies(lowered):
    program = lowered("protonet").program
    plan = build_plan(program, HardwareConfig(lanes=8, groups=2))
    assert [(s.label, s.query) for s in plan.steps] == [
        ("segment support.block0.conv..support.flatten", False),
        ("stream_in support_labels", False),
        ("prototypes", False),
        ("segment query.block0.conv..query.flatten", True),
        ("distance", True),
        ("prediction", True),
        ("stream_out scores", True),
        ("stream_out prediction", True),
    ]
    support, query = plan.steps[0].segment, plan.steps[3].segment
    assert (support.streamed, support.batch, len(support.ops)) == ("support_x", 6, 5)
    assert (query.streamed, query.batch) == ("query_x", 6)
    memory = {p.name: p.memory for p in plan.placements}
    # the streamed images, then each layer's output, alternate between the ping-pong banks
    chain = ["support_x", *(f"support.block{i}.pool" for i in range(4))]
    assert [memory[n] for n in chain] == ["AMEM0", "AMEM1", "AMEM0", "AMEM1", "AMEM0"]
    assert memory["support.features"] == memory["prototypes"] == memory["support_labels"] == "SMEM"
    assert memory["query.features"] == "QBUF" and memory["scores"] == memory["prediction"] == "SMEM"
    assert {memory[b.name] for b in program.buffers_of("weight")} == {"WMEM"}
    block0 = program.buffer_map["support.block0.pool"]
    placed = next(p for p in plan.placements if p.name == block0.name)
    assert placed.nbytes == nbytes(2 * 4 * 14 * 14, block0.qformat.bits)  # one group of G = 2 images


def test_static_placements_do_not_overlap(lowered):
    for algorithm in ("protonet", "maml", "matchingnet"):
        plan = build_plan(lowered(algorithm).program, HardwareConfig(lanes=16, groups=4))
        for memory in ("WMEM", "SMEM", "QBUF"):
            spans = sorted((p.offset, p.end) for p in plan.placements if p.memory == memory)
            assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


def test_learned_head_init_is_copied_from_wmem_at_episode_start(lowered):
    program = lowered("maml").program
    plan = build_plan(program, HardwareConfig(lanes=8))
    assert [s.label for s in plan.steps[:2]] == ["init head.weight", "init head.bias"]
    names = {p.name: p.memory for p in plan.placements}
    assert names["head.weight (initial value)"] == "WMEM" and names["head.weight"] == "SMEM"
    assert any(name.startswith("exp table") for name in names) and "head scratch" in names


def test_check_fits_names_the_buffer_that_does_not_fit():
    program = protonet_program(ways=3, shots=2, queries=4)
    plan = build_plan(program, HardwareConfig())
    need = plan.memory_use()["SMEM"].end
    check_fits(program, HardwareConfig(support_bytes=need))
    last = plan.memory_use()["SMEM"]
    message = f"{last.name} needs {last.nbytes:,} bytes of SMEM at offset {last.offset:,}, but SMEM has {need - 1:,}"
    with pytest.raises(UserError, match=message):
        check_fits(program, HardwareConfig(support_bytes=need - 1))
    with pytest.raises(UserError, match="conv1.w needs 18 bytes of WMEM at offset 0, but WMEM has 10 bytes"):
        check_fits(program, HardwareConfig(weight_bytes=10))


def test_check_fits_names_the_tensor_that_needs_a_wider_datapath():
    program = protonet_program()
    message = "Distance 'l2': the difference of 'query_f' and 'protos' needs 9-bit operands, .* operand_bits=8"
    with pytest.raises(UserError, match=message):
        check_fits(program, HardwareConfig(operand_bits=8))
    with pytest.raises(UserError, match="CosineAttention 'attention': .* accumulators, but the config has acc_bits=40"):
        check_fits(matchingnet_program(), HardwareConfig(acc_bits=40))
