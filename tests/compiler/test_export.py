"""Whole-episode ONNX export (models/export.py, models/export_check.py): structure, numerics, QAT, errors."""

import ast
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from metahw.errors import UserError
from metahw.models import head
from metahw.models.episodes import EpisodeSampler
from metahw.models.export import DOMAIN, IR_VERSION, EpisodeHead, episode_head, export_episode, reference_logits
from metahw.models.export_check import check_export, ort_session
from metahw.models.qat import fake_quantize, quantized_learner, weight_format

#: The `metahw` head nodes (op type, node name) of each learner's default 3-way 2-shot episode.
HEAD_NODES = {
    "protonet": [("ProtoHead", "proto_head")],
    "matchingnet": [("CosineAttentionHead", "cosine_attention_head")],
    "protomaml": [("ProtoHeadInit", "head_init")]
    + [("SGDHeadStep", f"sgd_head_step_{s}") for s in range(5)]
    + [("LinearHead", "linear_head")],
    "anil": [("SGDHeadStep", f"sgd_head_step_{s}") for s in range(10)] + [("LinearHead", "linear_head")],
    "maml": [("SGDHeadStep", f"sgd_head_step_{s}") for s in range(10)] + [("LinearHead", "linear_head")],
    "metasgd": [("SGDHeadStep", f"sgd_head_step_{s}") for s in range(2)] + [("LinearHead", "linear_head")],
}
FUNCTIONS = {"Prototypes", "ProtoHead", "ProtoHeadInit", "LinearHead", "SGDHeadStep", "CosineAttentionHead"}
BACKBONE_OPS = ["Conv", "BatchNormalization", "Relu", "MaxPool"] * 4 + ["Flatten"]


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _feeds_and_reference(exported, split, episodes: int = 3, queries: int = 2, seed: int = 5):
    sampler = EpisodeSampler(split, exported.spec.ways, exported.spec.shots, queries, seed=seed)
    for _ in range(episodes):
        ep = sampler.sample()
        y = head.one_hot(torch.from_numpy(ep.support_y), exported.spec.ways)
        want = reference_logits(
            exported.learner, exported.spec, torch.from_numpy(ep.support_x), y, torch.from_numpy(ep.query_x)
        ).numpy()
        yield {"support_x": ep.support_x, "support_y": y.numpy(), "query_x": ep.query_x}, want


@pytest.mark.parametrize("algorithm", list(HEAD_NODES))
def test_export_structure(algorithm, learners):
    exported = learners.export(algorithm)
    model = exported.model
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION
    assert [i.name for i in model.graph.input] == ["support_x", "support_y", "query_x"]
    assert [o.name for o in model.graph.output] == ["logits", "prediction"]
    assert {(f.domain, f.name) for f in model.functions} == {(DOMAIN, name) for name in FUNCTIONS}
    nodes = list(model.graph.node)
    head_nodes = [(n.op_type, n.name) for n in nodes if n.domain == DOMAIN]
    assert head_nodes == HEAD_NODES[algorithm]
    plain = [n.op_type for n in nodes if n.domain != DOMAIN]
    assert plain == ["Concat", *BACKBONE_OPS, "Slice", "Slice", "ArgMax"]
    meta = {p.key: p.value for p in model.metadata_props}
    spec = exported.spec
    assert meta["algorithm"] == algorithm and meta["head"] == spec.kind
    assert (int(meta["ways"]), int(meta["shots"]), int(meta["inner_steps"])) == (3, 2, spec.inner_steps)
    assert "qat" not in meta


@pytest.mark.parametrize(
    ("algorithm", "init"), [("protomaml", "prototypes"), ("anil", "zeros"), ("maml", "zeros"), ("metasgd", "zeros")]
)
def test_sgd_head_init_and_learning_rates(algorithm, init, learners):
    exported = learners.export(algorithm)
    assert exported.spec.kind == "sgd" and exported.spec.init == init
    inits = _initializers(exported.model)
    dim = exported.learner.backbone_config.embedding_dim()
    if init == "zeros":
        np.testing.assert_array_equal(inits["head_w_0"], np.zeros((3, dim), np.float32))
        np.testing.assert_array_equal(inits["head_b_0"], np.zeros(3, np.float32))
    else:
        assert "head_w_0" not in inits
    lr_w, lr_b = exported.learner.head_lrs()
    np.testing.assert_array_equal(inits["head_lr_w"], np.asarray(torch.as_tensor(lr_w).detach(), np.float32))
    np.testing.assert_array_equal(inits["head_lr_b"], np.asarray(torch.as_tensor(lr_b).detach(), np.float32))
    if algorithm == "metasgd":  # per-element rates: one per feature, not all equal
        assert inits["head_lr_w"].shape == (dim,) and len(np.unique(inits["head_lr_w"])) == dim


