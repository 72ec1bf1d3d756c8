"""Which ONNX attributes each imported op accepts, and with which values.

Every attribute of every imported node is either implemented exactly or refused at import
with the node, the attribute, its value and what is supported: a Conv with strides=[3,3] or
dilations=[2,2] must never compile into the program of another convolution. An attribute
that an op does not list is refused as well.

The kernel modules (`compiler/kernels/<family>.py`) declare the ONNX op types they lower from
with `accepts`, with their attributes; this module declares the episode's structural ops.
Readers import `metahw.compiler.kernels` first, which imports every kernel module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from metahw.errors import UserError

Check = Callable[[Any], bool]
#: attribute -> (check, what is supported)
Attributes = Mapping[str, tuple[Check, str]]


def ints(*allowed: list[int]) -> Check:
    """Accepts exactly one of the integer lists `allowed`."""
    return lambda v: list(v) in [list(a) for a in allowed]


def pair(values: tuple[int, ...]) -> Check:
    """Accepts [v, v] with v one of `values`."""
    return lambda v: len(v) == 2 and v[0] == v[1] and v[0] in values


def symmetric_pads(v: Any) -> bool:
    """[p, p, p, p] with p >= 0."""
    return len(v) == 4 and len(set(v)) == 1 and v[0] >= 0


def not_set(v: Any) -> bool:
    """auto_pad NOTSET."""
    return v in (b"NOTSET", "NOTSET")


def any_value(_: Any) -> bool:
    """Any value (an attribute that does not change the result)."""
    return True


#: ONNX op type -> the attributes its nodes may carry: the importer admits exactly these op types
ATTRIBUTES: dict[str, Attributes] = {}


def accepts(op_type: str, attributes: Attributes) -> None:
    """Declare that the importer admits ONNX nodes of `op_type` with `attributes` (name -> (check, supported))."""
    if op_type in ATTRIBUTES:
        raise ValueError(f"ONNX op {op_type} is declared twice")
    ATTRIBUTES[op_type] = attributes


# The episode's structure (Concat of the images, Slices of the features) and the constants that
# `passes.fold_constants` folds; the kernel modules declare the rest beside their kernels.
accepts("Concat", {"axis": (lambda v: v == 0, "0")})
accepts("Slice", {})
accepts("Constant", {"value": (any_value, "a tensor")})
accepts("Expand", {})
accepts("Identity", {})


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
