"""Each kernel op against float math: exact where the float result is exact, else within its error bound."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metahw.compiler import kernels as K
from metahw.compiler.program import Buffer
from metahw.errors import UserError
from metahw.models import head
from metahw.qformat import OVERFLOW_MODES, ROUNDING_MODES, QFormat
from tests.compiler.program_fixtures import run_op

FAST = settings(max_examples=40, deadline=None)
ROUNDINGS = st.sampled_from(ROUNDING_MODES)
OVERFLOWS = st.sampled_from(OVERFLOW_MODES)


@st.composite
def qformats(draw, bits=(2, 16), frac=(-2, 12), signed=None) -> QFormat:
    s = draw(st.booleans()) if signed is None else signed
    return QFormat(draw(st.integers(*bits)), draw(st.integers(*frac)), s)


def rand(rng: np.random.Generator, fmt: QFormat, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(fmt.min_int, fmt.max_int + 1, shape, dtype=np.int64)


def rounding_bound(fmt: QFormat, rounding: str) -> float:
    return fmt.scale * (1.0 if rounding == "truncate" else 0.5)


def assert_requantised_exactly(out, exact_real, fmt, rounding, overflow, saturation):
    """Integer result == quantize(exact real result), including the overflow count, and the error bound holds."""
    expected, count = fmt.quantize_counted(exact_real, rounding, overflow)
    assert np.array_equal(out, expected)
    assert saturation == count
    inside = (exact_real >= fmt.dequantize(fmt.min_int)) & (exact_real <= fmt.dequantize(fmt.max_int))
    assert np.all(np.abs(fmt.dequantize(out) - exact_real)[inside] <= rounding_bound(fmt, rounding))


# ---- Conv2d ------------------------------------------------------------------------------
def float_conv(x, w, b, pad):
    """Direct-loop float convolution (a different algorithm from the kernel's im2col)."""
    bsz, _, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((bsz, o, h, wd)) + b[None, :, None, None]
    for i in range(k):
        for j in range(k):
            out += np.einsum("bchw,oc->bohw", xp[:, :, i : i + h, j : j + wd], w[:, :, i, j])
    return out


def float_pool(x):
    b, c, h, w = x.shape
    out = np.full((b, c, h // 2, w // 2), -np.inf)
    for i in range(2):
        for j in range(2):
            out = np.maximum(out, x[:, :, i : h // 2 * 2 : 2, j : w // 2 * 2 : 2])
    return out


@FAST
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)),
    xf=qformats(),
    wf=qformats(bits=(2, 12)),
    of=qformats(),
    per_channel=st.booleans(),
    bias_drop=st.one_of(st.none(), st.integers(0, 6)),
    relu=st.booleans(),
    pool=st.booleans(),
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
    seed=st.integers(0, 2**31),
)
def test_conv2d_exact_against_float(shape, xf, wf, of, per_channel, bias_drop, relu, pool, rounding, overflow, seed):
    bsz, c, o, h, w = shape
    pool = pool and h >= 2 and w >= 2
    rng = np.random.default_rng(seed)
    fracs = tuple(int(wf.frac + rng.integers(0, 4)) for _ in range(o)) if per_channel else None
    if fracs is not None:
        fracs = tuple(f - min(fracs) + wf.frac for f in fracs)
    wbuf = Buffer("w", (o, c, 3, 3), wf, "weight", channel_fracs=fracs)
    buffers = [Buffer("x", (bsz, c, h, w), xf, "input"), wbuf]
    weights = {"w": rand(rng, wf, (o, c, 3, 3))}
    bias_real = np.zeros(o)
    if bias_drop is not None:
        bf = QFormat(int(rng.integers(2, 17)), xf.frac + wf.frac - bias_drop)
        buffers.append(Buffer("b", (o,), bf, "weight"))
        weights["b"] = rand(rng, bf, (o,))
        bias_real = bf.dequantize(weights["b"])
    oh, ow = (h // 2, w // 2) if pool else (h, w)
    buffers.append(Buffer("y", (bsz, o, oh, ow), of, "output"))
    x = rand(rng, xf, (bsz, c, h, w))
    op = K.Conv2d(
        name="conv",
        input="x",
        weight="w",
        bias="b" if bias_drop is not None else None,
        output="y",
        relu=relu,
        pool=pool,
    )
    run = run_op(op, buffers, {"x": x}, weights, rounding, overflow)
    w_real = np.ldexp(weights["w"].astype(float), -wbuf.axis0_fracs()[:, None, None, None])
    exact = float_conv(xf.dequantize(x), w_real, bias_real, 1)
    if relu:
        exact = np.maximum(exact, 0)
    if pool:
        exact = float_pool(exact)
    assert_requantised_exactly(run.values["y"], exact, of, rounding, overflow, run.saturation["y"])
    assert op.macs({b.name: b for b in buffers}) == bsz * o * h * w * c * 9


def test_conv2d_hand_case():
    # one 3x3 image of ones, kernel of ones: each output counts its in-bounds neighbours
    buffers = [
        Buffer("x", (1, 1, 3, 3), QFormat(4, 0), "input"),
        Buffer("w", (1, 1, 3, 3), QFormat(4, 0), "weight"),
        Buffer("b", (1,), QFormat(8, 0), "weight"),
        Buffer("y", (1, 1, 3, 3), QFormat(8, 0), "output"),
        Buffer("p", (1, 1, 1, 1), QFormat(8, 1), "output"),
    ]
    ops = [
        K.Conv2d(name="c", input="x", weight="w", bias="b", output="y"),
        K.Conv2d(name="cp", input="x", weight="w", bias="b", output="p", relu=True, pool=True),
    ]
    from metahw.compiler.golden import execute
    from metahw.compiler.program import Program, ProgramMeta

    prog = Program(ProgramMeta("t", 1, 1, 1), buffers, ops, {"w": np.ones((1, 1, 3, 3), np.int64), "b": np.array([-1])})
    run = execute(prog, {"x": np.ones((1, 1, 3, 3), np.int64)})
    assert run.values["y"][0, 0].tolist() == [[3, 5, 3], [5, 8, 5], [3, 5, 3]]
    # pool over the top-left 2x2 (floor mode drops row/col 2): max 8 -> 8.0 at frac 1 = 16
    assert run.values["p"].ravel().tolist() == [16]


# ---- Dense / Requant / MaxPool / Flatten -------------------------------------------------
@FAST
@given(
    dims=st.tuples(st.integers(1, 3), st.integers(1, 20), st.integers(1, 5)),
    xf=qformats(),
    wf=qformats(bits=(2, 12)),
    of=qformats(),
    with_bias=st.booleans(),
    relu=st.booleans(),
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
    seed=st.integers(0, 2**31),
)
def test_dense_exact_against_float(dims, xf, wf, of, with_bias, relu, rounding, overflow, seed):
    bsz, d, n = dims
    rng = np.random.default_rng(seed)
    buffers = [
        Buffer("x", (bsz, d), xf, "input"),
        Buffer("w", (n, d), wf, "state"),
        Buffer("y", (bsz, n), of, "output"),
    ]
    weights = {"w": rand(rng, wf, (n, d))}
    bias_real = np.zeros(n)
    if with_bias:
        bf = QFormat(16, xf.frac + wf.frac - 3)
        buffers.append(Buffer("b", (n,), bf, "weight"))
        weights["b"] = rand(rng, bf, (n,))
        bias_real = bf.dequantize(weights["b"])
    x = rand(rng, xf, (bsz, d))
    op = K.Dense(name="fc", input="x", weight="w", bias="b" if with_bias else None, output="y", relu=relu)
    run = run_op(op, buffers, {"x": x}, weights, rounding, overflow)
    exact = xf.dequantize(x) @ wf.dequantize(weights["w"]).T + bias_real
    if relu:
        exact = np.maximum(exact, 0)
    assert_requantised_exactly(run.values["y"], exact, of, rounding, overflow, run.saturation["y"])


@FAST
@given(
    xf=qformats(), of=qformats(), relu=st.booleans(), rounding=ROUNDINGS, overflow=OVERFLOWS, seed=st.integers(0, 2**31)
)
def test_requant_exact(xf, of, relu, rounding, overflow, seed):
    x = rand(np.random.default_rng(seed), xf, (3, 5))
    buffers = [Buffer("x", (3, 5), xf, "input"), Buffer("y", (3, 5), of, "output")]
    run = run_op(K.Requant(name="rq", input="x", output="y", relu=relu), buffers, {"x": x}, None, rounding, overflow)
    exact = xf.dequantize(np.maximum(x, 0) if relu else x)
    assert_requantised_exactly(run.values["y"], exact, of, rounding, overflow, run.saturation["y"])


def test_requant_relu_hand_case():
    buffers = [Buffer("x", (4,), QFormat(8, 2), "input"), Buffer("y", (4,), QFormat(8, 1), "output")]
    run = run_op(K.Requant(name="r", input="x", output="y", relu=True), buffers, {"x": [-10, 5, 6, 7]})
    assert run.values["y"].tolist() == [0, 3, 3, 4]  # 1.25 -> 1.5 (half up), 1.5, 1.75 -> 2.0


@FAST
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(2, 7), st.integers(2, 7)),
    seed=st.integers(0, 2**31),
)
def test_maxpool_and_flatten_match_torch(shape, seed):
    fmt = QFormat(8, 3)
    x = rand(np.random.default_rng(seed), fmt, shape)
    b, c, h, w = shape
    buffers = [Buffer("x", shape, fmt, "input"), Buffer("y", (b, c, h // 2, w // 2), fmt, "output")]
    run = run_op(K.MaxPool2d(name="mp", input="x", output="y"), buffers, {"x": x})
    assert np.array_equal(
        run.values["y"], torch.nn.functional.max_pool2d(torch.from_numpy(x).double(), 2).long().numpy()
    )
    buffers = [Buffer("x", shape, fmt, "input"), Buffer("y", (b, c * h * w), fmt, "output")]
    run = run_op(K.Flatten(name="fl", input="x", output="y"), buffers, {"x": x})
    assert np.array_equal(run.values["y"], torch.from_numpy(x).flatten(1).numpy())


def test_maxpool_floor_mode_hand_case():
    fmt = QFormat(8, 0)
    x = np.array([[[[1, 2, 9], [3, 4, 9], [9, 9, 9]]]])
    buffers = [Buffer("x", (1, 1, 3, 3), fmt, "input"), Buffer("y", (1, 1, 1, 1), fmt, "output")]
    assert run_op(K.MaxPool2d(name="mp", input="x", output="y"), buffers, {"x": x}).values["y"].item() == 4


# ---- PrototypeAccumulate -----------------------------------------------------------------
@FAST
@given(
    ways=st.integers(1, 4),
    shots=st.integers(1, 6),
    dim=st.integers(1, 6),
    ff=qformats(),
    of=qformats(),
    recip_frac=st.integers(8, 24),
    rounding=ROUNDINGS,
    seed=st.integers(0, 2**31),
)
def test_prototypes_against_float_mean(ways, shots, dim, ff, of, recip_frac, rounding, seed):
    rng = np.random.default_rng(seed)
    m = ways * shots
    feats, labels = rand(rng, ff, (m, dim)), rng.permutation(np.repeat(np.arange(ways), shots))
    buffers = [
        Buffer("f", (m, dim), ff, "input"),
        Buffer("y", (m,), QFormat(3, 0, False), "input"),
        Buffer("c", (ways, dim), of, "output"),
    ]
    op = K.PrototypeAccumulate(
        name="p", features="f", labels="y", output="c", ways=ways, shots=shots, recip_frac=recip_frac
    )
    run = run_op(op, buffers, {"f": feats, "y": labels}, rounding=rounding)
    real = ff.dequantize(feats)
    mean = np.stack([real[labels == n].mean(axis=0) for n in range(ways)])
    if shots & (shots - 1) == 0:  # power of two: a shift, so exactly quantize(mean)
        assert_requantised_exactly(run.values["c"], mean, of, rounding, "saturate", run.saturation["c"])
        return
    sums = np.abs(mean) * shots
    bound = rounding_bound(of, rounding) + sums * 2.0 ** -(recip_frac + 1) + 1e-12
    inside = (mean >= of.dequantize(of.min_int)) & (mean <= of.dequantize(of.max_int))
    assert np.all((np.abs(of.dequantize(run.values["c"]) - mean) <= bound)[inside])


def test_prototypes_hand_case_and_bad_labels():
    buffers = [
        Buffer("f", (3, 1), QFormat(8, 0), "input"),
        Buffer("y", (3,), QFormat(2, 0, False), "input"),
        Buffer("c", (1, 1), QFormat(8, 0), "output"),
    ]
    op = K.PrototypeAccumulate(name="p", features="f", labels="y", output="c", ways=1, shots=3, recip_frac=8)
    # 7 * round(256 / 3) = 595 -> 595 / 256 = 2.32 -> 2
    assert run_op(op, buffers, {"f": [[1], [2], [4]], "y": [0, 0, 0]}).values["c"].item() == 2
    buffers[2] = Buffer("c", (3, 1), QFormat(8, 0), "output")
    op = K.PrototypeAccumulate(name="p", features="f", labels="y", output="c", ways=3, shots=1)
    with pytest.raises(UserError, match="each class must occur 1 time"):
        run_op(op, buffers, {"f": [[1], [2], [4]], "y": [0, 0, 2]})
    with pytest.raises(UserError, match=r"labels must lie in 0\.\.2"):
        run_op(op, buffers, {"f": [[1], [2], [4]], "y": [0, 1, 3]})


# ---- Distance ----------------------------------------------------------------------------
@FAST
@given(
    dims=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 20)),
    metric=st.sampled_from(["l2", "dot"]),
    qf=qformats(bits=(2, 12), frac=(0, 6)),
    rf=qformats(bits=(2, 12), frac=(0, 6)),
    of=qformats(bits=(2, 30)),
    exact_out=st.booleans(),
    rounding=ROUNDINGS,
    seed=st.integers(0, 2**31),
)
def test_distance_l2_dot_exact(dims, metric, qf, rf, of, exact_out, rounding, seed):
    nq, nr, d = dims
    rng = np.random.default_rng(seed)
    q, r = rand(rng, qf, (nq, d)), rand(rng, rf, (nr, d))
    buffers = [Buffer("q", (nq, d), qf, "input"), Buffer("r", (nr, d), rf, "input")]
    op = K.Distance(name="d", queries="q", refs="r", output="o", metric=metric)
    if exact_out:
        of = op.exact_format({b.name: b for b in buffers})
    buffers.append(Buffer("o", (nq, nr), of, "output"))
    run = run_op(op, buffers, {"q": q, "r": r}, rounding=rounding)
    qr, rr = qf.dequantize(q), rf.dequantize(r)
    exact = ((qr[:, None] - rr[None]) ** 2).sum(-1) if metric == "l2" else qr @ rr.T
    assert_requantised_exactly(run.values["o"], exact, of, rounding, "saturate", run.saturation["o"])
    if exact_out:
        assert np.array_equal(of.dequantize(run.values["o"]), exact)


@FAST
@given(
    dims=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 32)),
    qf=qformats(bits=(4, 16)),
    rf=qformats(bits=(4, 16)),
    unit_frac=st.integers(8, 16),
    rounding=ROUNDINGS,
    seed=st.integers(0, 2**31),
)
def test_distance_cosine_within_bound(dims, qf, rf, unit_frac, rounding, seed):
    nq, nr, d = dims
    rng = np.random.default_rng(seed)
    q, r = rand(rng, qf, (nq, d)), rand(rng, rf, (nr, d))
    q[0] = 0  # a zero vector has cosine 0 with everything
    of = QFormat(18, 16)
    buffers = [
        Buffer("q", (nq, d), qf, "input"),
        Buffer("r", (nr, d), rf, "input"),
        Buffer("o", (nq, nr), of, "output"),
    ]
    op = K.Distance(name="d", queries="q", refs="r", output="o", metric="cosine", unit_frac=unit_frac)
    run = run_op(op, buffers, {"q": q, "r": r}, rounding=rounding)
    qn = np.linalg.norm(q, axis=1, keepdims=True)
    rn = np.linalg.norm(r, axis=1, keepdims=True)
    cos = (q / np.where(qn == 0, 1, qn)) @ (r / np.where(rn == 0, 1, rn)).T
    unit_err = (1.0 if rounding == "truncate" else 0.5) * 2.0**-unit_frac
    bound = 2 * (math.sqrt(d) * unit_err + 2**-13) + d * unit_err**2 + rounding_bound(of, rounding)
    assert np.all(np.abs(of.dequantize(run.values["o"]) - cos) <= bound)
    assert np.all(run.values["o"][0] == 0)
    assert all(v == 0 for v in run.saturation.values())


