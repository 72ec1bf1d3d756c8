"""Where the hls4ml design's layers meet the golden executor: which traced layer equals which buffer.

A `Tap` names an hls4ml layer whose C-simulation output must equal, integer for integer,
a buffer that a program op writes (or a program input). Its `level` says when:

- ``image``: on every image; a support image m equals row m of the support chain's buffer,
  a query image q row q of the query chain's buffer (`sources` = (support, query));
- ``query``: on every query image q (row q of the buffer); on support images the layer is 0;
- ``episode``: once per episode, from the first query image on (adaptation results).
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE, QUERY, EPISODE = "image", "query", "episode"
LEVELS = (IMAGE, QUERY, EPISODE)


@dataclass(frozen=True)
class Source:
    """A golden value: the buffer `buffer` as op `op` left it (op None: a program input)."""

    op: str | None
    buffer: str


@dataclass(frozen=True)
class Tap:
    """A traced hls4ml layer, the golden value(s) it equals, and the layout of its trace."""

    layer: str
    level: str
    sources: tuple[Source, ...]
    #: the trace is [H, W, C] (channels last) of a golden [C, H, W]
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.level not in LEVELS or len(self.sources) != (2 if self.level == IMAGE else 1):
            raise ValueError(f"tap '{self.layer}': level {self.level!r} with {len(self.sources)} source(s)")
