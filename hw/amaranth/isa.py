"""The generated accelerator's instruction set: engine codes, ROM entries and each engine's per-op constants.

An instruction names an engine and an *op descriptor* of that engine (`Instruction.op` indexes
the engine's descriptor list in the RtlPlan); equal descriptors are stored once, so the ten SGD
steps of an ANIL program share one set of engine constants. Descriptors are plain frozen
dataclasses of names and integers, made by the lowerings (`ops/<family>.py`, through `spec.py`), read by the engines.
"""

from __future__ import annotations

from dataclasses import dataclass

from metahw.compiler.kernels import timing
from metahw.compiler.kernels.conv import conv_tile_beats, kernel_span
from metahw.compiler.kernels.winograd import PATCH_BEATS, instruction_beats
from metahw.errors import UserError
from metahw.qformat import QFormat

#: engine codes of the instruction ROM
(IO_IMAGE, IO_LABELS, CONV, FLATTEN, SCAN, WIDE, REDUCE, ROWRED, IO_OUT, VECTOR, EXP, RECIP, RSQRT, OUTER, MAP) = range(
    15
)
ENGINE_NAMES = (
    "io_image",
    "io_labels",
    "conv",
    "flatten",
    "scan",
    "wide",
    "reduce",
    "rowred",
    "io_out",
    "vector",
    "exp",
    "recip",
    "rsqrt",
    "outer",
    "map",
)
#: the instruction kind (docs/microarchitecture.md §6) whose pipeline depth each engine drains
ENGINE_KINDS = {
    IO_IMAGE: timing.IO,
    IO_LABELS: timing.IO,
    CONV: timing.OUTER,
    FLATTEN: timing.VECTOR,
    SCAN: timing.SCAN,
    WIDE: timing.WIDE,
    REDUCE: timing.REDUCE,
    ROWRED: timing.ROWRED,
    IO_OUT: timing.OUT,
    VECTOR: timing.VECTOR,
    EXP: timing.EXP,
    RECIP: timing.RECIP,
    RSQRT: timing.RSQRT,
    OUTER: timing.OUTER,
    MAP: timing.VECTOR,
}
#: error codes on the `error_code` port: a label out of range, a class without `shots` examples
ERROR_LABEL_RANGE, ERROR_CLASS_COUNT = 1, 2


def refuse(what: str) -> UserError:
    """The error for a program the backend cannot build, with the reason and what it builds (`ops.builds`)."""
    from metahw.hw.amaranth.ops import builds  # the lowerings import this module

    return UserError(f"the Amaranth backend cannot build this program: {what} (it builds {builds()})")


@dataclass(frozen=True)
class RequantSpec:
    """One PPU requantisation: a right shift (negative: left) into a destination format."""

    shift: int
    dst: QFormat


