"""Open-source synthesis (Yosys) and place-and-route (nextpnr) reports of the generated RTL, and ASIC area reports."""

from metahw.hw.synth.asic import AsicReport, synthesize_asic
from metahw.hw.synth.devices import ASIC_TARGETS, DEVICES, AsicTarget, Device, get_device, get_target
from metahw.hw.synth.report import SynthReport, check_synthesis_inputs, synthesize

__all__ = [
    "ASIC_TARGETS",
    "DEVICES",
    "AsicReport",
    "AsicTarget",
    "Device",
    "SynthReport",
    "check_synthesis_inputs",
    "get_device",
    "get_target",
    "synthesize",
    "synthesize_asic",
]
