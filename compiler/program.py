"""`Program`: the one data structure between compiler, simulator and hardware backends.

An ordered list of kernel ops over named, typed buffers, the integer weights, the
episode's metadata and its roles (`EpisodeRoles`: which buffers are the support images, labels,
query images, features, scores and prediction). It is validated on construction (every op's inputs exist and agree
with what the op infers; each activation/output is written exactly once, before it is
read; inputs and weights are never written; state is initialised before it is read) and
saved as a folder holding `program.json` (versioned) and `weights.npz` (int64 arrays).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metahw.atomic import atomic_path, write_text_atomic
from metahw.compiler import kernels
from metahw.compiler.kernels.base import Kernel, kernel_from_json
from metahw.errors import UserError
from metahw.qformat import OVERFLOW_MODES, ROUNDING_MODES, QFormat

FORMAT_TAG = "metahw.program"
FORMAT_VERSION = 2
#: versions `Program.load` reads: 1 has no episode roles (the conventional names give them)
READ_VERSIONS = (1, 2)
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


#: role -> (the buffer kinds it may have, its rank, what it holds)
ROLE_RULES: dict[str, tuple[tuple[str, ...], int, str]] = {
    "support_images": (("input",), 4, "support images"),
    "support_labels": (("input",), 1, "support labels"),
    "query_images": (("input",), 4, "query images"),
    "support_features": (("activation", "input", "output"), 2, "support features"),
    "query_features": (("activation", "input", "output"), 2, "query features"),
    "scores": (("output",), 2, "class scores"),
    "prediction": (("output",), 1, "predicted classes"),
}
#: role -> the buffer name the compiler gives it (programs saved before roles existed use these)
CONVENTIONAL_NAMES = {
    "support_images": "support_x",
    "support_labels": "support_labels",
    "query_images": "query_x",
    "support_features": "support.features",
    "query_features": "query.features",
    "scores": "scores",
    "prediction": "prediction",
}


@dataclass(frozen=True)
class EpisodeRoles:
    """Which buffer of a Program plays each part of a few-shot episode (None: the program has none).

    Stages and backends find an episode's images, labels, features and outputs here rather than
    by buffer name, so a program may name its buffers as it likes. A whole episode has the images,
    labels, scores and prediction; its stages (compiler/stages.py) have only their part.
    """

    support_images: str | None = None
    support_labels: str | None = None
    query_images: str | None = None
    support_features: str | None = None
    query_features: str | None = None
    scores: str | None = None
    prediction: str | None = None

    @classmethod
    def conventional(cls, names: Iterable[str]) -> EpisodeRoles:
        """The roles of the compiler's conventional buffer names among `names` (the default of a Program)."""
        present = set(names)
        return cls(**{role: name for role, name in CONVENTIONAL_NAMES.items() if name in present})

    def restricted(self, names: Iterable[str]) -> EpisodeRoles:
        """These roles less those naming no buffer of `names` (the roles of a part of the program)."""
        kept = set(names)
        return EpisodeRoles(**{role: name for role, name in self.to_json().items() if name in kept})

    def require(self, role: str, user: str) -> str:
        """The buffer playing `role`, or UserError saying that `user` needs it and the program has none."""
        name = getattr(self, role)
        if name is None:
            what = ROLE_RULES[role][2]
            raise UserError(f"{user} needs the program's {what} (episode role '{role}'), and it has none")
        return name

    def check(self, buffers: Mapping[str, Buffer]) -> None:
        """UserError unless each named buffer exists with its role's kind and rank, and no buffer has two roles."""
        named = {role: name for role, name in self.to_json().items() if name is not None}
        for role, name in named.items():
            kinds, rank, what = ROLE_RULES[role]
            buf = buffers.get(name) if isinstance(name, str) else None
            if buf is None:
                raise UserError(f"episode role '{role}' names buffer {name!r}, which the program does not declare")
            if buf.kind not in kinds or len(buf.shape) != rank:
                raise UserError(
                    f"episode role '{role}' ({what}) needs a buffer of kind {' or '.join(kinds)} and rank {rank}, "
                    f"but buffer '{name}' has kind {buf.kind} and shape {buf.shape}"
                )
        names = list(named.values())
        twice = [name for name in names if names.count(name) > 1]
        if twice:
            raise UserError(f"buffer '{twice[0]}' has two episode roles; each role needs its own buffer")

    def to_json(self) -> dict[str, str | None]:
        """Plain dict for program.json (role -> buffer name or None)."""
        return dict(self.__dict__)


@dataclass(frozen=True, eq=False)
class Program:
    """Ordered kernel ops over named buffers, integer weights, episode metadata and roles (validated)."""

    meta: ProgramMeta
    buffers: tuple[Buffer, ...]
    ops: tuple[Kernel, ...]
    #: int64 values of every weight buffer, and the episode-start value of state buffers that have one
    weights: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: which buffers are the episode's images, labels, features and outputs (None: the conventional names)
    roles: EpisodeRoles | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "buffers", tuple(self.buffers))
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "weights", dict(self.weights))
        if self.roles is None:
            object.__setattr__(self, "roles", EpisodeRoles.conventional(b.name for b in self.buffers))
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
            and self.roles == other.roles
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
        if not isinstance(self.roles, EpisodeRoles):
            raise UserError(f"program roles must be EpisodeRoles, got {type(self.roles).__name__}")
        self.roles.check(buffers)
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
            "roles": self.roles.to_json(),
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
        """Read a folder written by `save`; anything missing, corrupt or inconsistent raises UserError.

        A version-1 file has no roles: its buffers' conventional names give them.
        """
        folder = Path(folder)
        doc = _read_document(folder)
        weights = _read_weights(folder)
        try:
            return cls(
                meta=ProgramMeta(**doc["meta"]),
                buffers=tuple(Buffer.from_json(b) for b in doc["buffers"]),
                ops=tuple(kernel_from_json(op) for op in doc["ops"]),
                weights=weights,
                roles=EpisodeRoles(**doc["roles"]) if doc["version"] > 1 else None,
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
    if doc.get("version") not in READ_VERSIONS:
        readable = " and ".join(str(v) for v in READ_VERSIONS)
        raise UserError(f"{path} has format version {doc.get('version')!r}; this metahw reads versions {readable}")
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
