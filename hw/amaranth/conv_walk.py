"""The conv engine's loop nest and addresses: which AMEM element and weight word each beat reads.

docs/microarchitecture.md §5. Per output channel tile t, per output position in pool-window
order (py, px, then wy, wx), per input channel c and kernel offset (i, j) inside the input, one
beat reads the input element at window coordinates (yy, xx) = (S y + i - pad, S x + j - pad),
where (y, x) is the conv position (2 py + wy, 2 px + wx under a 2x2 pool) and S the stride. A
streamed image (linear layout) holds it at element `c * H * W + yy * W + xx`, lane that mod L;
a conv output (channel layout) at word `(c / L) * H * W + yy * W + xx`, lane c mod L. The lane
is within an image slot of L lanes (`lanes`, L = P / G): every slot of the word holds its own
image at the same place.

The taps in the zero padding are skipped: a position's taps inside the input are a rectangle,
rows i0 .. i0 + ni - 1 and columns j0 .. j0 + nj - 1 of the kernel (all K x K away from the
border), so its beats are C x ni x nj. Its constants (the steps at a row's and a channel's end,
its last beat, its first element's offset from the window's corner) come from a small table per
layer (`_tap_table`), looked up from the window's corner a position ahead.

Every address is a running sum stepped with the loops: each layer only chooses constant
steps (`_layer_steps`), and one adder per sum is shared by all layers, so neither a multiplier
nor a per-layer adder sits on the read address path (it set fmax before: 47.6 -> 58.8 MHz on
the 8-lane, 75-query Conv-4-32 design, 3 fewer DSPs; per-layer adders reached 64.4 MHz but
cost 850 LUT4 more).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from amaranth import Module, Mux, Signal

from metahw.hw.amaranth.isa import ConvLayer
from metahw.hw.amaranth.util import bits_for, case

#: a position's beats from which the next position's tap constants are registers (`_running_sums`)
AHEAD_BEATS = 3


def _counter(name: str, largest: int) -> Signal:
    """A loop counter only as wide as its largest value (+1: a counter may step one past its end)."""
    return Signal(range(largest + 2), name=f"conv_{name}")


@dataclass
class ConvWalk:
    """The signals of one beat (valid while `beat`): read address, lane, weight word and loop flags.

    `s_addr`/`lane`: the AMEM word and lane of the input element (always inside the image);
    `waddr`: the weight word; `oaddr`: the output word of the position; `first`/`last`: first
    and last beat of a position's sum; `win0`/`winlast`: first and last conv position of a pool
    window; `t`: the channel tile.
    """

    s_addr: Signal
    lane: Signal
    waddr: Signal
    oaddr: Signal
    first: Signal
    last: Signal
    win0: Signal
    winlast: Signal
    t: Signal


@dataclass
class _Taps:
    """One position's tap rectangle as the walk's constants (ni x nj kernel taps from (i0, j0))."""

    lin_off: Signal  # lin: the first tap's element from the window's corner, i0 * W + j0
    w_off: Signal  # waddr: the first tap's weight from the channel's first, i0 * K + j0
    jlast: Signal  # nj - 1
    ilast: Signal  # ni - 1
    row_step: Signal  # lin: the next row's first tap, W - (nj - 1)
    chan_same: Signal  # lin: the next channel's first tap in the same word (channel layout), -back
    chan_next: Signal  # lin: the next channel's first tap a channel plane on, H * W - back
    w_row: Signal  # waddr: K - (nj - 1)
    w_chan: Signal  # waddr: K * K - back_w
    klast: Signal  # the position's last beat, C * ni * nj - 1
    kpen: Signal  # the one before it


def _tap_values(conv: ConvLayer, first_y: int, rows: int, first_x: int, cols: int) -> dict[str, int]:
    """The `_Taps` constants of a rectangle of `rows` x `cols` taps from kernel tap (first_y, first_x)."""
    k, wid = conv.kernel, conv.width
    back, back_w = (rows - 1) * wid + cols - 1, (rows - 1) * k + cols - 1
    beats = conv.channels * rows * cols
    return dict(
        lin_off=first_y * wid + first_x,
        w_off=first_y * k + first_x,
        jlast=cols - 1,
        ilast=rows - 1,
        row_step=wid - (cols - 1),
        chan_same=-back,
        chan_next=conv.height * wid - back,
        w_row=k - (cols - 1),
        w_chan=k * k - back_w,
        klast=beats - 1,
        kpen=beats - 2,
    )


def _layer_tap_values(conv: ConvLayer) -> list[dict[str, int]]:
    """Every tap rectangle the layer's positions have (for the constants' signal ranges)."""
    k = conv.kernel
    ys = list(conv.tap_spans(0).values()) + [(0, k)]
    xs = list(conv.tap_spans(1).values()) + [(0, k)]
    return [_tap_values(conv, fy, ny, fx, nx) for fy, ny in ys for fx, nx in xs]


def _taps_signals(convs: list[ConvLayer], name: str) -> _Taps:
    values = [v for conv in convs for v in _layer_tap_values(conv)]
    made = {}
    for f in fields(_Taps):
        low, high = min(v[f.name] for v in values), max(v[f.name] for v in values)
        made[f.name] = Signal(range(min(low, 0), max(high, 1) + 1), name=f"conv_{name}_{f.name}")
    return _Taps(**made)


def _assign_taps(target: _Taps, values: dict[str, int]) -> list:
    return [getattr(target, name).eq(value) for name, value in values.items()]


def _tap_table(m: Module, conv: ConvLayer, y0: Signal, x0: Signal, taps: _Taps) -> None:
    """`taps` of the position whose window corner is (y0, x0), one layer's table (inside its case)."""
    k = conv.kernel
    ys, xs = list(conv.tap_spans(0).items()), list(conv.tap_spans(1).items())

    def columns(first_y: int, rows: int) -> None:
        with m.Switch(x0):
            for start, (first_x, cols) in xs:
                with m.Case(start):
                    m.d.comb += _assign_taps(taps, _tap_values(conv, first_y, rows, first_x, cols))
            with m.Default():
                m.d.comb += _assign_taps(taps, _tap_values(conv, first_y, rows, 0, k))

    with m.Switch(y0):
        for start, (first_y, rows) in ys:
            with m.Case(start):
                columns(first_y, rows)
        with m.Default():
            columns(0, k)


