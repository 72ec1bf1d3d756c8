"""Random whole small Programs: an embedding chain, one or two meta-learner heads, a hardware config, inputs.

`draw_config(seed, index)` is a pure function of its arguments (numpy's seeded Generator), so a
configuration found by benchmarks/kernel_properties.py is reproduced by its index alone.

A configuration is one episode-shaped Program in the zoo's layout (support and query images
through one shared embedding chain, labels streamed whole, heads on the flattened features):

- embedding blocks: Conv2d (1x1/2x2/3x3, stride 1 or 2, any padding < K, bias or not, ReLU,
  LeakyReLU or none, fused 2x2 max or average pool, sometimes per-channel weight formats),
  standalone MaxPool2d/AvgPool2d, a residual block (conv then Add with ReLU/LeakyReLU/none),
  Requant (ReLU or not), GlobalAvgPool; then Flatten (channels last, sometimes C order) and
  sometimes a Dense projection;
- heads: ProtoNet (PrototypeAccumulate, l2/dot/cosine Distance, ArgMin/ArgMax), Proto-MAML
  (prototypes, ProtoHeadInit, SGD steps, Dense, ArgMax), ANIL (initialised state, SGD steps,
  Dense, ArgMax), Matching Net (CosineAttention, ArgMax, sometimes a Distance and a Softmax) and a
  frozen Dense head (sometimes with a Softmax);
- every output format is random (bits, frac relative to the value's, signedness), and so are
  the weight formats, rounding and overflow modes, softmax tables, reciprocal precisions, and
  the hardware's lanes, groups and stream elements.

Some draws are not valid programs (a width over the datapath's limit, say); those are drawn
again from the next sub-seed, and the count is kept (`Config.redraws`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from metahw.compiler import kernels as K
from metahw.compiler.kernels.argreduce import index_format
from metahw.compiler.kernels.distance import METRICS
from metahw.compiler.kernels.pool import global_average_scale
from metahw.compiler.program import Buffer, Program, ProgramMeta
from metahw.compiler.widths import widest
from metahw.errors import UserError
from metahw.qformat import OVERFLOW_MODES, ROUNDING_MODES, QFormat
from metahw.sim import HardwareConfig
from metahw.sim.plan import check_fits, query_dependent
from tests.sim.harness import rand

HEADS = ("protonet", "protomaml", "anil", "matchingnet", "dense")
#: draws of one configuration before giving up (a generator bug, not bad luck)
MAX_DRAWS = 50


@dataclass(frozen=True)
class Config:
    """One drawn configuration: a Program, the hardware it runs on and one episode's inputs."""

    seed: int
    index: int
    program: Program
    hw: HardwareConfig
    inputs: dict[str, np.ndarray]
    heads: tuple[str, ...]
    #: invalid draws before this one (each with the next sub-seed)
    redraws: int = 0