def test_matchingnet_exports_its_learned_scale(learners):
    exported = learners.export("matchingnet")
    scale = _initializers(exported.model)["attention_scale"]
    np.testing.assert_allclose(scale, 30.0, rtol=1e-6)


@pytest.mark.parametrize("algorithm", list(HEAD_NODES))
def test_onnxruntime_equals_pytorch(algorithm, learners, test_split):
    exported = learners.export(algorithm)
    session = ort_session(exported.model)
    for feed, want in _feeds_and_reference(exported, test_split):
        logits, prediction = session.run(None, feed)
        assert logits.shape == want.shape == (6, 3)
        assert np.abs(logits - want).max() / np.abs(want).max() <= 1e-4
        np.testing.assert_array_equal(prediction, want.argmax(-1))
    report = check_export(exported.model, exported.learner, exported.spec, test_split, 3, 2, progress=False)
    assert report.passed() and report.predictions_equal and report.max_relative_error <= 1e-4


def test_export_check_detects_a_wrong_graph(learners, test_split):
    exported = learners.export("protomaml")
    model = onnx.ModelProto()
    model.CopyFrom(exported.model)
    weight = next(t for t in model.graph.initializer if t.name == "block2.conv.weight")
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.01, weight.name))
    report = check_export(model, exported.learner, exported.spec, test_split, 2, 2, progress=False)
    assert not report.passed() and report.max_relative_error > 1e-4


def test_inner_steps_are_unrolled(learners):
    exported = learners.export("protonet", inner_steps=3)
    assert exported.spec == EpisodeHead("sgd", 3, 2, 3, "prototypes")
    ops = [n.op_type for n in exported.model.graph.node if n.domain == DOMAIN]
    assert ops == ["ProtoHeadInit", "SGDHeadStep", "SGDHeadStep", "SGDHeadStep", "LinearHead"]
    assert learners.export("anil", inner_steps=1).spec == EpisodeHead("sgd", 3, 2, 1, "zeros")
    assert learners.export("protomaml", inner_steps=0).spec == EpisodeHead("sgd", 3, 2, 0, "prototypes")
    assert learners.export("matchingnet", inner_steps=0).spec == EpisodeHead("cosine", 3, 2)


@pytest.mark.parametrize(
    ("algorithm", "ways", "shots", "steps", "message"),
    [
        ("protonet", 5, 1, -1, "`inner_steps` must be >= 0"),
        ("anil", 5, 1, -3, "`inner_steps` must be >= 0"),
        ("matchingnet", 5, 1, 2, "must be 0"),
        ("anil", 5, 1, 0, "needs `inner_steps` >= 1"),
        ("metasgd", 5, 1, 0, "needs `inner_steps` >= 1"),
        ("protonet", 1, 1, None, "`ways` >= 2"),
        ("protonet", 5, 0, None, "`shots` >= 1"),
    ],
)
def test_bad_episode_arguments(algorithm, ways, shots, steps, message, learners):
    with pytest.raises(UserError, match=message):
        episode_head(learners.make(algorithm, width=4), ways, shots, steps)


def test_qat_checkpoint_exports_quantised_weights_and_ranges(learners, test_split):
    learner = quantized_learner(learners.make("protonet", width=4), bits=4)
    learner.backbone.observe(torch.from_numpy(test_split.images[:8, 0, None].astype(np.float32) / 255.0))
    learner.eval()
    spec = episode_head(learner, 3, 2, None)
    model = export_episode(learner, spec)
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    inits = _initializers(model)
    for i, block in enumerate(learner.backbone.blocks):
        w = block[0].weight.detach()
        fmt = weight_format(w, 4)
        got = inits[f"block{i}.conv.weight"]
        np.testing.assert_array_equal(got, fake_quantize(w, fmt).detach().numpy())
        ints = got * 2.0**fmt.frac
        assert np.array_equal(ints, np.round(ints)) and fmt.contains(ints.astype(np.int64))
    meta = {p.key: p.value for p in model.metadata_props}
    qat = json.loads(meta["qat"])
    assert qat["bits"] == 4
    assert qat["activation_max"] == learner.backbone.activation_ranges()
    assert all(v > 0 for v in qat["activation_max"])
    assert ast.literal_eval(meta["backbone"])["qat_bits"] == 4
    report = check_export(model, learner, spec, test_split, 2, 2, progress=False)
    assert report.passed()
