"""The episode's roles are data in the Program: renaming every episode buffer changes no result.

A program whose images, labels, features and outputs carry other names than the compiler's
(`sx`, `sy`, `qx`, ...), with `EpisodeRoles` naming them, must give the golden executor's
integers, the simulator's cycles and phases, the RTL plan's instructions and the hls4ml design
of the original; roles that name a missing or unfit buffer are one UserError sentence.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from metahw.compiler.episode_io import program_inputs, program_logits
from metahw.compiler.golden import execute
from metahw.compiler.program import EpisodeRoles, Program
from metahw.compiler.stages import embedding_program, head_program
from metahw.errors import UserError
from metahw.hardware import HardwareConfig, derive_hardware
from metahw.hw.amaranth.isa import Instruction
from metahw.hw.amaranth.spec import rtl_plan
from metahw.hw.hls4ml.design import build_design
from metahw.hw.hls4ml.structure import episode_structure
from metahw.models.episodes import Episode
from metahw.sim.episodes import program_shape
from metahw.sim.simulator import Simulator
from tests.hw.amaranth.rtl_fixtures import tiny_protomaml, tiny_protonet
from tests.sim.random_programs import draw_config

#: the episode's inputs and features: every backend must find them by role
INPUTS = {"support_x": "sx", "support_labels": "sy", "query_x": "qx", "support.features": "sf", "query.features": "qf"}
#: the outputs too (the hls4ml design names its output layers after them, so it is compared on INPUTS only)
ALL = INPUTS | {"scores": "dist", "prediction": "pred"}
PROGRAMS = {"protonet": tiny_protonet, "protomaml": tiny_protomaml}
HW = HardwareConfig(lanes=4, stream_elements=2)


def renamed(program: Program, names: dict[str, str]) -> Program:
    """`program` with buffers renamed by `names` wherever they are declared, read, written or given a role."""

    def new(name: str | None) -> str | None:
        return names.get(name, name)

    def op_renamed(op):  # noqa: ANN001, ANN202 - a kernel op
        fields = (f.name for f in dataclasses.fields(op) if f.name != "name")
        return dataclasses.replace(op, **{f: new(getattr(op, f)) for f in fields if isinstance(getattr(op, f), str)})

    return Program(
        program.meta,
        tuple(dataclasses.replace(b, name=new(b.name)) for b in program.buffers),
        tuple(op_renamed(op) for op in program.ops),
        {new(k): v for k, v in program.weights.items()},
        EpisodeRoles(**{role: new(name) for role, name in program.roles.to_json().items()}),
    )


def _episode(program: Program, seed: int = 0) -> Episode:
    """Random float images in [0, 1) and balanced shuffled labels of the program's shape."""
    rng = np.random.default_rng(seed)
    meta, buffers = program.meta, program.buffer_map
    images = (buffers["support_x"].shape, buffers["query_x"].shape)
    labels = rng.permutation(np.repeat(np.arange(meta.ways), meta.shots))
    return Episode(rng.random(images[0], np.float32), labels, rng.random(images[1], np.float32))


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_renamed_episode_feeds_and_runs_the_same_in_the_golden_executor(name):
    program = PROGRAMS[name]()
    other = renamed(program, ALL)
    episode = _episode(program)
    inputs, other_inputs = program_inputs(program, episode), program_inputs(other, episode)
    assert set(other_inputs) == {"sx", "sy", "qx"}
    assert all(np.array_equal(inputs[k], other_inputs[ALL[k]]) for k in inputs)
    want, got = execute(program, inputs), execute(other, other_inputs)
    assert sorted(got.values) == sorted(ALL.get(k, k) for k in want.values)
    for key, value in want.values.items():
        assert np.array_equal(got.values[ALL.get(key, key)], value), key
    assert np.array_equal(program_logits(other, got.values["dist"]), program_logits(program, want.values["scores"]))
    assert program_shape(other) == program_shape(program)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_renamed_episode_splits_into_the_same_embedding_and_head(name):
    program = PROGRAMS[name]()
    other = renamed(program, ALL)
    assert embedding_program(other, 5) == renamed(embedding_program(program, 5), ALL)
    assert head_program(other) == renamed(head_program(program), ALL)
    assert embedding_program(other, 5).roles == EpisodeRoles(query_images="qx", query_features="qf")


def _sim_run(program: Program, hw: HardwareConfig, inputs: dict[str, np.ndarray]) -> tuple:
    run = Simulator(program, hw).run(inputs)
    return run.total_cycles, run.adaptation_cycles, run.query_cycles, run.values, run.saturation


