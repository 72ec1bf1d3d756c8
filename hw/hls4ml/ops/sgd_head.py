"""hls4ml lowering of SGDHeadStep: the error G, then the weight and the bias update layers."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import SGDHeadStep
from metahw.hw.hls4ml.head import Head, count_factor, softmax_config
from metahw.hw.hls4ml.ops import HEAD, lowers
from metahw.hw.hls4ml.precision import accumulator_type, exact_type, fixed
from metahw.qformat import product_range


@lowers(HEAD, SGDHeadStep)
def sgd_step(h: Head, op: SGDHeadStep) -> None:
    """SGDHeadStep as metahw layers of the head."""
    f, y, w, b, lr_w, lr_b = (
        h.episode(op, name) for name in (op.features, op.labels, op.weight, op.bias, op.lr_w, op.lr_b)
    )
    (m, d), n = f.shape, w.shape[0]
    p, g = op.prob_format, op.grad_format
    factor, raw = count_factor(m, op.recip_frac)
    ints, types, tables = softmax_config(op.softmax, op.logits_format, h.modes[0])
    ints |= {"n_support": m, "n_feat": d, "n_class": n, "factor_raw": raw}
    types |= {
        "accum_t": accumulator_type(f.fmt, w.fmt, d, b.fmt),
        "logits_t": fixed(op.logits_format, *h.modes),
        "prob_t": fixed(p, *h.modes),
        "err_t": exact_type(p.min_int - (1 << p.frac), p.max_int, p.frac),
        "factor_t": factor,
    }
    grad = h.add(
        "MetahwSGDGrad", f"{op.name}_grad", [f, y, w, b], (m, n), g, False, "sgd_grad", ints, types, tables, trace=False
    )
    pmin, pmax = product_range(g, f.fmt)
    new_w = h.add(
        "MetahwSGDUpdate",
        f"{op.name}_weight",
        [w, grad, f, lr_w],
        w.shape,
        h.buffers[op.weight].qformat,
        False,
        "sgd_weight_update",
        {"n_support": m, "n_feat": d, "n_class": n, "n_lr": int(np.prod(lr_w.shape))},
        {"accum_t": exact_type(m * pmin, m * pmax, g.frac + f.fmt.frac)},
    )
    new_b = h.add(
        "MetahwSGDUpdate",
        f"{op.name}_bias",
        [b, grad, lr_b],
        b.shape,
        h.buffers[op.bias].qformat,
        False,
        "sgd_bias_update",
        {"n_support": m, "n_class": n, "n_lr": int(np.prod(lr_b.shape))},
        {"accum_t": exact_type(m * g.min_int, m * g.max_int, g.frac)},
    )
    h.define(op.name, op.weight, new_w)
    h.define(op.name, op.bias, new_b)
