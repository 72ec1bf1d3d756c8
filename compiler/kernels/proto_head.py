"""ProtoHeadInit: the Proto-MAML linear head from prototypes, W = 2c and b = -|c|^2.

With prototypes c [N,D] at frac f:
  W = requantise(c, from frac f - 1)            (2c is the same integers with one fewer frac bit)
  b = requantise(-sum_d c[n,d]^2, from frac 2f)  (exact sum of squares first)
to the formats of the W and b buffers (usually state buffers that SGDHeadStep then adapts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.datapath import ACCUMULATOR, OPERAND, Needs, format_bits, signed_bits
from metahw.compiler.kernels.mac import checked_accumulator

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


@dataclass(frozen=True, kw_only=True)
class ProtoHeadInit(Kernel):
    """Prototypes [N,D] -> head weight [N,D] and bias [N]."""

    op = "ProtoHeadInit"
    reads_fields = ("prototypes",)
    writes_fields = ("weight", "bias")

    prototypes: str
    weight: str
    bias: str

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """[N,D] -> [N,D] and [N]; checks the sum-of-squares width."""
        c = buffers[self.prototypes]
        if len(c.shape) != 2 or c.channel_fracs is not None:
            raise self.error(f"prototypes must be [N,D] with one format, got {c.shape}")
        checked_accumulator(self, c.qformat, c.qformat, c.shape[1])
        return {self.weight: OutputSpec(c.shape), self.bias: OutputSpec(c.shape[:1])}

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """N*D squares."""
        n, d = buffers[self.prototypes].shape
        return n * d

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """The prototypes as operands, and minus their sums of squares."""
        c = buffers[self.prototypes]
        yield f"prototypes '{self.prototypes}' ({c.qformat})", OPERAND, format_bits(c.qformat)
        squares = checked_accumulator(self, c.qformat, c.qformat, c.shape[1])
        yield f"minus the sum of squares of '{self.prototypes}'", ACCUMULATOR, signed_bits(-squares.max_int, 0)

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """VECTOR pass for W, then REDUCE: N sums of D squares for b."""
        n, d = buffers[self.prototypes].shape
        w_pass = timing.instruction(timing.VECTOR, timing.ceil_div(n * d, hw.lanes), hw)
        return w_pass + timing.reduce_cycles(n, d, hw)

    def execute(self, env: Env) -> None:
        """See the module docstring."""
        c, f = env.read(self.prototypes), env.fmt(self.prototypes).frac
        env.write(self.weight, env.requant(c, f - 1, env.fmt(self.weight), self.weight))
        env.write(self.bias, env.requant(-(c * c).sum(axis=1), 2 * f, env.fmt(self.bias), self.bias))
