"""Whole fixture programs through the golden executor, against the float head math of models/head.py."""

import dataclasses

import numpy as np
import pytest
import torch

from metahw.compiler.golden import execute
from metahw.errors import UserError
from metahw.models import head
from tests.compiler.program_fixtures import (
    FEAT,
    episode_inputs,
    matchingnet_program,
    protomaml_program,
    protonet_program,
)


def _features(run):
    return (
        torch.from_numpy(FEAT.dequantize(run.values["support_f"])),
        torch.from_numpy(FEAT.dequantize(run.values["query_f"])),
    )


def test_protonet_episode_matches_float_head_on_its_features():
    program = protonet_program(ways=3, shots=2, queries=4)
    inputs = episode_inputs(3, 2, 4)
    run = execute(program, inputs)
    fs, fq = _features(run)
    y = head.one_hot(torch.from_numpy(inputs["support_y"]), 3).double()
    dist = -head.squared_l2_logits(fq, head.prototypes(fs, y)).numpy()
    # prototypes of 2 shots are exact (a shift) up to one output rounding; L2 is exact after that
    protos = FEAT.dequantize(run.values["protos"])
    assert np.abs(protos - head.prototypes(fs, y).numpy()).max() <= FEAT.scale / 2
    exact = ((FEAT.dequantize(run.values["query_f"])[:, None] - protos[None]) ** 2).sum(-1)
    assert np.array_equal(program.buffer_map["dist"].qformat.dequantize(run.values["dist"]), exact)
    assert np.abs(exact - dist).max() <= 8 * 2 * 8 * FEAT.scale  # D * 2 |q - c| * rounding of c
    assert run.values["pred"].tolist() == np.argmin(exact, axis=1).tolist()


def test_protomaml_episode_matches_float_head_on_its_features():
    program = protomaml_program(ways=3, shots=2, queries=4, steps=2)
    inputs = episode_inputs(3, 2, 4, seed=3)
    run = execute(program, inputs)
    fs, fq = _features(run)
    y = head.one_hot(torch.from_numpy(inputs["support_y"]), 3).double()
    w, b = head.proto_head_init(head.prototypes(fs, y))
    w, b = head.adapt_head(w, b, fs, y, 2, 2.0**-3, 2.0**-3)
    logits = head.linear_logits(fq, w, b).numpy()
    got = program.buffer_map["logits"].qformat.dequantize(run.values["logits"])
    assert np.abs(got - logits).max() <= 0.02 * np.abs(logits).max()
    assert run.values["pred"].tolist() == np.argmax(got, axis=1).tolist()
    assert {"sgd0/logits", "sgd0/probs", "sgd0/grad", "sgd1/grad", "head.w", "head.b"} <= set(run.saturation)


def test_matchingnet_episode_matches_float_head_on_its_features():
    program = matchingnet_program(ways=3, shots=2, queries=4)
    inputs = episode_inputs(3, 2, 4, seed=5)
    run = execute(program, inputs)
    fs, fq = _features(run)
    y = head.one_hot(torch.from_numpy(inputs["support_y"]), 3).double()
    probs = head.cosine_attention_logits(fq, fs, y, 10.0).exp().numpy()
    got = program.buffer_map["probs"].qformat.dequantize(run.values["probs"])
    assert np.abs(got - probs).max() <= 0.01
    assert run.values["pred"].tolist() == np.argmax(run.values["probs"], axis=1).tolist()


def test_run_returns_every_buffer_and_leaves_the_program_untouched():
    program = protomaml_program()
    before = {k: v.copy() for k, v in program.weights.items()}
    first = execute(program, episode_inputs(3, 2, 4))
    second = execute(program, episode_inputs(3, 2, 4))
    assert set(first.values) == {b.name for b in program.buffers}
    assert all(np.array_equal(first.values[k], second.values[k]) for k in first.values)
    assert all(np.array_equal(before[k], program.weights[k]) for k in before)
    assert all(v.dtype == np.int64 for v in first.values.values())


def test_overflow_modes_count_the_same_elements():
    program = protonet_program()
    loud = dataclasses.replace(program, weights={**program.weights, "conv1.w": np.full((2, 1, 3, 3), 127)})
    wrapped = dataclasses.replace(loud, meta=dataclasses.replace(loud.meta, overflow="wrap"))
    sat, wrap = execute(loud, episode_inputs(3, 2, 4)), execute(wrapped, episode_inputs(3, 2, 4))
    assert sat.saturation["s1"] == wrap.saturation["s1"] > 0
    assert sat.values["s1"].max() == 127 and not np.array_equal(sat.values["s1"], wrap.values["s1"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda i: i.pop("query_x"), "missing \\['query_x'\\]"),
        (lambda i: i.update(extra=np.zeros(1)), "unexpected \\['extra'\\]"),
        (lambda i: i.update(query_x=np.zeros((4, 1, 4, 4))), "must be integers"),
        (lambda i: i.update(query_x=np.zeros((5, 1, 4, 4), np.int64)), "shape"),
        (lambda i: i.update(query_x=np.full((4, 1, 4, 4), 200)), "outside its format"),
    ],
)
def test_bad_inputs_raise_user_error(change, message):
    inputs = episode_inputs(3, 2, 4)
    change(inputs)
    with pytest.raises(UserError, match=message):
        execute(protonet_program(), inputs)
