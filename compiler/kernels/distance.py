"""Distance between queries [Q,D] and references [N,D] (prototypes or support examples) -> [Q,N].

Metrics (the result is exact before the final requantisation to the output format):
  l2      sum_d (q'_d - r'_d)^2 with q', r' left-shifted to the common frac f = max(f_q, f_r);
          result at frac 2f (squared Euclidean distance; ProtoNets take the ArgMin).
  dot     sum_d q_d r_d at frac f_q + f_r.
  cosine  dot of the unit-normalised rows: u = normalize(q), v = normalize(r) at frac U =
          `unit_frac`, result sum_d u_d v_d at frac 2U. normalize(x)_d = requantise(x_d * r_x,
          from frac e_x to U) with (r_x, e_x) = sfu.rsqrt(sum_d x_d^2): the formats of x cancel
          in x / |x|. A zero row normalises to zeros (cosine 0). |u_d| <= 2^U (1 + 2^-14) + 1,
          so the unit format QFormat(U + 2, U) never overflows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.datapath import ACCUMULATOR, OPERAND, Needs, format_bits, nbytes, signed_bits
from metahw.compiler.kernels.mac import checked_accumulator
from metahw.compiler.kernels.sfu import RSQRT_MAX, rsqrt
from metahw.qformat import MAX_BITS, QFormat, bits_for_range, product_range

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer

METRICS = ("l2", "dot", "cosine")


def unit_format(unit_frac: int) -> QFormat:
    """Format of unit-normalised vectors: components in [-2, 2) at frac `unit_frac`."""
    return QFormat(unit_frac + 2, unit_frac)


def check_normalize(op: Kernel, x: QFormat, dim: int, unit_frac: int) -> None:
    """Widths of normalize(): sum of squares of `dim` values of x, and the unit dot product."""
    if not 1 <= unit_frac <= 28:
        raise op.error(f"unit_frac must be in 1..28, got {unit_frac}")
    checked_accumulator(op, QFormat(x.bits, 0, x.signed), QFormat(x.bits, 0, x.signed), dim)
    checked_accumulator(op, unit_format(unit_frac), unit_format(unit_frac), dim)


def normalize(env: Env, x: np.ndarray, unit_frac: int, tensor: str) -> np.ndarray:
    """Rows of x scaled to unit Euclidean norm at frac `unit_frac` (see module docstring)."""
    r, e = rsqrt((x * x).sum(axis=-1))
    return env.requant(x * r[:, None], e[:, None], unit_format(unit_frac), tensor)


def norm_needs(name: str, x: QFormat, dim: int) -> Needs:
    """normalize() of rows of `dim` values of `x`: the sum of squares, the rsqrt factor, the scaled row."""
    yield f"'{name}' ({x})", OPERAND, format_bits(x)
    lo, hi = product_range(x, x)
    yield f"the sum of squares of '{name}'", ACCUMULATOR, signed_bits(0, dim * hi)
    yield "the rsqrt factor", OPERAND, signed_bits(0, RSQRT_MAX)
    yield f"'{name}' times its rsqrt factor", ACCUMULATOR, signed_bits(x.min_int * RSQRT_MAX, x.max_int * RSQRT_MAX)


def aligned_difference(q: QFormat, r: QFormat) -> tuple[int, int]:
    """Integer range of q - r once both are aligned to the common (larger) frac."""
    f = max(q.frac, r.frac)
    qs, rs = f - q.frac, f - r.frac
    return (q.min_int << qs) - (r.max_int << rs), (q.max_int << qs) - (r.min_int << rs)


def l2_bits(q: QFormat, r: QFormat, dim: int) -> int:
    """Bits of the exact squared-L2 sum of `dim` terms after aligning q and r to the common frac."""
    lo, hi = aligned_difference(q, r)
    return bits_for_range(0, dim * max(lo * lo, hi * hi))[0]


@dataclass(frozen=True, kw_only=True)
class Distance(Kernel):
    """Pairwise l2 / dot / cosine between query rows and reference rows."""

    op = "Distance"
    reads_fields = ("queries", "refs")
    writes_fields = ("output",)

    queries: str
    refs: str
    output: str
    metric: str
    unit_frac: int = 14

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise self.error(f"unknown metric {self.metric!r}; accepted are {', '.join(METRICS)}")

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """[Q,D] and [N,D] with per-tensor formats -> [Q,N]; checks the exact result's width."""
        q, r = buffers[self.queries], buffers[self.refs]
        if len(q.shape) != 2 or len(r.shape) != 2 or q.shape[1] != r.shape[1]:
            raise self.error(f"needs queries [Q,D] and refs [N,D], got {q.shape} and {r.shape}")
        if q.channel_fracs is not None or r.channel_fracs is not None:
            raise self.error("queries and refs need per-tensor formats")
        self.exact_format(buffers)
        return {self.output: OutputSpec((q.shape[0], r.shape[0]))}

    def exact_format(self, buffers: Mapping[str, Buffer]) -> QFormat:
        """Format that holds the exact distance (an output buffer of this format loses nothing)."""
        q, r = buffers[self.queries], buffers[self.refs]
        dim = q.shape[1]
        if self.metric == "l2":
            bits = l2_bits(q.qformat, r.qformat, dim)
            if bits > MAX_BITS:
                raise self.error(f"squared L2 over {dim} dims of {q.qformat} and {r.qformat} needs {bits} bits")
            return QFormat(bits, 2 * max(q.qformat.frac, r.qformat.frac), signed=False)
        if self.metric == "dot":
            return checked_accumulator(self, q.qformat, r.qformat, dim)
        check_normalize(self, q.qformat, dim, self.unit_frac)
        check_normalize(self, r.qformat, dim, self.unit_frac)
        return checked_accumulator(self, unit_format(self.unit_frac), unit_format(self.unit_frac), dim)

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """Q*N*D, plus (Q+N)*D squares and (Q+N)*D scalings for cosine."""
        (nq, dim), nr = buffers[self.queries].shape, buffers[self.refs].shape[0]
        return nq * nr * dim + (2 * (nq + nr) * dim if self.metric == "cosine" else 0)

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """l2: the aligned difference; dot: both operands; cosine: both normalisations and the unit vectors.
        Then the exact distance."""
        q, r = buffers[self.queries].qformat, buffers[self.refs].qformat
        if self.metric == "l2":
            difference = aligned_difference(q, r)
            yield f"the difference of '{self.queries}' and '{self.refs}'", OPERAND, signed_bits(*difference)
        elif self.metric == "dot":
            yield f"'{self.queries}' ({q})", OPERAND, format_bits(q)
            yield f"'{self.refs}' ({r})", OPERAND, format_bits(r)
        else:
            dim = buffers[self.queries].shape[1]
            yield from norm_needs(self.queries, q, dim)
            yield from norm_needs(self.refs, r, dim)
            unit = unit_format(self.unit_frac)
            yield f"the unit vectors ({unit})", OPERAND, format_bits(unit)
        yield f"the exact {self.metric} distance", ACCUMULATOR, format_bits(self.exact_format(buffers))

    def scratch_bytes(self, buffers: Mapping[str, Buffer]) -> int:
        """cosine: the unit vectors of the queries and the references; l2 and dot: none."""
        if self.metric != "cosine":
            return 0
        rows = buffers[self.queries].shape[0] + buffers[self.refs].shape[0]
        return nbytes(rows * buffers[self.queries].shape[1], unit_format(self.unit_frac).bits)

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """REDUCE: Q*N distances of D terms; cosine first normalises the Q and the N rows."""
        (nq, dim), nr = buffers[self.queries].shape, buffers[self.refs].shape[0]
        norms = timing.norm_cycles(nq, dim, hw) + timing.norm_cycles(nr, dim, hw) if self.metric == "cosine" else 0
        return norms + timing.reduce_cycles(nq * nr, dim, hw)

    def execute(self, env: Env) -> None:
        """Exact distance, then requantise to the output format."""
        q, r = env.read(self.queries), env.read(self.refs)
        fq, fr = env.fmt(self.queries).frac, env.fmt(self.refs).frac
        if self.metric == "l2":
            f = max(fq, fr)
            q, r = q << (f - fq), r << (f - fr)
            acc = np.stack([((qi[None, :] - r) ** 2).sum(axis=-1) for qi in q])
            frac = 2 * f
        elif self.metric == "dot":
            acc, frac = q @ r.T, fq + fr
        else:
            u = normalize(env, q, self.unit_frac, f"{self.name}/unit_queries")
            v = normalize(env, r, self.unit_frac, f"{self.name}/unit_refs")
            acc, frac = u @ v.T, 2 * self.unit_frac
        env.write(self.output, env.requant(acc, frac, env.fmt(self.output), self.output))
