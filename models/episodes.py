"""Seeded N-way K-shot Q-query episodic sampling over an `OmniglotSplit`, and episode sets.

An episode is drawn as *indices* into the split's flattened image array (class-major: the
k-th support example of class n sits at row n*K + k). The same indices can then gather
either images (for training / full adaptation) or precomputed embeddings (for fast
evaluation of frozen backbones), so both paths see identical episodes.

`EpisodeSet` is the form every command that runs episodes takes: indices into one float image
pool, whatever the episodes came from (Omniglot sampling, or the user's data through
`models/episode_sources.py`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from metahw.errors import UserError
from metahw.models.data import OmniglotSplit


@dataclass(frozen=True)
class EpisodeIndex:
    """Flat image indices of one episode: support [N*K], query [Q], labels 0..N-1 (query_y None: not known)."""

    support: np.ndarray
    support_y: np.ndarray
    query: np.ndarray
    query_y: np.ndarray | None


@dataclass(frozen=True)
class Episode:
    """One few-shot episode as float32 images and int64 labels (query_y None when the user gave none).

    Omniglot images are in [0, 1] (strokes = 1); the user's images are as their transform made them.
    """

    support_x: np.ndarray  # [N*K, C, H, W]
    support_y: np.ndarray  # [N*K]
    query_x: np.ndarray  # [Q, C, H, W]
    query_y: np.ndarray | None = None  # [Q]

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


@dataclass(frozen=True, eq=False)
class EpisodeSet(Sequence[Episode]):
    """E episodes as indices into one float32 image pool [M, C, H, W]: random access, gathered lazily.

    Embedding the pool once serves every episode (eval, compare), and any backend can iterate
    the episodes; `source` says where they came from, `names` names them (the one-shot runs).
    """

    images: np.ndarray
    indices: tuple[EpisodeIndex, ...]
    source: str
    names: tuple[str, ...] | None = None

    @classmethod
    def sampled(cls, sampler: EpisodeSampler, count: int, source: str) -> EpisodeSet:
        """The next `count` episodes of `sampler`, exactly those its `sample()` would give."""
        split = sampler.split
        images = split.images.reshape(-1, 1, *split.images.shape[2:]).astype(np.float32) / np.float32(255.0)
        return cls(images, tuple(sampler.sample_index() for _ in range(count)), source)

    def __len__(self) -> int:
        return len(self.indices)

    def first(self, count: int) -> EpisodeSet:
        """The first `count` episodes."""
        names = None if self.names is None else self.names[:count]
        return EpisodeSet(self.images, self.indices[:count], self.source, names)

    def __getitem__(self, i: int) -> Episode:  # type: ignore[override]  # no slices: episodes are read one by one
        index = self.indices[i]
        return Episode(self.images[index.support], index.support_y, self.images[index.query], index.query_y)

    @property
    def labelled(self) -> bool:
        """Whether every episode's query labels are known (else only predictions can be reported)."""
        return all(index.query_y is not None for index in self.indices)

    @property
    def ways(self) -> int:
        """Classes N per episode."""
        return int(self.indices[0].support_y.max()) + 1

    @property
    def shots(self) -> int:
        """Support examples K per class."""
        return len(self.indices[0].support) // self.ways

    @property
    def queries(self) -> int:
        """Query examples per episode (all classes together)."""
        return len(self.indices[0].query)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        return tuple(int(d) for d in self.images.shape[1:])  # type: ignore[return-value]
