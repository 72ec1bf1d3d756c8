import numpy as np
import onnx
import pytest
from onnx import helper

from metahw.compiler.onnx_import import SUPPORTED_OPS, import_model, import_onnx, load_onnx
from metahw.errors import UserError
from tests.compiler.onnx_fixtures import tiny_episode_model


def test_import_keeps_head_functions_as_named_nodes():
    model, _ = tiny_episode_model("protomaml", ways=3, shots=2, inner_steps=2)
    graph = import_model(model)
    assert graph.ops().count("metahw.SGDHeadStep") == 2
    assert graph.ops()[-2:] == ["metahw.LinearHead", "ArgMax"]
    assert graph.shapes["support_x"] == (6, 1, 28, 28)
    assert graph.shapes["query_x"] == (None, 1, 28, 28)
    assert graph.shapes["head_w_2"] == (3, 4)
    assert graph.metadata["algorithm"] == "protomaml"


def test_unsupported_op_names_op_node_and_supported_list():
    model, _ = tiny_episode_model()
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Sigmoid"
    with pytest.raises(UserError) as err:
        import_model(model)
    message = str(err.value)
    assert "Sigmoid" in message and relu.name in message
    assert all(op in message for op in SUPPORTED_OPS)


def test_unknown_function_domain_is_refused():
    model, _ = tiny_episode_model()
    head = next(n for n in model.graph.node if n.domain == "metahw")
    head.domain = "other"
    with pytest.raises(UserError, match="other.ProtoHead"):
        import_model(model)


def test_truncated_and_non_onnx_files(tmp_path):
    model, _ = tiny_episode_model()
    good = tmp_path / "good.onnx"
    onnx.save_model(model, good)
    assert import_onnx(good).ops()[0] == "Concat"
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "text.onnx"
    text.write_text("not a model at all")
    for bad in (truncated, text, tmp_path / "missing.onnx"):
        with pytest.raises(UserError):
            load_onnx(bad)


def test_wrong_input_shape_is_refused():
    model, _ = tiny_episode_model()
    graph = model.graph
    new_input = helper.make_tensor_value_info("query_x", onnx.TensorProto.FLOAT, ["q", 1, 32, 32])
    graph.input.remove(graph.input[2])
    graph.input.append(new_input)
    with pytest.raises(UserError, match=r"support_x \[6, 1, 28, 28\], query_x \[None, 1, 32, 32\]"):
        import_model(model)


def test_constants_are_imported_exactly():
    model, learner = tiny_episode_model()
    graph = import_model(model)
    np.testing.assert_array_equal(
        graph.constants["block0.conv.weight"], learner.backbone.blocks[0][0].weight.detach().numpy()
    )
