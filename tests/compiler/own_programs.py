"""Programs compiled from the plain-PyTorch user networks (tests/models/user_networks.py), and their episodes.

Each network is exported through `metahw.export_embedding_episode` with a head, calibrated
on seeded random episodes of its own input shape (images in [-1, 1]: normalised user data,
so the pixel format is signed) and compiled at 8 bits. Cached per (network, head, shape).
"""

from __future__ import annotations

import functools

import numpy as np
from torch import nn

from metahw import export_embedding_episode
from metahw.compiler.compile import CompileResult, compile_calibrated
from metahw.compiler.episode_io import program_inputs
from metahw.compiler.quant_config import QuantConfig
from metahw.models.episodes import Episode
from tests.models.user_networks import NETWORKS, UserNetwork, build, conv_block, instantiate

WAYS, SHOTS, QUERIES = 3, 2, 3
GRADIENT_HEADS = {"protomaml": {"inner_steps": 2, "inner_lr": 0.5}, "anil": {"inner_steps": 1, "inner_lr": 0.5}}


def random_episodes(shape: tuple[int, int, int], count: int, seed: int) -> list[Episode]:
    """`count` seeded episodes of WAYS-way SHOTS-shot, QUERIES queries, images uniform in [-1, 1]."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(WAYS), SHOTS)
    return [
        Episode(
            (rng.random((WAYS * SHOTS, *shape), dtype=np.float32) * 2 - 1),
            labels,
            (rng.random((QUERIES, *shape), dtype=np.float32) * 2 - 1),
            np.arange(QUERIES) % WAYS,
        )
        for _ in range(count)
    ]


def leaky_average_encoder(width: int = 8) -> nn.Sequential:
    """3x16x16: a conv block, conv without bias + LeakyReLU(0.1) + 2x2 average, stride-2 conv + LeakyReLU to 6 channels.

    The last map (6 x 2 x 2) has a channel count that is no multiple of the lanes.
    """
    return nn.Sequential(
        conv_block(3, width),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.LeakyReLU(0.1),
        nn.AvgPool2d(2),
        nn.Conv2d(width, 6, 3, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
    )


def pointwise_encoder(width: int = 4) -> nn.Sequential:
    """1x16x16: a 1x1 conv of the single input channel (one beat per output position), 2x2 max, a conv block.

    A layer of fan-in 1 ends a position on every beat: the conv engine then computes the next
    position's corner in the same cycle instead of a cycle ahead (`hw/amaranth/conv_walk.py`).
    """
    return nn.Sequential(nn.Conv2d(1, width, 1), nn.ReLU(), nn.MaxPool2d(2), conv_block(width, width), nn.Flatten())


#: networks of these tests besides the shared ones
EXTRA_NETWORKS = {
    "leaky_average": UserNetwork(lambda: leaky_average_encoder(8), (3, 16, 16), 11),
    "pointwise": UserNetwork(lambda: pointwise_encoder(4), (1, 16, 16), 12),
}


def _module(network: str) -> nn.Module:
    return build(network) if network in NETWORKS else instantiate(EXTRA_NETWORKS[network])


@functools.cache
def own_program(network: str, head: str = "protonet", bits: int = 8) -> CompileResult:
    """The compiled episode of user network `network` with `head`."""
    shape = {**NETWORKS, **EXTRA_NETWORKS}[network].input_shape
    model = export_embedding_episode(
        _module(network), shape, head=head, ways=WAYS, shots=SHOTS, check_episodes=2, **GRADIENT_HEADS.get(head, {})
    )
    return compile_calibrated(model, QuantConfig(bits=bits), random_episodes(shape, 4, seed=1), QUERIES)


def own_inputs(result: CompileResult, count: int = 2, seed: int = 7) -> list[dict[str, np.ndarray]]:
    """Integer program inputs of `count` fresh random episodes."""
    shape = result.program.buffer_map["support_x"].shape[1:]
    return [program_inputs(result.program, e) for e in random_episodes(shape, count, seed)]
