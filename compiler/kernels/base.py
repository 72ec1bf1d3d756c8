"""The kernel-op base class, the registry of ops by name, and the execution environment.

A kernel op is a frozen dataclass: its fields name the buffers it reads and writes and
carry its attributes (flags, internal formats, table parameters). The class owns, in one
place, everything about the op: shape/format inference (`infer`), MAC count (`macs`),
the exact integer semantics (`execute`, plain numpy int64), its closed-form cycle cost on
the accelerator (`cycles`, docs/microarchitecture.md), the datapath widths it needs
(`width_needs`) and the scratch memory it uses while it runs (`scratch_bytes`), and JSON
(de)serialisation.
"""

from __future__ import annotations

import abc
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from metahw.errors import UserError
from metahw.qformat import QFormat, rescale, shift_round

if TYPE_CHECKING:
    from metahw.compiler.kernels.datapath import Needs
    from metahw.compiler.program import Buffer

KERNELS: dict[str, type[Kernel]] = {}


@dataclass(frozen=True)
class OutputSpec:
    """What a kernel says about a buffer it writes: its shape, and its format when the op fixes it.

    `qformat` None means the program chooses the format (the kernel requantises to it).
    """

    shape: tuple[int, ...]
    qformat: QFormat | None = None


@dataclass(frozen=True, kw_only=True)
class Kernel(abc.ABC):
    """Base of every kernel op; subclasses set `op`, `reads_fields`, `writes_fields`."""

    op: ClassVar[str]
    #: names of the fields that hold buffers the op reads / writes (None-valued fields are skipped)
    reads_fields: ClassVar[tuple[str, ...]]
    writes_fields: ClassVar[tuple[str, ...]]
    #: runs per group of G images inside an embedding segment (the per-image engines; docs/microarchitecture.md §7)
    segment: ClassVar[bool] = False

    name: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "op" in cls.__dict__:
            KERNELS[cls.op] = cls

    def reads(self) -> tuple[str, ...]:
        """Names of the buffers this op reads, in field order."""
        return tuple(getattr(self, f) for f in self.reads_fields if getattr(self, f) is not None)

    def writes(self) -> tuple[str, ...]:
        """Names of the buffers this op writes (a state buffer may be read and written)."""
        return tuple(getattr(self, f) for f in self.writes_fields if getattr(self, f) is not None)

    def error(self, message: str) -> UserError:
        """A UserError naming this op: '<op> '<name>': <message>'."""
        return UserError(f"{self.op} '{self.name}': {message}")

    @abc.abstractmethod
    def infer(self, buffers: Mapping[str, Buffer]) -> dict[str, OutputSpec]:
        """Check the inputs' shapes and formats; give the shape (and fixed format) of each output."""

    @abc.abstractmethod
    def macs(self, buffers: Mapping[str, Buffer]) -> int:
        """Multiply-accumulate operations of one execution (the MAC array's work)."""

    @abc.abstractmethod
    def execute(self, env: Env) -> None:
        """Golden integer semantics: read buffers from `env`, write every output buffer."""

    @abc.abstractmethod
    def cycles(self, buffers: Mapping[str, Buffer], hw: Any) -> int:
        """Closed-form cycle count of one execution on the accelerator with HardwareConfig `hw`.

        The sum of the op's instructions (docs/microarchitecture.md §7-§8, costs from
        `timing.py`); the cycle simulator counts exactly this many cycles for the op.
        """

    @abc.abstractmethod
    def width_needs(self, buffers: Mapping[str, Buffer]) -> Needs:
        """Every multiplier operand and accumulator/PPU value of the op: (what, kind, signed bits).

        `kernels.datapath` has the conventions; `compiler.widths` collects the needs of a
        program, which size the accelerator's operands and accumulators (`derive_hardware`).
        """

    def scratch_bytes(self, buffers: Mapping[str, Buffer]) -> int:
        """SMEM bytes the op's intermediates need while it runs (docs/microarchitecture.md §8); 0: none."""
        return 0

    # ---- JSON ---------------------------------------------------------------------------
    def to_json(self) -> dict:
        """Plain dict: {"op": ..., every field: value}; formats and specs as nested objects."""
        out: dict[str, Any] = {"op": self.op}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_json() if hasattr(value, "to_json") else value
        return out

    @classmethod
    def from_json_fields(cls, data: Mapping[str, Any]) -> Kernel:
        """Build this op from its JSON fields (without "op"); raises UserError naming the problem."""
        name = data.get("name", "?")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            accepted = ", ".join(fields)
            raise UserError(f"{cls.op} '{name}': unknown field(s) {', '.join(unknown)}; accepted are {accepted}")
        kwargs = {}
        for key, value in data.items():
            try:
                kwargs[key] = _decode(hints[key], value)
            except (TypeError, ValueError) as exc:
                raise UserError(f"{cls.op} '{name}': field '{key}': {exc}") from None
        missing = [f for f, spec in fields.items() if f not in kwargs and spec.default is dataclasses.MISSING]
        if missing:
            raise UserError(f"{cls.op} '{name}': missing field(s) {', '.join(missing)}")
        return cls(**kwargs)