# ---- ArgMin / ArgMax ---------------------------------------------------------------------
def test_argmin_argmax_ties_take_lowest_index():
    fmt = QFormat(8, 0)
    x = np.array([[3, 1, 1], [5, 5, 2], [-1, -1, -1]])
    buffers = [Buffer("x", (3, 3), fmt, "input"), Buffer("i", (3,), QFormat(2, 0, False), "output")]
    assert run_op(K.ArgMin(name="a", input="x", output="i"), buffers, {"x": x}).values["i"].tolist() == [1, 2, 0]
    assert run_op(K.ArgMax(name="a", input="x", output="i"), buffers, {"x": x}).values["i"].tolist() == [0, 0, 0]


def test_argmax_index_format_is_fixed():
    buffers = [Buffer("x", (2, 5), QFormat(8, 0), "input"), Buffer("i", (2,), QFormat(8, 0, False), "output")]
    with pytest.raises(UserError, match="produces uq3.0"):
        run_op(K.ArgMax(name="a", input="x", output="i"), buffers, {"x": np.zeros((2, 5), np.int64)})


# ---- Softmax -----------------------------------------------------------------------------
def softmax_bound(spec: K.SoftmaxSpec, n: int, out: QFormat, rounding: str) -> float:
    step = 2.0**-spec.index_frac * (1.0 if rounding == "truncate" else 0.5)
    table = 2.0**-spec.exp_frac  # half an LSB, relative to the max entry 1.0, summed below
    tail = math.exp(-(spec.table_size - 0.5) * 2.0**-spec.index_frac)
    return 2 * (math.exp(step) - 1) + 2 * n * (table + tail) + n * 2.0**-spec.recip_bits + rounding_bound(out, rounding)


