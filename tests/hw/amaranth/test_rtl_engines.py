"""The engines are `wiring.Component`s whose members are the bus signals the accelerator connects."""

from __future__ import annotations

import pytest
from amaranth.hdl import Fragment, Shape
from amaranth.lib import wiring

from metahw.hardware import HardwareConfig, derive_hardware
from metahw.hw.amaranth.engine import Engine, port_name
from metahw.hw.amaranth.engines_head import RowReduceEngine
from metahw.hw.amaranth.spec import rtl_plan
from metahw.hw.amaranth.top import Accelerator
from tests.hw.amaranth.rtl_fixtures import tiny_heads


def _top() -> Accelerator:
    """The accelerator of a program with every head op, elaborated (its bus built, its engines attached)."""
    program = tiny_heads()
    top = Accelerator(rtl_plan(program, derive_hardware(program, base=HardwareConfig(lanes=4, stream_elements=2))))
    Fragment.get(top, None)
    return top


def test_every_engine_member_is_a_bus_signal_of_its_shape():
    """Each engine is a Component; each member's path names a bus signal of its shape.

    The one exception is a single-element writer's one-bit write mask (the memory's is P bits).
    """
    top = _top()
    assert len(top.engines) >= 10
    for engine in top.engines:
        assert isinstance(engine, Engine) and isinstance(engine, wiring.Component)
        for path, member, value in engine.signature.flatten(engine):
            there = top.bus_at(path)
            if path[-1] == "wr_mask" and len(value) == 1:
                continue
            assert Shape.cast(value.shape()) == Shape.cast(there.shape()), (type(engine).__name__, path, member)


def test_rowred_reads_only_the_lanes_of_a_row():
    """ROWRED declares min(P, cols) rotated lanes per source (its read rotator's width), and reads no lane past them."""
    top = _top()
    engine = next(e for e in top.engines if isinstance(e, RowReduceEngine))
    for d in engine.ops:
        lanes = engine.rotated[port_name(d.source)]
        assert lanes == max(min(top.lanes, o.cols) for o in engine.ops if o.source == d.source)
        assert top.stores[d.source].rotated_lanes >= lanes
        with pytest.raises(ValueError, match="lane"):
            engine.lane(d.source, lanes)
