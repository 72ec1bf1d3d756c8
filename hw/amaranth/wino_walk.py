"""The Winograd conv engine's two loop nests and its input transform (docs/microarchitecture.md §7, "Winograd").

A WINO instruction reads, one element per beat, the 4x4 input patch of each (channel tile t,
pool window (py, px), input channel c) in row-major order, and its products run 16 beats
(`WINO_FILL`) behind: beat (c, u, v) of a window multiplies the transformed input V[u, v]
of channel c's patch by the weight word U[t, c, u, v]. A patch element outside the input
reads as 0. Each image slot has a patch transform (`patch_transform`): the patch registers
in two banks (the read side fills one while the products use the other), and two register
stages that form V = B^T d B, rows first (`compiler/kernels/winograd.py`).

The read address is a running sum, as in the direct walker: `base` (the patch's first
element in its channel plane) plus `rs` (the element's row * W + column).

Timing: an element is in its patch register 3 cycles after its read beat (the engine writes
it at `DATA + 1`). The products read a patch from 16 beats after its first element's read,
and their first 4 beats (u = 0) need patch rows 0 and 2, read by its beat 11: in place by
cycle 14. The read side refills that bank with the patch after next, from 32 beats after
the first read, so its first write lands after the products' last read of the bank (beat 31).
A stalled beat only widens both margins.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.hdl import Value

from metahw.compiler.kernels import timing, winograd
from metahw.hw.amaranth.isa import ConvLayer
from metahw.hw.amaranth.util import bits_for, case


@dataclass
class WinoWalk:
    """One beat's signals. Read side: `s_addr`/`lane` (the AMEM word and lane), `inside` (the element is in
    the input), `row`/`col`/`bank` (where it goes in the patch registers). Product side (`product`:
    this beat multiplies): `waddr`, `oaddr`, `first`/`last` beat of a window, `u`/`v` (the beat's
    transformed element), `use` (the patch bank it reads), `t` (the channel tile)."""

    s_addr: Signal
    lane: Signal
    inside: Signal
    row: Signal
    col: Signal
    bank: Signal
    product: Signal
    waddr: Signal
    oaddr: Signal
    first: Signal
    last: Signal
    u: Value
    v: Value
    use: Signal
    t: Signal


def _layer_constants(conv: ConvLayer) -> dict[str, int]:
    """The constants of one layer's walk."""
    wid, pad = conv.width, conv.padding
    return dict(
        width=wid,
        height=conv.height,
        plane=conv.height * wid,
        row_end=wid - 3,
        clast=conv.channels - 1,
        pxlast=conv.out_width - 1,
        pylast=conv.out_height - 1,
        windows_last=conv.out_width * conv.out_height - 1,
        start=-pad * wid - pad,
        start_xy=-pad,
        row_move=2 * wid - 2 * (conv.out_width - 1),
        klast=winograd.PATCH_BEATS * conv.channels - 1,
        tile_words=winograd.PATCH_BEATS * conv.channels,
        weight_base=conv.weight_base,
        linear=int(conv.linear_input),
    )


