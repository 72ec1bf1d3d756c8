"""Every kernel type on random shapes, formats, modes and array geometries: sim == golden, cycles == formula."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

from metahw.compiler import kernels as K
from metahw.compiler.golden import execute
from metahw.compiler.program import Buffer
from metahw.errors import UserError
from metahw.qformat import QFormat
from metahw.sim import HardwareConfig, Simulator
from tests.sim.harness import OVERFLOWS, PROPERTY, ROUNDINGS, check, hardware, program_of, qformats, rand


def build(buffers, ops, weights, rounding, overflow):
    try:
        return program_of(buffers, ops, weights, rounding, overflow)
    except UserError:
        reject()


def conv_inputs(rng, x_shape, w_shape, xf, wf, bias_drop, fracs=None) -> tuple[list[Buffer], dict]:
    """A conv's input 'x', random weights 'w' and, unless `bias_drop` is None, a bias 'b' that many bits
    coarser than the accumulator: the buffers and the weights."""
    o = w_shape[0]
    buffers = [Buffer("x", x_shape, xf, "input"), Buffer("w", w_shape, wf, "weight", channel_fracs=fracs)]
    weights = {"w": rand(rng, wf, w_shape)}
    if bias_drop is not None:
        bf = QFormat(int(rng.integers(2, 17)), xf.frac + wf.frac - bias_drop)
        buffers.append(Buffer("b", (o,), bf, "weight"))
        weights["b"] = rand(rng, bf, (o,))
    return buffers, weights


@PROPERTY
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 10), st.integers(1, 6), st.integers(1, 6)),
    padding=st.sampled_from([0, 1]),
    xf=qformats(),
    wf=qformats(bits=(2, 12)),
    of=qformats(),
    per_channel=st.booleans(),
    bias_drop=st.one_of(st.none(), st.integers(0, 6)),
    relu=st.booleans(),
    pool=st.booleans(),
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
    hw=hardware(),
    seed=st.integers(0, 2**31),
)
def test_conv2d(shape, padding, xf, wf, of, per_channel, bias_drop, relu, pool, rounding, overflow, hw, seed):
    b, c, o, h, w = shape
    pool = pool and h >= 2 and w >= 2
    k = 2 * padding + 1
    rng = np.random.default_rng(seed)
    fracs = tuple(int(wf.frac + rng.integers(0, 4)) for _ in range(o)) if per_channel else None
    if fracs is not None:
        fracs = tuple(f - min(fracs) + wf.frac for f in fracs)
    buffers, weights = conv_inputs(rng, (b, c, h, w), (o, c, k, k), xf, wf, bias_drop, fracs)
    out = (b, o, h // 2, w // 2) if pool else (b, o, h, w)
    buffers.append(Buffer("y", out, of, "output"))
    op = K.Conv2d(
        name="conv",
        input="x",
        weight="w",
        bias="b" if bias_drop is not None else None,
        output="y",
        padding=padding,
        relu=relu,
        pool=pool,
    )
    program = build(buffers, [op], weights, rounding, overflow)
    run = check(program, {"x": rand(rng, xf, (b, c, h, w))}, hw)
    rows, cols = (h // 2 * 2, w // 2 * 2) if pool else (h, w)
    # the taps in the zero padding are skipped: count the taps inside the input, position by position
    inside = sum(
        0 <= y + i - padding < h and 0 <= x + j - padding < w
        for y in range(rows)
        for x in range(cols)
        for i in range(k)
        for j in range(k)
    )
    assert run.lane_macs["conv"] == b * o * c * inside


@PROPERTY
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 8), st.integers(2, 6), st.integers(2, 6)),
    xf=qformats(bits=(2, 10)),
    mid=qformats(bits=(2, 10)),
    of=qformats(),
    shared_input=st.booleans(),
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
    hw=hardware(),
    seed=st.integers(0, 2**31),
)
def test_segment_chain(shape, xf, mid, of, shared_input, rounding, overflow, hw, seed):
    """Conv2d -> MaxPool2d -> Requant -> Flatten run as one segment, group by group; a shared input is not streamed."""
    b, c, o, h, w = shape
    rng = np.random.default_rng(seed)
    wf = QFormat(6, 4)
    buffers = [
        Buffer("x", (b, c, h, w), xf, "input"),
        Buffer("w", (o, c, 3, 3), wf, "weight"),
        Buffer("a", (b, o, h, w), mid, "activation"),
        Buffer("p", (b, o, h // 2, w // 2), mid, "activation"),
        Buffer("r", (b, o, h // 2, w // 2), of, "activation"),
        Buffer("f", (b, o * (h // 2) * (w // 2)), of, "output"),
    ]
    ops = [
        K.Conv2d(name="conv", input="x", weight="w", output="a"),
        K.MaxPool2d(name="pool", input="a", output="p"),
        K.Requant(name="requant", input="p", output="r", relu=True),
        K.Flatten(name="flatten", input="r", output="f"),
    ]
    if shared_input:
        buffers.append(Buffer("x2", (b, c, h, w), xf, "output"))
        ops.append(K.Requant(name="copy", input="x", output="x2"))
    program = build(buffers, ops, {"w": rand(rng, wf, (o, c, 3, 3))}, rounding, overflow)
    run = check(program, {"x": rand(rng, xf, (b, c, h, w))}, hw)
    chain = ["conv", "pool", "requant", "flatten"]
    assert [e.label for e in run.events if e.label in chain] == chain * -(-b // hw.groups)  # group by group
    streamed_by_group = any(e.label == "stream_in x" and e.group is not None for e in run.events)
    assert streamed_by_group == (not shared_input)


@PROPERTY
@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 12), st.integers(1, 9)),
    xf=qformats(),
    wf=qformats(bits=(2, 12)),
    of=qformats(),
    weight_kind=st.sampled_from(["weight", "state"]),
    bias=st.booleans(),
    relu=st.booleans(),
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
    hw=hardware(),
    seed=st.integers(0, 2**31),
)
def test_dense(shape, xf, wf, of, weight_kind, bias, relu, rounding, overflow, hw, seed):
    b, d, n = shape
    rng = np.random.default_rng(seed)
    bf = QFormat(20, xf.frac + wf.frac - 2)
    buffers = [Buffer("x", (b, d), xf, "input"), Buffer("W", (n, d), wf, weight_kind)]
    buffers.append(Buffer("y", (b, n), of, "output"))
    weights = {"W": rand(rng, wf, (n, d))}
    if bias:
        buffers.append(Buffer("b", (n,), bf, "weight"))
        weights["b"] = rand(rng, bf, (n,))
    op = K.Dense(name="dense", input="x", weight="W", bias="b" if bias else None, output="y", relu=relu)
    program = build(buffers, [op], weights, rounding, overflow)
    run = check(program, {"x": rand(rng, xf, (b, d))}, hw)
    assert ("init W" in run.cycles) == (weight_kind == "state")


@PROPERTY
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 10)),
    metric=st.sampled_from(["l2", "dot", "cosine"]),
    qf=qformats(),
    rf=qformats(),
    exact=st.booleans(),
    of=qformats(bits=(2, 24), frac=(-4, 20)),
    unit_frac=st.integers(1, 16),
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
    hw=hardware(),
    seed=st.integers(0, 2**31),
)
def test_distance(shape, metric, qf, rf, exact, of, unit_frac, rounding, overflow, hw, seed):
    nq, nr, d = shape
    rng = np.random.default_rng(seed)
    buffers = [Buffer("q", (nq, d), qf, "input"), Buffer("r", (nr, d), rf, "input")]
    op = K.Distance(name="dist", queries="q", refs="r", output="y", metric=metric, unit_frac=unit_frac)
    if exact:
        try:
            of = op.exact_format({b.name: b for b in buffers})
        except UserError:
            reject()
    buffers.append(Buffer("y", (nq, nr), of, "output"))
    program = build(buffers, [op], {}, rounding, overflow)
    q = rand(rng, qf, (nq, d))
    q[0] = 0  # a zero row normalises to zeros
    check(program, {"q": q, "r": rand(rng, rf, (nr, d))}, hw)


specs = st.builds(
    K.SoftmaxSpec,
    index_frac=st.integers(0, 6),
    table_size=st.integers(1, 96),
    exp_frac=st.integers(1, 24),
    recip_bits=st.integers(1, 24),
)


@PROPERTY
@given(
    shape=st.sampled_from([(5,), (3, 4), (2, 3, 7), (1, 1), (6, 9)]),
    xf=qformats(),
    of=qformats(bits=(2, 18), frac=(0, 18), signed=False),
    spec=specs,
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
    hw=hardware(),
    seed=st.integers(0, 2**31),
)
def test_softmax(shape, xf, of, spec, rounding, overflow, hw, seed):
    rng = np.random.default_rng(seed)
    buffers = [Buffer("x", shape, xf, "input"), Buffer("p", shape, of, "output")]
    program = build(buffers, [K.Softmax(name="softmax", input="x", output="p", spec=spec)], {}, rounding, overflow)
    check(program, {"x": rand(rng, xf, shape)}, hw)


@PROPERTY
@given(
    shape=st.sampled_from([(1, 1), (4, 3), (2, 3, 5), (7, 17), (3, 64), (2, 65)]),
    spread=st.integers(0, 3),
    argmax=st.booleans(),
    hw=hardware(max_log_lanes=7),
    seed=st.integers(0, 2**31),
)
def test_argmin_argmax(shape, spread, argmax, hw, seed):
    rng = np.random.default_rng(seed)
    fmt = QFormat(12, 3)
    out = K.argreduce.index_format(shape[-1])
    buffers = [Buffer("x", shape, fmt, "input"), Buffer("i", shape[:-1], out, "output")]
    op = (K.ArgMax if argmax else K.ArgMin)(name="arg", input="x", output="i")
    program = build(buffers, [op], {}, "half_up", "saturate")
    check(program, {"x": rng.integers(-spread, spread + 1, shape)}, hw)  # small spread: many ties


@PROPERTY
@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 12)),
    ff=qformats(),
    of=qformats(),
    recip_frac=st.integers(0, 24),
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
    hw=hardware(),
    seed=st.integers(0, 2**31),
)
def test_prototype_accumulate(shape, ff, of, recip_frac, rounding, overflow, hw, seed):
    ways, shots, d = shape
    rng = np.random.default_rng(seed)
    m = ways * shots
    label_fmt = K.argreduce.index_format(max(ways, 2))
    buffers = [
        Buffer("f", (m, d), ff, "input"),
        Buffer("y", (m,), label_fmt, "input"),
        Buffer("c", (ways, d), of, "output"),
    ]
    op = K.PrototypeAccumulate(
        name="proto", features="f", labels="y", output="c", ways=ways, shots=shots, recip_frac=recip_frac
    )
    program = build(buffers, [op], {}, rounding, overflow)
    labels = rng.permutation(np.repeat(np.arange(ways), shots))
    check(program, {"f": rand(rng, ff, (m, d)), "y": labels}, hw)


@PROPERTY
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 10)),
    cf=qformats(bits=(2, 12)),
    wf=qformats(),
    bf=qformats(bits=(2, 24), frac=(-4, 20)),
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
    hw=hardware(),
    seed=st.integers(0, 2**31),
)
def test_proto_head_init(shape, cf, wf, bf, rounding, overflow, hw, seed):
    n, d = shape
    rng = np.random.default_rng(seed)
    buffers = [Buffer("c", (n, d), cf, "input"), Buffer("W", (n, d), wf, "output"), Buffer("b", (n,), bf, "output")]
    op = K.ProtoHeadInit(name="init", prototypes="c", weight="W", bias="b")
    program = build(buffers, [op], {}, rounding, overflow)
    check(program, {"c": rand(rng, cf, (n, d))}, hw)


@PROPERTY
@given(
    shape=st.tuples(st.integers(2, 5), st.integers(1, 3), st.integers(1, 8)),
    steps=st.integers(1, 2),
    lr_w_shape=st.sampled_from(["scalar", "row", "full"]),
    lr_b_shape=st.sampled_from(["scalar", "full"]),
    ff=qformats(bits=(4, 10), frac=(2, 8)),
    head_bits=st.integers(8, 16),
    recip_frac=st.integers(4, 20),
    spec=specs,
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
    hw=hardware(),
    seed=st.integers(0, 2**31),
)
def test_sgd_head_step(
    shape, steps, lr_w_shape, lr_b_shape, ff, head_bits, recip_frac, spec, rounding, overflow, hw, seed
):
    ways, shots, d = shape
    rng = np.random.default_rng(seed)
    m = ways * shots
    wf, bf = QFormat(head_bits, head_bits - 4), QFormat(head_bits, head_bits - 6)
    lr = QFormat(6, 6, signed=False)
    lr_w = {"scalar": (), "row": (d,), "full": (ways, d)}[lr_w_shape]
    lr_b = {"scalar": (), "full": (ways,)}[lr_b_shape]
    buffers = [
        Buffer("f", (m, d), ff, "input"),
        Buffer("y", (m,), K.argreduce.index_format(ways), "input"),
        Buffer("W", (ways, d), wf, "state"),
        Buffer("b", (ways,), bf, "state"),
        Buffer("lr_w", lr_w, lr, "weight"),
        Buffer("lr_b", lr_b, lr, "weight"),
    ]
    weights = {
        "W": rand(rng, wf, (ways, d)),
        "b": rand(rng, bf, (ways,)),
        "lr_w": rng.integers(0, 64, lr_w),
        "lr_b": rng.integers(0, 64, lr_b),
    }
    formats = {
        "logits_format": QFormat(head_bits, head_bits - 6),
        "prob_format": QFormat(head_bits, head_bits, signed=False),
        "grad_format": QFormat(head_bits, head_bits - 1),
    }
    ops = [
        K.SGDHeadStep(
            name=f"sgd{i}",
            features="f",
            labels="y",
            weight="W",
            bias="b",
            lr_w="lr_w",
            lr_b="lr_b",
            softmax=spec,
            recip_frac=recip_frac,
            **formats,
        )
        for i in range(steps)
    ]
    program = build(buffers, ops, weights, rounding, overflow)
    labels = rng.permutation(np.repeat(np.arange(ways), shots))
    check(program, {"f": rand(rng, ff, (m, d)), "y": labels}, hw)


@PROPERTY
@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 7), st.integers(1, 8), st.integers(1, 4)),
    qf=qformats(bits=(2, 12)),
    sf=qformats(bits=(2, 12)),
    scale=st.integers(1, 255),
    spec=specs,
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
    hw=hardware(),
    seed=st.integers(0, 2**31),
)
def test_cosine_attention(shape, qf, sf, scale, spec, rounding, overflow, hw, seed):
    b, m, d, ways = shape
    rng = np.random.default_rng(seed)
    buffers = [
        Buffer("q", (b, d), qf, "input"),
        Buffer("s", (m, d), sf, "input"),
        Buffer("y", (m,), K.argreduce.index_format(max(ways, 2)), "input"),
        Buffer("scale", (), QFormat(9, 3, signed=False), "weight"),
        Buffer("p", (b, ways), QFormat(16, 15, signed=False), "output"),
    ]
    op = K.CosineAttention(
        name="attention",
        queries="q",
        supports="s",
        labels="y",
        scale="scale",
        output="p",
        ways=ways,
        logits_format=QFormat(16, 10),
        attention_format=QFormat(16, 15, signed=False),
        softmax=spec,
    )
    program = build(buffers, [op], {"scale": np.array(scale)}, rounding, overflow)
    inputs = {"q": rand(rng, qf, (b, d)), "s": rand(rng, sf, (m, d)), "y": rng.integers(0, ways, m)}
    check(program, inputs, hw)


@pytest.mark.parametrize(("labels", "message"), [([0, 0, 1], "each class must occur"), ([0, 1, 3], "in 0..2")])
def test_bad_labels_stop_the_episode_like_the_golden_executor(labels, message):
    buffers = [
        Buffer("f", (3, 2), QFormat(8, 4), "input"),
        Buffer("y", (3,), QFormat(2, 0, signed=False), "input"),
        Buffer("c", (3, 2), QFormat(8, 4), "output"),
    ]
    op = K.PrototypeAccumulate(name="proto", features="f", labels="y", output="c", ways=3, shots=1)
    program = program_of(buffers, [op], {}, "half_up", "saturate")
    inputs = {"f": np.ones((3, 2), np.int64), "y": np.array(labels)}
    for run in (lambda: execute(program, inputs), lambda: Simulator(program, HardwareConfig(lanes=4)).run(inputs)):
        with pytest.raises(UserError, match=message):
            run()


@PROPERTY
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 10), st.integers(2, 7), st.integers(2, 7)),
    padding=st.integers(0, 2),
    xf=qformats(bits=(2, 10)),
    wf=qformats(bits=(2, 10)),
    of=qformats(),
    bias_drop=st.one_of(st.none(), st.integers(0, 6)),
    activation=st.sampled_from(["none", "relu", "leaky"]),
    pool_mode=st.sampled_from(["max", "avg"]),
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
    hw=hardware(),
    seed=st.integers(0, 2**31),
)
def test_winograd_conv2d(shape, padding, xf, wf, of, bias_drop, activation, pool_mode, rounding, overflow, hw, seed):
    """Winograd F(2x2, 3x3): the same integers as golden; 16 beats per window and channel, after the first patch."""
    b, c, o, h, w = shape
    if h + 2 * padding < 4 or w + 2 * padding < 4:
        reject()
    rng = np.random.default_rng(seed)
    buffers, weights = conv_inputs(rng, (b, c, h, w), (o, c, 3, 3), xf, wf, bias_drop)
    rows, cols = (h + 2 * padding - 2) // 2, (w + 2 * padding - 2) // 2
    buffers.append(Buffer("y", (b, o, rows, cols), of, "output"))
    leaky = {"leaky_slope": 3, "leaky_frac": 3} if activation == "leaky" else {}
    op = K.Conv2d(
        name="conv",
        input="x",
        weight="w",
        bias="b" if bias_drop is not None else None,
        output="y",
        padding=padding,
        relu=activation == "relu",
        pool=True,
        pool_mode=pool_mode,
        **leaky,
    )
    program = build(buffers, [op], weights, rounding, overflow)
    winograd_hw = dataclasses.replace(hw, winograd=True)
    run = check(program, {"x": rand(rng, xf, (b, c, h, w))}, winograd_hw)
    assert run.lane_macs["conv"] == b * o * c * 16 * rows * cols


def test_winograd_refuses_a_conv_it_cannot_run():
    buffers = [
        Buffer("x", (1, 1, 6, 6), QFormat(8, 0), "input"),
        Buffer("w", (2, 1, 3, 3), QFormat(8, 0), "weight"),
        Buffer("y", (1, 2, 6, 6), QFormat(8, 0), "output"),
    ]
    op = K.Conv2d(name="conv", input="x", weight="w", output="y", padding=1)
    program = program_of(buffers, [op], {"w": np.ones((2, 1, 3, 3))}, "half_up", "saturate")
    with pytest.raises(UserError, match="winograd=true cannot run Conv2d 'conv': it is 3x3, stride 1, with no pool"):
        Simulator(program, HardwareConfig(winograd=True))