def conv_walk(
    m: Module,
    convs: list[ConvLayer],
    lanes: int,
    amem_depth: int,
    weight_words: int,
    layer: Signal,
    beat: object,
    issued: object,
    issued_layer: Signal,
) -> ConvWalk:
    """Build the loop nest of the conv layers `convs`, running layer `layer` (a register).

    `lanes` is L, the lanes of an image slot; `beat` steps the nest; `issued` (an instruction of
    layer `issued_layer` issues) restarts it.
    """
    p = lanes
    kernel = max(conv.kernel for conv in convs)
    t, py, px = (
        _counter(n, max(getattr(conv, f) for conv in convs))
        for n, f in (("t", "tiles"), ("py", "out_height"), ("px", "out_width"))
    )
    wy, wx = _counter("wy", 1), _counter("wx", 1)
    c, i, j = _counter("c", max(conv.channels for conv in convs)), _counter("i", kernel), _counter("j", kernel)
    k = _counter("k", max(conv.fan_in for conv in convs))
    waddr, oaddr = _counter("waddr", weight_words), _counter("oaddr", amem_depth)
    wtile = _counter("wtile", weight_words)
    reach = max(max(conv.height, conv.width) + 2 * conv.padding for conv in convs) + 2
    ybase, xbase = (Signal(range(-reach, reach), name=f"conv_{n}") for n in ("ybase", "xbase"))
    low = max(conv.padding * (conv.width + 1) for conv in convs) + 1
    high = amem_depth * p + max(conv.height * conv.width for conv in convs) + 2
    lin, pbase = Signal(range(-low, high), name="conv_lin"), Signal(range(-low, high), name="conv_pbase")
    walk = ConvWalk(
        s_addr=_counter("addr", amem_depth),
        lane=Signal(range(max(2, p)), name="conv_lane"),
        waddr=waddr,
        oaddr=oaddr,
        first=Signal(name="conv_first"),
        last=Signal(name="conv_last"),
        win0=Signal(name="conv_win0"),
        winlast=Signal(name="conv_winlast"),
        t=t,
    )
    span = max(
        conv.height * conv.width + 2 * conv.stride * (conv.out_width + conv.width) + conv.fan_in for conv in convs
    )
    steps = _Steps(*(Signal(range(-span - 2, span + 2), name=f"conv_{n}") for n in (f.name for f in fields(_Steps))))
    current, following = _taps_signals(convs, "taps"), _taps_signals(convs, "next_taps")
    loops = dict(t=t, py=py, px=px, wy=wy, wx=wx, c=c, i=i, j=j, k=k, beat=beat)
    flags = dict(
        jwrap=Signal(name="conv_jwrap"),
        iwrap=Signal(name="conv_iwrap"),
        cwrap=Signal(name="conv_cwrap"),
        lanewrap=Signal(name="conv_lanewrap"),
        pixel=Signal(name="conv_pixel_step"),
        restart=Signal(name="conv_restart"),
        penultimate=Signal(name="conv_penultimate"),
    )
    m.d.comb += [
        flags["jwrap"].eq(j == current.jlast),
        flags["iwrap"].eq(i == current.ilast),
        walk.first.eq(k == 0),
        walk.last.eq(k == current.klast),
        flags["penultimate"].eq(k == current.kpen),
    ]
    ahead = min(conv.fewest_position_beats for conv in convs) >= AHEAD_BEATS
    if ahead:  # the last beat of a position, from a register stepped a beat ahead
        flags["advance"] = Signal(name="conv_last_beat")
        with m.If(issued):
            m.d.sync += flags["advance"].eq(0)
        with m.Elif(beat):
            m.d.sync += flags["advance"].eq(flags["penultimate"])
    else:  # the last beat of a position
        flags["advance"] = flags["jwrap"] & flags["iwrap"] & flags["cwrap"]
    with m.Switch(layer):
        for index, conv in enumerate(convs):
            with case(m, index, len(convs)):
                _layer_steps(m, p, conv, walk, loops, flags, steps, lin)
    sums = dict(lin=lin, pbase=pbase, ybase=ybase, xbase=xbase, wtile=wtile)
    _running_sums(m, convs, layer, walk, flags, steps, beat, sums, (current, following), ahead)
    with m.If(issued):
        with m.Switch(issued_layer):
            for index, conv in enumerate(convs):
                with case(m, index, len(convs)):
                    pad, wid = conv.padding, conv.width
                    first_y, rows = conv.tap_spans(0).get(-pad, (0, conv.kernel))
                    first_x, cols = conv.tap_spans(1).get(-pad, (0, conv.kernel))
                    values = _tap_values(conv, first_y, rows, first_x, cols)
                    m.d.sync += _assign_taps(current, values)
                    m.d.sync += [
                        wtile.eq(conv.weight_base),
                        waddr.eq(conv.weight_base + values["w_off"]),
                        lin.eq(-pad * wid - pad + values["lin_off"]),
                        pbase.eq(-pad * wid - pad),
                    ]
                    m.d.sync += [s.eq(-pad) for s in (xbase, ybase)]
        m.d.sync += [r.eq(0) for r in (t, py, px, wy, wx, c, i, j, k, oaddr)]
    return walk