@dataclass
class _Builder:
    """Buffers, ops and weights of the program being drawn; outputs are declared from each op's `infer`."""

    rng: np.random.Generator
    buffers: dict[str, Buffer] = field(default_factory=dict)
    ops: list[K.Kernel] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def declare(
        self, name: str, shape: tuple[int, ...], fmt: QFormat, kind: str, fracs: tuple[int, ...] | None = None
    ) -> str:
        """Declare a buffer; returns its name."""
        self.buffers[name] = Buffer(name, tuple(int(d) for d in shape), fmt, kind, fracs)
        return name

    def constant(
        self,
        name: str,
        shape: tuple[int, ...],
        fmt: QFormat,
        kind: str = "weight",
        fracs: tuple[int, ...] | None = None,
    ) -> str:
        """Declare a weight (or initialised state) buffer with random values in its format."""
        self.weights[name] = rand(self.rng, fmt, shape)
        return self.declare(name, shape, fmt, kind, fracs)

    def add(self, op: K.Kernel, fmt: QFormat | None = None, kind: str = "activation") -> str:
        """Append `op`, declaring the outputs it infers that are new (the op's format, else `fmt`); its output."""
        for name, spec in op.infer(self.buffers).items():
            if name not in self.buffers:
                self.declare(name, spec.shape, spec.qformat or fmt, kind)
        self.ops.append(op)
        return op.writes()[0]

    def fmt(self, name: str) -> QFormat:
        """The format of a declared buffer."""
        return self.buffers[name].qformat

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of a declared buffer."""
        return self.buffers[name].shape


def _int(rng: np.random.Generator, lo: int, hi: int) -> int:
    """A uniform integer in lo..hi (both included)."""
    return int(rng.integers(lo, hi + 1))


def _chance(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def _format(
    rng: np.random.Generator, src_frac: int, bits: tuple[int, int] = (2, 12), signed: bool | None = None
) -> QFormat:
    """A random output format for a value at `src_frac`: a right shift by -2..9, 2..12 bits, random sign."""
    sign = _chance(rng, 0.5) if signed is None else signed
    return QFormat(_int(rng, *bits), src_frac - _int(rng, -2, 9), sign)


def _activation(rng: np.random.Generator) -> dict:
    """Fields of a random ReLU, LeakyReLU (slope s * 2^-f, f in 1..8) or no activation."""
    kind = rng.choice(["relu", "leaky", "none"], p=[0.45, 0.25, 0.3])
    if kind == "relu":
        return {"relu": True}
    if kind == "leaky":
        frac = _int(rng, 1, 8)
        return {"leaky_slope": _int(rng, 1, (1 << frac) - 1), "leaky_frac": frac}
    return {}


# ---- embedding blocks: each appends the support side's ops reading `x` and returns its output -------------


def _conv(b: _Builder, tag: str, x: str, residual: bool = False) -> str:
    """A random Conv2d (a residual branch keeps the channels and the map: stride 1, 'same' padding)."""
    rng = b.rng
    _, c, h, w = b.shape(x)
    k = _int(rng, 0, 1) * 2 + 1 if residual else int(rng.choice([1, 2, 3], p=[0.2, 0.2, 0.6]))
    padding = (k - 1) // 2 if residual else max(_int(rng, 0, k - 1), -(-(k - min(h, w)) // 2))
    stride = 1 if residual else int(rng.choice([1, 2], p=[0.7, 0.3]))
    out = c if residual else _int(rng, 1, 8)
    wf = QFormat(_int(rng, 2, 10), _int(rng, 0, 9))
    fracs = None
    if _chance(rng, 0.15):
        offsets = rng.integers(0, 4, out)
        fracs = tuple(int(wf.frac + o - offsets.min()) for o in offsets)
    weight = b.constant(f"{tag}.w", (out, c, k, k), wf, fracs=fracs)
    acc_frac = b.fmt(x).frac + wf.frac
    bias = None
    if _chance(rng, 0.7):
        bias = b.constant(f"{tag}.b", (out,), QFormat(_int(rng, 4, 16), acc_frac - _int(rng, 0, 6)))
    size = min((h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1)
    pool = {}
    if not residual and size >= 2 and _chance(rng, 0.4):
        pool = {"pool": True, "pool_mode": str(rng.choice(["max", "avg"]))}
    act = _activation(rng)
    op = K.Conv2d(
        name=f"support.{tag}",
        input=x,
        weight=weight,
        bias=bias,
        output=f"support.{tag}.out",
        padding=padding,
        stride=stride,
        **act,
        **pool,
    )
    signed = None if act.get("relu") else True
    return b.add(op, _format(rng, acc_frac + op.post_frac(), signed=signed))


def _pool(b: _Builder, tag: str, x: str) -> str:
    """A standalone 2x2 max pool (same format) or average pool (random format)."""
    if _chance(b.rng, 0.5):
        return b.add(K.MaxPool2d(name=f"support.{tag}", input=x, output=f"support.{tag}.out"))
    op = K.AvgPool2d(name=f"support.{tag}", input=x, output=f"support.{tag}.out")
    return b.add(op, _format(b.rng, b.fmt(x).frac + 2, signed=b.fmt(x).signed))


def _residual(b: _Builder, tag: str, x: str) -> str:
    """A conv branch added to its input (the skip tensor), with ReLU, LeakyReLU or nothing."""
    branch = _conv(b, f"{tag}.branch", x, residual=True)
    op = K.Add(name=f"support.{tag}", input=branch, residual=x, output=f"support.{tag}.out", **_activation(b.rng))
    frac = max(b.fmt(x).frac, b.fmt(branch).frac) + (op.leaky_frac if op.leaky_slope is not None else 0)
    return b.add(op, _format(b.rng, frac, signed=None if op.relu else True))


def _requant(b: _Builder, tag: str, x: str) -> str:
    """A Requant to a random format, mostly with ReLU (the RTL runs ReLU passes only)."""
    op = K.Requant(name=f"support.{tag}", input=x, output=f"support.{tag}.out", relu=_chance(b.rng, 0.8))
    return b.add(op, _format(b.rng, b.fmt(x).frac, signed=None if op.relu else True))


def _global_average(b: _Builder, tag: str, x: str) -> str:
    """GlobalAvgPool with the exact (power of two) or 16-bit reciprocal of H*W."""
    _, _, h, w = b.shape(x)
    scale, shift = global_average_scale(h * w)
    op = K.GlobalAvgPool(name=f"support.{tag}", input=x, output=f"support.{tag}.out", scale=scale, shift=shift)
    return b.add(op, _format(b.rng, b.fmt(x).frac + shift, signed=b.fmt(x).signed))


BLOCKS: dict[str, Callable[[_Builder, str, str], str]] = {
    "conv": _conv,
    "pool": _pool,
    "residual": _residual,
    "requant": _requant,
    "global_average": _global_average,
}


def _blocks(b: _Builder, x: str) -> str:
    """1..4 random blocks on the support images (a conv first, mostly); returns the last map."""
    rng = b.rng
    for i in range(_int(rng, 1, 4)):
        _, _, h, w = b.shape(x)
        names = ["conv", "residual", "requant"] + (["pool"] if min(h, w) >= 2 else []) + ["global_average"]
        weights = np.array([5.0, 1.5, 1.0] + ([1.5] if min(h, w) >= 2 else []) + [0.5])
        kind = "conv" if i == 0 and _chance(rng, 0.9) else str(rng.choice(names, p=weights / weights.sum()))
        x = BLOCKS[kind](b, f"l{i}", x)
    return x


def _flatten_and_project(b: _Builder, x: str) -> str:
    """Flatten (channels last unless the map is 1x1 or, rarely, in C order), then sometimes a Dense projection."""
    rng = b.rng
    _, _, h, w = b.shape(x)
    channels_last = h * w > 1 and _chance(rng, 0.9)
    features = b.add(K.Flatten(name="support.flatten", input=x, output="support.flat", channels_last=channels_last))
    if not _chance(rng, 0.3):
        return features
    d = b.shape(features)[1]
    wf = QFormat(_int(rng, 2, 10), _int(rng, 0, 9))
    n = _int(rng, 1, 8)
    fracs = tuple(wf.frac + int(f) for f in rng.permutation(n) % 3) if _chance(rng, 0.1) and n > 2 else None
    weight = b.constant("projection.w", (n, d), wf, fracs=fracs)
    acc_frac = b.fmt(features).frac + wf.frac
    bias = (
        b.constant("projection.b", (n,), QFormat(_int(rng, 4, 16), acc_frac - _int(rng, -1, 6)))
        if _chance(rng, 0.6)
        else None
    )
    op = K.Dense(
        name="support.projection",
        input=features,
        weight=weight,
        bias=bias,
        output="support.projected",
        relu=_chance(rng, 0.5),
    )
    return b.add(op, _format(rng, acc_frac, signed=None if op.relu else True))


def _mirror(b: _Builder, ops: list[K.Kernel], batch: int) -> None:
    """The query chain: each support-chain op again on 'query' buffers of batch `batch`, sharing the weights."""
    for op in ops:
        renamed = {
            f.name: "query" + v[len("support") :]
            for f in dataclasses.fields(op)
            if isinstance(v := getattr(op, f.name), str) and v.startswith("support")
        }
        for name in op.writes():
            buf = b.buffers[name]
            b.declare("query" + name[len("support") :], (batch, *buf.shape[1:]), buf.qformat, buf.kind)
        b.ops.append(dataclasses.replace(op, **renamed))


# ---- heads -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Episode:
    """What every head reads: the episode's shape, the support and query features and the labels."""

    ways: int
    shots: int
    queries: int
    support: str
    query: str
    labels: str = "support_labels"


