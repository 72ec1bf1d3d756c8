"""hls4ml lowering of the residual Add: `Merge(add)` (full-precision sum) [+ `Activation(relu)` | `LeakyReLU`]."""

from __future__ import annotations

from metahw.compiler.kernels import Add
from metahw.hw.hls4ml.embedding_ops import LayerList, Value, activation, output_value
from metahw.hw.hls4ml.ops import EMBEDDING, lowers
from metahw.hw.hls4ml.precision import Exact


@lowers(EMBEDDING, Add)
def add(out: LayerList, op: Add, name: str, values: dict[str, Value]) -> Value:
    """Add as hls4ml layers."""
    a, r = values[op.input], values[op.residual]
    total = Exact.of(a.fmt).plus(Exact.of(r.fmt))
    layer = {"name": f"{name}_add", "class_name": "Merge", "op": "add", "inputs": [a.layer, r.layer]}
    last = out.add(layer, result=total.type)
    last, _ = activation(out, name, last, total, op.relu, op.leaky_slope, op.leaky_frac)
    out.cast(last, out.buffers[op.output].qformat)
    return output_value(out, op, last)
