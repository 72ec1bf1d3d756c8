"""ArgMin / ArgMax over the last axis: the predicted class; ties go to the lowest index.

out[q] = min { n : x[q,n] == min_n' x[q,n'] }  (ArgMin; ArgMax likewise with max).
The output format is fixed: unsigned integers of max(1, bit_length(N-1)) bits, frac 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.datapath import Needs, passthrough_needs
from metahw.compiler.onnx_attributes import accepts
from metahw.qformat import QFormat

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


def index_format(n: int) -> QFormat:
    """Unsigned integer format that holds the indices 0..n-1."""
    return QFormat(max(1, (n - 1).bit_length()), 0, signed=False)


@dataclass(frozen=True, kw_only=True)
class _ArgReduce(Kernel):
    """Shared body of ArgMin and ArgMax: [..., N] -> [...] indices."""

    reads_fields = ("input",)
    writes_fields = ("output",)

    input: str
    output: str

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """[Q, N] -> [Q] (any rank >= 2), index format of N."""
        x = buffers[self.input]
        if len(x.shape) < 2:
            raise self.error(f"needs at least 2 axes [..., N], got {x.shape}")
        return {self.output: OutputSpec(x.shape[:-1], index_format(x.shape[-1]))}

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """Comparisons only: 0."""
        return 0

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """The PPU moves (or compares) input values."""
        return passthrough_needs(self.input, buffers[self.input].qformat)

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """ROWRED: ⌈N/P⌉ beats per row through the PPU's compare tree."""
        shape = buffers[self.input].shape
        beats = timing.rows_of(shape) * timing.ceil_div(shape[-1], hw.lanes)
        return timing.instruction(timing.ROWRED, beats, hw)


@dataclass(frozen=True, kw_only=True)
class ArgMin(_ArgReduce):
    """Index of the smallest value (first on ties): nearest prototype under L2."""

    op = "ArgMin"

    def execute(self, env: Env) -> None:
        """numpy argmin returns the first minimum."""
        env.write(self.output, np.argmin(env.read(self.input), axis=-1).astype(np.int64))


@dataclass(frozen=True, kw_only=True)
class ArgMax(_ArgReduce):
    """Index of the largest value (first on ties): class of highest score."""

    op = "ArgMax"

    def execute(self, env: Env) -> None:
        """numpy argmax returns the first maximum."""
        env.write(self.output, np.argmax(env.read(self.input), axis=-1).astype(np.int64))


# ---- from ONNX: the episode's predicted class ---------------------------------------------------------
accepts(
    "ArgMax",
    {
        "axis": (lambda v: v == 1, "1"),
        "keepdims": (lambda v: v == 0, "0"),
        "select_last_index": (lambda v: v == 0, "0"),
    },
)