@dataclass
class _Steps:
    """Per-layer constants (combinational, chosen by the running layer) of the running sums."""

    dx: Signal  # the kernel corner's move to the next conv position
    dy: Signal
    corner: Signal  # = dy * W + dx
    start_corner: Signal  # lin at position (0, 0): -pad * W - pad
    start_xy: Signal  # -pad
    fan_in: Signal  # waddr: the next channel tile's first weight word, C * K * K on


def _layer_steps(
    m: Module,
    p: int,
    conv: ConvLayer,
    walk: ConvWalk,
    loops: dict,
    flags: dict,
    steps: _Steps,
    lin: Signal,
) -> None:
    """One layer's constants, flags and loop counters (inside the case of that layer)."""
    lg = bits_for(p) if p > 1 else 0
    c, i, j, k = (loops[n] for n in ("c", "i", "j", "k"))
    wid, pad = conv.width, conv.padding
    if conv.linear_input:
        m.d.comb += [walk.s_addr.eq(lin >> lg), walk.lane.eq(lin[:lg] if lg else 0), flags["lanewrap"].eq(1)]
    else:  # the next channel is in the next word after lane P - 1
        m.d.comb += [walk.s_addr.eq(lin), walk.lane.eq(c & (p - 1)), flags["lanewrap"].eq((c & (p - 1)) == p - 1)]
    m.d.comb += [
        walk.win0.eq((loops["wy"] == 0) & (loops["wx"] == 0)),
        walk.winlast.eq((loops["wy"] == 1) & (loops["wx"] == 1) if conv.pool else 1),
        flags["cwrap"].eq(c == conv.channels - 1),
        steps.start_corner.eq(-pad * wid - pad),
        steps.start_xy.eq(-pad),
        steps.fan_in.eq(conv.fan_in),
    ]
    with m.If(loops["beat"]):
        m.d.sync += [j.eq(j + 1), k.eq(k + 1)]
        with m.If(flags["jwrap"]):
            m.d.sync += [j.eq(0), i.eq(i + 1)]
            with m.If(flags["iwrap"]):
                m.d.sync += [i.eq(0), c.eq(c + 1)]
                with m.If(flags["cwrap"]):
                    m.d.sync += [c.eq(0), k.eq(0)]
    _position_steps(m, conv, loops, flags, steps)