@FAST
@given(
    n=st.integers(1, 12),
    rows=st.integers(1, 3),
    xf=qformats(bits=(4, 16), frac=(0, 10)),
    index_frac=st.integers(2, 6),
    table_size=st.integers(16, 512),
    exp_frac=st.integers(12, 20),
    recip_bits=st.integers(12, 24),
    rounding=ROUNDINGS,
    seed=st.integers(0, 2**31),
)
def test_softmax_within_bound(n, rows, xf, index_frac, table_size, exp_frac, recip_bits, rounding, seed):
    spec = K.SoftmaxSpec(index_frac=index_frac, table_size=table_size, exp_frac=exp_frac, recip_bits=recip_bits)
    x = rand(np.random.default_rng(seed), xf, (rows, n))
    of = QFormat(18, 16, signed=False)
    buffers = [Buffer("x", (rows, n), xf, "input"), Buffer("p", (rows, n), of, "output")]
    run = run_op(K.Softmax(name="s", input="x", output="p", spec=spec), buffers, {"x": x}, rounding=rounding)
    p = torch.softmax(torch.from_numpy(xf.dequantize(x)), dim=-1).numpy()
    assert np.all(np.abs(of.dequantize(run.values["p"]) - p) <= softmax_bound(spec, n, of, rounding))