def _spec(rng: np.random.Generator) -> K.SoftmaxSpec:
    """A random softmax table: index step, size, exp precision and reciprocal bits."""
    return K.SoftmaxSpec(
        index_frac=_int(rng, 0, 6), table_size=_int(rng, 1, 96), exp_frac=_int(rng, 1, 16), recip_bits=_int(rng, 1, 16)
    )


def _prediction(b: _Builder, p: str, scores: str, argmin: bool) -> None:
    op = (K.ArgMin if argmin else K.ArgMax)(name=f"{p}prediction", input=scores, output=f"{p}prediction")
    b.add(op, kind="output")


def _prototypes(b: _Builder, ep: _Episode, p: str) -> str:
    op = K.PrototypeAccumulate(
        name=f"{p}prototypes",
        features=ep.support,
        labels=ep.labels,
        output=f"{p}prototypes",
        ways=ep.ways,
        shots=ep.shots,
        recip_frac=_int(b.rng, 4, 20),
    )
    f = b.fmt(ep.support)
    return b.add(op, _format(b.rng, f.frac, signed=f.signed))


def _distance(b: _Builder, name: str, queries: str, refs: str, output: str, kind: str) -> K.Distance:
    """A Distance of random metric and unit precision, to its exact format (sometimes) or a random one."""
    rng = b.rng
    op = K.Distance(
        name=name,
        queries=queries,
        refs=refs,
        output=output,
        metric=str(rng.choice(METRICS)),
        unit_frac=_int(rng, 4, 14),
    )
    fq, fr = b.fmt(queries).frac, b.fmt(refs).frac
    src = {"l2": 2 * max(fq, fr), "dot": fq + fr, "cosine": 2 * op.unit_frac}[op.metric]
    fmt = op.exact_format(b.buffers) if _chance(rng, 0.3) else _format(rng, src, bits=(4, 24))
    b.add(op, fmt, kind)
    return op


