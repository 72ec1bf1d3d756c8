"""HardwareConfig: construction checks, JSON round trip, default lane groups."""

import json

import numpy as np
import pytest

from metahw.compiler.kernels import Dense
from metahw.compiler.program import Buffer
from metahw.errors import UserError
from metahw.hardware import HardwareConfig, default_groups
from metahw.qformat import QFormat
from tests.compiler.program_fixtures import protonet_program
from tests.sim.harness import program_of


def test_json_round_trip(tmp_path):
    hw = HardwareConfig(lanes=32, groups=4, operand_bits=16, acc_bits=40, clock_mhz=125.5, device="ecp5-85")
    assert HardwareConfig.from_json(json.loads(json.dumps(hw.to_json()))) == hw
    assert HardwareConfig.load(hw.save(tmp_path / "hw.json")) == hw
    assert hw.group_lanes == 8 and hw.seconds(250) == pytest.approx(250 / 125.5e6)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lanes": 12}, "lanes must be a power of two"),
        ({"lanes": 2048}, "lanes must be a power of two"),
        ({"lanes": 8, "groups": 16}, "groups must be a power of two dividing lanes=8"),
        ({"groups": 3}, "groups must be a power of two"),
        ({"acc_bits": 80}, "'acc_bits' must be in 2..64"),
        ({"weight_bytes": 0}, "'weight_bytes' must be a positive integer"),
        ({"stream_elements": 2.0}, "'stream_elements' must be a positive integer"),
        ({"clock_mhz": -1}, "clock_mhz must be a positive number"),
        ({"device": ""}, "device must be a non-empty string"),
    ],
)
def test_bad_fields_are_user_errors(fields, message):
    with pytest.raises(UserError, match=message):
        HardwareConfig(**fields)


def test_bad_json_is_a_user_error(tmp_path):
    data = HardwareConfig().to_json()
    with pytest.raises(UserError, match="unknown field"):
        HardwareConfig.from_json({**data, "lanez": 4})
    with pytest.raises(UserError, match="not a metahw hardware config"):
        HardwareConfig.from_json({"lanes": 4})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="cannot read hardware config"):
        HardwareConfig.load(tmp_path / "bad.json")


def test_default_groups_keep_conv_lanes_busy():
    program = protonet_program()  # one conv with 2 output channels
    assert [default_groups(program, p) for p in (1, 2, 4, 64)] == [1, 1, 2, 32]
    dense = [
        Buffer("x", (2, 3), QFormat(8, 4), "input"),
        Buffer("w", (4, 3), QFormat(8, 4), "weight"),
        Buffer("y", (2, 4), QFormat(8, 4), "output"),
    ]
    op = Dense(name="dense", input="x", weight="w", output="y")
    assert default_groups(program_of(dense, [op], {"w": np.ones((4, 3))}, "half_up", "saturate"), 64) == 1
