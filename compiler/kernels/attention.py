"""CosineAttention: the Matching Networks classifier, class scores from attention over supports.

With queries Q [B,D], supports S [M,D], labels y [M], scale s (a scalar weight buffer):
  c = normalize(Q) normalize(S)^T          (Distance's cosine, exact at frac 2U, U = unit_frac)
  z = requantise(c * s, to logits_format)  (scaled cosine similarities, [B,M])
  a = softmax(z) in attention_format       (Softmax's integer semantics over the M supports)
  p[b,n] = requantise(sum_{m : y_m = n} a[b,m], to the output format)
p approximates the class probabilities; the float model's log p is monotone in p, so the
predicted class is ArgMax(p) and no logarithm is needed in hardware.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.datapath import ACCUMULATOR, OPERAND, Needs, format_bits, nbytes, signed_bits
from metahw.compiler.kernels.distance import check_normalize, norm_needs, normalize, unit_format
from metahw.compiler.kernels.labels import check_labels_buffer, one_hot
from metahw.compiler.kernels.mac import checked_accumulator
from metahw.compiler.kernels.softmax import SoftmaxSpec, softmax_int
from metahw.qformat import MAX_BITS, QFormat, product_range

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


@dataclass(frozen=True, kw_only=True)
class CosineAttention(Kernel):
    """Softmax attention over scaled cosine similarities, summed per class: -> [B, ways]."""

    op = "CosineAttention"
    reads_fields = ("queries", "supports", "labels", "scale")
    writes_fields = ("output",)

    queries: str
    supports: str
    labels: str
    scale: str
    output: str
    ways: int
    logits_format: QFormat
    attention_format: QFormat
    unit_frac: int = 14
    softmax: SoftmaxSpec = SoftmaxSpec()

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """Queries [B,D], supports [M,D], labels [M], scale [] -> [B, ways]; checks widths."""
        q, s = buffers[self.queries], buffers[self.supports]
        if len(q.shape) != 2 or len(s.shape) != 2 or q.shape[1] != s.shape[1]:
            raise self.error(f"needs queries [B,D] and supports [M,D], got {q.shape} and {s.shape}")
        if q.channel_fracs is not None or s.channel_fracs is not None or self.ways < 1:
            raise self.error("needs per-tensor formats and ways >= 1")
        check_labels_buffer(self, buffers[self.labels], s.shape[0])
        scale = buffers[self.scale]
        if scale.shape != ():
            raise self.error(f"scale '{self.scale}' must be a scalar buffer, got shape {scale.shape}")
        dim = q.shape[1]
        check_normalize(self, q.qformat, dim, self.unit_frac)
        check_normalize(self, s.qformat, dim, self.unit_frac)
        cos = checked_accumulator(self, unit_format(self.unit_frac), unit_format(self.unit_frac), dim)
        if cos.bits + scale.qformat.bits > MAX_BITS:
            raise self.error(f"cosine {cos} times scale {scale.qformat} is wider than {MAX_BITS} bits")
        self.softmax.check_input(self, self.logits_format, s.shape[0])
        return {self.output: OutputSpec((q.shape[0], self.ways))}

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """B*M*D (cosines) + 2*(B+M)*D (normalisation) + B*M (scale) + B*M (softmax) + B*M (class sums)."""
        (b, d), m = buffers[self.queries].shape, buffers[self.supports].shape[0]
        return b * m * d + 2 * (b + m) * d + 3 * b * m

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """Both normalisations, the cosines and their scaling, the softmax, and the attention's class sums."""
        q, s = buffers[self.queries], buffers[self.supports]
        dim, m = q.shape[1], s.shape[0]
        yield from norm_needs(self.queries, q.qformat, dim)
        yield from norm_needs(self.supports, s.qformat, dim)
        unit = unit_format(self.unit_frac)
        yield f"the unit vectors ({unit})", OPERAND, format_bits(unit)
        cosine = checked_accumulator(self, unit, unit, dim)
        yield "the cosine similarities", ACCUMULATOR, format_bits(cosine)
        scale = buffers[self.scale].qformat
        yield f"scale '{self.scale}' ({scale})", OPERAND, format_bits(scale)
        lo, hi = product_range(cosine, scale)
        yield "the scaled cosines", ACCUMULATOR, signed_bits(lo, hi)
        yield from self.softmax.width_needs(f"{self.name}/logits", self.logits_format, m)
        a = self.attention_format
        yield f"the attention ({a})", OPERAND, format_bits(a)
        yield "the class sums of the attention", ACCUMULATOR, signed_bits(m * a.min_int, m * a.max_int)

    def scratch_bytes(self, buffers: Mapping[str, Buffer]) -> int:
        """The unit vectors of queries and supports, and per (query, support) the logit, exp and attention."""
        (b, d), m = buffers[self.queries].shape, buffers[self.supports].shape[0]
        units = (b + m) * d * unit_format(self.unit_frac).bits
        per_pair = self.logits_format.bits + self.softmax.exp_frac + 1 + self.attention_format.bits
        return nbytes(units + b * m * per_pair, 1)

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Normalise queries and supports, cosine x scale (REDUCE), softmax, class sums (OUTER)."""
        (b, d), m = buffers[self.queries].shape, buffers[self.supports].shape[0]
        class_sums = b * timing.ceil_div(self.ways, hw.lanes) * m  # a head op: one group of P lanes
        return (
            timing.norm_cycles(b, d, hw)
            + timing.norm_cycles(m, d, hw)
            + timing.reduce_cycles(b * m, d, hw)
            + timing.softmax_cycles(b, m, self.softmax.recip_bits, hw)
            + timing.instruction(timing.OUTER, class_sums, hw)
        )

    def execute(self, env: Env) -> None:
        """See the module docstring."""
        u = normalize(env, env.read(self.queries), self.unit_frac, f"{self.name}/unit_queries")
        v = normalize(env, env.read(self.supports), self.unit_frac, f"{self.name}/unit_supports")
        scaled = (u @ v.T) * env.read(self.scale)
        scaled_frac = 2 * self.unit_frac + env.fmt(self.scale).frac
        z = env.requant(scaled, scaled_frac, self.logits_format, f"{self.name}/logits")
        a = softmax_int(env, z, self.logits_format.frac, self.softmax, self.attention_format, f"{self.name}/attention")
        y = one_hot(self, env.read(self.labels), self.ways)
        p = a @ y
        env.write(self.output, env.requant(p, self.attention_format.frac, env.fmt(self.output), self.output))