def test_softmax_hand_cases():
    spec = K.SoftmaxSpec(index_frac=0, table_size=2, exp_frac=8, recip_bits=8)
    buffers = [Buffer("x", (2, 3), QFormat(8, 0), "input"), Buffer("p", (2, 3), QFormat(9, 8, False), "output")]
    run = run_op(K.Softmax(name="s", input="x", output="p", spec=spec), buffers, {"x": [[0, 0, -100], [2, 1, -3]]})
    # row 0: e = [256, 256, 0], S = 512, r = 2^16 // 512 = 128, p = 256*128 / 2^8 = 128 (0.5)
    # row 1: d = [0, -1, -5], e = [256, LUT[1] = round(256/e) = 94, 0], S = 350, r = 65536 // 350 = 187
    #        p = [256*187, 94*187] / 256 = [187, 68.66 -> 69], 0
    assert run.values["p"].tolist() == [[128, 128, 0], [187, 69, 0]]


# ---- CosineAttention ---------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(
    ways=st.integers(1, 4),
    shots=st.integers(1, 3),
    nq=st.integers(1, 3),
    d=st.integers(2, 16),
    rounding=ROUNDINGS,
    seed=st.integers(0, 2**31),
)
def test_cosine_attention_against_matching_net_head(ways, shots, nq, d, rounding, seed):
    rng = np.random.default_rng(seed)
    m = ways * shots
    ff, sf = QFormat(10, 6), QFormat(8, 3)
    q, s = rand(rng, ff, (nq, d)), rand(rng, ff, (m, d))
    labels = rng.permutation(np.repeat(np.arange(ways), shots))
    of = QFormat(17, 16, signed=False)
    buffers = [
        Buffer("q", (nq, d), ff, "input"),
        Buffer("s", (m, d), ff, "input"),
        Buffer("y", (m,), QFormat(2, 0, False), "input"),
        Buffer("scale", (), sf, "weight"),
        Buffer("p", (nq, ways), of, "output"),
    ]
    op = K.CosineAttention(
        name="att",
        queries="q",
        supports="s",
        labels="y",
        scale="scale",
        output="p",
        ways=ways,
        logits_format=QFormat(16, 10),
        attention_format=QFormat(17, 16, signed=False),
    )
    run = run_op(op, buffers, {"q": q, "s": s, "y": labels}, {"scale": np.array(80)}, rounding)
    logp = head.cosine_attention_logits(
        torch.from_numpy(ff.dequantize(q)),
        torch.from_numpy(ff.dequantize(s)),
        head.one_hot(torch.from_numpy(labels), ways).double(),
        10.0,
    )
    p = logp.exp().numpy()
    cos_err = 2 * (math.sqrt(d) * 2.0**-14 + 2**-13) + 2.0**-10  # normalisation + logits rounding
    bound = 2 * (math.exp(10 * cos_err) - 1) + m * softmax_bound(K.SoftmaxSpec(), m, of, rounding)
    assert np.all(np.abs(of.dequantize(run.values["p"]) - p) <= bound)