def _softmax(b: _Builder, name: str, x: str, output: str) -> None:
    rng = b.rng
    fmt = QFormat(_int(rng, 2, 18), _int(rng, 0, 18), signed=False)
    b.add(K.Softmax(name=name, input=x, output=output, spec=_spec(rng)), fmt, "output")


def _protonet(b: _Builder, ep: _Episode, p: str) -> None:
    """Prototypes, a distance of the queries to them, the nearest (ArgMin for l2, mostly)."""
    protos = _prototypes(b, ep, p)
    op = _distance(b, f"{p}distance", ep.query, protos, f"{p}scores", "output")
    _prediction(b, p, f"{p}scores", (op.metric == "l2") != _chance(b.rng, 0.15))


def _sgd_steps(b: _Builder, ep: _Episode, p: str, weight: str, bias: str) -> None:
    """1-2 SGD steps of the linear head on the support features (scalar learning rates, mostly)."""
    rng = b.rng
    (_, d), n = b.shape(ep.support), ep.ways
    lr = QFormat(_int(rng, 6, 16), _int(rng, 6, 20), signed=False)
    lr_w = b.constant(f"{p}head.lr_w", {0: (), 1: (d,), 2: (n, d)}[int(rng.choice(3, p=[0.85, 0.1, 0.05]))], lr)
    lr_b = b.constant(f"{p}head.lr_b", () if _chance(rng, 0.9) else (n,), lr)
    hb = _int(rng, 8, 16)
    formats = {
        "logits_format": QFormat(hb, hb - _int(rng, 3, 8)),
        "prob_format": QFormat(_int(rng, 6, 16), _int(rng, 4, 16), signed=False),
        "grad_format": QFormat(hb, hb - _int(rng, -1, 3)),
    }
    for k in range(_int(rng, 1, 2)):
        step = K.SGDHeadStep(
            name=f"{p}sgd{k}",
            features=ep.support,
            labels=ep.labels,
            weight=weight,
            bias=bias,
            lr_w=lr_w,
            lr_b=lr_b,
            softmax=_spec(rng),
            recip_frac=_int(rng, 4, 20),
            **formats,
        )
        b.add(step)