def _position_steps(m: Module, conv: ConvLayer, loops: dict, flags: dict, steps: _Steps) -> None:
    """The next conv position in pool-window order: the corner's move, and the position counters."""
    t, py, px, wy, wx = (loops[n] for n in ("t", "py", "px", "wy", "wx"))
    advance = loops["beat"] & flags["advance"]
    ow = conv.out_width

    def move(dx: int, dy: int) -> None:  # a move of the conv position: S times as far in the input
        s = conv.stride
        m.d.comb += [steps.dx.eq(s * dx), steps.dy.eq(s * dy), steps.corner.eq(s * (dy * conv.width + dx))]

    def next_pixel(dx: int, dy: int, dx_row: int, dy_row: int) -> None:
        move(dx, dy)
        m.d.comb += flags["pixel"].eq(1)
        with m.If(advance):
            m.d.sync += px.eq(px + 1)
        with m.If(px == ow - 1):
            move(dx_row, dy_row)
            with m.If(advance):
                m.d.sync += [px.eq(0), py.eq(py + 1)]
            with m.If(py == conv.out_height - 1):
                m.d.comb += flags["restart"].eq(1)
                with m.If(advance):
                    m.d.sync += [py.eq(0), t.eq(t + 1)]

    if conv.pool:  # conv position (2 px + wx, 2 py + wy)
        move(1, 0)
        with m.If(advance):
            m.d.sync += wx.eq(wx + 1)
        with m.If(wx == 1):
            move(-1, 1)
            with m.If(advance):
                m.d.sync += [wx.eq(0), wy.eq(wy + 1)]
            with m.If(wy == 1):
                with m.If(advance):
                    m.d.sync += wy.eq(0)
                next_pixel(1, -1, -(2 * ow - 1), 1)
    else:
        with m.If(advance):  # no window: wx, wy stay 0 (assigned in every layer's case, a complete case statement)
            m.d.sync += [wx.eq(0), wy.eq(0)]
        next_pixel(1, 0, -(ow - 1), 1)


def _running_sums(
    m: Module,
    convs: list[ConvLayer],
    layer: Signal,
    walk: ConvWalk,
    flags: dict,
    steps: _Steps,
    beat: object,
    sums: dict,
    taps: tuple[_Taps, _Taps],
    ahead: bool,
) -> None:
    """One adder per running sum, shared by the layers: each beat steps them by the chosen constants.

    When every position of every layer has at least `AHEAD_BEATS` beats (`ahead`), what a
    position's last beat needs is a register: the next corner and window coordinates, whether
    the tile restarts, whether a pixel is done (they only depend on state that changes when a
    position advances, so the register holds the right value from the position's second beat
    on), and from those the next position's tap constants and tile base (right from its third
    beat on). The layer's constants, the move's selection and the tap table are then off the
    path into the addresses (and `conv_walk` makes `advance` a register stepped a beat ahead).
    """
    lin, pbase, ybase, xbase, wtile = (sums[n] for n in ("lin", "pbase", "ybase", "xbase", "wtile"))
    jwrap, iwrap, lanewrap = flags["jwrap"], flags["iwrap"], flags["lanewrap"]
    restart, advance = flags["restart"], flags["advance"]
    current, following = taps
    corner = Mux(restart, steps.start_corner, pbase + steps.corner)
    x0 = Mux(restart, steps.start_xy, xbase + steps.dx)
    y0 = Mux(restart, steps.start_xy, ybase + steps.dy)
    pixel = flags["pixel"]
    if ahead:
        now = (corner, x0, y0, restart, pixel)
        early = [Signal.like(s, name=f"{s.name}_next") for s in (pbase, xbase, ybase, restart, pixel)]
        m.d.sync += [reg.eq(value) for reg, value in zip(early, now)]
        corner, x0, y0, restart, pixel = early
    table = _taps_signals(convs, "table") if ahead else following
    with m.Switch(layer):
        for index, conv in enumerate(convs):
            with case(m, index, len(convs)):
                _tap_table(m, conv, y0, x0, table)
    tile_base = wtile + Mux(restart, steps.fan_in, 0)
    if ahead:
        m.d.sync += [getattr(following, f.name).eq(getattr(table, f.name)) for f in fields(_Taps)]
        next_tile = Signal.like(wtile, name="conv_wtile_next")
        m.d.sync += next_tile.eq(tile_base)
        tile_base = next_tile
    row_or_channel = Mux(iwrap, Mux(lanewrap, current.chan_next, current.chan_same), current.row_step)
    with m.If(beat):
        m.d.sync += [
            lin.eq(Mux(advance, corner + following.lin_off, lin + Mux(jwrap, row_or_channel, 1))),
            walk.waddr.eq(
                Mux(
                    advance,
                    tile_base + following.w_off,
                    walk.waddr + Mux(jwrap, Mux(iwrap, current.w_chan, current.w_row), 1),
                )
            ),
            walk.oaddr.eq(walk.oaddr + (advance & pixel)),
        ]
        with m.If(advance):
            m.d.sync += [pbase.eq(corner), xbase.eq(x0), ybase.eq(y0), wtile.eq(tile_base)]
            m.d.sync += [getattr(current, f.name).eq(getattr(following, f.name)) for f in fields(_Taps)]
