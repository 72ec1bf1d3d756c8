"""Lowering a passed episode graph to a Program (compiler/lower.py, quant_config.py): ops, formats, numerics."""

import json

import numpy as np
import onnx
import pytest
import torch
import yaml

from metahw.compiler.compile import compile_episode
from metahw.compiler.episode_io import program_inputs, program_logits
from metahw.compiler.golden import execute
from metahw.compiler.ir import Node
from metahw.compiler.lower import lower
from metahw.compiler.onnx_import import import_model
from metahw.compiler.passes import standard_pipeline
from metahw.compiler.program import Program
from metahw.compiler.quant_config import QuantConfig, load_overrides
from metahw.errors import UserError
from metahw.models import head
from metahw.models.episodes import EpisodeSampler
from metahw.models.export import episode_head, export_episode, reference_logits
from metahw.qformat import QFormat, format_for_range

EMBED = ["Conv2d"] * 4 + ["Flatten"]
OPS = {
    ("protonet", None): [*EMBED, "PrototypeAccumulate", *EMBED, "Distance", "ArgMin"],
    ("matchingnet", None): [*EMBED, *EMBED, "CosineAttention", "ArgMax"],
    ("protomaml", 2): [
        *EMBED,
        "PrototypeAccumulate",
        "ProtoHeadInit",
        "SGDHeadStep",
        "SGDHeadStep",
        *EMBED,
        "Dense",
        "ArgMax",
    ],
    ("anil", 2): [*EMBED, "SGDHeadStep", "SGDHeadStep", *EMBED, "Dense", "ArgMax"],
    ("protonet", 1): [*EMBED, "PrototypeAccumulate", "ProtoHeadInit", "SGDHeadStep", *EMBED, "Dense", "ArgMax"],
    ("protomaml", 0): [*EMBED, "PrototypeAccumulate", "ProtoHeadInit", *EMBED, "Dense", "ArgMax"],
    ("metasgd", None): [*EMBED, "SGDHeadStep", "SGDHeadStep", *EMBED, "Dense", "ArgMax"],
}
AGREEMENT_CASES = ["protonet", "matchingnet", "protomaml", "anil", "metasgd"]


def _formats(program: Program) -> dict[str, tuple]:
    return {b.name: (b.qformat, b.channel_fracs) for b in program.buffers}


def _changed(a: Program, b: Program) -> set[str]:
    fa, fb = _formats(a), _formats(b)
    assert fa.keys() == fb.keys()
    return {k for k in fa if fa[k] != fb[k]}


@pytest.mark.parametrize(("algorithm", "steps"), list(OPS))
def test_op_sequence(algorithm, steps, compiled):
    exported, result = compiled(algorithm, inner_steps=steps)
    program = result.program
    assert [op.op for op in program.ops] == OPS[algorithm, steps]
    names = [op.name for op in program.ops]
    assert names[:5] == [f"support.block{i}.conv" for i in range(4)] + ["support.flatten"]
    assert [n for n in names if n.startswith("query.")] == [f"query.block{i}.conv" for i in range(4)] + [
        "query.flatten"
    ]
    meta = program.meta
    assert (meta.algorithm, meta.ways, meta.shots, meta.queries) == (algorithm, 3, 2, 6)
    assert (meta.rounding, meta.overflow) == ("half_up", "saturate")
    buffers = program.buffer_map
    assert buffers["support_x"].shape == (6, 1, 28, 28) and buffers["query_x"].shape == (6, 1, 28, 28)
    assert buffers["support_x"].qformat == buffers["query_x"].qformat
    assert buffers["support_labels"].qformat == QFormat(2, 0, signed=False)
    assert buffers["scores"].shape == (6, 3) and buffers["prediction"].shape == (6,)
    assert {b.name for b in program.buffers_of("output")} == {"scores", "prediction"}
    if exported.spec.kind == "sgd":
        assert buffers["head.weight"].kind == buffers["head.bias"].kind == "state"