def wino_walk(
    m: Module,
    convs: list[ConvLayer],
    lanes: int,
    amem_depth: int,
    weight_words: int,
    layer: Signal,
    beat: object,
    issued: object,
    issued_layer: Signal,
) -> WinoWalk:
    """Build both loop nests of the conv layers `convs`, running layer `layer` (a register).

    `lanes` is L; `beat` steps the nests; `issued` (an instruction of `issued_layer` issues) restarts them.
    """
    p = lanes
    lg = bits_for(p) if p > 1 else 0
    values = [_layer_constants(conv) for conv in convs]
    consts = {
        name: Signal(
            range(min(min(v[name] for v in values), 0), max(max(v[name] for v in values), 1) + 1), name=f"wino_{name}"
        )
        for name in values[0]
    }
    with m.Switch(layer):
        for index, v in enumerate(values):
            with case(m, index, len(convs)):
                m.d.comb += [consts[name].eq(value) for name, value in v.items()]
    reach = max(max(conv.height, conv.width) + 2 * conv.padding for conv in convs) + 4
    span = amem_depth * p + max(conv.height * conv.width for conv in convs) + reach * (reach + 1)

    def counter(name: str, largest: int) -> Signal:
        return Signal(range(largest + 2), name=f"wino_{name}")

    s, r = counter("s", 3), counter("r", 3)
    c = counter("c", max(conv.channels for conv in convs))
    px, py = counter("px", max(conv.out_width for conv in convs)), counter("py", max(conv.out_height for conv in convs))
    xbase, ybase = (Signal(range(-reach, reach), name=f"wino_{n}") for n in ("xbase", "ybase"))
    corner, base = (Signal(range(-span, span), name=f"wino_{n}") for n in ("corner", "base"))
    rs = Signal(range(-reach, 4 * reach), name="wino_rs")
    bank = Signal(name="wino_bank")
    lin = Signal(range(-2 * span, 2 * span), name="wino_lin")
    walk = WinoWalk(
        s_addr=counter("addr", amem_depth),
        lane=Signal(range(max(2, p)), name="wino_lane"),
        inside=Signal(name="wino_inside"),
        row=r,
        col=s,
        bank=bank,
        product=Signal(name="wino_product"),
        waddr=counter("waddr", weight_words),
        oaddr=counter("oaddr", amem_depth),
        first=Signal(name="wino_first"),
        last=Signal(name="wino_last"),
        u=Signal(2, name="wino_u"),
        v=Signal(2, name="wino_v"),
        use=Signal(name="wino_use"),
        t=counter("t", max(conv.tiles for conv in convs)),
    )
    # ---- the read side: element (r, s) of channel c's patch of window (py, px); it runs on through
    # the instruction's last WINO_FILL beats into a patch bank the products no longer read
    yy, xx = ybase + r, xbase + s
    m.d.comb += [
        lin.eq(base + rs),
        walk.inside.eq((yy >= 0) & (yy < consts["height"]) & (xx >= 0) & (xx < consts["width"])),
        walk.s_addr.eq(Mux(consts["linear"], lin >> lg, lin)),
        walk.lane.eq(Mux(consts["linear"], lin, c) & (p - 1) if lg else 0),
    ]
    word_end = (c & (p - 1)) == p - 1
    plane_step = Mux(consts["linear"] | word_end, consts["plane"], 0)
    with m.If(beat):
        m.d.sync += [s.eq(s + 1), rs.eq(rs + 1)]
        with m.If(s == 3):
            m.d.sync += [s.eq(0), r.eq(r + 1), rs.eq(rs + consts["row_end"])]
            with m.If(r == 3):  # the patch is read: the next channel's, or the next window's
                m.d.sync += [r.eq(0), rs.eq(0), bank.eq(~bank), c.eq(c + 1), base.eq(base + plane_step)]
                with m.If(c == consts["clast"]):
                    m.d.sync += [c.eq(0), px.eq(px + 1), xbase.eq(xbase + 2), corner.eq(corner + 2)]
                    m.d.sync += base.eq(corner + 2)
                    with m.If(px == consts["pxlast"]):
                        m.d.sync += [px.eq(0), py.eq(py + 1), xbase.eq(consts["start_xy"]), ybase.eq(ybase + 2)]
                        m.d.sync += [corner.eq(corner + consts["row_move"]), base.eq(corner + consts["row_move"])]
                        with m.If(py == consts["pylast"]):
                            m.d.sync += [py.eq(0), ybase.eq(consts["start_xy"])]
                            m.d.sync += [corner.eq(consts["start"]), base.eq(consts["start"])]
    # ---- the product side, WINO_FILL beats behind: beat k = 16 c + 4 u + v of a window
    k = counter("k", max(winograd.PATCH_BEATS * conv.channels for conv in convs))
    window = counter("window", max(conv.out_width * conv.out_height for conv in convs))
    wbase = counter("wbase", weight_words)
    started = Signal(name="wino_started")
    m.d.comb += [
        walk.product.eq(beat & started),
        walk.first.eq(k == 0),
        walk.last.eq(k == consts["klast"]),
        walk.u.eq(k[2:4]),
        walk.v.eq(k[0:2]),
    ]
    with m.If(beat & (s == 3) & (r == 3)):  # the first patch is read after WINO_FILL beats
        m.d.sync += started.eq(1)
    with m.If(walk.product):
        m.d.sync += [k.eq(k + 1), walk.waddr.eq(walk.waddr + 1)]
        with m.If(k[0:4] == winograd.PATCH_BEATS - 1):
            m.d.sync += walk.use.eq(~walk.use)
        with m.If(walk.last):
            m.d.sync += [k.eq(0), walk.oaddr.eq(walk.oaddr + 1), window.eq(window + 1), walk.waddr.eq(wbase)]
            with m.If(window == consts["windows_last"]):
                next_tile = wbase + consts["tile_words"]
                m.d.sync += [window.eq(0), walk.t.eq(walk.t + 1), wbase.eq(next_tile), walk.waddr.eq(next_tile)]
    if timing.WINO_FILL != winograd.PATCH_BEATS:
        raise AssertionError("the products start when the first patch is read: WINO_FILL must be 16")
    with m.If(issued):
        with m.Switch(issued_layer):
            for index, v in enumerate(values):
                with case(m, index, len(convs)):
                    m.d.sync += [xbase.eq(v["start_xy"]), ybase.eq(v["start_xy"])]
                    m.d.sync += [corner.eq(v["start"]), base.eq(v["start"])]
                    m.d.sync += [wbase.eq(v["weight_base"]), walk.waddr.eq(v["weight_base"])]
        resets = (s, r, c, px, py, rs, bank, k, window, started, walk.oaddr, walk.use, walk.t)
        m.d.sync += [sig.eq(0) for sig in resets]
    return walk


