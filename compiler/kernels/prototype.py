"""PrototypeAccumulate: class prototypes c = (Y^T F) / K from support features and labels.

With F [M,D] at frac f, labels y [M] in 0..N-1, K = `shots` examples per class:
  S[n,d] = sum_{m : y_m = n} F[m,d]                      (exact)
  K = 2^k:   c = requantise(S, from frac f + k)          (division is a shift)
  otherwise: c = requantise(S * R, from frac f + `recip_frac`),
             R = round_half_up(2^recip_frac / K)         (sfu.constant_reciprocal)
to the output format. The reciprocal's error is at most 2^-(recip_frac+1) relative to 1/K.
At run time every class must occur exactly K times (the episode shape is static).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.datapath import ACCUMULATOR, OPERAND, Needs, format_bits, nbytes, signed_bits
from metahw.compiler.kernels.labels import check_labels_buffer, one_hot
from metahw.compiler.kernels.sfu import constant_reciprocal, divide_by_count
from metahw.qformat import MAX_BITS, bits_for_range

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


def divided_sum_bits(lo: int, hi: int, count: int, recip_frac: int) -> int:
    """Bits of integers in [lo, hi] divided by `count` before requantisation (see divide_by_count)."""
    if count & (count - 1):
        factor = constant_reciprocal(count, recip_frac)
        lo, hi = lo * factor, hi * factor
    return bits_for_range(lo, hi)[0]


def divided_sum_needs(what: str, lo: int, hi: int, count: int, recip_frac: int) -> Needs:
    """Values in [lo, hi] divided by `count`: a constant reciprocal operand and the product, unless a power of two."""
    if count & (count - 1):
        factor = constant_reciprocal(count, recip_frac)
        yield f"the reciprocal of {count}", OPERAND, signed_bits(0, factor)
        yield f"{what} divided by {count}", ACCUMULATOR, signed_bits(lo * factor, hi * factor)


@dataclass(frozen=True, kw_only=True)
class PrototypeAccumulate(Kernel):
    """Per-class mean of support features: [M,D] + labels [M] -> [N,D]."""

    op = "PrototypeAccumulate"
    reads_fields = ("features", "labels")
    writes_fields = ("output",)

    features: str
    labels: str
    output: str
    ways: int
    shots: int
    recip_frac: int = 16

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """F [M,D] with M = ways * shots, labels [M] -> prototypes [ways, D]."""
        f = buffers[self.features]
        if self.ways < 1 or self.shots < 1 or not 0 <= self.recip_frac <= 40:
            got = f"{self.ways}, {self.shots}, {self.recip_frac}"
            raise self.error(f"needs ways, shots >= 1 and recip_frac in 0..40, got {got}")
        if len(f.shape) != 2 or f.shape[0] != self.ways * self.shots or f.channel_fracs is not None:
            raise self.error(f"features must be [{self.ways * self.shots}, D] with one format, got {f.shape}")
        check_labels_buffer(self, buffers[self.labels], f.shape[0])
        k = self.shots
        bits = divided_sum_bits(k * f.qformat.min_int, k * f.qformat.max_int, k, self.recip_frac)
        if bits > MAX_BITS:
            raise self.error(f"the scaled class sum needs {bits} bits; at most {MAX_BITS}")
        return {self.output: OutputSpec((self.ways, f.shape[1]))}

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """M*D accumulations, plus N*D reciprocal multiplies when K is not a power of two."""
        m, d = buffers[self.features].shape
        return m * d + (0 if self.shots & (self.shots - 1) == 0 else self.ways * d)

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """The features, the class sums of `shots` of them, and their division by `shots`."""
        f, k = buffers[self.features].qformat, self.shots
        yield f"features '{self.features}' ({f})", OPERAND, format_bits(f)
        yield f"the class sums of '{self.features}'", ACCUMULATOR, signed_bits(k * f.min_int, k * f.max_int)
        yield from divided_sum_needs("the class sums", k * f.min_int, k * f.max_int, k, self.recip_frac)

    def scratch_bytes(self, buffers: Mapping[str, Buffer]) -> int:
        """The class index of every support row."""
        m = buffers[self.features].shape[0]
        return nbytes(m, max(1, (m - 1).bit_length()))

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Label scan (M beats), then WIDE: per class and block of P columns, one beat per shot."""
        m, d = buffers[self.features].shape
        beats = self.ways * timing.ceil_div(d, hw.lanes) * self.shots
        return timing.instruction(timing.SCAN, m, hw) + timing.instruction(timing.WIDE, beats, hw)

    def execute(self, env: Env) -> None:
        """Class sums (exact), divide by K, requantise."""
        y = one_hot(self, env.read(self.labels), self.ways)
        counts = y.sum(axis=0)
        if np.any(counts != self.shots):
            raise self.error(f"each class must occur {self.shots} time(s) in the labels, got counts {counts.tolist()}")
        sums = y.T @ env.read(self.features)
        scaled, extra = divide_by_count(sums, self.shots, self.recip_frac)
        frac = env.fmt(self.features).frac + extra
        env.write(self.output, env.requant(scaled, frac, env.fmt(self.output), self.output))
