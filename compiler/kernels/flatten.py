"""Flatten: [B, d1, d2, ...] -> [B, d1*d2*...] in C order (torch's flatten(1)); values and format unchanged."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


@dataclass(frozen=True, kw_only=True)
class Flatten(Kernel):
    """Reshape keeping the first axis."""

    op = "Flatten"
    reads_fields = ("input",)
    writes_fields = ("output",)

    input: str
    output: str

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """[B, ...] -> [B, prod(...)], same format."""
        x = buffers[self.input]
        if len(x.shape) < 2 or x.channel_fracs is not None:
            raise self.error(f"needs at least 2 axes and one format, got {x.shape}")
        return {self.output: OutputSpec((x.shape[0], int(np.prod(x.shape[1:]))), x.qformat)}

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """No arithmetic: 0."""
        return 0

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Per group of G images, a VECTOR copy from AMEM into the support memory or query buffer."""
        return timing.segment_vector(buffers[self.input].shape, hw)

    def execute(self, env: Env) -> None:
        """Row-major reshape."""
        x = env.read(self.input)
        env.write(self.output, x.reshape(x.shape[0], -1))
