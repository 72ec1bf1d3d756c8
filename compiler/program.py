"""`Program`: the one data structure between compiler, simulator and hardware backends.

An ordered list of kernel ops over named, typed buffers, the integer weights, and the
episode's metadata. It is validated on construction (every op's inputs exist and agree
with what the op infers; each activation/output is written exactly once, before it is
read; inputs and weights are never written; state is initialised before it is read) and
saved as a folder holding `program.json` (versioned) and `weights.npz` (int64 arrays).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metahw.atomic import atomic_path, write_text_atomic
from metahw.compiler import kernels
from metahw.compiler.kernels.base import Kernel, kernel_from_json
from metahw.errors import UserError
from metahw.qformat import OVERFLOW_MODES, ROUNDING_MODES, QFormat

FORMAT_TAG = "metahw.program"
FORMAT_VERSION = 1
PROGRAM_FILE = "program.json"
WEIGHTS_FILE = "weights.npz"
BUFFER_KINDS = ("input", "weight", "activation", "state", "output")

assert kernels.KERNELS, "kernel registry is empty"  # importing the package registers every op


@dataclass(frozen=True)
class Buffer:
    """A named tensor: shape, fixed-point format, kind (input|weight|activation|state|output).

    `channel_fracs`, when set, gives per-index fractional bits along axis 0 (per-output-
    channel weight formats); bits and signedness stay those of `qformat`, whose frac must
    then be min(channel_fracs), so `qformat` alone still describes a range that covers it.
    """

    name: str
    shape: tuple[int, ...]
    qformat: QFormat
    kind: str
    channel_fracs: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise UserError(f"a buffer name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.shape, tuple) or not all(type(d) is int and d > 0 for d in self.shape):
            raise UserError(f"buffer '{self.name}': shape must be a tuple of positive integers, got {self.shape!r}")
        if not isinstance(self.qformat, QFormat):
            raise UserError(f"buffer '{self.name}': qformat must be a QFormat, got {self.qformat!r}")
        if self.kind not in BUFFER_KINDS:
            raise UserError(f"buffer '{self.name}': kind must be one of {', '.join(BUFFER_KINDS)}, got {self.kind!r}")
        if self.channel_fracs is not None:
            fracs = self.channel_fracs
            if not self.shape or not isinstance(fracs, tuple) or len(fracs) != self.shape[0]:
                raise UserError(f"buffer '{self.name}': channel_fracs needs one entry per index of axis 0")
            if not all(type(f) is int for f in fracs) or min(fracs) != self.qformat.frac:
                raise UserError(f"buffer '{self.name}': channel_fracs must be integers whose minimum is qformat.frac")

    def axis0_fracs(self) -> np.ndarray:
        """Fractional bits of each index along axis 0 (all qformat.frac unless per-channel)."""
        if self.channel_fracs is not None:
            return np.array(self.channel_fracs, dtype=np.int64)
        return np.full(self.shape[0] if self.shape else 1, self.qformat.frac, dtype=np.int64)

    def holds(self, values: np.ndarray) -> bool:
        """Whether int64 `values` of this buffer's shape lie in its format's integer range."""
        return self.qformat.contains(values)

    def to_json(self) -> dict:
        """Plain dict for program.json."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "qformat": self.qformat.to_json(),
            "kind": self.kind,
            "channel_fracs": None if self.channel_fracs is None else list(self.channel_fracs),
        }

    @classmethod
    def from_json(cls, data: dict) -> Buffer:
        """Inverse of `to_json`."""
        fracs = data["channel_fracs"]
        return cls(
            name=data["name"],
            shape=tuple(data["shape"]),
            qformat=QFormat.from_json(data["qformat"]),
            kind=data["kind"],
            channel_fracs=None if fracs is None else tuple(fracs),
        )


@dataclass(frozen=True)
class ProgramMeta:
    """Episode shape (ways, shots, queries), the source algorithm, and the requantisation modes."""

    algorithm: str
    ways: int
    shots: int
    queries: int
    rounding: str = "half_up"
    overflow: str = "saturate"

    def __post_init__(self) -> None:
        for key in ("ways", "shots", "queries"):
            if type(getattr(self, key)) is not int or getattr(self, key) < 1:
                raise UserError(f"program metadata '{key}' must be a positive integer, got {getattr(self, key)!r}")
        if not isinstance(self.algorithm, str) or not self.algorithm:
            raise UserError(f"program metadata 'algorithm' must be a non-empty string, got {self.algorithm!r}")
        if self.rounding not in ROUNDING_MODES:
            raise UserError(f"unknown rounding mode {self.rounding!r}; accepted are {', '.join(ROUNDING_MODES)}")
        if self.overflow not in OVERFLOW_MODES:
            raise UserError(f"unknown overflow mode {self.overflow!r}; accepted are {', '.join(OVERFLOW_MODES)}")

    def to_json(self) -> dict:
        """Plain dict for program.json."""
        return dict(self.__dict__)


