"""`HardwareConfig`: the accelerator's design parameters, shared by the simulator and the backends.

Lanes and groups fix the MAC array's geometry (P lanes as G groups of L = P/G), the widths
fix its multipliers and accumulators, the byte sizes its memories (docs/microarchitecture.md
§2-§3). `validate(program)` says, naming the tensor and the sizes, when a program does not
fit. Saved as JSON so every stage can start from a file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from metahw.atomic import write_text_atomic
from metahw.errors import UserError

if TYPE_CHECKING:
    from metahw.compiler.program import Program

FORMAT_TAG = "metahw.hardware"
FORMAT_VERSION = 1
MAX_LANES = 1024
#: operand and accumulator widths the datapath supports (the golden model holds 62-bit values)
MAX_WIDTH = 64


def _power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


@dataclass(frozen=True)
class HardwareConfig:
    """Design parameters of one accelerator instance (validated on construction)."""

    lanes: int = 16
    groups: int = 1
    operand_bits: int = 18
    acc_bits: int = 64
    weight_bytes: int = 256 * 1024
    act_bytes: int = 64 * 1024
    support_bytes: int = 64 * 1024
    query_bytes: int = 64 * 1024
    stream_elements: int = 8
    clock_mhz: float = 200.0
    device: str = "generic"
    #: MAC lanes whose multiplier is a `*` that synthesis maps onto a hardware multiplier; the
    #: lanes past them multiply in soft logic (LUTs). None: every lane. Same cycles either way.
    dsp_lanes: int | None = None
    #: ports of each activation bank: 2 (a read and a write port: any block RAM) or 1 (one
    #: address, read or write each cycle: the iCE40's single-port SPRAM). Same cycles either way.
    act_ports: int = 2
    #: run every Conv2d as Winograd F(2x2, 3x3): 16 products per 2x2 pool window and input
    #: channel instead of 36 (each must be 3x3, stride 1, pooled; docs/microarchitecture.md §7)
    winograd: bool = False

    def __post_init__(self) -> None:
        ints = [f.name for f in dataclasses.fields(self) if f.type == "int"]
        for name in ints:
            if type(getattr(self, name)) is not int or getattr(self, name) < 1:
                raise UserError(f"hardware '{name}' must be a positive integer, got {getattr(self, name)!r}")
        if not _power_of_two(self.lanes) or self.lanes > MAX_LANES:
            raise UserError(f"hardware lanes must be a power of two in 1..{MAX_LANES}, got {self.lanes}")
        if not _power_of_two(self.groups) or self.groups > self.lanes:
            raise UserError(f"hardware groups must be a power of two dividing lanes={self.lanes}, got {self.groups}")
        for name in ("operand_bits", "acc_bits"):
            if not 2 <= getattr(self, name) <= MAX_WIDTH:
                raise UserError(f"hardware '{name}' must be in 2..{MAX_WIDTH}, got {getattr(self, name)}")
        if not isinstance(self.clock_mhz, int | float) or isinstance(self.clock_mhz, bool) or self.clock_mhz <= 0:
            raise UserError(f"hardware clock_mhz must be a positive number, got {self.clock_mhz!r}")
        if self.dsp_lanes is not None and (type(self.dsp_lanes) is not int or self.dsp_lanes < 0):
            raise UserError(f"hardware dsp_lanes must be null or an integer >= 0, got {self.dsp_lanes!r}")
        if self.act_ports not in (1, 2):
            raise UserError(f"hardware act_ports must be 1 or 2, got {self.act_ports!r}")
        if not isinstance(self.winograd, bool):
            raise UserError(f"hardware winograd must be true or false, got {self.winograd!r}")
        if not isinstance(self.device, str) or not self.device:
            raise UserError(f"hardware device must be a non-empty string, got {self.device!r}")

    @property
    def hard_multipliers(self) -> int:
        """The MAC lanes that multiply with a hardware multiplier (`dsp_lanes`, at most P)."""
        return self.lanes if self.dsp_lanes is None else min(self.dsp_lanes, self.lanes)

    @property
    def group_lanes(self) -> int:
        """L = P / G, the lanes of one group."""
        return self.lanes // self.groups

    def memory_bytes(self) -> dict[str, int]:
        """Capacity of each memory by its name in the plan (AMEM0, AMEM1 and AMEM2 each have `act_bytes`)."""
        return {
            "WMEM": self.weight_bytes,
            "AMEM0": self.act_bytes,
            "AMEM1": self.act_bytes,
            "AMEM2": self.act_bytes,
            "SMEM": self.support_bytes,
            "QBUF": self.query_bytes,
        }

    def seconds(self, cycles: int) -> float:
        """Wall time of `cycles` at the clock target."""
        return cycles / (self.clock_mhz * 1e6)

    # ---- files ------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """Plain dict (tagged and versioned)."""
        return {"format": FORMAT_TAG, "version": FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: object) -> HardwareConfig:
        """Inverse of `to_json`; unknown or missing fields raise UserError."""
        if not isinstance(data, dict) or data.get("format") != FORMAT_TAG:
            raise UserError(f"not a metahw hardware config (its 'format' field is not '{FORMAT_TAG}')")
        if data.get("version") != FORMAT_VERSION:
            raise UserError(f"hardware config version {data.get('version')!r}; this metahw reads {FORMAT_VERSION}")
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k not in ("format", "version")}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise UserError(f"hardware config has unknown field(s) {', '.join(unknown)}; accepted are {sorted(fields)}")
        return cls(**values)

    def save(self, path: str | Path) -> Path:
        """Write the JSON file."""
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_json(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> HardwareConfig:
        """Read a file written by `save`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read hardware config {path} ({exc})") from None
        return cls.from_json(data)