def test_sgd_head_formats_and_learning_rates(compiled):
    exported, result = compiled("metasgd")
    program = result.program
    buffers = program.buffer_map
    lr_w = buffers["head.lr_w"]
    assert lr_w.shape == (exported.learner.backbone_config.embedding_dim(),)
    want = exported.learner.head_lrs()[0].detach().numpy()
    np.testing.assert_allclose(lr_w.qformat.dequantize(program.weights["head.lr_w"]), want, atol=lr_w.qformat.scale)
    zero_init = program.weights["head.weight"], program.weights["head.bias"]
    assert not np.any(zero_init[0]) and not np.any(zero_init[1])
    steps = [op for op in program.ops if op.op == "SGDHeadStep"]
    assert len(steps) == 2 and {op.weight for op in steps} == {"head.weight"}
    assert steps[0].prob_format.bits == 16 and steps[0].grad_format.bits == 16


@pytest.mark.parametrize(("algorithm", "steps"), list(OPS))
def test_program_survives_save_and_load(algorithm, steps, compiled, tmp_path):
    program = compiled(algorithm, inner_steps=steps)[1].program
    loaded = Program.load(program.save(tmp_path / "build"))
    assert loaded == program
    assert loaded.to_json() == program.to_json()
    assert loaded.weights.keys() == program.weights.keys()


def _agreement(exported, program, split, episodes=6, queries=5):
    sampler = EpisodeSampler(split, 3, 2, queries, seed=11)
    agree, errors = [], []
    for _ in range(episodes):
        ep = sampler.sample()
        run = execute(program, program_inputs(program, ep))
        y = head.one_hot(torch.from_numpy(ep.support_y), 3)
        want = reference_logits(
            exported.learner, exported.spec, torch.from_numpy(ep.support_x), y, torch.from_numpy(ep.query_x)
        ).numpy()
        agree.append(run.values["prediction"] == want.argmax(-1))
        got = program_logits(program, run.values["scores"])
        if exported.spec.kind == "cosine":  # Matching Networks' scores are the class probabilities
            errors.append(np.abs(got - np.exp(want)).max())
        else:
            errors.append(np.abs(got - want).max() / np.abs(want).max())
    return float(np.mean(agree)), max(errors)


@pytest.mark.parametrize("algorithm", AGREEMENT_CASES)
def test_golden_predictions_agree_with_float(algorithm, compiled, test_split):
    exported, r16 = compiled(algorithm, bits=16, queries=15)
    _, r8 = compiled(algorithm, bits=8, queries=15)
    agree16, err16 = _agreement(exported, r16.program, test_split)
    agree8, _ = _agreement(exported, r8.program, test_split)
    assert agree16 >= 0.95, agree16
    assert agree8 >= 0.85, agree8
    # ProtoNet's ops are exact up to output rounding; the SGD and attention heads carry the
    # integer softmax's error (numerics.md section 6)
    assert err16 <= (1e-3 if algorithm == "protonet" else 0.1), err16


def test_conv_biases_are_never_clipped(learners, val_split):
    """A large folded bias (over the 32-bit range at the accumulator's frac at 16 bits) keeps its value."""
    learner = learners.make("protonet")
    with torch.no_grad():
        learner.backbone.blocks[2][1].bias[0] = 40.0
    model = export_episode(learner, episode_head(learner, 3, 2, None))
    result = compile_episode(model, QuantConfig(bits=16), val_split, 6, calibration_episodes=2)
    graph, program = result.graph, result.program
    buffers = program.buffer_map
    in_fmt = buffers["support_x"].qformat
    for i, block in enumerate(n for n in graph.nodes if n.op == "metahw.ConvBlock"):
        bias, weight = buffers[f"block{i}.conv.bias"], buffers[f"block{i}.conv.weight"]
        acc_frac = in_fmt.frac + weight.qformat.frac
        fracs = bias.axis0_fracs()
        assert np.all(fracs <= acc_frac)
        want = graph.constants[block.inputs[2]]
        err = np.abs(program.weights[bias.name] * 2.0**-fracs - want)
        assert np.all(err <= 2.0**-fracs / 2), block.name
        if i == 2:
            assert bias.qformat.frac < acc_frac and np.abs(want).max() > 30
        else:
            assert bias.qformat.frac == acc_frac  # where it fits, a bias is at the accumulator's frac
        in_fmt = buffers[f"support.block{i}.pool"].qformat


