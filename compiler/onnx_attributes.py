"""Which ONNX attributes each imported op accepts, and with which values.

Every attribute of every imported node is either implemented exactly or refused at import
with the node, the attribute, its value and what is supported: a Conv with strides=[3,3] or
dilations=[2,2] must never compile into the program of another convolution. An attribute
that an op does not list here is refused as well.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from metahw.errors import UserError

Check = Callable[[Any], bool]


def _ints(*allowed: list[int]) -> Check:
    return lambda v: list(v) in [list(a) for a in allowed]


def _pair(values: tuple[int, ...]) -> Check:
    return lambda v: len(v) == 2 and v[0] == v[1] and v[0] in values


def _symmetric_pads(v: Any) -> bool:
    return len(v) == 4 and len(set(v)) == 1 and v[0] >= 0


def _not_set(v: Any) -> bool:
    return v in (b"NOTSET", "NOTSET")


def _any(_: Any) -> bool:
    return True


_POOL = {
    "kernel_shape": (_ints([2, 2]), "[2, 2]"),
    "strides": (_ints([2, 2]), "[2, 2]"),
    "pads": (_ints([0, 0, 0, 0]), "[0, 0, 0, 0]"),
    "ceil_mode": (lambda v: v == 0, "0 (floor, as PyTorch)"),
    "auto_pad": (_not_set, "NOTSET"),
}

#: op -> attribute -> (check, what is supported)
ATTRIBUTES: Mapping[str, Mapping[str, tuple[Check, str]]] = {
    "Conv": {
        "kernel_shape": (lambda v: len(v) == 2 and v[0] == v[1], "a square kernel [K, K]"),
        "pads": (_symmetric_pads, "symmetric zero padding [p, p, p, p] with p < K"),
        "strides": (_pair((1, 2)), "[1, 1] or [2, 2]"),
        "dilations": (_ints([1, 1]), "[1, 1]"),
        "group": (lambda v: v == 1, "1"),
        "auto_pad": (_not_set, "NOTSET"),
    },
    "MaxPool": {**_POOL, "dilations": (_ints([1, 1]), "[1, 1]"), "storage_order": (lambda v: v == 0, "0")},
    "AveragePool": {**_POOL, "count_include_pad": (_any, "0 or 1 (no padding)")},
    "GlobalAveragePool": {},
    "BatchNormalization": {
        "epsilon": (lambda v: v > 0, "> 0"),
        "momentum": (_any, "any (inference)"),
        "training_mode": (lambda v: v == 0, "0 (inference)"),
    },
    "Relu": {},
    "LeakyRelu": {"alpha": (lambda v: 0 < v < 1, "in (0, 1)")},
    "Flatten": {"axis": (lambda v: v == 1, "1")},
    "Reshape": {"allowzero": (lambda v: v == 0, "0")},
    "Gemm": {
        "alpha": (lambda v: v == 1.0, "1.0"),
        "beta": (lambda v: v == 1.0, "1.0"),
        "transA": (lambda v: v == 0, "0"),
        "transB": (lambda v: v in (0, 1), "0 or 1"),
    },
    "MatMul": {},
    "Add": {},
    "Concat": {"axis": (lambda v: v == 0, "0")},
    "Slice": {},
    "ArgMax": {
        "axis": (lambda v: v == 1, "1"),
        "keepdims": (lambda v: v == 0, "0"),
        "select_last_index": (lambda v: v == 0, "0"),
    },
    "Constant": {"value": (_any, "a tensor")},
    "Expand": {},
    "Identity": {},
}


def check_attributes(op: str, node_name: str, attrs: Mapping[str, Any]) -> None:
    """Raise UserError for the first attribute of `op` that metahw does not implement exactly."""
    allowed = ATTRIBUTES.get(op)
    if allowed is None:  # metahw-domain functions take no attributes
        if attrs:
            raise UserError(f"node {node_name!r} ({op}) has attribute(s) {', '.join(attrs)}; it takes none.")
        return
    for key, value in attrs.items():
        if key not in allowed:
            accepted = ", ".join(allowed) or "none"
            raise UserError(
                f"node {node_name!r} ({op}): attribute {key}={_show(value)} is not supported "
                f"(supported attributes: {accepted})."
            )
        check, supported = allowed[key]
        if not check(value):
            raise UserError(
                f"node {node_name!r} ({op}): {key}={_show(value)} is not supported; metahw supports "
                f"{key} = {supported}."
            )


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, (list, tuple)):
        return str(list(value))
    return str(value) if not hasattr(value, "dims") else "<tensor>"
