"""SGDHeadStep: one on-chip SGD step of a linear head on the support set's softmax cross-entropy.

With support features F [M,D] (frac f_F), labels y [M], state W [N,D] (frac f_W), b [N]
(frac f_b), learning rates lr_w (shape [], [D] or [N,D]; frac f_lw) and lr_b ([] or [N]):
  L  = requantise(F W^T + b, to logits_format)           (Dense's exact accumulation)
  P  = softmax(L) in prob_format                        (Softmax's integer semantics, `softmax`)
  E  = P - Y * 2^f_P                                    (exact; Y one-hot of y)
  G  = requantise(E / M, to grad_format)                (divide_by_count: shift if M = 2^k,
                                                         else times round_half_up(2^recip_frac / M))
  gW = G^T F  (exact, frac f_G + f_F);   gb = sum_m G   (exact, frac f_G)
  W <- requantise(W * 2^(c - f_W) - lr_w * gW * 2^(c - f_lw - f_G - f_F), from frac c)
  b <- requantise(b * 2^(c' - f_b) - lr_b * gb * 2^(c' - f_lb - f_G), from frac c')
where c, c' are the larger of the two terms' fracs (both terms are exact left shifts), so
each update rounds once. A learning rate 2^-k is the integer 1 at frac k: a shift in
hardware. W and b are state buffers: this op reads and rewrites them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.base import Env, Kernel, OutputSpec
from metahw.compiler.kernels.datapath import ACCUMULATOR, OPERAND, Needs, format_bits, nbytes, signed_bits
from metahw.compiler.kernels.dense import linear
from metahw.compiler.kernels.labels import check_labels_buffer, one_hot
from metahw.compiler.kernels.mac import checked_accumulator
from metahw.compiler.kernels.prototype import divided_sum_bits, divided_sum_needs
from metahw.compiler.kernels.sfu import divide_by_count
from metahw.compiler.kernels.softmax import SoftmaxSpec, softmax_int
from metahw.qformat import MAX_BITS, QFormat, bits_for_range, product_range

if TYPE_CHECKING:
    from metahw.compiler.program import Buffer


def update_range(param: QFormat, g_lo: int, g_hi: int, g_frac: int, lr: QFormat) -> tuple[int, int]:
    """Integer range of param - lr * grad (grad in [g_lo, g_hi] at g_frac), both terms aligned to the larger frac."""
    frac = max(param.frac, lr.frac + g_frac)
    ps, gs = frac - param.frac, frac - lr.frac - g_frac
    corners = [a * b for a in (lr.min_int, lr.max_int) for b in (g_lo, g_hi)]
    return (param.min_int << ps) - (max(corners) << gs), (param.max_int << ps) - (min(corners) << gs)


def update_bits(param: QFormat, g_lo: int, g_hi: int, g_frac: int, lr: QFormat) -> int:
    """Bits of the format that holds param - lr * grad (see `update_range`)."""
    return bits_for_range(*update_range(param, g_lo, g_hi, g_frac, lr))[0]


def sgd_update(env: Env, param: str, grad: np.ndarray, grad_frac: int, lr: str) -> None:
    """param <- param - lr * grad, aligned exactly, rounded once into param's format."""
    p_frac, lr_frac = env.fmt(param).frac, env.fmt(lr).frac
    frac = max(p_frac, lr_frac + grad_frac)
    step = env.read(lr) * grad
    exact = env.shift(env.read(param), p_frac - frac) - env.shift(step, lr_frac + grad_frac - frac)
    env.write(param, env.requant(exact, frac, env.fmt(param), param))