def derive_hardware(
    program: Program,
    lanes: int | None = None,
    groups: int | None = None,
    base: HardwareConfig | None = None,
    dsp_lanes: int | None = None,
    act_ports: int | None = None,
    winograd: bool | None = None,
) -> HardwareConfig:
    """The exact accelerator `metahw build` builds for `program`; every command derives its config here.

    simulate, simulate --rtl, build, demo, explore and the RTL check all call this, so what
    one command measures is what another builds. `base` holds the parameters not named (a
    config file's, or the defaults); `lanes`, `groups`, `dsp_lanes`, `act_ports` and `winograd`
    override it.
    Derived:

    - G: as given; else the base file's G where its lanes are kept; else the largest G that
      keeps every conv's lanes busy (`default_groups`);
    - E = min(base E, L) stream elements per beat (the RTL needs E to divide L = P/G: a beat
      writes one image slot);
    - operands and accumulators as wide as the program needs (`widest`), at most the base's.
    """
    from metahw.compiler.widths import widest

    chosen = base or HardwareConfig()
    if lanes is not None and lanes != chosen.lanes:
        chosen = dataclasses.replace(chosen, lanes=lanes, groups=1)
        if groups is None:
            groups = default_groups(program, lanes)
    elif base is None and groups is None:
        groups = default_groups(program, chosen.lanes)
    groups = chosen.groups if groups is None else groups
    winograd = chosen.winograd if winograd is None else winograd
    needs = widest(program, winograd)
    return dataclasses.replace(
        chosen,
        groups=groups,
        stream_elements=min(chosen.stream_elements, max(1, chosen.lanes // groups)),
        operand_bits=min(chosen.operand_bits, max(2, needs["operand"])),
        acc_bits=min(chosen.acc_bits, max(2, needs["accumulator"])),
        dsp_lanes=chosen.dsp_lanes if dsp_lanes is None else dsp_lanes,
        act_ports=chosen.act_ports if act_ports is None else act_ports,
        winograd=winograd,
    )


def default_groups(program: Program, lanes: int) -> int:
    """The largest G with L = lanes/G >= min(lanes, next_pow2(O)) for every Conv2d's O (1 without convs)."""
    from metahw.compiler.kernels import Conv2d

    buffers = program.buffer_map
    needs = [
        min(lanes, 1 << (buffers[op.weight].shape[0] - 1).bit_length()) for op in program.ops if isinstance(op, Conv2d)
    ]
    return lanes // max(needs) if needs else 1
