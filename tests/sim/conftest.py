"""Fixtures of the simulator tests: lowered tiny programs, episode inputs, an in-process CLI runner.

Sized for two cores: width-4 Conv-4 learners, 3-way 2-shot episodes, two calibration episodes.
"""

from __future__ import annotations

import pytest

from metahw.compiler.compile import CompileResult, compile_episode
from metahw.compiler.quant_config import QuantConfig
from metahw.models.data import OmniglotImages, OmniglotSplit
from tests.compiler.onnx_fixtures import tiny_episode_model

WAYS, SHOTS, QUERIES = 3, 2, 6


@pytest.fixture(scope="session")
def test_split(omniglot: OmniglotImages) -> OmniglotSplit:
    """Meta-test alphabets (evaluation episodes)."""
    return omniglot.split("test")


@pytest.fixture(scope="session")
def lowered(omniglot: OmniglotImages):
    """lowered(algorithm, bits=8, **config) -> CompileResult of a tiny random learner's 3-way 2-shot episode."""
    cache: dict = {}
    val = omniglot.split("val")

    def get(algorithm: str, bits: int = 8, **config) -> CompileResult:
        key = (algorithm, bits, tuple(sorted(config.items())))
        if key not in cache:
            model, _ = tiny_episode_model(algorithm, WAYS, SHOTS)
            cache[key] = compile_episode(model, QuantConfig(bits=bits, **config), val, QUERIES, calibration_episodes=2)
        return cache[key]

    return get
