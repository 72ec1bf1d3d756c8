"""Calibration: the float range of every tensor of the episode graph over sample episodes.

onnxruntime runs the exported graph with every intermediate value exposed as an extra
output; the min and max of each value over the calibration episodes are the ranges from
which the quantiser picks power-of-two formats.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper

from metahw.models.export_check import ort_session

Range = tuple[float, float]


def _with_all_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for name in node.output:
            if name not in present and node.op_type != "ArgMax":
                exposed.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
                present.add(name)
    return exposed


def calibrate(model: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, Range]:
    """(min, max) of every float value of the graph (inputs included) over the given episode feeds."""
    session = ort_session(_with_all_outputs(model))
    names = [o.name for o in session.get_outputs()]
    ranges: dict[str, Range] = {}
    for feed in feeds:
        values = dict(zip(names, session.run(names, feed)))
        values.update(feed)
        for name, value in values.items():
            if value.dtype.kind != "f" or value.size == 0:
                continue
            lo, hi = float(value.min()), float(value.max())
            old = ranges.get(name, (lo, hi))
            ranges[name] = (min(old[0], lo), max(old[1], hi))
    return ranges
