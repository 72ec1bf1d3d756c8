import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from metahw.compiler.ir import Graph, Node
from metahw.compiler.onnx_import import import_model
from metahw.compiler.passes import (
    eliminate_dead_code,
    fold_batchnorm,
    fold_constants,
    fuse_conv_blocks,
    standard_pipeline,
)
from tests.compiler.onnx_fixtures import tiny_episode_model


def _conv(x, w, b):
    return torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1).numpy()


def test_fold_batchnorm_matches_conv_then_bn():
    model, learner = tiny_episode_model(width=5)
    graph = import_model(model)
    folded = fold_batchnorm(graph)
    assert "BatchNormalization" not in folded.ops()
    assert graph.ops().count("Conv") == folded.ops().count("Conv") == 4
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    conv = next(n for n in folded.nodes if n.op == "Conv")
    got = _conv(x, folded.constants[conv.inputs[1]], folded.constants[conv.inputs[2]])
    with torch.no_grad():
        want = learner.backbone.blocks[0][1](learner.backbone.blocks[0][0](torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fold_batchnorm_leaves_graph_pure():
    graph = import_model(tiny_episode_model()[0])
    before = (graph.ops(), sorted(graph.constants))
    fold_batchnorm(graph)
    assert (graph.ops(), sorted(graph.constants)) == before


def test_fuse_conv_blocks_records_relu_and_pool():
    graph = fuse_conv_blocks(fold_batchnorm(import_model(tiny_episode_model()[0])))
    blocks = [n for n in graph.nodes if n.op == "metahw.ConvBlock"]
    assert len(blocks) == 4 and all(b.attrs["relu"] and b.attrs["pool"] == 2 for b in blocks)
    assert not {"Relu", "MaxPool", "Conv"} & set(graph.ops())
    assert blocks[-1].outputs == ("block3.pool",)


def test_fold_constants_evaluates_expand_and_identity():
    graph = import_model(tiny_episode_model()[0])
    w0 = np.arange(4, dtype=np.float32)[None]
    extra = [
        Node("Expand", "expand", ("w0", "shape"), ("w_rows",)),
        Node("Identity", "copy", ("w_rows",), ("w_copy",)),
        Node("Identity", "not_constant", ("support_x",), ("x_copy",)),
    ]
    constants = {**graph.constants, "w0": w0, "shape": np.array([3, 4], np.int64)}
    folded = fold_constants(graph.with_nodes([*graph.nodes, *extra], constants))
    assert [n.name for n in folded.nodes][-1] == "not_constant"
    np.testing.assert_array_equal(folded.constants["w_copy"], np.broadcast_to(w0, (3, 4)))
    assert folded.shapes["w_rows"] == (3, 4)


def test_dead_code_is_removed():
    graph = import_model(tiny_episode_model()[0])
    dead = Node("Identity", "unused", ("support_x",), ("nobody_reads_this",))
    with_dead = graph.with_nodes([*graph.nodes, dead], {**graph.constants, "orphan": np.zeros(3)})
    cleaned = eliminate_dead_code(with_dead)
    assert "unused" not in [n.name for n in cleaned.nodes] and "orphan" not in cleaned.constants
    assert cleaned.ops() == graph.ops()


@pytest.mark.parametrize("algorithm", ["protonet", "matchingnet", "protomaml", "maml"])
def test_standard_pipeline_shapes(algorithm):
    graph = standard_pipeline(
        import_model(tiny_episode_model(algorithm, inner_steps=0 if algorithm == "matchingnet" else 1)[0])
    )
    assert graph.ops().count("metahw.ConvBlock") == 4
    assert isinstance(graph, Graph) and graph.outputs == ("logits", "prediction")


def test_folded_graph_still_computes_the_episode():
    """Rebuild the folded backbone in torch and compare to onnxruntime's features."""
    model, _ = tiny_episode_model(width=6)
    graph = standard_pipeline(import_model(model))
    x = (np.random.default_rng(1).random((4, 1, 28, 28)) > 0.7).astype(np.float32)
    h = torch.from_numpy(x)
    for block in (n for n in graph.nodes if n.op == "metahw.ConvBlock"):
        h = torch.nn.functional.conv2d(
            h,
            torch.from_numpy(graph.constants[block.inputs[1]]),
            torch.from_numpy(graph.constants[block.inputs[2]]),
            padding=1,
        )
        h = torch.nn.functional.max_pool2d(torch.relu(h), 2)
    model.graph.output.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    support = np.zeros((6, 1, 28, 28), np.float32)
    labels = np.eye(3, dtype=np.float32).repeat(2, axis=0)
    feats = session.run(["features"], {"support_x": support, "support_y": labels, "query_x": x})[0]
    np.testing.assert_allclose(h.flatten(1).numpy(), feats[6:], rtol=1e-5, atol=1e-5)
