"""How to quantise: bit widths, rounding and overflow modes, and per-tensor overrides.

`bits` applies to the embedding (input pixels, conv weights, activations, features);
`head_bits` to the head's run-time state and internal values (prototypes keep the feature
format). A per-tensor override (JSON or YAML file: ``{"tensors": {NAME: {"bits": B,
"frac": F, "signed": S}}}``, every key optional) replaces the format the range rule would
choose; NAME is a program buffer name such as ``block0.conv.weight`` or ``block2.pool``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from metahw.errors import UserError
from metahw.qformat import OVERFLOW_MODES, ROUNDING_MODES, QFormat, format_for_range

MIN_BITS, MAX_BITS = 2, 16
MAX_FRAC = 64  # |frac| of an overridden format: binary points this far out are a typo, not a design


@dataclass(frozen=True)
class QuantConfig:
    """Quantisation settings of one compilation (validated on construction)."""

    bits: int = 8
    weight_bits: int | None = None
    head_bits: int = 16
    per_channel: bool = False
    rounding: str = "half_up"
    overflow: str = "saturate"
    bias_bits: int = 32
    overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("bits", "weight_bits", "head_bits"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or not MIN_BITS <= value <= MAX_BITS):
                raise UserError(f"`{name}` must be an integer in {MIN_BITS}..{MAX_BITS}, got {value}.", (name,))
        if self.rounding not in ROUNDING_MODES:
            raise UserError(
                f"unknown `rounding` mode {self.rounding!r}: accepted are {', '.join(ROUNDING_MODES)}.", ("rounding",)
            )
        if self.overflow not in OVERFLOW_MODES:
            raise UserError(
                f"unknown `overflow` mode {self.overflow!r}: accepted are {', '.join(OVERFLOW_MODES)}.", ("overflow",)
            )
        for tensor, spec in self.overrides.items():
            if not isinstance(spec, dict) or set(spec) - {"bits", "frac", "signed"}:
                raise UserError(f"override for {tensor!r} must be a mapping with keys among bits, frac, signed.")
            if "bits" in spec and (type(spec["bits"]) is not int or not MIN_BITS <= spec["bits"] <= 32):
                raise UserError(f"override for {tensor!r}: bits must be an integer in {MIN_BITS}..32.")
            if "frac" in spec and (type(spec["frac"]) is not int or not -MAX_FRAC <= spec["frac"] <= MAX_FRAC):
                raise UserError(
                    f"override for {tensor!r}: frac must be an integer in -{MAX_FRAC}..{MAX_FRAC}, "
                    f"got {spec['frac']!r}."
                )
            if "signed" in spec and type(spec["signed"]) is not bool:
                raise UserError(f"override for {tensor!r}: signed must be true or false, got {spec['signed']!r}.")

    @property
    def weight_width(self) -> int:
        """Bits of conv weights."""
        return self.weight_bits or self.bits

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    def choose(self, tensor: str, lo: float, hi: float, bits: int, signed: bool | None = None) -> QFormat:
        """Format of `tensor` for float range [lo, hi]: the override if any, else the finest that fits."""
        spec = self.overrides.get(tensor, {})
        signed = spec.get("signed", lo < 0 if signed is None else signed)
        bits = spec.get("bits", bits)
        if "frac" in spec:
            return QFormat(bits, spec["frac"], signed)
        return format_for_range(min(lo, 0.0) if signed else max(lo, 0.0), max(hi, 0.0), bits, signed, self.rounding)


def load_overrides(path: str | os.PathLike) -> dict:
    """Read a per-tensor override file (JSON or YAML) into {tensor: {bits?, frac?, signed?}}."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"override file {path} does not exist.")
    try:
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path} is not valid JSON/YAML ({str(exc).splitlines()[0]}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("tensors"), dict):
        raise UserError(f"{path} must hold a mapping 'tensors: {{NAME: {{bits, frac, signed}}}}'.")
    return data["tensors"]