def test_per_channel_weights_get_channel_fracs(compiled):
    _, per_tensor = compiled("protonet", per_channel=False)
    _, result = compiled("protonet", per_channel=True)
    graph, program = result.graph, result.program
    some_differ = False
    for block in (n for n in graph.nodes if n.op == "metahw.ConvBlock"):
        weight = np.asarray(graph.constants[block.inputs[1]], np.float64)
        buf = program.buffer_map[f"{block.name}.weight"]
        tops = np.abs(weight).reshape(len(weight), -1).max(axis=1)
        want = tuple(format_for_range(-t, t, 16).frac for t in tops)
        assert buf.channel_fracs == want and buf.qformat == QFormat(16, min(want))
        some_differ |= len(set(want)) > 1
        ints = program.weights[buf.name]
        for o in range(len(weight)):  # each channel quantised at its own scale, within the bits
            np.testing.assert_array_equal(ints[o], QFormat(16, want[o]).quantize(weight[o]))
        assert per_tensor.program.buffer_map[buf.name].channel_fracs is None
    assert some_differ


def test_json_and_yaml_overrides_change_exactly_the_named_buffers(compiled, tmp_path):
    _, base = compiled("protomaml", bits=8, inner_steps=2)
    json_file = tmp_path / "o.json"
    json_file.write_text(json.dumps({"tensors": {"block1.conv.weight": {"bits": 6}}}))
    yaml_file = tmp_path / "o.yaml"
    yaml_file.write_text(
        yaml.safe_dump({"tensors": {"block2.pool": {"bits": 10, "frac": 6}, "head.lr_w": {"frac": 9}}})
    )
    json_over, yaml_over = load_overrides(json_file), load_overrides(yaml_file)
    assert json_over == {"block1.conv.weight": {"bits": 6}}

    _, r1 = compiled("protomaml", bits=8, inner_steps=2, overrides=json_over)
    top = float(np.abs(base.graph.constants["block1.conv.folded_weight"]).max())
    assert r1.program.buffer_map["block1.conv.weight"].qformat == format_for_range(-top, top, 6)
    # the bias follows the accumulator (input frac + weight frac); nothing else moves
    assert _changed(base.program, r1.program) == {"block1.conv.weight", "block1.conv.bias"}

    _, r2 = compiled("protomaml", bits=8, inner_steps=2, overrides=yaml_over)
    buffers = r2.program.buffer_map
    assert buffers["support.block2.pool"].qformat == buffers["query.block2.pool"].qformat == QFormat(10, 6, False)
    assert buffers["head.lr_w"].qformat == QFormat(16, 9, False)
    assert _changed(base.program, r2.program) == {
        "support.block2.pool",
        "query.block2.pool",
        "block3.conv.bias",
        "head.lr_w",
    }


def test_bias_override_is_honoured(compiled):
    _, base = compiled("protonet")
    _, result = compiled("protonet", overrides={"block0.conv.bias": {"bits": 24, "frac": 12}})
    assert result.program.buffer_map["block0.conv.bias"].qformat == QFormat(24, 12)
    assert _changed(base.program, result.program) == {"block0.conv.bias"}


def test_override_of_an_unknown_tensor_is_refused(learners, val_split):
    exported = learners.export("protonet")
    config = QuantConfig(overrides={"block9.pool": {"bits": 8}, "head.lr_w": {"bits": 8}})
    with pytest.raises(UserError, match=r"block9\.pool, head\.lr_w name no tensor.*block0\.conv\.weight"):
        compile_episode(exported.model, config, val_split, 6, calibration_episodes=1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"bits": 40}, "bits must be an integer in 2..32"),
        ({"bits": 8, "scale": 3}, "keys among bits, frac, signed"),
        (7, "must be a mapping"),
    ],
)
def test_bad_override_specs(spec, message):
    with pytest.raises(UserError, match=message):
        QuantConfig(overrides={"images": spec})


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.json", "{not json", "not valid JSON/YAML"),
        ("bad.yaml", "tensors: [1, 2", "not valid JSON/YAML"),
        ("flat.yaml", "images: {bits: 8}\n", "must hold a mapping 'tensors"),
        ("list.json", "[1, 2]", "must hold a mapping 'tensors"),
    ],
)
def test_bad_override_files(name, text, message, tmp_path):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_overrides(path)
    with pytest.raises(UserError, match="does not exist"):
        load_overrides(tmp_path / "missing.yaml")


