"""Fixtures of the compiler tests: Omniglot splits, tiny learners with usable heads, compiled episodes, a CLI runner.

Everything is sized for two cores: width-8 (or 4) Conv-4 learners, 3-way 2-shot episodes, a
few calibration episodes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from metahw.compiler.compile import compile_episode
from metahw.compiler.quant_config import QuantConfig
from metahw.models.data import OmniglotImages, OmniglotSplit
from metahw.models.export import EpisodeHead, episode_head, export_episode
from metahw.models.learners import MetaLearner
from tests.compiler.onnx_fixtures import tiny_learner
from tests.conftest import CliResult

WAYS, SHOTS = 3, 2

#: Head hyper-parameters that keep the float SGD of a random (untrained) backbone stable, so
#: that float and fixed point can be compared query by query.
STABLE_HPARAMS = {"protomaml": {"inner_lr": 0.02}, "anil": {"inner_lr": 0.05}, "maml": {"inner_lr": 0.05}}


def make_learner(algorithm: str, width: int = 8, seed: int = 0) -> MetaLearner:
    """A tiny random learner (calibrated BatchNorm) with a head whose float behaviour is well conditioned.

    Meta-SGD gets random per-element learning rates (so that per-element rates are exercised),
    Matching Networks a sharper attention than the initial one.
    """
    learner = tiny_learner(algorithm, width, seed)
    learner.hparams.update(STABLE_HPARAMS.get(algorithm, {}))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        if algorithm == "metasgd":
            for p in learner.lrs.values():
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
        if algorithm == "matchingnet":
            learner.log_scale.fill_(float(np.log(30.0)))
    return learner.eval()


@dataclass(frozen=True)
class Exported:
    """A tiny learner, its episode head and its exported ONNX model."""

    learner: MetaLearner
    spec: EpisodeHead
    model: onnx.ModelProto


def export_learner(algorithm: str, inner_steps: int | None = None, width: int = 8) -> Exported:
    """Export `make_learner(algorithm)` as a WAYS-way SHOTS-shot episode."""
    learner = make_learner(algorithm, width)
    spec = episode_head(learner, WAYS, SHOTS, inner_steps)
    return Exported(learner, spec, export_episode(learner, spec))


@pytest.fixture(scope="session")
def val_split(omniglot: OmniglotImages) -> OmniglotSplit:
    """Meta-val alphabets (calibration)."""
    return omniglot.split("val")


@pytest.fixture(scope="session")
def test_split(omniglot: OmniglotImages) -> OmniglotSplit:
    """Meta-test alphabets (evaluation episodes)."""
    return omniglot.split("test")


@pytest.fixture(scope="session")
def compiled(val_split: OmniglotSplit):
    """compiled(algorithm, bits=16, queries=6, **config) -> (Exported, CompileResult), cached per session."""
    cache: dict = {}

    def get(algorithm: str, bits: int = 16, queries: int = 6, inner_steps: int | None = None, **config):
        key = (algorithm, bits, queries, inner_steps, json.dumps(config, sort_keys=True))
        if key not in cache:
            exported = export_learner(algorithm, inner_steps)
            result = compile_episode(
                exported.model, QuantConfig(bits=bits, **config), val_split, queries, calibration_episodes=4
            )
            cache[key] = (exported, result)
        return cache[key]

    return get


def _assert_one_line_error(result: CliResult, *fragments: str) -> None:
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metahw: error: "), result.stderr
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), (fragment, lines[0])


@pytest.fixture(scope="session")
def one_line_error():
    """one_line_error(result, *fragments): exit code 2 and one `metahw: error:` line holding every fragment."""
    return _assert_one_line_error


@pytest.fixture(scope="session")
def learners():
    """The learner helpers of this module: make_learner, export_learner, WAYS, SHOTS."""
    return SimpleNamespace(make=make_learner, export=export_learner, ways=WAYS, shots=SHOTS)
