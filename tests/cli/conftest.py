"""Read-only inputs the CLI tests point at, made once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from metahw.models.checkpoint import load_checkpoint
from metahw.models.export import episode_head, export_episode
from metahw.models.zoo import zoo_path


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Read-only inputs the cases point at: an ONNX episode, its build, checkpoints, odd ONNX graphs."""
    from metahw.compiler.compile import compile_episode, save_build
    from metahw.compiler.onnx_import import load_onnx
    from metahw.compiler.quant_config import QuantConfig
    from metahw.models.data import load_omniglot

    folder = tmp_path_factory.mktemp("bad-inputs-shared")
    ckpt = folder / "protonet32.pt"
    shutil.copy(zoo_path("protonet32"), ckpt)
    learner = load_checkpoint(ckpt).learner
    onnx.save_model(export_episode(learner, episode_head(learner, 5, 1, None)), folder / "episode.onnx")
    onnx.save_model(export_episode(learner, episode_head(learner, 1000, 1, None)), folder / "w1000.onnx")
    result = compile_episode(
        load_onnx(folder / "episode.onnx"), QuantConfig(bits=8), load_omniglot(None).split("val"), 5, 4
    )
    save_build(result, folder / "build")
    payload = torch.load(ckpt, weights_only=True)
    torch.save({**payload, "format_version": 99}, folder / "v99.pt")
    single = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "one-input",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 1, 28, 28])],
    )
    onnx.save_model(helper.make_model(single), folder / "single.onnx")
    encoder = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    torch.onnx.export(encoder, (torch.zeros(1, 1, 28, 28),), folder / "encoder.onnx", dynamo=False)
    names = {
        "onnx": "episode.onnx",
        "prog": "build",
        "v99": "v99.pt",
        "single": "single.onnx",
        "enc": "encoder.onnx",
        "w1000": "w1000.onnx",
    }
    return {"ckpt": ckpt, "root": folder, **{key: folder / name for key, name in names.items()}}
