"""hls4ml lowering of Flatten.

`Reshape` of the channels-last map (the `channels_last` order, and any [C, 1, 1]); the PyTorch
order is a `Transpose` to [C, H, W] first.
"""

from __future__ import annotations

import numpy as np

from metahw.compiler.kernels import Flatten
from metahw.hw.hls4ml.embedding_ops import LayerList, Value
from metahw.hw.hls4ml.ops import EMBEDDING, lowers
from metahw.hw.hls4ml.precision import fixed


@lowers(EMBEDDING, Flatten)
def flatten(out: LayerList, op: Flatten, name: str, values: dict[str, Value]) -> Value:
    """Flatten as hls4ml layers."""
    x = values[op.input]
    if len(x.shape) == 1:
        return Value(x.layer, x.fmt, x.shape)
    last = x.layer
    if not op.channels_last and x.shape[1:] != (1, 1):  # the PyTorch order: [H, W, C] -> [C, H, W] first
        layer = {"name": f"{name}_chw", "class_name": "Transpose", "inputs": [last], "perm": [2, 0, 1]}
        last = out.add(layer, result=fixed(x.fmt))
    size = int(np.prod(x.shape))
    out.layers.append({"name": f"{name}_flat", "class_name": "Reshape", "inputs": [last], "target_shape": [size]})
    return Value(out.layers[-1]["name"], x.fmt, (size,))