@dataclass(frozen=True, kw_only=True)
class SGDHeadStep(Kernel):
    """One closed-form SGD step on the head (W, b) -- the inner loop of ANIL / Proto-MAML / MAML-head."""

    op = "SGDHeadStep"
    reads_fields = ("features", "labels", "weight", "bias", "lr_w", "lr_b")
    writes_fields = ("weight", "bias")

    features: str
    labels: str
    weight: str
    bias: str
    lr_w: str
    lr_b: str
    logits_format: QFormat
    prob_format: QFormat
    grad_format: QFormat
    softmax: SoftmaxSpec = SoftmaxSpec()
    recip_frac: int = 16

    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """F [M,D], labels [M], W [N,D], b [N], lr_w [] | [D] | [N,D], lr_b [] | [N]; checks every width."""
        f, w, b = buffers[self.features], buffers[self.weight], buffers[self.bias]
        lr_w, lr_b = buffers[self.lr_w], buffers[self.lr_b]
        if len(f.shape) != 2 or len(w.shape) != 2 or f.shape[1] != w.shape[1] or b.shape != w.shape[:1]:
            raise self.error(f"needs features [M,D], weight [N,D], bias [N]; got {f.shape}, {w.shape}, {b.shape}")
        (m, d), n = f.shape, w.shape[0]
        if lr_w.shape not in ((), (d,), (n, d)) or lr_b.shape not in ((), (n,)):
            got = f"{lr_w.shape}, {lr_b.shape}"
            raise self.error(f"lr_w must be [], [{d}] or [{n},{d}] and lr_b [] or [{n}]; got {got}")
        if any(buf.channel_fracs is not None for buf in (f, w, b, lr_w, lr_b)):
            raise self.error("features, head and learning rates need per-tensor formats")
        if not 0 <= self.recip_frac <= 40:
            raise self.error(f"recip_frac must be in 0..40, got {self.recip_frac}")
        check_labels_buffer(self, buffers[self.labels], m)
        checked_accumulator(self, f.qformat, w.qformat, d, b.qformat)
        self.softmax.check_input(self, self.logits_format, n)
        if self.prob_format.frac < 0:
            raise self.error(f"prob_format needs frac >= 0 to hold probabilities, got {self.prob_format}")
        g = self.grad_format
        pmin, pmax = product_range(g, f.qformat)
        widths = {
            "the scaled error": divided_sum_bits(
                self.prob_format.min_int - (1 << self.prob_format.frac), self.prob_format.max_int, m, self.recip_frac
            ),
            "the weight update": update_bits(w.qformat, m * pmin, m * pmax, g.frac + f.qformat.frac, lr_w.qformat),
            "the bias update": update_bits(b.qformat, m * g.min_int, m * g.max_int, g.frac, lr_b.qformat),
        }
        for what, bits in widths.items():
            if bits > MAX_BITS:
                raise self.error(f"{what} needs {bits} bits; at most {MAX_BITS}")
        return {self.weight: OutputSpec(w.shape), self.bias: OutputSpec(b.shape)}

    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """2*M*N*D (logits, weight gradient) + N*D (weight update) + M*N (softmax scaling) + N (bias update)."""
        (m, d), n = buffers[self.features].shape, buffers[self.weight].shape[0]
        return 2 * m * n * d + n * d + m * n + n

    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """Logits, their softmax, the error and its mean, the gradients, and both parameter updates."""
        f, w, bias = buffers[self.features].qformat, buffers[self.weight].qformat, buffers[self.bias].qformat
        (m, d), n = buffers[self.features].shape, buffers[self.weight].shape[0]
        yield f"features '{self.features}' ({f})", OPERAND, format_bits(f)
        yield f"head weight '{self.weight}' ({w})", OPERAND, format_bits(w)
        yield f"the logits of '{self.weight}'", ACCUMULATOR, format_bits(checked_accumulator(self, f, w, d, bias))
        yield from self.softmax.width_needs(f"{self.name}/logits", self.logits_format, n)
        p = self.prob_format
        lo, hi = p.min_int - (1 << p.frac), p.max_int
        yield "the error (probabilities minus one-hot)", ACCUMULATOR, signed_bits(lo, hi)
        yield from divided_sum_needs("the error", lo, hi, m, self.recip_frac)
        g = self.grad_format
        yield f"the gradient ({g})", OPERAND, format_bits(g)
        pmin, pmax = product_range(g, f)
        yield "the weight gradient", ACCUMULATOR, signed_bits(m * pmin, m * pmax)
        lr_w, lr_b = buffers[self.lr_w].qformat, buffers[self.lr_b].qformat
        yield f"learning rate '{self.lr_w}'", OPERAND, format_bits(lr_w)
        weight_update = update_range(w, m * pmin, m * pmax, g.frac + f.frac, lr_w)
        yield f"the update of '{self.weight}'", ACCUMULATOR, signed_bits(*weight_update)
        yield f"learning rate '{self.lr_b}'", OPERAND, format_bits(lr_b)
        bias_update = update_range(bias, m * g.min_int, m * g.max_int, g.frac, lr_b)
        yield f"the update of '{self.bias}'", ACCUMULATOR, signed_bits(*bias_update)

    def scratch_bytes(self, buffers: Mapping[str, Buffer]) -> int:
        """Per support row and class: the logit, its exp, the probability and the gradient."""
        m, n = buffers[self.features].shape[0], buffers[self.weight].shape[0]
        bits = self.logits_format.bits + self.softmax.exp_frac + 1 + self.prob_format.bits + self.grad_format.bits
        return nbytes(m * n, bits)

    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Logits (REDUCE), softmax, gradient pass (VECTOR), gW + W update (OUTER), gb + b update (WIDE)."""
        (m, d), n = buffers[self.features].shape, buffers[self.weight].shape[0]
        lanes = hw.lanes  # a head op: one group of P lanes
        return (
            timing.reduce_cycles(m * n, d, hw)
            + timing.softmax_cycles(m, n, self.softmax.recip_bits, hw)
            + timing.instruction(timing.VECTOR, timing.ceil_div(m * n, hw.lanes), hw)
            + timing.instruction(timing.OUTER, n * timing.ceil_div(d, lanes) * m, hw)
            + timing.instruction(timing.WIDE, timing.ceil_div(n, hw.lanes) * m, hw)
        )

    def execute(self, env: Env) -> None:
        """See the module docstring."""
        feats, f_frac = env.read(self.features), env.fmt(self.features).frac
        n = env.buffers[self.weight].shape[0]
        acc, acc_frac = linear(env, feats, f_frac, self.weight, self.bias)
        logits = env.requant(acc, acc_frac, self.logits_format, f"{self.name}/logits")
        probs = softmax_int(env, logits, self.logits_format.frac, self.softmax, self.prob_format, f"{self.name}/probs")
        error = probs - (one_hot(self, env.read(self.labels), n) << self.prob_format.frac)
        scaled, extra = divide_by_count(error, feats.shape[0], self.recip_frac)
        grad = env.requant(scaled, self.prob_format.frac + extra, self.grad_format, f"{self.name}/grad")
        g_frac = self.grad_format.frac
        sgd_update(env, self.weight, grad.T @ feats, g_frac + f_frac, self.lr_w)
        sgd_update(env, self.bias, grad.sum(axis=0), g_frac, self.lr_b)
