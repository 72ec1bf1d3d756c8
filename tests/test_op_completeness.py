"""Every kernel op of the registry runs on every engine: the golden executor, the simulator, the RTL, hls4ml.

A new op registered in `compiler/kernels` fails here until each engine has its lowering, or
until the op is listed below with the documented reason an engine refuses it. And an op from
ONNX comes in through declarations beside its kernel only (docs/architecture.md, "How to add
an op"): the ONNX op types the importer admits and the embedding's layers are declared by the
kernel modules, so neither the importer nor `lower_embedding.py` is edited for a new op.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from metahw.compiler import kernels, onnx_attributes
from metahw.compiler.compile import compile_calibrated
from metahw.compiler.embedding_ops import LAYERS, Layer, LayerContext, LayerSource
from metahw.compiler.ir import Node
from metahw.compiler.kernels import KERNELS, Kernel, Requant
from metahw.compiler.onnx_attributes import ATTRIBUTES
from metahw.compiler.onnx_import import SUPPORTED_OPS
from metahw.compiler.quant_config import QuantConfig
from metahw.hw.amaranth.ops import LOWERINGS as RTL
from metahw.hw.hls4ml.ops import LOWERINGS as HLS
from metahw.sim.machine import SCHEDULES
from metahw.sim.simulator import Simulator  # noqa: F401 - importing the simulator registers every op's schedule
from tests.compiler.onnx_fixtures import tiny_episode_model
from tests.compiler.own_programs import random_episodes

#: each engine's lowerings as (kernel class, function) pairs: each function lives in a module named like its kernel's
LOWERINGS = {
    "simulator": list(SCHEDULES.items()),
    "rtl": [(kernel, fn) for kernel, places in RTL.items() for fn in places.values()],
    "hls4ml": [(kernel, fn) for kernel, places in HLS.items() for fn in places.values()],
}

#: ops an engine refuses, with the reason (documented in the engine's docs page); none today
REFUSED: dict[str, dict[str, str]] = {"rtl": {}, "hls4ml": {}}

ENGINES = {
    "simulator": set(SCHEDULES),
    "rtl": set(RTL),
    "hls4ml": set(HLS),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_op_has_semantics_cycles_and_a_lowering_on_every_engine(name: str):
    kernel = KERNELS[name]
    assert issubclass(kernel, Kernel) and not inspect.isabstract(kernel)  # execute, cycles, macs, infer defined
    missing = [engine for engine, ops in ENGINES.items() if kernel not in ops and name not in REFUSED.get(engine, {})]
    assert missing == [], f"{name} has no lowering on {', '.join(missing)} and no documented refusal"


def test_the_engines_lower_only_registered_ops():
    registered = set(KERNELS.values())
    for engine, ops in ENGINES.items():
        assert ops <= registered, (engine, ops - registered)


def family(module: str) -> str:
    """The kernel family of a module: its last name (`metahw.sim.ops.pool` -> `pool`)."""
    return module.rsplit(".", 1)[1]


@pytest.mark.parametrize("engine", sorted(LOWERINGS))
def test_each_lowering_lives_in_the_module_named_like_its_kernels(engine: str):
    misplaced = {
        kernel.__name__: fn.__module__
        for kernel, fn in LOWERINGS[engine]
        if family(fn.__module__) != family(kernel.__module__)
    }
    assert misplaced == {}, f"{engine}: each op's lowering belongs in <backend>/ops/<kernel module>.py"


def test_segment_ops_lower_to_the_segment_engines_and_head_ops_to_the_head():
    for kernel, places in RTL.items():
        assert set(places) <= ({"conv", "map", "flatten"} if kernel.segment else {"head"}), (kernel.__name__, places)


#: the ONNX ops of the episode's structure and of constant folding, which no kernel lowers (onnx_attributes.py)
STRUCTURAL_OPS = {"Concat", "Slice", "Constant", "Expand", "Identity"}


def declared_onnx_ops(path: Path) -> set[str]:
    """The ONNX op types a module declares with `accepts("Op", ...)`."""
    calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]
    return {c.args[0].value for c in calls if isinstance(c.func, ast.Name) and c.func.id == "accepts"}


def test_every_onnx_op_the_importer_admits_is_declared_beside_a_kernel():
    by_kernels = {p.stem: declared_onnx_ops(p) for p in Path(kernels.__file__).parent.glob("*.py")}
    structural = declared_onnx_ops(Path(onnx_attributes.__file__))
    assert structural == STRUCTURAL_OPS, "an op a kernel lowers is declared in its compiler/kernels/<family>.py"
    assert set(SUPPORTED_OPS) == set(ATTRIBUTES) == structural.union(*by_kernels.values())


def test_every_embedding_layer_is_lowered_in_the_module_of_a_segment_kernel():
    segment_families = {family(k.__module__) for k in KERNELS.values() if k.segment}
    for op, source in LAYERS.items():
        module = source.lower.__module__
        assert module.startswith("metahw.compiler.kernels."), (op, module)
        assert family(module) in segment_families, (op, module)


def test_a_new_onnx_op_needs_only_its_declarations(monkeypatch):
    """An ONNX op declared as a kernel module would declare it is imported, passed and lowered with no other edit."""

    def sigmoid_layer(ctx: LayerContext, node: Node) -> Layer:  # a stand-in: a ReLU pass, to test the plumbing
        out = node.outputs[0]
        return Layer(node, Requant, node.inputs[:1], out, ctx.choose(out, False), fields={"relu": True})

    monkeypatch.setitem(ATTRIBUTES, "Sigmoid", {})
    monkeypatch.setitem(LAYERS, "Sigmoid", LayerSource(sigmoid_layer, "Sigmoid"))
    model, _ = tiny_episode_model()
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Sigmoid"  # no longer fused into its conv block: a layer of its own
    program = compile_calibrated(model, QuantConfig(), random_episodes((1, 28, 28), 2, seed=3), 3).program
    ops = {op.name: op for op in program.ops}
    assert isinstance(ops[f"support.{relu.name}"], Requant) and isinstance(ops[f"query.{relu.name}"], Requant)