# ---- ProtoHeadInit -----------------------------------------------------------------------
@FAST
@given(
    n=st.integers(1, 4),
    d=st.integers(1, 10),
    cf=qformats(bits=(2, 12)),
    wf=qformats(bits=(2, 16)),
    bf=qformats(bits=(2, 30)),
    rounding=ROUNDINGS,
    overflow=OVERFLOWS,
    seed=st.integers(0, 2**31),
)
def test_proto_head_init_exact(n, d, cf, wf, bf, rounding, overflow, seed):
    c = rand(np.random.default_rng(seed), cf, (n, d))
    buffers = [Buffer("c", (n, d), cf, "input"), Buffer("w", (n, d), wf, "state"), Buffer("b", (n,), bf, "state")]
    run = run_op(
        K.ProtoHeadInit(name="h", prototypes="c", weight="w", bias="b"), buffers, {"c": c}, None, rounding, overflow
    )
    cr = cf.dequantize(c)
    assert_requantised_exactly(run.values["w"], 2 * cr, wf, rounding, overflow, run.saturation["w"])
    assert_requantised_exactly(run.values["b"], -(cr**2).sum(-1), bf, rounding, overflow, run.saturation["b"])


# ---- SGDHeadStep -------------------------------------------------------------------------
def _sgd_buffers(m, n, d, ff, wf, bf, lr_shape=()):
    return [
        Buffer("f", (m, d), ff, "input"),
        Buffer("y", (m,), QFormat(3, 0, False), "input"),
        Buffer("w", (n, d), wf, "state"),
        Buffer("b", (n,), bf, "state"),
        Buffer("lr_w", lr_shape, QFormat(8, 7), "weight"),
        Buffer("lr_b", (), QFormat(8, 7), "weight"),
    ]


