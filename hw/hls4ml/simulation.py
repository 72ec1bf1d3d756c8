"""Episodes through the compiled hls4ml C simulation, checked integer for integer against the golden executor.

For every sample of an episode it compares each model output with the golden output buffer
and each traced layer (taps) with the golden value of the buffer it stands for, and raises
`HlsMismatch` at the first difference, naming the layer, the program op and buffer, the
sample and the element.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hls4ml.model import ModelGraph

from metahw.hw.hls4ml.csim import CSimulation
from metahw.hw.hls4ml.design import HlsDesign
from metahw.hw.hls4ml.golden_steps import golden_steps
from metahw.hw.hls4ml.project import ProjectOptions, claim_folder, compile_project, hls_model
from metahw.hw.hls4ml.protocol import episode_samples, expected_outputs, final_outputs
from metahw.hw.hls4ml.taps import EPISODE, IMAGE, QUERY, Tap
from metahw.qformat import QFormat


class HlsMismatch(Exception):
    """The hls4ml C simulation and the golden executor disagree; the message says where."""


@dataclass(frozen=True)
class EpisodeResult:
    """One checked episode: the golden output buffers (= the C simulation's), integers compared, seconds."""

    outputs: dict[str, np.ndarray]
    compared: int
    csim_seconds: float
    golden_seconds: float


class HlsSimulation:
    """A compiled design, run episode by episode and checked against the golden executor."""

    def __init__(self, design: HlsDesign, model: ModelGraph, library: Path, compile_seconds: float) -> None:
        self.design, self.model, self.compile_seconds = design, model, compile_seconds
        traced = {
            layer.name: layer.get_output_variable().size()
            for layer in model.get_layers()
            if layer.get_attr("trace", False) and layer.get_attr("function_cpp", None)
        }
        missing = sorted({tap.layer for tap in design.taps} - set(traced))
        if missing:
            raise AssertionError(f"hls4ml does not trace the tapped layer(s) {missing}")
        self.csim = CSimulation(
            library,
            model.config.get_project_name(),
            [int(np.prod(design.image_shape)), 1],
            [var.size() for var in model.get_output_variables()],
            traced,
        )
        self._held = {o.buffer: np.zeros(design.program.buffer_map[o.buffer].shape, np.int64) for o in design.outputs}

    @classmethod
    def build(cls, design: HlsDesign, out_dir: str | Path, options: ProjectOptions) -> HlsSimulation:
        """Convert with hls4ml, write the project into `out_dir` (new, or an earlier project), compile, load."""
        model = hls_model(design, claim_folder(out_dir), options)
        library, seconds = compile_project(model)
        return cls(design, model, library, seconds)

    def run_episode(self, inputs: Mapping[str, np.ndarray], episode: int = 0) -> EpisodeResult:
        """Run one episode (program input integers); raise HlsMismatch at the first integer that differs."""
        started = time.perf_counter()
        steps = golden_steps(self.design.program, inputs)
        golden_seconds = time.perf_counter() - started
        final = final_outputs(self.design, steps)
        support = len(inputs[self.design.structure.labels])
        compared, csim_seconds = 0, 0.0
        for index, (image, label) in enumerate(episode_samples(self.design, inputs)):
            query = index - support if index >= support else None
            where = f"episode {episode}, " + (f"query image {query}" if query is not None else f"support image {index}")
            started = time.perf_counter()
            outputs, traces = self.csim.run(image, label)
            csim_seconds += time.perf_counter() - started
            for out, got, want in zip(
                self.design.outputs, outputs, expected_outputs(self.design, final, self._held, query)
            ):
                fmt = self.design.program.buffer_map[out.buffer].qformat
                compared += _check(got, want, fmt, f"output '{out.buffer}' (layer '{out.layer}')", where)
            for tap in self.design.taps:
                want = _tap_value(tap, steps, index, query, support)
                if want is not None:
                    fmt = self.design.program.buffer_map[tap.sources[0].buffer].qformat
                    got = _channels_first(traces[tap.layer], want.shape) if tap.channels_last else traces[tap.layer]
                    compared += _check(got, want, fmt, _describe(tap, index < support), where)
        self._held = final
        return EpisodeResult(dict(final), compared, csim_seconds, golden_seconds)


def _tap_value(tap: Tap, steps: dict, index: int, query: int | None, support: int) -> np.ndarray | None:
    """The golden integers a tapped layer must hold on this sample (None: nothing to check)."""
    if tap.level == IMAGE:
        source = tap.sources[0] if query is None else tap.sources[1]
        return steps[source][index if query is None else query]
    if tap.level == QUERY:
        row = steps[tap.sources[0]]
        return row[query] if query is not None else np.zeros_like(row[0])
    assert tap.level == EPISODE
    return steps[tap.sources[0]] if query is not None else None


def _describe(tap: Tap, on_support: bool) -> str:
    source = tap.sources[0] if (tap.level != IMAGE or on_support) else tap.sources[1]
    what = f"input '{source.buffer}'" if source.op is None else f"buffer '{source.buffer}' after op '{source.op}'"
    return f"layer '{tap.layer}' ({what})"


def _channels_first(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A channels-last trace [H, W, C] in the golden [C, H, W] layout."""
    channels, height, width = shape
    return values.reshape(height, width, channels).transpose(2, 0, 1)


def _check(got: np.ndarray, want: np.ndarray, fmt: QFormat, what: str, where: str) -> int:
    """Compare C-simulation reals with golden integers of `fmt`; returns how many were compared."""
    want = np.asarray(want, dtype=np.int64)
    scaled = np.ldexp(np.asarray(got, dtype=np.float64).reshape(want.shape), fmt.frac)
    integers = np.rint(scaled)
    bad = (integers != scaled) | (integers != want)
    if np.any(bad):
        element = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), want.shape))
        raise HlsMismatch(
            f"hls4ml C simulation differs from the golden executor at {what}, {where}, element {element}: "
            f"C simulation {scaled[element]:.17g}, golden {int(want[element])} (integers of {fmt})"
        )
    return want.size