@dataclass(frozen=True, eq=False)
class Program:
    """Ordered kernel ops over named buffers, integer weights and episode metadata (validated)."""

    meta: ProgramMeta
    buffers: tuple[Buffer, ...]
    ops: tuple[Kernel, ...]
    #: int64 values of every weight buffer, and the episode-start value of state buffers that have one
    weights: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "buffers", tuple(self.buffers))
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "weights", dict(self.weights))
        self._validate()

    @property
    def buffer_map(self) -> dict[str, Buffer]:
        """Buffers by name, in declaration order."""
        return {b.name: b for b in self.buffers}

    def buffers_of(self, kind: str) -> list[Buffer]:
        """Buffers of one kind, in declaration order."""
        return [b for b in self.buffers if b.kind == kind]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Program):
            return NotImplemented
        return (
            self.meta == other.meta
            and self.buffers == other.buffers
            and self.ops == other.ops
            and self.weights.keys() == other.weights.keys()
            and all(
                self.weights[k].dtype == other.weights[k].dtype and np.array_equal(self.weights[k], other.weights[k])
                for k in self.weights
            )
        )

    __hash__ = None  # mutable-looking contents (arrays): not hashable

    # ---- validation -------------------------------------------------------------------
    def _validate(self) -> None:
        if not isinstance(self.meta, ProgramMeta):
            raise UserError("program metadata must be a ProgramMeta")
        buffers: dict[str, Buffer] = {}
        for b in self.buffers:
            if not isinstance(b, Buffer):
                raise UserError(f"program buffers must be Buffer objects, got {type(b).__name__}")
            if b.name in buffers:
                raise UserError(f"buffer '{b.name}' is declared twice")
            buffers[b.name] = b
        self._validate_weights(buffers)
        op_names: set[str] = set()
        written: set[str] = {b.name for b in self.buffers if b.kind in ("input", "weight") or b.name in self.weights}
        for op in self.ops:
            if not isinstance(op, Kernel):
                raise UserError(f"program ops must be kernel ops, got {type(op).__name__}")
            if op.name in op_names:
                raise UserError(f"op name '{op.name}' is used twice")
            op_names.add(op.name)
            for name in op.reads() + op.writes():
                if name not in buffers:
                    raise UserError(f"{op.op} '{op.name}' refers to undeclared buffer '{name}'")
            for name in op.reads():
                if name not in written:
                    raise UserError(f"{op.op} '{op.name}' reads buffer '{name}' before anything writes it")
            specs = op.infer(buffers)
            for name in op.writes():
                self._check_write(op, buffers[name], specs[name], written)
                written.add(name)
        unwritten = [b.name for b in self.buffers if b.kind == "output" and b.name not in written]
        if unwritten:
            raise UserError(f"output buffer(s) {', '.join(unwritten)} are never written by any op")

    def _validate_weights(self, buffers: dict[str, Buffer]) -> None:
        for name, value in self.weights.items():
            buf = buffers.get(name)
            if buf is None or buf.kind not in ("weight", "state"):
                raise UserError(f"weights hold '{name}', which is not a declared weight or state buffer")
            if not isinstance(value, np.ndarray) or value.dtype != np.int64 or value.shape != buf.shape:
                raise UserError(f"weights of '{name}' must be an int64 array of shape {buf.shape}")
            if not buf.holds(value):
                raise UserError(f"weights of '{name}' lie outside its format {buf.qformat}")
        missing = [b.name for b in buffers.values() if b.kind == "weight" and b.name not in self.weights]
        if missing:
            raise UserError(f"weight buffer(s) {', '.join(missing)} have no values")

    @staticmethod
    def _check_write(op: Kernel, buf: Buffer, spec: kernels.OutputSpec, written: set[str]) -> None:
        if buf.kind in ("input", "weight"):
            raise UserError(f"{op.op} '{op.name}' writes {buf.kind} buffer '{buf.name}', which is read-only")
        if buf.kind in ("activation", "output") and buf.name in written:
            raise UserError(f"{op.op} '{op.name}' writes '{buf.name}' a second time; only state buffers are rewritten")
        if buf.channel_fracs is not None:
            raise UserError(f"{op.op} '{op.name}' writes '{buf.name}', but written buffers cannot have channel_fracs")
        if buf.shape != spec.shape:
            raise UserError(f"{op.op} '{op.name}' produces shape {spec.shape} but buffer '{buf.name}' is {buf.shape}")
        if spec.qformat is not None and buf.qformat != spec.qformat:
            raise UserError(f"{op.op} '{op.name}' produces {spec.qformat} but buffer '{buf.name}' is {buf.qformat}")

    # ---- files --------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The program.json document (everything but the weight arrays)."""
        return {
            "format": FORMAT_TAG,
            "version": FORMAT_VERSION,
            "meta": self.meta.to_json(),
            "buffers": [b.to_json() for b in self.buffers],
            "ops": [op.to_json() for op in self.ops],
        }

    def save(self, folder: str | Path) -> Path:
        """Write program.json and weights.npz into `folder` (created if needed; files replaced atomically)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **self.weights)
        write_text_atomic(folder / PROGRAM_FILE, json.dumps(self.to_json(), indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Program:
        """Read a folder written by `save`; anything missing, corrupt or inconsistent raises UserError."""
        folder = Path(folder)
        doc = _read_document(folder)
        weights = _read_weights(folder)
        try:
            return cls(
                meta=ProgramMeta(**doc["meta"]),
                buffers=tuple(Buffer.from_json(b) for b in doc["buffers"]),
                ops=tuple(kernel_from_json(op) for op in doc["ops"]),
                weights=weights,
            )
        except UserError as exc:
            raise UserError(f"program in '{folder}' is invalid: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"program.json in '{folder}' is malformed ({type(exc).__name__}: {exc})") from None


def _read_document(folder: Path) -> dict:
    path = folder / PROGRAM_FILE
    if not path.is_file():
        raise UserError(f"'{folder}' is not a metahw program folder: it has no {PROGRAM_FILE}")
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_TAG:
        raise UserError(f"{path} is not a metahw program (its 'format' field is not '{FORMAT_TAG}')")
    if doc.get("version") != FORMAT_VERSION:
        raise UserError(f"{path} has format version {doc.get('version')!r}; this metahw reads version {FORMAT_VERSION}")
    return doc


def _read_weights(folder: Path) -> dict[str, np.ndarray]:
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise UserError(f"program folder '{folder}' has no {WEIGHTS_FILE}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{path} is not a readable .npz archive ({exc})") from None