def _sgd_op(**formats):
    fields = dict(logits_format=QFormat(16, 10), prob_format=QFormat(16, 15, False), grad_format=QFormat(16, 14))
    fields.update(formats)
    return K.SGDHeadStep(name="sgd", features="f", labels="y", weight="w", bias="b", lr_w="lr_w", lr_b="lr_b", **fields)


def test_sgd_head_step_hand_case():
    # F = [[2], [0]], y = [0, 1], W = b = 0: logits 0, p = 1/2, G = (p - Y)/2 = +-1/4,
    # gW = G^T F = [[-1/2], [1/2]], W <- 0 - 1/2 * gW = [[1/4], [-1/4]]; gb = 0.
    buffers = [
        Buffer("f", (2, 1), QFormat(8, 0), "input"),
        Buffer("y", (2,), QFormat(1, 0, False), "input"),
        Buffer("w", (2, 1), QFormat(8, 4), "state"),
        Buffer("b", (2,), QFormat(8, 4), "state"),
        Buffer("lr_w", (), QFormat(2, 1), "weight"),
        Buffer("lr_b", (), QFormat(2, 1), "weight"),
    ]
    op = _sgd_op(logits_format=QFormat(8, 0), prob_format=QFormat(8, 7, False), grad_format=QFormat(8, 6))
    weights = {"w": np.zeros((2, 1)), "b": np.zeros(2), "lr_w": np.array(1), "lr_b": np.array(1)}
    run = run_op(op, buffers, {"f": [[2], [0]], "y": [0, 1]}, weights)
    assert run.values["w"].tolist() == [[4], [-4]]
    assert run.values["b"].tolist() == [0, 0]


