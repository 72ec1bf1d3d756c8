"""Softmax over the last axis with an integer exp table and an integer reciprocal.

With x at fractional bits f_x and `SoftmaxSpec(index_frac=fi, table_size=T, exp_frac=E,
recip_bits=R)`:
  d  = x - max(x)                         (<= 0, exact)
  k  = -shift(d, f_x - fi)                (program rounding; table index, >= 0)
  e  = LUT[k] if k < T else 0             (LUT = sfu.exp_table(fi, T, E); the max gives 2^E)
  S  = sum(e)                             (>= 2^E)
  r  = floor(2^(E+R) / S)                 (sfu.reciprocal)
  p  = requantise(e * r, from frac E+R to the output format)
The table spans inputs down to -(T-1) * 2^-fi; below that exp is taken as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.datapath import ACCUMULATOR, OPERAND, Needs, nbytes, signed_bits
from metahw.compiler.kernels.sfu import exp_table, reciprocal
from metahw.qformat import MAX_BITS, QFormat

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


@dataclass(frozen=True)
class SoftmaxSpec:
    """Softmax table parameters: index step 2^-index_frac, table_size entries, exp_frac and recip_bits."""

    index_frac: int = 4
    table_size: int = 256
    exp_frac: int = 16
    recip_bits: int = 16

    def __post_init__(self) -> None:
        exp_table(self.index_frac, 1, self.exp_frac)  # validates the table parameters
        if not 1 <= self.table_size <= 1 << 16:
            raise ValueError(f"softmax table_size must be in 1..65536, got {self.table_size}")
        if not 1 <= self.recip_bits or self.exp_frac + self.recip_bits > MAX_BITS:
            raise ValueError(f"softmax needs recip_bits >= 1 and exp_frac + recip_bits <= {MAX_BITS}")

    def table(self) -> np.ndarray:
        """The exp LUT this spec defines."""
        return exp_table(self.index_frac, self.table_size, self.exp_frac)

    def check_input(self, op: Kernel, x: QFormat, n: int) -> None:
        """The index shift and the sum of n table entries must fit the int64 datapath."""
        if x.bits + 1 + max(0, self.index_frac - x.frac) > MAX_BITS:
            raise op.error(f"softmax input {x} is too wide for table index_frac {self.index_frac}")
        if (n << self.exp_frac).bit_length() > MAX_BITS:
            raise op.error(f"softmax over {n} values overflows with exp_frac {self.exp_frac}")

    def width_needs(self, what: str, x: QFormat, n: int) -> Needs:
        """A softmax over rows of `n` values of format `x` (`what` names them): every stage's width."""
        shift = max(0, self.index_frac - x.frac)
        yield f"the max-subtracted {what}", ACCUMULATOR, signed_bits((x.min_int - x.max_int) << shift, 0)
        yield f"the exp values of {what}", OPERAND, signed_bits(0, 1 << self.exp_frac)
        yield f"the exp sum of {what}", ACCUMULATOR, signed_bits(0, n << self.exp_frac)
        yield f"the reciprocal of the exp sum of {what}", OPERAND, signed_bits(0, 1 << self.recip_bits)
        yield f"the scaled exp values of {what}", ACCUMULATOR, signed_bits(0, 1 << (self.exp_frac + self.recip_bits))

    def to_json(self) -> dict:
        """Plain dict for program.json."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> SoftmaxSpec:
        """Inverse of `to_json`."""
        if not isinstance(data, dict) or set(data) != {"index_frac", "table_size", "exp_frac", "recip_bits"}:
            raise ValueError(f"a softmax spec needs exactly index_frac, table_size, exp_frac, recip_bits; got {data!r}")
        if not all(type(v) is int for v in data.values()):
            raise ValueError(f"softmax spec values must be integers, got {data!r}")
        return cls(**data)


def softmax_int(env: Env, x: np.ndarray, x_frac: int, spec: SoftmaxSpec, out: QFormat, tensor: str) -> np.ndarray:
    """The integer softmax of the module docstring over the last axis; overflows counted on `tensor`."""
    d = x - x.max(axis=-1, keepdims=True)
    k = -env.shift(d, x_frac - spec.index_frac)
    lut = spec.table()
    e = np.where(k < spec.table_size, lut[np.minimum(k, spec.table_size - 1)], 0)
    r = reciprocal(e.sum(axis=-1, keepdims=True), spec.exp_frac + spec.recip_bits)
    return env.requant(e * r, spec.exp_frac + spec.recip_bits, out, tensor)


@dataclass(frozen=True, kw_only=True)
class Softmax(Kernel):
    """Standalone softmax over the last axis (same shape; output format chosen by the program)."""

    op = "Softmax"
    reads_fields = ("input",)
    writes_fields = ("output",)

    input: str
    output: str
    spec: SoftmaxSpec = SoftmaxSpec()

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """Same shape as the input; checks widths."""
        x = buffers[self.input]
        if not x.shape or x.channel_fracs is not None:
            raise self.error(f"the input needs at least one axis and a per-tensor format, got {x.shape}")
        self.spec.check_input(self, x.qformat, x.shape[-1])
        return {self.output: OutputSpec(x.shape)}

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """One multiply e*r per element (the special-function unit does the table and divider)."""
        return int(np.prod(buffers[self.input].shape))

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """The softmax's stages over the input's last axis."""
        x = buffers[self.input]
        return self.spec.width_needs(f"'{self.input}'", x.qformat, x.shape[-1])

    def scratch_bytes(self, buffers: Mapping[str, Buffer]) -> int:
        """The exp values of the whole input."""
        return nbytes(int(np.prod(buffers[self.input].shape)), self.spec.exp_frac + 1)

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Row max, exp, reciprocal and scaling over the rows of the last axis."""
        shape = buffers[self.input].shape
        return timing.softmax_cycles(timing.rows_of(shape), shape[-1], self.spec.recip_bits, hw)

    def execute(self, env: Env) -> None:
        """See the module docstring."""
        x = env.read(self.input)
        probs = softmax_int(env, x, env.fmt(self.input).frac, self.spec, env.fmt(self.output), self.output)
        env.write(self.output, probs)
