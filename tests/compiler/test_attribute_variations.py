"""Every attribute of every imported embedding op: implemented exactly (golden == onnxruntime) or refused at import.

Each case is a one- or two-op embedding written with onnx.helper, spliced into a ProtoNet
episode, compiled at 16 bits and run by the golden executor on random episodes. An attribute
metahw implements must give onnxruntime's predictions and logits (to the 16-bit rounding);
one it does not must fail in `metahw compile` naming the node and the attribute. A silently
ignored attribute (a stride-3 conv compiled as stride 1) fails both ways.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from metahw import export_embedding_episode
from metahw.compiler.compile import compile_calibrated
from metahw.compiler.episode_io import program_inputs, program_logits
from metahw.compiler.golden import execute
from metahw.compiler.quant_config import QuantConfig
from metahw.errors import UserError
from metahw.models.export_check import ort_session
from tests.compiler.own_programs import QUERIES, WAYS, random_episodes

SHAPE = (2, 9, 9)
RNG = np.random.default_rng(5)
W3 = RNG.normal(0, 0.4, (4, 2, 3, 3)).astype(np.float32)
W5 = RNG.normal(0, 0.3, (4, 2, 5, 5)).astype(np.float32)
W1 = RNG.normal(0, 0.5, (4, 2, 1, 1)).astype(np.float32)
BIAS = RNG.normal(0, 0.1, 4).astype(np.float32)


def _embedding(nodes: list, inits: dict, out_shape: list) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "embedding",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *SHAPE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", *out_shape])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    return model


def conv(weight: np.ndarray = W3, bias: bool = True, **attrs) -> onnx.ModelProto:
    inputs = ["x", "w"] + (["b"] if bias else [])
    inits = {"w": weight, **({"b": BIAS} if bias else {})}
    return _embedding([helper.make_node("Conv", inputs, ["y"], name="conv", **attrs)], inits, [])


def after_conv(op: str, **attrs) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(op, ["c"], ["y"], name=op.lower(), **attrs),
    ]
    return _embedding(nodes, {"w": W3, "b": BIAS}, [])


def gemm(**attrs) -> onnx.ModelProto:
    w = RNG.normal(0, 0.2, (6, 2 * 9 * 9) if attrs.get("transB") else (2 * 9 * 9, 6)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="gemm", **attrs),
    ]
    return _embedding(nodes, {"w": w, "b": BIAS[:4].repeat(2)[:6]}, [6])


IMPLEMENTED = {
    "conv stride 1 pad 1": conv(pads=[1, 1, 1, 1], strides=[1, 1]),
    "conv stride 2 pad 1": conv(pads=[1, 1, 1, 1], strides=[2, 2]),
    "conv stride 2 pad 0": conv(strides=[2, 2]),
    "conv pad 2 of 3x3": conv(pads=[2, 2, 2, 2]),
    "conv 5x5 pad 2": conv(W5, pads=[2, 2, 2, 2], kernel_shape=[5, 5]),
    "conv 1x1": conv(W1),
    "conv without bias": conv(bias=False, pads=[1, 1, 1, 1], dilations=[1, 1], group=1),
    "maxpool 2x2 on an odd map": after_conv("MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
    "averagepool 2x2": after_conv("AveragePool", kernel_shape=[2, 2], strides=[2, 2], count_include_pad=1),
    "global average pool": after_conv("GlobalAveragePool"),
    "leaky relu 0.01": after_conv("LeakyRelu", alpha=0.01),
    "leaky relu 0.3": after_conv("LeakyRelu", alpha=0.3),
    "relu": after_conv("Relu"),
    "gemm transB 1": gemm(transB=1),
    "gemm transB 0": gemm(transB=0, alpha=1.0, beta=1.0),
}

REFUSED = {
    "conv strides 3": (conv(strides=[3, 3]), "strides=[3, 3]"),
    "conv strides 1x2": (conv(strides=[1, 2]), "strides=[1, 2]"),
    "conv dilations 2": (conv(dilations=[2, 2]), "dilations=[2, 2]"),
    "conv asymmetric pads": (conv(pads=[0, 1, 0, 1]), "pads=[0, 1, 0, 1]"),
    "conv pad >= kernel": (conv(W1, pads=[1, 1, 1, 1]), "padding 1"),
    "conv group 2": (conv(np.ascontiguousarray(W3[:, :1]), group=2), "group=2"),
    "conv auto_pad": (conv(auto_pad="SAME_UPPER"), "auto_pad=SAME_UPPER"),
    "maxpool 3x3": (after_conv("MaxPool", kernel_shape=[3, 3], strides=[2, 2]), "kernel_shape=[3, 3]"),
    "maxpool stride 1": (after_conv("MaxPool", kernel_shape=[2, 2], strides=[1, 1]), "strides=[1, 1]"),
    "maxpool padded": (after_conv("MaxPool", kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1]), "pads="),
    "maxpool ceil mode": (after_conv("MaxPool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), "ceil_mode=1"),
    "maxpool dilated": (after_conv("MaxPool", kernel_shape=[2, 2], strides=[2, 2], dilations=[2, 2]), "dilations"),
    "averagepool ceil": (after_conv("AveragePool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), "ceil_mode"),
    "averagepool 3x3": (after_conv("AveragePool", kernel_shape=[3, 3], strides=[3, 3]), "kernel_shape=[3, 3]"),
    "gemm alpha": (gemm(transB=1, alpha=2.0), "alpha=2.0"),
    "gemm beta": (gemm(transB=1, beta=0.5), "beta=0.5"),
}


def _golden_and_ort(embedding: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    model = export_embedding_episode(embedding, head="protonet", ways=WAYS, shots=2, check_episodes=1)
    result = compile_calibrated(model, QuantConfig(bits=16), random_episodes(SHAPE, 4, seed=2), QUERIES)
    session = ort_session(model)
    golden, ort, golden_pred, ort_pred = [], [], [], []
    for episode in random_episodes(SHAPE, 3, seed=9):
        run = execute(result.program, program_inputs(result.program, episode))
        golden.append(program_logits(result.program, run.values["scores"]))
        golden_pred.append(run.values["prediction"])
        feed = {
            "support_x": episode.support_x,
            "support_y": np.eye(WAYS, dtype=np.float32)[episode.support_y],
            "query_x": episode.query_x,
        }
        logits, prediction = session.run(["logits", "prediction"], feed)
        ort.append(logits)
        ort_pred.append(prediction)
    return np.array(golden), np.array(ort), np.array(golden_pred), np.array(ort_pred)


@pytest.mark.parametrize("case", sorted(IMPLEMENTED))
def test_implemented_attributes_match_onnxruntime(case):
    golden, ort, golden_pred, ort_pred = _golden_and_ort(IMPLEMENTED[case])
    scale = np.abs(ort).max()
    assert np.abs(golden - ort).max() <= 2e-3 * scale, (case, np.abs(golden - ort).max(), scale)
    assert (golden_pred == ort_pred).mean() >= 0.9  # ties within the 16-bit rounding may flip a near-equal pair


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unimplemented_attributes_are_refused_at_import(case):
    embedding, fragment = REFUSED[case]
    with pytest.raises(UserError) as err:
        _golden_and_ort(embedding)
    message = str(err.value)
    assert fragment in message, message
    assert "\n" not in message
