"""Schedules of the segment ops (Conv2d, pools, Add, Flatten, Requant), run per group of G images.

docs/microarchitecture.md §7. The groups of a segment are independent, so each schedule
computes all of them at once and returns one instruction per group; the controller lays
them out group by group.
"""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import Add, AvgPool2d, Conv2d, Flatten, GlobalAvgPool, MaxPool2d, Requant, timing
from metahw.compiler.kernels.flatten import flatten as flatten_values
from metahw.compiler.kernels.pool import POOL_SHIFT
from metahw.sim.mac import exact_dtype
from metahw.sim.machine import Instr, Machine, ceil_div, per_group, simulates

#: operand elements per vectorised chunk of a convolution (bounds the simulator's memory)
CHUNK_ELEMENTS = 1 << 22


def _valid_taps(extent: int, k: int, pad: int, stride: int, positions: int) -> int:
    """Sum over the first `positions` output rows (or columns) of the kernel taps that fall inside the input."""
    return sum(sum(0 <= stride * y + i - pad < extent for i in range(k)) for y in range(positions))


@simulates(Conv2d)
def conv2d(m: Machine, op: Conv2d) -> list[Instr]:
    """OUTER: lanes = output channels (tiles of L), groups = images, F = C*K*K beats per position."""
    hw = m.hw
    x, w = m.read(op.input), m.read(op.weight)
    b, c, h, wd = x.shape
    o, _, k, _ = w.shape
    fan_in = c * k * k
    lanes = hw.group_lanes
    # lane operand words: word[t*L + l, beat] = w[t*L + l, c, i, j], beats in (c, i, j) order; idle lanes hold 0
    words = np.zeros((ceil_div(o, lanes) * lanes, fan_in), dtype=np.int64)
    words[:o] = w.reshape(o, fan_in)
    channel_tiles = words.shape[0] // lanes
    acc_frac = m.fmt(op.input).frac + m.fracs(op.weight)
    preload = np.zeros(o, dtype=np.int64)
    if op.bias is not None:
        preload = np.left_shift(m.read(op.bias), acc_frac - m.fracs(op.bias))
    ho, wo = op.conv_shape(m.buffers)
    rows, cols = (ho // 2 * 2, wo // 2 * 2) if op.pool else (ho, wo)
    positions = rows * cols
    leaky = op.leaky_slope is not None

    dtype = exact_dtype(fan_in, x, words)
    p, s = op.padding, op.stride
    xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))).astype(dtype)
    lane_words = words.T.astype(dtype)
    out_shape = (b, o, rows // 2, cols // 2) if op.pool else (b, o, ho, wo)
    acc_out = np.empty(out_shape, dtype=np.int64)
    chunk = max(1, CHUNK_ELEMENTS // max(1, positions * fan_in))
    for start in range(0, b, chunk):
        win = np.lib.stride_tricks.sliding_window_view(xpad[start : start + chunk], (k, k), axis=(2, 3))
        n = win.shape[0]
        win = win[:, :, : s * rows : s, : s * cols : s]
        if op.pool:  # positions in pool-window order (py, px, wy, wx): 4 consecutive tiles per pooled output
            win = win.reshape(n, c, rows // 2, 2, cols // 2, 2, k, k).transpose(0, 2, 4, 3, 5, 1, 6, 7)
        else:
            win = win.transpose(0, 2, 3, 1, 4, 5)
        stream = win.reshape(n * positions, fan_in)  # each row: the group operand's F beats for one tile
        acc = np.matmul(stream, lane_words).astype(np.int64)[:, :o] + preload
        if op.relu:
            acc = np.maximum(acc, 0)
        elif leaky:  # the PPU's slope multiplier on negative sums, a shift on the others
            acc = np.where(acc < 0, acc * op.leaky_slope, acc << op.leaky_frac)
        if op.pool:  # the PPU's running max (or sum) over the 4 consecutive tiles of a window
            acc = acc.reshape(n, rows // 2, cols // 2, 4, o)
            acc = acc.max(axis=3) if op.pool_mode == "max" else acc.sum(axis=3)
        else:
            acc = acc.reshape(n, ho, wo, o)
        acc_out[start : start + n] = acc.transpose(0, 3, 1, 2)
    src = acc_frac + op.post_frac()
    m.write(op.output, m.requant(acc_out, src[None, :, None, None], m.fmt(op.output), op.output))

    beats = channel_tiles * positions * fan_in
    groups = ceil_div(b, hw.groups)
    taps = _valid_taps(h, k, p, s, rows) * _valid_taps(wd, k, p, s, cols)
    m.reads[op.input] += channel_tiles * b * c * taps
    m.reads[op.weight] += groups * o * positions * fan_in
    if op.bias is not None:
        m.reads[op.bias] += groups * o * positions
    return per_group(hw, b, timing.OUTER, beats, o * positions * fan_in)


@simulates(MaxPool2d)
def maxpool2d(m: Machine, op: MaxPool2d) -> list[Instr]:
    """VECTOR: G slots x L channels per beat, 4 beats (window elements) per output, running max."""
    x = m.read(op.input)
    b, c, h, w = x.shape
    hp, wp = h // 2, w // 2
    out = x[:, :, 0 : 2 * hp : 2, 0 : 2 * wp : 2]
    for wy, wx in ((0, 1), (1, 0), (1, 1)):
        out = np.maximum(out, x[:, :, wy : 2 * hp : 2, wx : 2 * wp : 2])
    m.reads[op.input] += 4 * out.size
    m.write(op.output, np.ascontiguousarray(out))
    return per_group(m.hw, b, timing.VECTOR, 4 * ceil_div(c, m.hw.group_lanes) * hp * wp)


def _grid_pass(m: Machine, shape: tuple[int, ...], values_read: int, name: str) -> list[Instr]:
    """A VECTOR pass over [A0, A1, ...]: per group, one beat per (block of L along A1, rest)."""
    m.reads[name] += values_read
    if len(shape) < 2:
        return per_group(m.hw, shape[0] if shape else 1, timing.VECTOR, 1)
    return per_group(m.hw, shape[0], timing.VECTOR, ceil_div(shape[1], m.hw.group_lanes) * int(np.prod(shape[2:])))


@simulates(AvgPool2d)
def avgpool2d(m: Machine, op: AvgPool2d) -> list[Instr]:
    """VECTOR: G slots x L channels per beat, 4 beats per output, running sum, then the PPU's requantisation."""
    x = m.read(op.input)
    b, c, h, w = x.shape
    hp, wp = h // 2, w // 2
    total = sum(x[:, :, wy : 2 * hp : 2, wx : 2 * wp : 2] for wy in (0, 1) for wx in (0, 1))
    m.reads[op.input] += 4 * total.size
    m.write(op.output, m.requant(total, m.fmt(op.input).frac + POOL_SHIFT, m.fmt(op.output), op.output))
    return per_group(m.hw, b, timing.VECTOR, 4 * ceil_div(c, m.hw.group_lanes) * hp * wp)


@simulates(GlobalAvgPool)
def global_avgpool(m: Machine, op: GlobalAvgPool) -> list[Instr]:
    """VECTOR: one beat per (channel block of L, input pixel) into a running sum; the PPU scales and requantises."""
    x = m.read(op.input)
    b, c, h, w = x.shape
    total = x.reshape(b, c, h * w).sum(axis=2).reshape(b, c, 1, 1) * op.scale
    m.reads[op.input] += x.size
    m.write(op.output, m.requant(total, m.fmt(op.input).frac + op.shift, m.fmt(op.output), op.output))
    return per_group(m.hw, b, timing.VECTOR, ceil_div(c, m.hw.group_lanes) * h * w)


@simulates(Add)
def add(m: Machine, op: Add) -> list[Instr]:
    """VECTOR: both operands read per beat from their banks, aligned by shifts, added, activated, requantised."""
    f = op.aligned_frac(m.buffers)
    a, r = m.read(op.input), m.read(op.residual)
    total = np.left_shift(a, f - m.fmt(op.input).frac) + np.left_shift(r, f - m.fmt(op.residual).frac)
    if op.relu:
        total = np.maximum(total, 0)
    elif op.leaky_slope is not None:
        total, f = np.where(total < 0, total * op.leaky_slope, total << op.leaky_frac), f + op.leaky_frac
    m.reads[op.residual] += r.size
    m.write(op.output, m.requant(total, f, m.fmt(op.output), op.output))
    return _grid_pass(m, a.shape, a.size, op.input)


@simulates(Flatten)
def flatten(m: Machine, op: Flatten) -> list[Instr]:
    """VECTOR copy of the segment's result from AMEM into SMEM/QBUF (channels last for a map: AMEM's word order)."""
    x = m.read(op.input)
    m.write(op.output, flatten_values(x, op.channels_last))
    return _grid_pass(m, x.shape, x.size, op.input)


@simulates(Requant)
def requant(m: Machine, op: Requant) -> list[Instr]:
    """VECTOR pass through the PPU: ReLU, round, saturate/wrap."""
    x = m.read(op.input)
    v = np.maximum(x, 0) if op.relu else x
    m.write(op.output, m.requant(v, m.fmt(op.input).frac, m.fmt(op.output), op.output))
    return _grid_pass(m, x.shape, x.size, op.input)
