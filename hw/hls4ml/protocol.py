"""The design's episode protocol: which samples go in, and what comes out of each, in golden integers.

An episode is M support samples (image, label 0..ways-1) in the program's order, then Q query
samples (image, label -1). Per-query outputs are the golden row of the query (0 on support
samples); per-episode outputs are the golden value from the first query sample on, and the
previous episode's value (0 before the first episode) on support samples.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from metahw.hw.hls4ml.design import HlsDesign
from metahw.hw.hls4ml.precision import dequantize
from metahw.hw.hls4ml.taps import QUERY, Source

QUERY_LABEL = -1


def episode_samples(design: HlsDesign, inputs: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image [H, W, C] as exact reals, [label]) per sample: the support images, then the query images."""
    structure = design.structure
    frac = design.program.buffer_map[structure.support_images].qformat.frac
    labels = np.asarray(inputs[structure.labels])
    samples = []
    for images, sample_labels in ((structure.support_images, labels), (structure.query_images, None)):
        for i, image in enumerate(np.asarray(inputs[images])):
            label = QUERY_LABEL if sample_labels is None else int(sample_labels[i])
            samples.append((dequantize(image, frac).transpose(1, 2, 0), np.array([float(label)])))
    return samples


def final_outputs(design: HlsDesign, steps: Mapping[Source, np.ndarray]) -> dict[str, np.ndarray]:
    """Each output buffer's golden value: what the last op writing it left (`steps` from golden_steps)."""
    writers = {name: op.name for op in design.program.ops for name in op.writes()}
    return {out.buffer: steps[Source(writers[out.buffer], out.buffer)] for out in design.outputs}


def expected_outputs(
    design: HlsDesign, final: Mapping[str, np.ndarray], held: Mapping[str, np.ndarray], query: int | None
) -> list[np.ndarray]:
    """Golden integers of every model output on one sample (`query` None: a support sample).

    `final` holds the episode's golden output buffers, `held` the previous episode's (or zeros).
    """
    rows = []
    for out in design.outputs:
        if out.level == QUERY:
            value = final[out.buffer][query] if query is not None else np.zeros_like(final[out.buffer][0])
        else:
            value = final[out.buffer] if query is not None else held[out.buffer]
        rows.append(np.asarray(value, dtype=np.int64).reshape(-1))
    return rows


def output_reals(design: HlsDesign, rows: list[np.ndarray]) -> np.ndarray:
    """Integers of the model outputs -> the exact reals hls4ml passes (one flat row, in output order)."""
    buffers = design.program.buffer_map
    return np.concatenate([dequantize(r, buffers[o.buffer].qformat.frac) for o, r in zip(design.outputs, rows)])