def kernel_from_json(data: Any) -> Kernel:
    """Build any registered op from its JSON dict; unknown op names raise UserError listing the supported ones."""
    if not isinstance(data, dict) or not isinstance(data.get("op"), str):
        raise UserError(f"an op must be a JSON object with a string 'op' field, got {str(data)[:80]}")
    cls = KERNELS.get(data["op"])
    if cls is None:
        raise UserError(f"unknown op '{data['op']}'; supported ops are {', '.join(sorted(KERNELS))}")
    return cls.from_json_fields({k: v for k, v in data.items() if k != "op"})


def _decode(hint: Any, value: Any) -> Any:
    """Check/convert one JSON value against a field's type hint (str, int, bool, X | None, from_json classes)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [t for t in options if t is not type(None)]
        return _decode(inner, value)
    if hint in (str, int, bool):
        if type(value) is not hint:
            raise TypeError(f"expected {hint.__name__}, got {value!r}")
        return value
    if hasattr(hint, "from_json"):
        return hint.from_json(value)
    raise TypeError(f"no JSON decoding for {hint!r}")


class Env:
    """The golden executor's state: buffer declarations, current integer values, modes, overflow counts.

    Kernels read and write buffers through it and requantise with `requant`, which adds
    the number of overflowed elements to `saturation[tensor]` (tensor: a buffer name, or
    '<op name>/<intermediate>' for values internal to an op).
    """

    def __init__(self, buffers: Mapping[str, Buffer], values: dict[str, np.ndarray], rounding: str, overflow: str):
        self.buffers = buffers
        self.values = values
        self.rounding = rounding
        self.overflow = overflow
        self.saturation: dict[str, int] = {}

    def read(self, name: str) -> np.ndarray:
        """Current integers of buffer `name`."""
        return self.values[name]

    def fmt(self, name: str) -> QFormat:
        """Declared format of buffer `name`."""
        return self.buffers[name].qformat

    def fracs(self, name: str) -> np.ndarray:
        """Fractional bits of each index along axis 0 of buffer `name` (per-channel formats)."""
        return self.buffers[name].axis0_fracs()

    def write(self, name: str, values: np.ndarray) -> None:
        """Store an op's result; a value outside the buffer's shape or format is a kernel bug."""
        buf = self.buffers[name]
        values = np.asarray(values)
        if values.dtype != np.int64 or values.shape != buf.shape or not buf.holds(values):
            got = f"{values.dtype}{values.shape}"
            raise AssertionError(f"kernel bug: wrote {got} outside buffer '{name}' {buf.shape} {buf.qformat}")
        self.values[name] = values

    def requant(self, values: np.ndarray, src_frac: int | np.ndarray, dst: QFormat, tensor: str) -> np.ndarray:
        """Rescale integers at `src_frac` to `dst` with the program's modes, counting overflows on `tensor`."""
        out, count = rescale(values, src_frac, dst, self.rounding, self.overflow)
        self.saturation[tensor] = self.saturation.get(tensor, 0) + count
        return out

    def shift(self, values: np.ndarray, shift: int | np.ndarray) -> np.ndarray:
        """values * 2^-shift with the program's rounding (no range limit: for exact, bounded intermediates)."""
        return shift_round(values, shift, self.rounding)
