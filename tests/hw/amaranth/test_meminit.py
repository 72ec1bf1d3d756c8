"""The memory-init split: exact words in the .hex files, strict about what it rewrites."""

from __future__ import annotations

import pytest

from metahw.hardware import HardwareConfig
from metahw.hw.amaranth.build import build_rtl
from metahw.hw.amaranth.meminit import split_memory_init
from metahw.hw.amaranth.rom import bank_depths
from metahw.hw.amaranth.spec import rtl_plan
from tests.hw.amaranth.rtl_fixtures import tiny_protonet

MEMORY = """module m(clk);
  reg [11:0] rom [2:0];
  initial begin
    rom[0] = 12'h0ab;
    rom[2] = 12'd17;
  end
endmodule"""


def test_block_becomes_readmemh_with_every_word() -> None:
    text, files = split_memory_init(MEMORY)
    assert 'initial $readmemh("rom.hex", rom);' in text
    assert "initial begin" not in text
    assert files == {"rom.hex": "0ab\n000\n011\n"}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("rom[3] = 12'h001;", "beyond its depth"),
        ("other[0] = 12'h001;", "unexpected line"),
        ("rom[0] = 8'h01;", "unexpected line"),
    ],
)
def test_unexpected_blocks_are_errors(bad: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        split_memory_init(MEMORY.replace("rom[2] = 12'd17;", bad))


def test_weight_file_holds_the_plan_words(tmp_path) -> None:
    program, hw = tiny_protonet(), HardwareConfig(lanes=4, stream_elements=2, acc_bits=34)
    build_rtl(program, hw, tmp_path)
    rp = rtl_plan(program, hw)
    bits = rp.weight_bits
    want = [sum((v & ((1 << bits) - 1)) << (k * bits) for k, v in enumerate(word)) for word in rp.weight_words]
    banks = [tmp_path / f"wmem_bank{k}.hex" for k in range(len(bank_depths(len(want), hw.lanes * bits)))]
    got = [int(w, 16) for bank in banks for w in bank.read_text().split()]
    assert got == want + [0] * (max(2, len(want)) - len(want))  # the memory is at least 2 words deep
    assert (tmp_path / "metahw_accel.v").read_text().count("$readmemh") == len(list(tmp_path.glob("*.hex")))


def test_an_uninitialised_memory_loses_its_zero_block_and_keeps_others() -> None:
    zeros = MEMORY.replace("rom[0] = 12'h0ab;\n    rom[2] = 12'd17;", "rom[1] = 12'h000;")
    text, files = split_memory_init(zeros, uninitialised=("rom",))
    assert "initial" not in text and "reg [11:0] rom [2:0];" in text
    assert files == {}
    with pytest.raises(ValueError, match="non-zero initial contents"):
        split_memory_init(MEMORY, uninitialised=("rom",))
    assert split_memory_init(MEMORY, uninitialised=("other",))[1] == {"rom.hex": "0ab\n000\n011\n"}


def test_single_port_activation_banks_have_no_init_files(tmp_path) -> None:
    program = tiny_protonet()
    build_rtl(program, HardwareConfig(lanes=4, stream_elements=2, acc_bits=34, act_ports=1), tmp_path)
    verilog = (tmp_path / "metahw_accel.v").read_text()
    assert not list(tmp_path.glob("amem*.hex")) and "amem0_rd_addr" in verilog
    assert verilog.count("$readmemh") == len(list(tmp_path.glob("*.hex")))