@dataclass(frozen=True)
class ConvLayer:
    """Constants of one convolution as the conv engine runs it (one per Conv2d op)."""

    name: str
    channels: int
    height: int
    width: int
    out_channels: int
    kernel: int
    padding: int
    stride: int
    pool: bool
    relu: bool
    #: LeakyReLU: the PPU scales negative sums by factor `negative_scale`, the others by factor `scale`
    leaky: bool
    scale: int
    negative_scale: int
    #: a 2x2 average: the PPU sums the window (else it takes the max)
    accumulate: bool
    #: the input is a streamed image in the linear AMEM layout (else the channel layout)
    linear_input: bool
    in_format: QFormat
    #: channel tiles ⌈O/L⌉ (a weight word holds a tile's L weights once per lane group)
    tiles: int
    weight_base: int
    bias_base: int
    requant: int

    @property
    def fan_in(self) -> int:
        """F = C*K*K: weights of one output channel (the beats of a position whose taps all lie inside the input)."""
        return self.channels * self.kernel * self.kernel

    @property
    def tile_beats(self) -> int:
        """Beats of one channel tile: C x the kernel taps inside the input, over every computed position."""
        k, pad, s = self.kernel, self.padding, self.stride
        return conv_tile_beats(self.channels, self.height, self.width, k, pad, s, self.rows, self.cols)

    def tap_spans(self, axis: int) -> dict[int, tuple[int, int]]:
        """{window start: (first tap, taps)} along rows (axis 0) or columns (1), where taps leave the input.

        A computed position's window starts at `stride * y - padding`; its taps inside the input
        (`kernel_span`) are the ones the conv engine walks (a window inside the input has all K,
        from tap 0, and is not listed).
        """
        extent, positions = (self.height, self.rows) if axis == 0 else (self.width, self.cols)
        spans = {}
        for y in range(positions):
            span = kernel_span(extent, self.kernel, self.padding, self.stride, y)
            if span != (0, self.kernel):
                spans[self.stride * y - self.padding] = span
        return spans

    def beats(self, winograd: bool) -> int:
        """Beats of the layer's instruction: every channel tile's `tile_beats`, or with Winograd the
        first patch's fill and then 16 beats per channel tile, input channel and pool window."""
        if winograd:
            return instruction_beats(self.tiles, self.channels * PATCH_BEATS * self.out_height * self.out_width)
        return self.tiles * self.tile_beats

    @property
    def fewest_position_beats(self) -> int:
        """Beats of the position with the fewest taps inside the input: C x its rows x its columns."""
        rows = min([n for _, n in self.tap_spans(0).values()] + [self.kernel])
        return self.channels * rows * min([n for _, n in self.tap_spans(1).values()] + [self.kernel])

    @property
    def conv_height(self) -> int:
        """Rows of the convolution's output: (H + 2 pad - K) // stride + 1."""
        return (self.height + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def conv_width(self) -> int:
        """Columns of the convolution's output."""
        return (self.width + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def rows(self) -> int:
        """Output rows computed (a floor-mode pool drops the last odd row)."""
        return self.conv_height // 2 * 2 if self.pool else self.conv_height

    @property
    def cols(self) -> int:
        """Output columns computed."""
        return self.conv_width // 2 * 2 if self.pool else self.conv_width

    @property
    def out_height(self) -> int:
        """Rows of the written output."""
        return self.rows // 2 if self.pool else self.rows

    @property
    def out_width(self) -> int:
        """Columns of the written output."""
        return self.cols // 2 if self.pool else self.cols


@dataclass(frozen=True)
class HeadBuffer:
    """A head memory [rows, cols] (a `LinearStore`): a program buffer, op scratch, or a state's initial value."""

    name: str
    rows: int
    cols: int
    qformat: QFormat
    #: read-only contents in linear order (a state buffer's initial value); empty for run-time memories
    init: tuple[int, ...] = ()
    #: a writer stores windows that start inside a word (`store.memory_depths`)
    unaligned: bool = False


@dataclass(frozen=True)
class Instruction:
    """One ROM entry: engine, beats, the op's index among that engine's ops, and the image (segments).

    A segment's instruction runs a group of `images` images from `image` on (G at most; the
    last group may be partial); `images` is not in the ROM (the testbench streams them).
    """

    engine: int
    beats: int
    op: int = 0
    image: int = 0
    images: int = 1
    #: the AMEM bank a segment op reads, the bank it writes, and a residual Add's skip bank
    bank: int = 0
    dst: int = 0
    skip: int = 0
    label: str = ""
    #: the streamed buffer (IO instructions)
    buffer: str = ""


# ---------------------------------------------------------------- head op descriptors


@dataclass(frozen=True)
class FlattenOp:
    """FLATTEN: per beat one image slot of an AMEM word (L channels at one map position) into the image's row of `out`.

    The slot's lanes of channel tile t at position pos hold features pos * C + t * L + lane
    (the program's channels-last order; C order for a 1x1 map). The slots run one after the
    other, each over all of the map's words.
    """

    out: str
    channels: int = 1
    positions: int = 1


MAX_POOL, AVG_POOL, GLOBAL_AVG, ADD, PASS = "max_pool", "avg_pool", "global_avg", "add", "pass"


@dataclass(frozen=True)
class MapOp:
    """MAP: a vector pass over activation maps in AMEM's channel layout ([tiles][H][W] words of P channels).

    max_pool / avg_pool: 4 beats (window elements) per output position, a running max or sum;
    global_avg: H*W beats per tile, a running sum of value * factor `scale`; add: input << `shift`
    plus skip << `skip_shift` per word; pass: the word itself. Then ReLU or LeakyReLU (factor
    `negative_scale` for negative values, `scale` for the others) and requantiser `requant`.
    """

    kind: str
    tiles: int
    height: int
    width: int
    in_format: QFormat
    requant: int
    relu: bool = False
    leaky: bool = False
    scale: int = 0
    negative_scale: int = 0
    skip_format: QFormat | None = None
    shift: int = 0
    skip_shift: int = 0

    @property
    def beats(self) -> int:
        """4 per pooled output position, else one per input word."""
        if self.kind in (MAX_POOL, AVG_POOL):
            return 4 * self.tiles * (self.height // 2) * (self.width // 2)
        return self.tiles * self.height * self.width


@dataclass(frozen=True)
class ScanOp:
    """SCAN: one label per beat into a per-class index table, with the range and count checks."""

    labels: str
    ways: int
    shots: int


@dataclass(frozen=True)
class PrototypeSums:
    """WIDE: per class and block of P columns, `shots` beats adding the feature words the SCAN table names."""

    features: str
    out: str
    ways: int
    shots: int
    dim: int
    #: index of the SCAN descriptor whose table this reads
    table: int
    scale: int
    requant: int


@dataclass(frozen=True)
class BiasUpdate:
    """WIDE: per block of P classes, `rows` beats adding gradient words; PPU: bias <- bias - lr * sum."""

    grads: str
    bias: str
    rows: int
    ways: int
    scale: int
    update: int
    requant: int


@dataclass(frozen=True)
class ReduceOp:
    """REDUCE: output i * rows_b + j = sum over `dim` of a[i, d] * b[j, d] (b None: a[i, d]^2), L terms per beat.

    `l2`: the pre-adder's (a << a_shift) - (b << b_shift), squared. `bias`: the tree preloaded
    with bias[j] << bias_shift. PPU: times factor `scale`, ReLU, requantise into element
    i * rows_b + j of `out`; `requant` None: the raw sum into the rsqrt unit's row `i`.
    """

    a: str
    b: str | None
    rows_a: int
    rows_b: int
    dim: int
    l2: bool = False
    a_shift: int = 0
    b_shift: int = 0
    bias: str | None = None
    bias_shift: int = 0
    scale: int = 0
    relu: bool = False
    requant: int | None = None
    out: str | None = None


@dataclass(frozen=True)
class RowReduce:
    """ROWRED: per row, ⌈cols/P⌉ beats into the compare tree: the index of the min/max into `out`, or
    (`out` None) the row's max into the softmax's row registers."""

    source: str
    rows: int
    cols: int
    greater: bool
    out: str | None


@dataclass(frozen=True)
class ExpOp:
    """EXP: per element, k = -shift(x - rowmax, `shift`), e = table[k] (0 for k >= size), row sums."""

    source: str
    out: str
    rows: int
    cols: int
    #: x_frac - index_frac: the index shift (negative: left)
    shift: int
    #: first entry of this softmax's table in the exp ROM, and its entries
    base: int
    size: int


@dataclass(frozen=True)
class RecipOp:
    """RECIP: per row, floor(2^(E+R) / rowsum) in R + 2 cycles: load, then R + 1 quotient bits."""

    rows: int
    exp_frac: int
    recip_bits: int


@dataclass(frozen=True)
class RsqrtOp:
    """RSQRT: per row, (r, e) = rsqrt(sum of squares) in T_RSQRT cycles."""

    rows: int


#: VECTOR kinds
REQUANT, SOFTMAX, GRADIENT, NORMALISE = "requant", "softmax", "gradient", "normalise"


@dataclass(frozen=True)
class VectorOp:
    """VECTOR: P elements of `source` [rows, cols] per beat through the PPU into `out` (same shape).

    requant: requantise (times constant factor `scale`); softmax: times the row's reciprocal;
    gradient: (p - [label(row) == col] * 2^pf) times `scale`; normalise: times the row's rsqrt
    factor r, requantised by `selects[e - exp_min]` for the row's exponent e.
    """

    kind: str
    source: str
    out: str
    rows: int
    cols: int
    requant: int
    scale: int = 0
    labels: str | None = None
    #: gradient: the target 1 at the probabilities' frac (2^pf)
    one: int = 0
    exp_min: int = 0
    selects: tuple[int, ...] = ()


@dataclass(frozen=True)
class WeightUpdate:
    """OUTER: gW[n, d] = sum_m g[m, n] F[m, d] per (class, block of P columns); PPU: W <- W - lr * gW."""

    grads: str
    features: str
    weight: str
    rows: int
    ways: int
    dim: int
    scale: int
    update: int
    requant: int


@dataclass(frozen=True)
class ClassSums:
    """OUTER: p[b, n] = sum_m a[b, m] [y_m == n] per (query, block of P classes); PPU: requantise into `out`."""

    attention: str
    labels: str
    out: str
    queries: int
    supports: int
    ways: int
    requant: int