def _linear_query(b: _Builder, ep: _Episode, p: str, weight: str, bias: str) -> None:
    """The adapted head on the queries: Dense, ArgMax."""
    f = b.fmt(ep.query).frac + b.fmt(weight).frac
    op = K.Dense(name=f"{p}linear_head", input=ep.query, weight=weight, bias=bias, output=f"{p}scores")
    b.add(op, _format(b.rng, f, bits=(4, 16), signed=True), "output")
    _prediction(b, p, f"{p}scores", False)


def _head_bias(b: _Builder, ep: _Episode, weight: str) -> QFormat:
    """A linear head's bias format: 8..16 bits, no finer than the logits' accumulator (features x weight)."""
    return QFormat(_int(b.rng, 8, 16), b.fmt(ep.support).frac + b.fmt(weight).frac - _int(b.rng, 0, 8))


def _protomaml(b: _Builder, ep: _Episode, p: str) -> None:
    """Prototypes, W = 2c and b = -|c|^2, SGD steps, Dense, ArgMax."""
    rng = b.rng
    protos = _prototypes(b, ep, p)
    c = b.fmt(protos)
    weight = b.declare(f"{p}head.weight", b.shape(protos), _format(rng, c.frac - 1, (8, 16), True), "state")
    bias = b.declare(f"{p}head.bias", (ep.ways,), _head_bias(b, ep, weight), "state")
    b.add(K.ProtoHeadInit(name=f"{p}head_init", prototypes=protos, weight=weight, bias=bias))
    _sgd_steps(b, ep, p, weight, bias)
    _linear_query(b, ep, p, weight, bias)


def _anil(b: _Builder, ep: _Episode, p: str) -> None:
    """A head state with initial values, SGD steps, Dense, ArgMax."""
    rng = b.rng
    hb = _int(rng, 8, 16)
    d = b.shape(ep.support)[1]
    weight = b.constant(f"{p}head.weight", (ep.ways, d), QFormat(hb, hb - _int(rng, 2, 8)), "state")
    bias = b.constant(f"{p}head.bias", (ep.ways,), _head_bias(b, ep, weight), "state")
    _sgd_steps(b, ep, p, weight, bias)
    _linear_query(b, ep, p, weight, bias)


def _matchingnet(b: _Builder, ep: _Episode, p: str) -> None:
    """Cosine attention over the supports, ArgMax; sometimes a distance to the supports and a softmax over it."""
    rng = b.rng
    sb = _int(rng, 4, 16)
    scale = b.constant(f"{p}attention.scale", (), QFormat(sb, _int(rng, 0, sb), signed=False))
    lb, ab = _int(rng, 6, 16), _int(rng, 6, 16)
    op = K.CosineAttention(
        name=f"{p}attention",
        queries=ep.query,
        supports=ep.support,
        labels=ep.labels,
        scale=scale,
        output=f"{p}scores",
        ways=ep.ways,
        unit_frac=_int(rng, 4, 14),
        logits_format=QFormat(lb, lb - _int(rng, 2, 8)),
        attention_format=QFormat(ab, ab - _int(rng, 0, 1), signed=False),
        softmax=_spec(rng),
    )
    b.add(op, _format(rng, op.attention_format.frac, (4, 16), False), "output")
    _prediction(b, p, f"{p}scores", False)
    if _chance(rng, 0.5):
        _distance(b, f"{p}distance", ep.query, ep.support, f"{p}distances", "activation")
        _softmax(b, f"{p}softmax", f"{p}distances", f"{p}probabilities")


