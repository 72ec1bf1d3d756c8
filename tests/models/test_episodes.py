"""Seeded N-way K-shot Q-query episodic sampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metahw.errors import UserError
from metahw.models.data import OmniglotImages, OmniglotSplit
from metahw.models.episodes import EpisodeSampler


@pytest.fixture(scope="module")
def train_split(omniglot: OmniglotImages) -> OmniglotSplit:
    return omniglot.split("train", rotations=True)


@pytest.fixture(scope="module")
def test_split(omniglot: OmniglotImages) -> OmniglotSplit:
    return omniglot.split("test")


def _check_episode(split: OmniglotSplit, sampler: EpisodeSampler) -> None:
    n, k, q, d = sampler.ways, sampler.shots, sampler.queries, split.drawings
    index = sampler.sample_index()
    episode = sampler.gather(index)
    # shapes and dtypes
    assert episode.support_x.shape == (n * k, 1, 28, 28) and episode.query_x.shape == (n * q, 1, 28, 28)
    assert episode.support_x.dtype == episode.query_x.dtype == np.float32
    assert episode.support_y.dtype == episode.query_y.dtype == np.int64
    assert episode.ways == n
    # class-major labels: row n*K + k is the k-th example of class n
    assert np.array_equal(episode.support_y, np.repeat(np.arange(n), k))
    assert np.array_equal(episode.query_y, np.repeat(np.arange(n), q))
    support_class = index.support.reshape(n, k) // d
    query_class = index.query.reshape(n, q) // d
    assert (support_class == support_class[:, :1]).all() and (query_class == support_class[:, :1]).all()
    assert len(set(support_class[:, 0])) == n, "the N classes of an episode are distinct"
    # support and query never share a drawing
    assert len(set(index.support) | set(index.query)) == n * (k + q)
    # the images are the split's uint8 drawings scaled to [0, 1]
    flat = split.images.reshape(-1, 1, 28, 28)
    assert np.array_equal(episode.support_x, flat[index.support].astype(np.float32) / np.float32(255))
    assert np.array_equal(episode.query_x, flat[index.query].astype(np.float32) / np.float32(255))
    assert episode.support_x.max() == 1.0 and episode.support_x.min() == 0.0


def test_episode_shapes_order_and_disjointness(train_split: OmniglotSplit):
    sampler = EpisodeSampler(train_split, ways=5, shots=3, queries=4, seed=0)
    for _ in range(20):
        _check_episode(train_split, sampler)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ways=st.integers(2, 30), shots=st.integers(1, 10), queries=st.integers(1, 10), seed=st.integers(0, 2**32 - 1))
def test_episode_properties_for_any_valid_shape(train_split: OmniglotSplit, ways, shots, queries, seed):
    queries = min(queries, 20 - shots)
    _check_episode(train_split, EpisodeSampler(train_split, ways, shots, queries, seed=seed))


def test_same_seed_same_episodes_different_seed_different(train_split: OmniglotSplit):
    def draw(seed: int) -> list[np.ndarray]:
        sampler = EpisodeSampler(train_split, 5, 1, 5, seed=seed)
        return [np.concatenate([i.support, i.query]) for i in (sampler.sample_index() for _ in range(3))]

    first, again, other = draw(7), draw(7), draw(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    # successive episodes of one sampler differ too
    assert not np.array_equal(first[0], first[1])
    # `sample` and `iter` draw the same sequence as `sample_index` + `gather`
    a = EpisodeSampler(train_split, 5, 1, 5, seed=3)
    b = EpisodeSampler(train_split, 5, 1, 5, seed=3)
    ep_a, ep_b = next(iter(a)), b.gather(b.sample_index())
    assert np.array_equal(ep_a.support_x, ep_b.support_x) and np.array_equal(ep_a.query_x, ep_b.query_x)


def test_within_alphabet_draws_every_class_from_one_alphabet(test_split: OmniglotSplit):
    # the test split is Korean (40 characters) and Tagalog (17): 20-way must always be Korean
    sizes = {name: int((test_split.alphabet_ids == i).sum()) for i, name in enumerate(test_split.alphabet_names)}
    assert sizes == {"Korean": 40, "Tagalog": 17}
    korean = test_split.alphabet_names.index("Korean")
    sampler = EpisodeSampler(test_split, ways=20, shots=1, queries=1, seed=0, within_alphabet=True)
    for _ in range(10):
        classes = sampler.sample_index().support // test_split.drawings
        assert (test_split.alphabet_ids[classes] == korean).all()
    # 5-way: both alphabets occur, but each episode stays inside one
    sampler = EpisodeSampler(test_split, ways=5, shots=1, queries=1, seed=0, within_alphabet=True)
    seen = set()
    for _ in range(40):
        alphabets = set(test_split.alphabet_ids[sampler.sample_index().support // test_split.drawings])
        assert len(alphabets) == 1
        seen |= alphabets
    assert seen == {0, 1}
    # without the flag, 20-way episodes mix alphabets (all but certainly, and fixed by the seed)
    mixed = EpisodeSampler(test_split, ways=20, shots=1, queries=1, seed=0)
    assert len(set(test_split.alphabet_ids[mixed.sample_index().support // test_split.drawings])) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ways": 58, "shots": 1, "queries": 1}, "the test split has 57"),
        ({"ways": 5, "shots": 15, "queries": 6}, "exceeds the 20 drawings"),
        ({"ways": 5, "shots": 20, "queries": 1}, "exceeds the 20 drawings"),
        ({"ways": 41, "shots": 1, "queries": 1, "within_alphabet": True}, "largest test alphabet has 40"),
        ({"ways": 1, "shots": 1, "queries": 1}, "ways >= 2"),
        ({"ways": 5, "shots": 0, "queries": 1}, "shots >= 1"),
        ({"ways": 5, "shots": 1, "queries": 0}, "queries >= 1"),
    ],
)
def test_impossible_episodes_raise_user_error(test_split: OmniglotSplit, kwargs: dict, message: str):
    with pytest.raises(UserError, match=message):
        EpisodeSampler(test_split, **kwargs)


def test_largest_possible_episodes_are_accepted(test_split: OmniglotSplit):
    EpisodeSampler(test_split, ways=57, shots=19, queries=1).sample_index()
    EpisodeSampler(test_split, ways=40, shots=1, queries=19, within_alphabet=True).sample_index()
