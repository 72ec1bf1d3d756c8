"""Open-source synthesis (Yosys) and place-and-route (nextpnr) reports of the generated RTL."""

from metahw.hw.synth.devices import DEVICES, Device, get_device
from metahw.hw.synth.report import SynthReport, check_synthesis_inputs, synthesize

__all__ = ["DEVICES", "Device", "SynthReport", "check_synthesis_inputs", "get_device", "synthesize"]
