"""Does the core fit the device, and if not, which knob would make it fit.

The scaling rules are first-order estimates from the design's structure: the MAC datapath
(DSP blocks, most LUTs and FFs) grows with the lanes P; the weight memory grows with the
weight bits and with the square of the backbone width (conv weights are width x width x 3 x 3),
so memory blocks are scaled by bits'/bits and (width'/width)^2. Each suggestion states the
estimate it rests on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from metahw.hw.synth.devices import DEVICES, Device
from metahw.hw.synth.manifest import RtlManifest
from metahw.hw.synth.yosys import ResourceUse

RESOURCES = ("LUT", "FF", "DSP", "BRAM", "SPRAM")
MEMORY = ("BRAM", "SPRAM")
#: the operand width one hardware multiplier takes, per device family (MULT18X18D 18 x 18,
#: SB_MAC16 16 x 16, DSP48E1 25 x 18 counted as 18)
DSP_OPERAND_BITS = {"ecp5": 18, "ice40": 16, "xc7": 18}


@dataclass(frozen=True)
class ResourceLine:
    """One row of the utilisation table."""

    resource: str
    used: float
    capacity: float
    unit: str

    @property
    def percent(self) -> float:
        """Use as a percentage of the capacity (inf when the device has none of it but the core uses some)."""
        if self.capacity:
            return 100.0 * self.used / self.capacity
        return math.inf if self.used else 0.0

    @property
    def fits(self) -> bool:
        """True when the use does not exceed the capacity."""
        return self.used <= self.capacity

    def to_dict(self) -> dict[str, object]:
        """JSON-ready row (percent is null when the device has none of the resource)."""
        percent = self.percent
        return {
            "used": self.used,
            "capacity": self.capacity,
            "unit": self.unit,
            "percent": round(percent, 2) if math.isfinite(percent) else None,
            "fits": self.fits,
        }


def resource_lines(device: Device, use: ResourceUse) -> list[ResourceLine]:
    """The table rows: every resource the device has, plus any the core uses that the device lacks."""
    units = {
        "LUT": f"LUT{device.lut_inputs}",
        "FF": "FF",
        "DSP": device.dsp_cell,
        "BRAM": f"{device.bram_block_kbit} kbit blocks",
        "SPRAM": f"{device.spram_block_kbit} kbit blocks",
    }
    caps = device.capacity()
    used = use.as_dict()
    return [
        ResourceLine(name, used[name], caps.get(name, 0), units[name])
        for name in RESOURCES
        if name in caps or used[name]
    ]


def _fmt(value: float) -> str:
    return f"{value:,.1f}" if value != int(value) else f"{int(value):,}"


def dsp_lanes_that_fit(
    lanes: int, operand_bits: int, dsp_lanes: int | None, used_dsp: float, device: Device
) -> int | None:
    """The most MAC lanes that can keep a hardware multiplier when a design of `lanes` lanes (the first
    `dsp_lanes` on DSP blocks; None: all) uses more DSP blocks than `device` has, the other lanes
    multiplying in LUTs; None when the DSP blocks fit.

    A lane's multiplier takes ⌈(operand_bits + 1) / w⌉² blocks of w-bit operands (the pre-adder
    widens the operand by one bit); the blocks the design uses besides its lanes (PPU scales,
    address arithmetic) stay where they are.
    """
    if used_dsp <= device.dsps or device.family not in DSP_OPERAND_BITS:
        return None
    hard = lanes if dsp_lanes is None else min(dsp_lanes, lanes)
    per_lane = math.ceil((operand_bits + 1) / DSP_OPERAND_BITS[device.family]) ** 2
    other = max(0.0, used_dsp - per_lane * hard)
    return max(0, min(hard - 1, int((device.dsps - other) // per_lane)))


def _dsp_suggestion(line: ResourceLine, manifest: RtlManifest, device: Device) -> str:
    """The lanes suggestion, led by how many lanes may keep a DSP block with the rest in LUTs."""
    advice = _lane_advice(line, manifest.lanes, device)
    hardware = manifest.raw.get("hardware") or {}
    operand, soft = hardware.get("operand_bits"), hardware.get("dsp_lanes")
    known = manifest.lanes and isinstance(operand, int) and (soft is None or isinstance(soft, int))
    keep = dsp_lanes_that_fit(manifest.lanes, operand, soft, line.used, device) if known else None
    if keep is None:  # the DSP blocks fit, or an older manifest without the operand width
        return f"{_head(line)}: {advice}"
    return (
        f"{_head(line)}: {keep} of the {manifest.lanes} lanes on DSP blocks and {manifest.lanes - keep} "
        f"multiplying in LUTs would fit them (built with dsp_lanes={keep}, same cycles); or {advice}"
    )


def _head(line: ResourceLine) -> str:
    return f"{line.resource} {_fmt(line.used)} of {_fmt(line.capacity)} ({line.unit})"


def _lane_suggestion(line: ResourceLine, lanes: int | None, device: Device) -> str:
    return f"{_head(line)}: {_lane_advice(line, lanes, device)}"


def _lane_advice(line: ResourceLine, lanes: int | None, device: Device) -> str:
    """How many lanes would fit `line`'s resource, which scales with them."""
    label = line.resource
    if not lanes:
        return f"reduce the MAC lanes P (the datapath's {label} scale with them)."
    per_lane = line.used / lanes
    fitting = [p for p in (2**k for k in range(lanes.bit_length())) if p < lanes and per_lane * p <= line.capacity]
    if fitting:
        p = max(fitting)
        need = _fmt(round(per_lane * p))
        some = f"{p} lane" if p == 1 else f"{p} lanes"
        return f"{label} scale with the lanes P; {some} instead of {lanes} would need about {need}."
    return f"even 1 lane would need about {_fmt(round(per_lane))}; {_bigger_device(device)}"