@pytest.mark.parametrize("lr_shape", [(), (6,), (3, 6)])
@pytest.mark.parametrize("shots", [2, 3])
def test_sgd_head_step_against_float_head(lr_shape, shots):
    rng = np.random.default_rng(shots + len(lr_shape))
    n, d = 3, 6
    m = n * shots
    ff, wf, bf = QFormat(12, 8), QFormat(16, 10), QFormat(16, 10)
    feats = rng.integers(0, 1024, (m, d))  # ReLU features in [0, 4)
    labels = rng.permutation(np.repeat(np.arange(n), shots))
    weights = {
        "w": rand(rng, QFormat(12, 10), (n, d)),
        "b": rand(rng, QFormat(12, 10), (n,)),
        "lr_w": rng.integers(32, 96, lr_shape),  # 0.25 .. 0.75
        "lr_b": np.array(64),
    }
    run = run_op(_sgd_op(), _sgd_buffers(m, n, d, ff, wf, bf, lr_shape), {"f": feats, "y": labels}, weights)
    t = lambda fmt, v: torch.as_tensor(fmt.dequantize(v))  # noqa: E731
    w_ref, b_ref = head.sgd_head_step(
        t(wf, weights["w"]),
        t(bf, weights["b"]),
        t(ff, feats),
        head.one_hot(torch.from_numpy(labels), n).double(),
        t(QFormat(8, 7), weights["lr_w"]),
        t(QFormat(8, 7), weights["lr_b"]),
    )
    step = np.abs(w_ref.numpy() - wf.dequantize(weights["w"])).max()
    assert np.abs(wf.dequantize(run.values["w"]) - w_ref.numpy()).max() <= 0.01 * step + 2 * wf.scale
    assert np.abs(bf.dequantize(run.values["b"]) - b_ref.numpy()).max() <= 0.01 * step + 2 * bf.scale
    assert all(v == 0 for v in run.saturation.values())


# ---- static checks -----------------------------------------------------------------------
def test_infer_rejects_bad_shapes_and_widths():
    x = Buffer("x", (1, 2, 4, 4), QFormat(8, 0), "input")
    with pytest.raises(UserError, match="Conv2d 'c': weight"):
        run_op(
            K.Conv2d(name="c", input="x", weight="w", output="y"),
            [x, Buffer("w", (1, 3, 3, 3), QFormat(8, 0), "weight"), Buffer("y", (1, 1, 4, 4), QFormat(8, 0), "output")],
            {"x": np.zeros((1, 2, 4, 4))},
            {"w": np.zeros((1, 3, 3, 3))},
        )
    wide = QFormat(40, 0)
    with pytest.raises(UserError, match="Dense 'fc'.*needs"):
        run_op(
            K.Dense(name="fc", input="x", weight="w", output="y"),
            [
                Buffer("x", (1, 4), wide, "input"),
                Buffer("w", (1, 4), wide, "weight"),
                Buffer("y", (1, 1), QFormat(8, 0), "output"),
            ],
            {"x": np.zeros((1, 4))},
            {"w": np.zeros((1, 4))},
        )
    with pytest.raises(UserError, match="unknown metric"):
        K.Distance(name="d", queries="q", refs="r", output="o", metric="l1")