def test_qat_ranges_take_precedence_over_calibration(learners, val_split):
    exported = learners.export("protonet")
    plain = compile_episode(exported.model, QuantConfig(bits=8), val_split, 6, calibration_episodes=2)
    tops = [60.0, 0.3, 20.0, 0.05]
    model = onnx.ModelProto()
    model.CopyFrom(exported.model)
    model.metadata_props.add(key="qat", value=json.dumps({"bits": 8, "activation_max": tops}))
    qat = compile_episode(model, QuantConfig(bits=8), val_split, 6, calibration_episodes=2)
    for i, top in enumerate(tops):
        want = format_for_range(0.0, top, 8, signed=False)
        for chain in ("support", "query"):
            assert qat.program.buffer_map[f"{chain}.block{i}.pool"].qformat == want
            assert plain.program.buffer_map[f"{chain}.block{i}.pool"].qformat != want
    assert qat.program.buffer_map["query.features"].qformat == format_for_range(0.0, 0.05, 8, signed=False)


def _graph(compiled):
    return compiled("protonet")[1].graph


def _without(graph, op):
    return graph.with_nodes([n for n in graph.nodes if n.op != op])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda g: g.with_nodes(g.nodes[1:]), r"expected Concat \(support and query images\)"),
        (lambda g: _without(g, "metahw.ConvBlock"), "Flatten reading 'block3.pool', which is no earlier value"),
        (lambda g: _without(g, "Flatten"), "the embedding has no Flatten before the support/query Slices"),
        (lambda g: g.with_nodes([n for n in g.nodes if n.name != "query_slice"]), r"expected Slice \(query features"),
        (lambda g: _without(g, "ArgMax"), r"expected ArgMax \(predicted class\)"),
        (
            lambda g: g.with_nodes([*g.nodes[:-1], Node("metahw.ProtoHead", "again", (), ("x",)), g.nodes[-1]]),
            "cannot lower the episode head metahw.ProtoHead -> metahw.ProtoHead: supported heads are ProtoHead",
        ),
        (lambda g: g.with_nodes([*g.nodes[:-2], g.nodes[-1]]), r"episode head \(empty\)"),
    ],
)
def test_unsupported_graph_structure(edit, message, compiled):
    graph = _graph(compiled)
    ranges = compiled("protonet")[1].ranges
    with pytest.raises(UserError, match=message):
        lower(edit(graph), ranges, QuantConfig(), 6)


def test_unsupported_conv_and_bad_arguments(compiled):
    exported, result = compiled("protonet")
    graph, ranges = result.graph, result.ranges
    conv = next(n for n in graph.nodes if n.op == "metahw.ConvBlock")
    wide = Node(conv.op, conv.name, conv.inputs, conv.outputs, {**conv.attrs, "pads": [3, 3, 3, 3]})
    with pytest.raises(UserError, match="a 3x3 convolution with padding 3"):
        lower(graph.with_nodes([wide if n is conv else n for n in graph.nodes]), ranges, QuantConfig(), 6)
    with pytest.raises(UserError, match="`queries` must be >= 1"):
        lower(graph, ranges, QuantConfig(), 0)
    with pytest.raises(UserError, match="no calibration range for block1.pool"):
        lower(graph, {k: v for k, v in ranges.items() if k != "block1.pool"}, QuantConfig(), 6)
    assert lower(standard_pipeline(import_model(exported.model)), ranges, QuantConfig(bits=16), 6) == result.program


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 1}, "`bits` must be an integer in 2..16"),
        ({"bits": 17}, "`bits` must be an integer in 2..16"),
        ({"head_bits": 20}, "`head_bits` must be an integer in 2..16"),
        ({"weight_bits": 8.0}, "`weight_bits` must be an integer"),
        ({"rounding": "nearest"}, "unknown `rounding` mode 'nearest'"),
        ({"overflow": "clip"}, "unknown `overflow` mode 'clip'"),
    ],
)
def test_quant_config_is_validated(kwargs, message):
    with pytest.raises(UserError, match=message):
        QuantConfig(**kwargs)
