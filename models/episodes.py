"""Seeded N-way K-shot Q-query episodic sampling over an `OmniglotSplit`.

An episode is drawn as *indices* into the split's flattened image array (class-major: the
k-th support example of class n sits at row n*K + k). The same indices can then gather
either images (for training / full adaptation) or precomputed embeddings (for fast
evaluation of frozen backbones), so both paths see identical episodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from metahw.errors import UserError
from metahw.models.data import OmniglotSplit


@dataclass(frozen=True)
class EpisodeIndex:
    """Flat image indices of one episode: support [N*K], query [N*Q], labels 0..N-1."""

    support: np.ndarray
    support_y: np.ndarray
    query: np.ndarray
    query_y: np.ndarray


@dataclass(frozen=True)
class Episode:
    """One few-shot episode as float32 images in [0, 1] (strokes = 1) and int64 labels."""

    support_x: np.ndarray  # [N*K, 1, 28, 28]
    support_y: np.ndarray  # [N*K]
    query_x: np.ndarray  # [N*Q, 1, 28, 28]
    query_y: np.ndarray  # [N*Q]

    @property
    def ways(self) -> int:
        """Number of classes N in the episode."""
        return int(self.support_y.max()) + 1


class EpisodeSampler:
    """Reproducible episodes: the same (split, shape, seed) always yields the same sequence."""

    def __init__(
        self,
        split: OmniglotSplit,
        ways: int,
        shots: int,
        queries: int,
        seed: int = 0,
        within_alphabet: bool = False,
    ) -> None:
        if ways < 2 or shots < 1 or queries < 1:
            raise UserError(f"an episode needs ways >= 2, shots >= 1, queries >= 1 (got {ways}, {shots}, {queries}).")
        if shots + queries > split.drawings:
            raise UserError(f"shots + queries = {shots + queries} exceeds the {split.drawings} drawings per character.")
        self.split, self.ways, self.shots, self.queries = split, ways, shots, queries
        self.within_alphabet = within_alphabet
        self.rng = np.random.default_rng(seed)
        if within_alphabet:
            sizes = np.bincount(split.alphabet_ids)
            self._alphabets = np.flatnonzero(sizes >= ways)
            if self._alphabets.size == 0:
                raise UserError(
                    f"{ways}-way within-alphabet episodes need an alphabet with >= {ways} classes; "
                    f"the largest {split.name} alphabet has {sizes.max()}."
                )
        elif ways > split.num_classes:
            raise UserError(
                f"{ways}-way episodes need >= {ways} classes; the {split.name} split has {split.num_classes}."
            )

    def _classes(self) -> np.ndarray:
        if not self.within_alphabet:
            return self.rng.choice(self.split.num_classes, self.ways, replace=False)
        alphabet = self.rng.choice(self._alphabets)
        members = np.flatnonzero(self.split.alphabet_ids == alphabet)
        return self.rng.choice(members, self.ways, replace=False)

    def sample_index(self) -> EpisodeIndex:
        """Draw the next episode's indices."""
        n, k, q, d = self.ways, self.shots, self.queries, self.split.drawings
        classes = self._classes()
        drawings = self.rng.random((n, d)).argsort(axis=1)[:, : k + q]
        flat = classes[:, None] * d + drawings
        labels = np.arange(n, dtype=np.int64)
        return EpisodeIndex(
            support=flat[:, :k].reshape(-1),
            support_y=np.repeat(labels, k),
            query=flat[:, k:].reshape(-1),
            query_y=np.repeat(labels, q),
        )

    def gather(self, index: EpisodeIndex) -> Episode:
        """Turn episode indices into float32 images in [0, 1]."""
        flat = self.split.images.reshape(-1, 1, *self.split.images.shape[2:])
        scale = np.float32(255.0)  # divide, as embed_images and the runs reader do: identical float32 pixels
        return Episode(
            support_x=flat[index.support].astype(np.float32) / scale,
            support_y=index.support_y,
            query_x=flat[index.query].astype(np.float32) / scale,
            query_y=index.query_y,
        )

    def sample(self) -> Episode:
        """Draw the next episode as images."""
        return self.gather(self.sample_index())

    def __iter__(self) -> Iterator[Episode]:
        while True:
            yield self.sample()