@pytest.mark.parametrize("case", [*sorted(PROGRAMS), "random 0", "random 1", "random 2"])
def test_renamed_episode_simulates_with_the_same_cycles_phases_and_values(case):
    if case.startswith("random"):
        config = draw_config(16, int(case.split()[1]))
        program, hw, inputs = config.program, config.hw, config.inputs
    else:
        program = PROGRAMS[case]()
        hw = derive_hardware(program, base=HW)
        inputs = program_inputs(program, _episode(program, 1))
        assert derive_hardware(renamed(program, ALL), base=HW) == hw
    other = renamed(program, ALL)
    total, adaptation, query, values, saturation = _sim_run(program, hw, inputs)
    assert query > 0  # the query phase starts from the query images, whatever their name
    got = _sim_run(other, hw, {ALL.get(k, k): v for k, v in inputs.items()})
    assert got[:3] == (total, adaptation, query)
    assert {k: v.tolist() for k, v in got[3].items()} == {ALL.get(k, k): v.tolist() for k, v in values.items()}
    assert got[4] == {ALL.get(k, k): v for k, v in saturation.items()}


def _instructions(program: Program, names: dict[str, str]) -> list[Instruction]:
    """The RTL plan's instructions, streamed buffers named back by `names` (new -> old)."""
    out = []
    for ins in rtl_plan(program, derive_hardware(program, base=HW)).instructions:
        old = names.get(ins.buffer, ins.buffer)
        out.append(
            dataclasses.replace(ins, buffer=old, label=ins.label.replace(ins.buffer, old) if ins.buffer else ins.label)
        )
    return out


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_renamed_episode_gives_the_same_rtl_instructions(name):
    program = PROGRAMS[name]()
    back = {new: old for old, new in ALL.items()}
    assert _instructions(renamed(program, ALL), back) == _instructions(program, {})


def _json(value) -> str:  # noqa: ANN001 - hls4ml layer dicts hold numpy arrays
    return json.dumps(value, default=lambda a: a.tolist(), sort_keys=True)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_renamed_episode_gives_the_same_hls4ml_structure_and_layers(name):
    program = PROGRAMS[name]()
    other = renamed(program, INPUTS)
    want, got = episode_structure(program), episode_structure(other)
    assert (got.support_images, got.query_images, got.labels) == ("sx", "qx", "sy")
    assert (got.support_features, got.query_features) == ("sf", "qf")
    assert [op.name for op in got.support_chain + got.query_chain + got.head] == [
        op.name for op in want.support_chain + want.query_chain + want.head
    ]
    a, b = build_design(program), build_design(other)
    assert _json(b.layers) == _json(a.layers) and b.precisions == a.precisions


def test_roles_travel_through_program_json(tmp_path):
    other = renamed(tiny_protonet(), ALL)
    assert Program.load(other.save(tmp_path / "renamed")) == other
    assert Program.load(other.save(tmp_path / "renamed")).roles.query_images == "qx"


def test_a_version_1_file_gets_the_conventional_roles(tmp_path):
    program = tiny_protonet()
    folder = program.save(tmp_path / "old")
    doc = json.loads((folder / "program.json").read_text())
    del doc["roles"]
    (folder / "program.json").write_text(json.dumps(doc | {"version": 1}))
    loaded = Program.load(folder)
    assert loaded == program and loaded.roles == EpisodeRoles.conventional(b.name for b in program.buffers)
    assert loaded.roles.support_labels == "support_labels"


def _one_sentence(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert ". " not in message and "\n" not in message, message
    return message


@pytest.mark.parametrize(
    "roles, expected",
    [
        (EpisodeRoles(query_images="nowhere"), "episode role 'query_images' names buffer 'nowhere', which the"),
        (
            EpisodeRoles(support_images="c1.w"),
            "'support_images' (support images) needs a buffer of kind input and rank 4, but buffer 'c1.w' has kind",
        ),
        (
            EpisodeRoles(support_labels="qx"),
            "'support_labels' (support labels) needs a buffer of kind input and rank 1",
        ),
        (EpisodeRoles(prediction="sf"), "'prediction' (predicted classes) needs a buffer of kind output and rank 1"),
        (EpisodeRoles(support_images="sx", query_images="sx"), "buffer 'sx' has two episode roles"),
    ],
)
def test_bad_roles_are_one_user_error_sentence(roles, expected):
    program = renamed(tiny_protonet(), ALL)
    with pytest.raises(UserError) as exc:
        dataclasses.replace(program, roles=roles)
    assert expected in _one_sentence(exc)


def test_a_backend_names_the_role_a_program_lacks():
    """Renamed buffers without roles: no buffer has the conventional names, so no role is set."""
    program = renamed(tiny_protonet(), ALL)
    bare = Program(program.meta, program.buffers, program.ops, program.weights)
    assert bare.roles == EpisodeRoles()
    with pytest.raises(UserError) as exc:
        episode_structure(bare)
    assert _one_sentence(exc) == (
        "the hls4ml backend needs the program's support images (episode role 'support_images'), and it has none"
    )
