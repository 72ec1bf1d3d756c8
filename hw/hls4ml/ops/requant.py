"""hls4ml lowering of Requant: `Activation(relu)` or `Activation(linear)` (a cast, which hls4ml keeps)."""

from __future__ import annotations

from metahw.compiler.kernels import Requant
from metahw.hw.hls4ml.embedding_ops import LayerList, Value, output_value
from metahw.hw.hls4ml.ops import EMBEDDING, lowers


@lowers(EMBEDDING, Requant)
def requant(out: LayerList, op: Requant, name: str, values: dict[str, Value]) -> Value:
    """Requant as hls4ml layers."""
    x = values[op.input]
    layer = {
        "name": f"{name}_requant",
        "class_name": "Activation",
        "activation": "relu" if op.relu else "linear",
        "inputs": [x.layer],
    }
    last = out.add(layer)
    out.cast(last, out.buffers[op.output].qformat)
    return output_value(out, op, last)
