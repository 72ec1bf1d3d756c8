"""The conv engine's loop nest and addresses: which AMEM element and weight word each beat reads.

docs/microarchitecture.md §5. Per output channel tile t, per output position in pool-window
order (py, px, then wy, wx), per input channel c and kernel offset (i, j), one beat reads the
input element at window coordinates (yy, xx) = (S y + i - pad, S x + j - pad), where (y, x) is
the conv position (2 py + wy, 2 px + wx under a 2x2 pool) and S the stride. A streamed image (linear layout)
holds it at element `c * H * W + yy * W + xx`, lane that mod L; a conv output (channel layout)
at word `(c / L) * H * W + yy * W + xx`, lane c mod L. The lane is within an image slot of L
lanes (`lanes`, L = P / G): every slot of the word holds its own image at the same place.

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


def _counter(name: str, largest: int) -> Signal:
    """A loop counter only as wide as its largest value (+1: a counter may step one past its end)."""
    return Signal(range(largest + 2), name=f"conv_{name}")


@dataclass
class ConvWalk:
    """The signals of one beat (valid while `beat`): read address, lane, tap and loop flags.

    `s_addr`/`lane`: the AMEM word and lane of the input element; `tap`: it lies inside the
    image (else the pixel is a zero of the padding); `waddr`: the weight word; `oaddr`: the
    output word of the position; `first`/`last`: first and last beat of a position's sum;
    `win0`/`winlast`: first and last conv position of a pool window; `t`: the channel tile.
    """

    s_addr: Signal
    lane: Signal
    tap: Signal
    waddr: Signal
    oaddr: Signal
    first: Signal
    last: Signal
    win0: Signal
    winlast: Signal
    t: Signal


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
    reach = max(max(conv.height, conv.width) + 2 * conv.padding for conv in convs) + 2
    yy, xx, ybase, xbase = (Signal(range(-reach, reach), name=f"conv_{n}") for n in ("yy", "xx", "ybase", "xbase"))
    low = max(conv.padding * (conv.width + 1) for conv in convs) + 1
    high = amem_depth * p + max(conv.height * conv.width for conv in convs) + 2
    lin, pbase = Signal(range(-low, high), name="conv_lin"), Signal(range(-low, high), name="conv_pbase")
    walk = ConvWalk(
        s_addr=_counter("addr", amem_depth),
        lane=Signal(range(max(2, p)), name="conv_lane"),
        tap=Signal(name="conv_tap"),
        waddr=waddr,
        oaddr=oaddr,
        first=Signal(name="conv_first"),
        last=Signal(name="conv_last"),
        win0=Signal(name="conv_win0"),
        winlast=Signal(name="conv_winlast"),
        t=t,
    )
    span = (
        max(
            conv.height * conv.width
            + 2 * (conv.width + 1) * conv.kernel
            + 2 * conv.stride * (conv.out_width + conv.width)
            + conv.fan_in
            for conv in convs
        )
        + 2
    )
    steps = _Steps(*(Signal(range(-span, span), name=f"conv_{n}") for n in (f.name for f in fields(_Steps))))
    loops = dict(t=t, py=py, px=px, wy=wy, wx=wx, c=c, i=i, j=j, k=k, beat=beat)
    flags = dict(
        jwrap=Signal(name="conv_jwrap"),
        iwrap=Signal(name="conv_iwrap"),
        cwrap=Signal(name="conv_cwrap"),
        pixel=Signal(name="conv_pixel_step"),
        restart=Signal(name="conv_restart"),
        penultimate=Signal(name="conv_penultimate"),
    )
    ahead = min(conv.fan_in for conv in convs) >= 2
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
                _layer_steps(m, p, conv, walk, loops, flags, steps, lin, yy, xx)
    sums = dict(lin=lin, pbase=pbase, yy=yy, xx=xx, ybase=ybase, xbase=xbase)
    _running_sums(m, walk, flags, steps, beat, sums, ahead)
    with m.If(issued):
        with m.Switch(issued_layer):
            for index, conv in enumerate(convs):
                with case(m, index, len(convs)):
                    pad = conv.padding
                    m.d.sync += [waddr.eq(conv.weight_base), lin.eq(-pad * conv.width - pad)]
                    m.d.sync += [pbase.eq(-pad * conv.width - pad)]
                    m.d.sync += [s.eq(-pad) for s in (xbase, ybase, xx, yy)]
        m.d.sync += [r.eq(0) for r in (t, py, px, wy, wx, c, i, j, k, oaddr)]
    return walk


@dataclass
class _Steps:
    """Per-layer constants (combinational, chosen by the running layer) of the running sums."""

    row: Signal  # lin: the next kernel row
    channel: Signal  # lin: the next input channel, back at the kernel's corner
    dx: Signal  # the kernel corner's move to the next conv position
    dy: Signal
    corner: Signal  # = dy * W + dx
    start_corner: Signal  # lin at position (0, 0): -pad * W - pad
    start_xy: Signal  # -pad
    weights_back: Signal  # waddr: back to the tile's first weight word


def _layer_steps(
    m: Module,
    p: int,
    conv: ConvLayer,
    walk: ConvWalk,
    loops: dict,
    flags: dict,
    steps: _Steps,
    lin: Signal,
    yy: Signal,
    xx: Signal,
) -> None:
    """One layer's constants, flags and loop counters (inside the case of that layer)."""
    lg = bits_for(p) if p > 1 else 0
    c, i, j, k = (loops[n] for n in ("c", "i", "j", "k"))
    kk, hgt, wid, pad = conv.kernel, conv.height, conv.width, conv.padding
    m.d.comb += walk.tap.eq((yy >= 0) & (yy < hgt) & (xx >= 0) & (xx < wid))
    if conv.linear_input:
        m.d.comb += [walk.s_addr.eq(lin >> lg), walk.lane.eq(lin[:lg] if lg else 0)]
        next_channel = hgt * wid
    else:
        m.d.comb += [walk.s_addr.eq(lin), walk.lane.eq(c & (p - 1))]
        next_channel = Mux((c & (p - 1)) == p - 1, hgt * wid, 0)  # the next word of channels
    m.d.comb += [
        walk.first.eq(k == 0),
        walk.last.eq(k == conv.fan_in - 1),
        flags["penultimate"].eq(k == conv.fan_in - 2),
        walk.win0.eq((loops["wy"] == 0) & (loops["wx"] == 0)),
        walk.winlast.eq((loops["wy"] == 1) & (loops["wx"] == 1) if conv.pool else 1),
        flags["jwrap"].eq(j == kk - 1),
        flags["iwrap"].eq(i == kk - 1),
        flags["cwrap"].eq(c == conv.channels - 1),
        steps.row.eq(wid - (kk - 1)),
        steps.channel.eq(next_channel - (kk - 1) * wid - (kk - 1)),
        steps.start_corner.eq(-pad * wid - pad),
        steps.start_xy.eq(-pad),
        steps.weights_back.eq(1 - conv.fan_in),
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


def _running_sums(m: Module, walk: ConvWalk, flags: dict, steps: _Steps, beat: object, sums: dict, ahead: bool) -> None:
    """One adder per running sum, shared by the layers: each beat steps them by the chosen constants.

    When every layer sums at least two beats per position (`ahead`), what a position's last beat
    needs (the next corner and window coordinates, whether the tile restarts, whether a pixel
    is done) is a register: it only depends on state that changes when a position advances,
    so the register holds the right value from the second beat of a position on, and the
    layer's constants, the move's selection and the adders are off the path into the
    addresses (and `conv_walk` makes `advance` a register stepped a beat ahead).
    """
    lin, pbase, yy, xx, ybase, xbase = (sums[n] for n in ("lin", "pbase", "yy", "xx", "ybase", "xbase"))
    jwrap, iwrap, restart, advance = flags["jwrap"], flags["iwrap"], flags["restart"], flags["advance"]
    corner = Mux(restart, steps.start_corner, pbase + steps.corner)
    x0 = Mux(restart, steps.start_xy, xbase + steps.dx)
    y0 = Mux(restart, steps.start_xy, ybase + steps.dy)
    pixel = flags["pixel"]
    if ahead:
        now = (corner, x0, y0, restart, pixel)
        early = [Signal.like(s, name=f"{s.name}_next") for s in (pbase, xbase, ybase, restart, pixel)]
        m.d.sync += [reg.eq(value) for reg, value in zip(early, now)]
        corner, x0, y0, restart, pixel = early
    with m.If(beat):
        m.d.sync += [
            lin.eq(Mux(advance, corner, lin + Mux(jwrap, Mux(iwrap, steps.channel, steps.row), 1))),
            xx.eq(Mux(advance, x0, Mux(jwrap, xbase, xx + 1))),
            yy.eq(Mux(advance, y0, Mux(jwrap & iwrap, ybase, Mux(jwrap, yy + 1, yy)))),
            walk.waddr.eq(walk.waddr + Mux(advance & ~restart, steps.weights_back, 1)),
            walk.oaddr.eq(walk.oaddr + (advance & pixel)),
        ]
        with m.If(advance):
            m.d.sync += [pbase.eq(corner), xbase.eq(x0), ybase.eq(y0)]
