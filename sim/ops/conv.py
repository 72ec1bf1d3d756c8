"""Schedule of Conv2d on the OUTER engine, run per group of G images (docs/microarchitecture.md §7)."""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import Conv2d, timing, winograd
from metahw.compiler.kernels.conv import conv_tile_beats
from metahw.sim.mac import exact_dtype
from metahw.sim.machine import Instr, Machine, ceil_div, per_group, simulates

#: operand elements per vectorised chunk of a convolution (bounds the simulator's memory)
CHUNK_ELEMENTS = 1 << 22


@simulates(Conv2d)
def conv2d(m: Machine, op: Conv2d) -> list[Instr]:
    """OUTER: lanes = output channels (tiles of L), groups = images, a beat per channel and tap inside the input."""
    if m.hw.winograd:
        return winograd_conv2d(m, op)
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
    rows, cols = op.computed_shape(m.buffers)
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

    # the beats skip the taps in the zero padding: C x the taps inside the input, per tile
    tile_beats = conv_tile_beats(c, h, wd, k, p, s, rows, cols)
    groups = ceil_div(b, hw.groups)
    m.reads[op.input] += channel_tiles * b * tile_beats
    m.reads[op.weight] += groups * o * tile_beats
    if op.bias is not None:
        m.reads[op.bias] += groups * o * positions
    return per_group(hw, b, timing.OUTER, channel_tiles * tile_beats, o * tile_beats)


def winograd_conv2d(m: Machine, op: Conv2d) -> list[Instr]:
    """WINO: per pool window and input channel, 16 beats of transformed input x transformed weight (§7).

    The lanes' 4 accumulators start each window at 0 and take each product with its output
    sign (`winograd.window_sums`); each sum goes to the PPU shifted right by 2 (two zero bits)
    plus the aligned bias, one after another, and the PPU's running max (or sum) pools them.
    """
    hw = m.hw
    x, w = m.read(op.input), m.read(op.weight)
    b, c = x.shape[:2]
    o = w.shape[0]
    acc_frac = m.fmt(op.input).frac + m.fracs(op.weight)
    preload = np.zeros(o, dtype=np.int64)
    if op.bias is not None:
        preload = np.left_shift(m.read(op.bias), acc_frac - m.fracs(op.bias))
    rows, cols = op.computed_shape(m.buffers)
    windows = (rows // 2, cols // 2)
    u = winograd.transform_weights(w)
    out = np.empty((b, o, *windows), dtype=np.int64)
    chunk = max(1, CHUNK_ELEMENTS // max(1, o * c * 16 * windows[0] * windows[1]))
    for start in range(0, b, chunk):
        patches = winograd.input_patches(x[start : start + chunk], op.padding, windows)
        sums = winograd.window_sums(winograd.transform_inputs(patches), u)  # [n, O, Hp, Wp, 4]
        if np.any(sums & ((1 << winograd.SCALE_SHIFT) - 1)):
            raise AssertionError(f"Winograd sums of '{op.name}' are not 4 x the convolution")
        acc = (sums >> winograd.SCALE_SHIFT) + preload[None, :, None, None, None]
        if op.relu:
            acc = np.maximum(acc, 0)
        elif op.leaky_slope is not None:
            acc = np.where(acc < 0, acc * op.leaky_slope, acc << op.leaky_frac)
        out[start : start + len(acc)] = acc.max(axis=4) if op.pool_mode == "max" else acc.sum(axis=4)
    src = acc_frac + op.post_frac()
    m.write(op.output, m.requant(out, src[None, :, None, None], m.fmt(op.output), op.output))

    window_beats = winograd.window_beats(op, m.buffers)
    channel_tiles = ceil_div(o, hw.group_lanes)
    m.reads[op.input] += channel_tiles * b * window_beats
    m.reads[op.weight] += ceil_div(b, hw.groups) * o * window_beats
    if op.bias is not None:
        m.reads[op.bias] += ceil_div(b, hw.groups) * o * windows[0] * windows[1]
    beats = winograd.instruction_beats(channel_tiles, window_beats)
    return per_group(hw, b, timing.WINO, beats, o * window_beats)