def _dense(b: _Builder, ep: _Episode, p: str) -> None:
    """A Dense head on frozen weights (bias and ReLU or not), ArgMax or ArgMin, sometimes a softmax of the scores."""
    rng = b.rng
    d = b.shape(ep.query)[1]
    wf = QFormat(_int(rng, 2, 10), _int(rng, 0, 9))
    weight = b.constant(f"{p}fixed.w", (ep.ways, d), wf)
    f = b.fmt(ep.query).frac + wf.frac
    bias = (
        b.constant(f"{p}fixed.b", (ep.ways,), QFormat(_int(rng, 4, 16), f - _int(rng, 0, 6)))
        if _chance(rng, 0.7)
        else None
    )
    op = K.Dense(
        name=f"{p}fixed_head", input=ep.query, weight=weight, bias=bias, output=f"{p}scores", relu=_chance(rng, 0.4)
    )
    b.add(op, _format(rng, f, (4, 16), None if op.relu else True), "output")
    _prediction(b, p, f"{p}scores", _chance(rng, 0.3))
    if _chance(rng, 0.3):
        _softmax(b, f"{p}softmax", f"{p}scores", f"{p}probabilities")


HEAD_BUILDERS: dict[str, Callable[[_Builder, _Episode, str], None]] = {
    "protonet": _protonet,
    "protomaml": _protomaml,
    "anil": _anil,
    "matchingnet": _matchingnet,
    "dense": _dense,
}


# ---- the whole configuration -------------------------------------------------------------------------------


def _zoo_order(program: Program, chain: set[str]) -> list[K.Kernel]:
    """Support chain, the heads' support-only ops, query chain, the heads' query ops (a valid reordering)."""
    query = query_dependent(program)
    ops = program.ops
    support_chain = [op for op in ops if op.name in chain and op.name.startswith("support")]
    query_chain = [op for op in ops if op.name in chain and not op.name.startswith("support")]
    head = [op for op in ops if op.name not in chain]
    adaptation = [op for op in head if not any(name in query for name in op.writes())]
    return support_chain + adaptation + query_chain + [op for op in head if op not in adaptation]


def _program(rng: np.random.Generator) -> tuple[Program, tuple[str, ...]]:
    """A random episode program and the heads it has."""
    b = _Builder(rng)
    ways, shots, queries = _int(rng, 2, 4), _int(rng, 1, 3), _int(rng, 1, 5)
    m = ways * shots
    c, h = _int(rng, 1, 3), _int(rng, 2, 8)
    w = h if _chance(rng, 0.7) else _int(rng, 2, 8)
    pixel = QFormat(_int(rng, 2, 10), _int(rng, 0, 9), signed=_chance(rng, 0.5))
    b.declare("support_x", (m, c, h, w), pixel, "input")
    b.declare("support_labels", (m,), index_format(ways), "input")
    b.declare("query_x", (queries, c, h, w), pixel, "input")
    features = _flatten_and_project(b, _blocks(b, "support_x"))
    chain = list(b.ops)
    _mirror(b, chain, queries)
    ep = _Episode(ways, shots, queries, features, "query" + features[len("support") :])
    heads = tuple(rng.choice(HEADS, size=2 if _chance(rng, 0.2) else 1, replace=False).tolist())
    for k, head in enumerate(heads):
        HEAD_BUILDERS[head](b, ep, f"h{k}_" if len(heads) > 1 else "")
    meta = ProgramMeta(
        "+".join(heads),
        ways,
        shots,
        queries,
        str(rng.choice(ROUNDING_MODES)),
        str(rng.choice(OVERFLOW_MODES, p=[0.7, 0.3])),
    )
    program = Program(meta, list(b.buffers.values()), b.ops, b.weights)
    if _chance(rng, 0.6):
        names = {op.name for op in chain} | {"query" + op.name[len("support") :] for op in chain}
        program = Program(meta, program.buffers, _zoo_order(program, names), program.weights)
    return program, heads