def _combine(terms: list[Value], select: Value) -> Value:
    """B^T's row `select` applied to 4 terms: d0 - d2, d1 + d2, d2 - d1, d1 - d3 (`winograd.BT`)."""
    return Mux(
        select[1],
        Mux(select[0], terms[1] - terms[3], terms[2] - terms[1]),
        Mux(select[0], terms[1] + terms[2], terms[0] - terms[2]),
    )


def patch_transform(
    m: Module, name: str, width: int, write: object, value: Value, walk: dict, use: Value, u: Value, v: Value
) -> Signal:
    """One image slot's patch registers and input transform; returns V, registered (2 cycles after `u`, `v`).

    `write` (with the element's `walk` row, col and bank of the same cycle) stores `value` in
    the patch registers; `use`, `u` and `v` (a product beat) choose the patch bank and V's
    element: the rows' combination (`_combine` over the patch's rows, by `u`) is registered,
    then the columns' (by `v`).
    """
    if winograd.BT.tolist() != [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]:
        raise AssertionError("`_combine` hard-wires winograd.BT")
    patch = [
        [[Signal(signed(width), name=f"{name}_d{b}_{i}{j}", reset_less=True) for j in range(4)] for i in range(4)]
        for b in range(2)
    ]
    for b in range(2):
        for i in range(4):
            for j in range(4):
                with m.If(write & (walk["bank"] == b) & (walk["row"] == i) & (walk["col"] == j)):
                    m.d.sync += patch[b][i][j].eq(value)
    rows = [Signal(signed(width + 1), name=f"{name}_e{j}", reset_less=True) for j in range(4)]  # per column
    for j in range(4):
        column = [Mux(use, patch[1][i][j], patch[0][i][j]) for i in range(4)]
        m.d.sync += rows[j].eq(_combine(column, u))
    v1 = Signal(2, name=f"{name}_v1")
    m.d.sync += v1.eq(v)
    transformed = Signal(signed(width + 2), name=f"{name}_V", reset_less=True)
    m.d.sync += transformed.eq(_combine(rows, v1))
    return transformed


def beat_signs(m: Module, u: Value, v: Value) -> Signal:
    """The MAC array's `signs` of beat (u, v): output q = (a, b) skips it where AT[a, u] AT[b, v] is 0.

    Elsewhere the product enters output q with that sign (bit 2q: skip, bit 2q + 1: subtract).
    """
    table = winograd.output_signs().reshape(4, 16)  # [output q, beat 4 u + v]
    signs = Signal(8, name="wino_signs")
    with m.Switch(Cat(v, u)):
        for beat in range(16):
            with m.Case(beat):
                word = sum(
                    (int(table[q, beat] == 0) << 2 * q) | (int(table[q, beat] < 0) << (2 * q + 1)) for q in range(4)
                )
                m.d.comb += signs.eq(word)
    return signs
