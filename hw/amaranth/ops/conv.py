"""RTL lowering of Conv2d: the conv engine's layer constants, its WMEM weight words and bias ROM words.

A weight word holds one channel tile's L weights of one beat once per lane group (every
group multiplies its own image by the same weights), and a bias word the tile's L biases
likewise: at G = 1 that is P of each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from metahw.compiler.kernels import Conv2d
from metahw.compiler.kernels.winograd import transform_weights
from metahw.compiler.program import Buffer
from metahw.hw.amaranth.isa import ConvLayer, RequantSpec, refuse
from metahw.hw.amaranth.ops import CONV, lowers

if TYPE_CHECKING:
    from metahw.hw.amaranth.spec import RtlPlan


@lowers(CONV, Conv2d)
def conv_layer(rp: RtlPlan, op: Conv2d, buffers: dict[str, Buffer], linear: bool) -> int:
    """The engine constants of one Conv2d (shared weights and equal layers are stored once); returns its index."""
    x, w, out = buffers[op.input], buffers[op.weight], buffers[op.output]
    for buf in (x, w, out) + ((buffers[op.bias],) if op.bias else ()):
        if buf.channel_fracs is not None:
            raise refuse(f"'{buf.name}' has per-channel formats")
    o, c, k, _ = w.shape
    acc_frac = x.qformat.frac + w.qformat.frac
    requant = rp.requant_index(RequantSpec(acc_frac + op.post_frac() - out.qformat.frac, out.qformat))
    leaky = op.leaky_slope is not None
    scale = rp.factor_index(1 << op.leaky_frac) if leaky else 0
    negative_scale = rp.factor_index(op.leaky_slope) if leaky else 0
    lanes, groups = rp.group_lanes, rp.hw.groups
    tiles = -(-o // lanes)
    key = (op.weight, op.bias)
    if key not in rp.weight_slots:
        rp.weight_slots[key] = (len(rp.weight_words), len(rp.bias_words))
        w = rp.program.weights[op.weight]
        if rp.hw.winograd:  # beat (c, u, v) of a window multiplies U[o, c, u, v] (`winograd.transform_weights`)
            w = transform_weights(w)
        weights = np.zeros((tiles * lanes, w[0].size), dtype=np.int64)
        weights[:o] = w.reshape(o, -1)
        for t in range(tiles):
            rp.weight_words += np.tile(weights[t * lanes : (t + 1) * lanes].T, (1, groups)).tolist()
        bias = np.zeros(tiles * lanes, dtype=np.int64)
        if op.bias is not None:
            bias[:o] = np.left_shift(rp.program.weights[op.bias], acc_frac - buffers[op.bias].qformat.frac)
        rp.bias_words += np.tile(bias.reshape(tiles, lanes), (1, groups)).tolist()
    weight_base, bias_base = rp.weight_slots[key]
    layer = ConvLayer(
        name=op.weight,
        channels=c,
        height=x.shape[2],
        width=x.shape[3],
        out_channels=o,
        kernel=k,
        padding=op.padding,
        stride=op.stride,
        pool=op.pool,
        relu=op.relu,
        leaky=leaky,
        scale=scale,
        negative_scale=negative_scale,
        accumulate=op.pool and op.pool_mode == "avg",
        linear_input=linear,
        in_format=x.qformat,
        tiles=tiles,
        weight_base=weight_base,
        bias_base=bias_base,
        requant=requant,
    )
    if layer not in rp.convs:
        rp.convs.append(layer)
    return rp.convs.index(layer)
