"""Bring your own model (models/embedding_*.py, `metahw export X.onnx --head H`): splice, numerics, errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import metahw
from metahw.errors import UserError
from metahw.models import head as heads
from metahw.models.embedding_check import check_embedding_episode, module_embedder, random_episodes
from metahw.models.embedding_export import embedding_episode, embedding_head
from metahw.models.embedding_onnx import module_to_onnx, prepare_embedding
from metahw.models.export import DOMAIN, IR_VERSION
from metahw.models.export_check import ort_session
from tests.models.user_networks import NETWORKS, build, export_onnx

HEAD_OPS = {
    "protonet": ["ProtoHead"],
    "matchingnet": ["CosineAttentionHead"],
    "protomaml": ["ProtoHeadInit"] + ["SGDHeadStep"] * 5 + ["LinearHead"],
    "anil": ["SGDHeadStep"] * 10 + ["LinearHead"],
}
#: One head per network for the CLI route, so that every head goes through the CLI too.
CLI_HEADS = {
    "protonet": "protonet",
    "strided": "matchingnet",
    "projection": "protomaml",
    "rgb32": "anil",
    "residual": "protonet",
    "view": "matchingnet",
}
SMALL = [name for name in NETWORKS if name != "protonet64"]
WAYS, SHOTS = 3, 2


def _reference(module: torch.nn.Module, head: str, sx: np.ndarray, y: torch.Tensor, qx: np.ndarray) -> np.ndarray:
    """The episode in plain PyTorch: the user's module, flatten(1), metahw's head math with its defaults."""
    with torch.no_grad():
        f = module(torch.from_numpy(np.concatenate([sx, qx]))).flatten(1)
        fs, fq = f[: len(sx)], f[len(sx) :]
        if head == "protonet":
            return heads.squared_l2_logits(fq, heads.prototypes(fs, y)).numpy()
        if head == "matchingnet":
            return heads.cosine_attention_logits(fq, fs, y, 10.0).numpy()
        if head == "protomaml":
            w, b = heads.proto_head_init(heads.prototypes(fs, y))
            steps, lr = 5, 0.1
        else:
            w, b, steps, lr = torch.zeros(y.shape[1], f.shape[1]), torch.zeros(y.shape[1]), 10, 0.5
        return heads.linear_logits(fq, *heads.adapt_head(w, b, fs, y, steps, lr, lr)).numpy()


def _assert_matches(
    model: onnx.ModelProto, module: torch.nn.Module, head: str, image: tuple, episodes: int = 2
) -> None:
    session = ort_session(model)
    source = random_episodes(image, WAYS, SHOTS, 2, seed=11)
    for _ in range(episodes):
        sx, sy, qx = next(source)
        y = heads.one_hot(torch.from_numpy(sy), WAYS)
        logits, prediction = session.run(None, {"support_x": sx, "support_y": y.numpy(), "query_x": qx})
        want = _reference(module, head, sx, y, qx)
        assert logits.shape == want.shape == (len(qx), WAYS)
        assert np.abs(logits - want).max() / np.abs(want).max() <= 1e-4
        np.testing.assert_array_equal(prediction, want.argmax(-1))


def _assert_episode_structure(model: onnx.ModelProto, head: str, image: tuple) -> None:
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION
    g = model.graph
    assert [i.name for i in g.input] == ["support_x", "support_y", "query_x"]
    assert [o.name for o in g.output] == ["logits", "prediction"]
    dims = [[d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in g.input]
    assert dims == [[WAYS * SHOTS, *image], [WAYS * SHOTS, WAYS], ["queries", *image]]
    plain = [n for n in g.node if n.domain != DOMAIN]
    assert (plain[0].op_type, list(plain[0].input), list(plain[0].output)) == (
        "Concat",
        ["support_x", "query_x"],
        ["images"],
    )
    assert [(n.op_type, n.name, n.output[0]) for n in plain[-4:]] == [
        ("Flatten", "flatten", "features"),
        ("Slice", "support_slice", "support_features"),
        ("Slice", "query_slice", "query_features"),
        ("ArgMax", "prediction", "prediction"),
    ]
    embedding = plain[1:-4]
    assert all(n.name.startswith("embedding.") for n in embedding)
    assert not {n.op_type for n in embedding} & {"Reshape", "Identity", "Shape", "Gather", "Unsqueeze", "Concat"}
    assert [n.op_type for n in g.node if n.domain == DOMAIN] == HEAD_OPS[head]
    assert g.node[-2].output[0] == "logits"
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["algorithm"] == head and (int(meta["ways"]), int(meta["shots"])) == (WAYS, SHOTS)
    assert json.loads(meta["embedding"])["input_shape"] == list(image)


@pytest.mark.parametrize("head", list(HEAD_OPS))
@pytest.mark.parametrize("name", SMALL)
def test_module_route(name, head):
    network, module = NETWORKS[name], build(name)
    model = metahw.export_embedding_episode(
        module, network.input_shape, head=head, ways=WAYS, shots=SHOTS, check_episodes=0
    )
    _assert_episode_structure(model, head, network.input_shape)
    _assert_matches(model, module, head, network.input_shape)


def test_full_width_protonet_encoder(tmp_path):
    module = build("protonet64")
    exported = embedding_episode(module, (1, 28, 28), "protonet", WAYS, SHOTS, check_episodes=0)
    assert exported.embedding.feature_dim == 64
    _assert_episode_structure(exported.model, "protonet", (1, 28, 28))
    _assert_matches(exported.model, module, "protonet", (1, 28, 28))
    path = export_onnx(module, (1, 28, 28), tmp_path / "encoder.onnx")
    from_file = embedding_episode(path, None, "protonet", WAYS, SHOTS, check_episodes=0)
    _assert_matches(from_file.model, module, "protonet", (1, 28, 28))


def test_builtin_check_runs_omniglot_or_random_images(data_dir):
    # ten unrolled float32 SGD steps on an untrained network: onnxruntime 1.32 lands 1.06e-4 (relative) from PyTorch
    small = embedding_episode(
        build("protonet"), (1, 28, 28), "anil", WAYS, SHOTS, check_episodes=3, data=data_dir, tolerance=1e-3
    )
    assert small.check.images == "Omniglot meta-test" and small.check.result.passed(1e-3)
    rgb = embedding_episode(build("rgb32"), (3, 32, 32), "protomaml", WAYS, SHOTS, check_episodes=3)
    assert rgb.check.images == "random, seed 0" and rgb.check.result.passed() and rgb.check.result.episodes == 3


def test_check_detects_a_wrong_graph():
    module = build("projection")
    exported = embedding_episode(module, (1, 28, 28), "protonet", WAYS, SHOTS, check_episodes=0)
    model = onnx.ModelProto()
    model.CopyFrom(exported.model)
    weight = next(t for t in model.graph.initializer if t.name.startswith("embedding.") and t.dims)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.05, weight.name))
    report = check_embedding_episode(
        model, module_embedder(module), exported.spec, exported.params, (1, 28, 28), 2, progress=False
    )
    assert not report.result.passed()


@pytest.mark.parametrize("name", list(CLI_HEADS))
def test_cli_route(name, cli, tmp_path):
    network, module = NETWORKS[name], build(name)
    head = CLI_HEADS[name]
    encoder = export_onnx(module, network.input_shape, tmp_path / "encoder.onnx")
    out = tmp_path / "episode.onnx"
    args = ["export", encoder, "--head", head, "--ways", WAYS, "--shots", SHOTS, "--check-episodes", 2, "-o", out]
    result = cli(*args, "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["algorithm"] == head and report["check"]["predictions_equal"]
    assert report["check"]["max_relative_error"] <= 1e-4
    assert report["check"]["images"] == (
        "Omniglot meta-test" if network.input_shape == (1, 28, 28) else "random, seed 0"
    )
    model = onnx.load(out)
    _assert_episode_structure(model, head, network.input_shape)
    _assert_matches(model, module, head, network.input_shape)


def test_unfolded_batchnorm_is_kept(cli, tmp_path):
    module = build("residual")
    encoder = export_onnx(module, (1, 28, 28), tmp_path / "encoder.onnx", fold_batchnorm=False)
    out = tmp_path / "episode.onnx"
    result = cli(
        "export", encoder, "--head", "protomaml", "--ways", WAYS, "--shots", SHOTS, "--check-episodes", 2, "-o", out
    )
    assert result.code == 0, result.stderr
    model = onnx.load(out)
    assert [n.op_type for n in model.graph.node].count("BatchNormalization") == 3
    _assert_episode_structure(model, "protomaml", (1, 28, 28))
    _assert_matches(model, module, "protomaml", (1, 28, 28))


def test_cli_sgd_options(cli, tmp_path):
    encoder = export_onnx(build("protonet"), (1, 28, 28), tmp_path / "encoder.onnx")
    out = tmp_path / "episode.onnx"
    result = cli(
        "export", encoder, "--head", "anil", "--inner-steps", 3, "--inner-lr", 0.25, "--check-episodes", 1, "-o", out
    )
    assert result.code == 0, result.stderr
    assert "anil 5-way 1-shot, head sgd, 3 SGD steps" in result.stdout and "Omniglot meta-test images" in result.stdout
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    assert inits["head_lr_w"] == np.float32(0.25) and inits["head_w_0"].shape == (5, 8)
    result = cli("export", encoder, "--head", "matchingnet", "--attention-scale", 4, "--check-episodes", 0, "-o", out)
    assert result.code == 0, result.stderr
    assert {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}["attention_scale"] == 4


def test_fixed_batch_view_becomes_flatten_and_batch_symbolic(tmp_path):
    module = build("view")
    path = export_onnx(module, (1, 28, 28), tmp_path / "fixed.onnx", dynamic=False)
    raw = onnx.load(path)
    assert "Reshape" in {n.op_type for n in raw.graph.node}
    prepared = prepare_embedding(raw, "fixed.onnx")
    assert [n.op_type for n in prepared.model.graph.node][-1] == "Flatten"
    assert {n.op_type for n in prepared.model.graph.node} == {"Conv", "Relu", "MaxPool", "Flatten"}
    assert prepared.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert prepared.output_shape == (8,)
    exported = embedding_episode(path, None, "protonet", WAYS, SHOTS, check_episodes=2)
    assert exported.check.result.passed()  # the reference runs the fixed-batch original one image at a time
    _assert_matches(exported.model, module, "protonet", (1, 28, 28))


def _graph_model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "user", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _value(name: str, shape: list, dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def test_identities_removed_and_opset_converted():
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 1, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Identity", ["x"], ["x1"]),
        helper.make_node("Conv", ["x1", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Identity", ["c"], ["c1"]),
        helper.make_node("Relu", ["c1"], ["r"]),
        helper.make_node("Identity", ["r"], ["out"]),
    ]
    model = _graph_model(nodes, [_value("x", [1, 1, 6, 6])], [_value("out", [1, 4, 6, 6])], [w])
    prepared = prepare_embedding(model, "hand.onnx")
    assert [n.op_type for n in prepared.model.graph.node] == ["Conv", "Relu"]
    assert prepared.model.opset_import[0].version == 18 and prepared.output_shape == (4, 6, 6)
    exported = embedding_episode(model, None, "protonet", WAYS, SHOTS, check_episodes=2)
    assert exported.check.result.passed() and exported.check.images == "random, seed 0"


def _two_inputs() -> onnx.ModelProto:
    image = [1, 1, 4, 4]
    add = helper.make_node("Add", ["a", "b"], ["y"])
    return _graph_model([add], [_value("a", image), _value("b", image)], [_value("y", image)])


def _relu(shape: list, dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    return _graph_model(
        [helper.make_node("Relu", ["x"], ["y"])], [_value("x", shape, dtype)], [_value("y", shape, dtype)]
    )


def _batch_constant() -> onnx.ModelProto:
    """A Reshape to the constant shape [1, 1, 16]: right for the batch it was exported at, not for any other."""
    shape = numpy_helper.from_array(np.array([1, 1, 16], np.int64), "shape")
    reshape = helper.make_node("Reshape", ["x", "shape"], ["y"])
    return _graph_model([reshape], [_value("x", [1, 1, 4, 4])], [_value("y", [1, 1, 16])], [shape])


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (_two_inputs(), "one image input and one feature output"),
        (_batch_constant(), r"gives the output 'y' the shape \[1, 1, 16\], not \[11, fixed sizes"),
        (_relu([1, 1, 4, 4], TensorProto.DOUBLE), "must be float32 images"),
        (_relu([1, 16]), r"must be \[batch, C, H, W\]"),
    ],
)
def test_bad_embeddings(model, message):
    with pytest.raises(UserError, match=message):
        prepare_embedding(model, "user.onnx")


@pytest.mark.parametrize(
    ("head", "kwargs", "message"),
    [
        ("resnet", {}, "unknown `head` 'resnet'"),
        ("protonet", {"inner_steps": 2}, "takes no SGD steps"),
        ("matchingnet", {"inner_lr": 0.1}, "takes no SGD steps"),
        ("protomaml", {"attention_scale": 3.0}, "for `head` matchingnet only"),
        ("anil", {"inner_steps": 0}, "needs `inner_steps` >= 1"),
        ("anil", {"inner_steps": -1}, "`inner_steps` must be >= 0"),
        ("protomaml", {"inner_lr": 0.0}, "`inner_lr` must be > 0"),
        ("protonet", {"ways": 1}, "`ways` >= 2"),
    ],
)
def test_bad_heads(head, kwargs, message):
    args = {"ways": 5, "shots": 1, **kwargs}
    with pytest.raises(UserError, match=message):
        embedding_head(head, args.pop("ways"), args.pop("shots"), 8, **args)


def test_module_misuse():
    with pytest.raises(UserError, match="training mode"):
        embedding_episode(build("protonet").train(), (1, 28, 28), check_episodes=0)
    with pytest.raises(UserError, match="needs input_shape"):
        embedding_episode(build("protonet"), None, check_episodes=0)
    with pytest.raises(UserError, match="differs from the embedding's input"):
        embedding_episode(module_to_onnx(build("protonet"), (1, 28, 28)), (3, 28, 28), check_episodes=0)


@pytest.mark.parametrize(
    ("encoder", "args", "message"),
    [
        ("two-input", ["--head", "protonet"], "two-input.onnx must have one image input and one feature output"),
        ("missing", ["--head", "protonet"], "missing.onnx does not exist"),
        ("encoder", ["--head", "resnet"], "unknown --head 'resnet'"),
        ("encoder", ["--head", "protonet", "--inner-steps", "3"], "--head protonet takes no SGD steps"),
        ("encoder", [], "needs --head"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(encoder, args, message, cli, tmp_path):
    onnx.save_model(_two_inputs(), tmp_path / "two-input.onnx")
    export_onnx(build("protonet"), (1, 28, 28), tmp_path / "encoder.onnx")
    out = tmp_path / "episode.onnx"
    result = cli("export", tmp_path / f"{encoder}.onnx", *args, "-o", out)
    assert result.code == 2
    assert result.stderr.startswith("metahw: error:") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not out.exists()


def test_cli_head_options_refused_for_checkpoints(cli, tiny_checkpoint, tmp_path):
    result = cli("export", tiny_checkpoint, "--head", "protonet", "-o", tmp_path / "e.onnx")
    assert result.code == 2 and "--head apply to an embedding .onnx file" in result.stderr