def _bigger_device(device: Device) -> str:
    bigger = [d.name for d in DEVICES.values() if d.family == device.family and d.luts > device.luts]
    return f"try a larger device ({', '.join(bigger)})." if bigger else "the design needs a larger device."


def _memory_suggestion(line: ResourceLine, manifest: RtlManifest, device: Device) -> str:
    label = line.resource
    head = f"{label} {_fmt(line.used)} of {_fmt(line.capacity)} blocks ({line.unit})"
    if manifest.memories:
        parts = ", ".join(f"{m.name} {m.bits / 1024:,.0f} kbit" for m in manifest.memories)
        head += f": the memories hold {manifest.memory_bits / 1024:,.0f} kbit ({parts})"
    head += f"; the device has {device.memory_kbit:,} kbit of block memory"
    ratio = line.capacity / line.used  # the fraction of today's memory that would fit
    options = []
    bits, width = manifest.bits, manifest.width
    if bits:
        new_bits = math.floor(bits * ratio)
        if 2 <= new_bits < bits:
            options.append(
                f"{new_bits}-bit weights (compiled with bits={new_bits}) would need about "
                f"{_fmt(math.ceil(line.used * new_bits / bits))} blocks"
            )
    if width:
        new_width = math.floor(width * math.sqrt(ratio) / 4) * 4
        if 4 <= new_width < width:
            options.append(
                f"a width-{new_width} backbone (trained with width={new_width}) would need about "
                f"{_fmt(math.ceil(line.used * (new_width / width) ** 2))} blocks"
            )
    if not options and bits and width:
        for new_width in (width // 2, width // 4):
            new_bits = math.floor(bits * ratio * (width / max(new_width, 1)) ** 2)
            if new_width >= 4 and 2 <= new_bits:
                used = math.ceil(line.used * min(new_bits, bits) / bits * (new_width / width) ** 2)
                options.append(
                    f"width {new_width} with {min(new_bits, bits)}-bit weights would need about {_fmt(used)} blocks"
                )
                break
    text = f"{head}; " + (
        "; ".join(options) + " (memory scales with bits x width^2)" if options else _bigger_device(device).rstrip(".")
    )
    if line.resource == "BRAM" and device.spram_blocks:
        text += _spram_suggestion(manifest, device)
    return text + "."


def _spram_suggestion(manifest: RtlManifest, device: Device) -> str:
    """Where the device's SPRAM could help: the activation banks, once single-ported (`act_ports` 1)."""
    if manifest.raw.get("hardware", {}).get("act_ports", 2) == 1:
        return f"; the activation banks are already in the {device.spram_blocks} SPRAM blocks"
    banks = [m for m in manifest.memories if m.name.startswith("amem")]
    if not banks:
        return f"; the {device.spram_blocks} SPRAM blocks take only single-port memories without initial contents"
    kbit = sum(m.bits for m in banks) / 1024
    return (
        f"; the activation banks ({', '.join(m.name for m in banks)}, {kbit:,.0f} kbit) can move into the "
        f'{device.spram_blocks} SPRAM blocks: build with "act_ports": 1 in the hardware config (same cycles)'
    )


def fit_suggestions(lines: list[ResourceLine], manifest: RtlManifest, device: Device) -> list[str]:
    """One sentence per overflowing resource, naming the numbers and the knob that would make it fit."""
    out = []
    for line in lines:
        if line.fits:
            continue
        if line.resource in MEMORY:
            out.append(_memory_suggestion(line, manifest, device))
        elif line.resource == "DSP":
            out.append(_dsp_suggestion(line, manifest, device))
        else:
            out.append(_lane_suggestion(line, manifest.lanes, device))
    return out


def placement_suggestions(overflow: dict[str, dict[str, int]], manifest: RtlManifest, device: Device) -> list[str]:
    """One sentence per kind of site the packed design overflows (nextpnr's bel names), with the lanes that fit."""
    return [
        _lane_suggestion(ResourceLine(bel, v["used"], v["available"], "packed sites"), manifest.lanes, device)
        for bel, v in overflow.items()
    ]