def _hardware(rng: np.random.Generator, program: Program) -> HardwareConfig:
    """P = 1..64 lanes (mostly 4..16), G groups (mostly 1), E = 1..9 stream elements, exact operand width."""
    log_lanes = int(rng.choice(7, p=[0.08, 0.12, 0.22, 0.22, 0.16, 0.12, 0.08]))
    groups = 1 << _int(rng, 1, log_lanes) if log_lanes and _chance(rng, 0.35) else 1
    need = widest(program)
    hw = HardwareConfig(
        lanes=1 << log_lanes,
        groups=groups,
        stream_elements=_int(rng, 1, 9),
        operand_bits=max(2, need["operand"]),
        acc_bits=64,
    )
    check_fits(program, hw)
    return hw


def _inputs(rng: np.random.Generator, program: Program) -> dict[str, np.ndarray]:
    """Random images in the pixel format (sometimes an all-zero query image), balanced shuffled labels."""
    meta, buffers = program.meta, program.buffer_map
    pixel = buffers["support_x"].qformat
    inputs = {
        "support_x": rand(rng, pixel, buffers["support_x"].shape),
        "support_labels": rng.permutation(np.repeat(np.arange(meta.ways), meta.shots)),
        "query_x": rand(rng, pixel, buffers["query_x"].shape),
    }
    if _chance(rng, 0.1):
        inputs["query_x"][0] = 0
    return inputs


def draw_config(seed: int, index: int) -> Config:
    """Configuration `index` of the sequence `seed` (the first valid draw of sub-seeds [seed, index, 0], ...)."""
    for attempt in range(MAX_DRAWS):
        rng = np.random.default_rng([seed, index, attempt])
        try:
            program, heads = _program(rng)
            hw = _hardware(rng, program)
        except UserError:
            continue
        return Config(seed, index, program, hw, _inputs(rng, program), heads, attempt)
    raise RuntimeError(f"no valid configuration in {MAX_DRAWS} draws of seed {seed}, index {index}")


def families(program: Program) -> list[str]:
    """The op families (and variants) a program exercises: the benchmark's table rows."""
    buffers = program.buffer_map
    found: set[str] = set()
    for op in program.ops:
        found.add(op.op)
        found.update(_variants(op, buffers))
    return sorted(found)


def _variants(op: K.Kernel, buffers: dict[str, Buffer]) -> list[str]:
    """Variant tags of one op ('Conv2d stride 2', 'Distance cosine', ...)."""
    if isinstance(op, K.Conv2d):
        k = buffers[op.weight].shape[-1]
        tags = [f"Conv2d {k}x{k}", f"Conv2d stride {op.stride}", f"Conv2d padding {op.padding}"]
        tags += ["Conv2d no bias"] if op.bias is None else []
        tags += ["Conv2d ReLU"] if op.relu else ["Conv2d LeakyReLU"] if op.leaky_slope is not None else []
        tags += [f"Conv2d + {op.pool_mode} pool"] if op.pool else []
        tags += ["Conv2d per-channel weights"] if buffers[op.weight].channel_fracs is not None else []
        return tags
    if isinstance(op, K.Add):
        return ["Add ReLU"] if op.relu else ["Add LeakyReLU"] if op.leaky_slope is not None else []
    if isinstance(op, K.Requant):
        return ["Requant ReLU"] if op.relu else []
    if isinstance(op, K.Flatten):
        return ["Flatten channels last"] if op.channels_last else []
    if isinstance(op, K.Distance):
        return [f"Distance {op.metric}"]
    if isinstance(op, K.Dense):
        return ["Dense ReLU"] if op.relu else []
    if isinstance(op, K.SGDHeadStep):
        return [] if buffers[op.lr_w].shape == () else ["SGDHeadStep vector learning rate"]
    return []
