"""Kernel ops of a Program: each owns its integer semantics, shape/format inference and MAC count.

Importing this package imports every module in it, which registers every op in `KERNELS`
(op name -> class) and the ONNX op types and embedding nodes each module declares it lowers
from (`onnx_attributes.accepts`, `embedding_ops.layer_from`): a new module needs no edit here
(export its ops below for short imports).
"""

import importlib
import pkgutil

from metahw.compiler.kernels.add import Add
from metahw.compiler.kernels.argreduce import ArgMax, ArgMin
from metahw.compiler.kernels.attention import CosineAttention
from metahw.compiler.kernels.base import KERNELS, Env, Kernel, OutputSpec, kernel_from_json
from metahw.compiler.kernels.conv import Conv2d
from metahw.compiler.kernels.dense import Dense
from metahw.compiler.kernels.distance import Distance
from metahw.compiler.kernels.flatten import Flatten
from metahw.compiler.kernels.pool import AvgPool2d, GlobalAvgPool, MaxPool2d
from metahw.compiler.kernels.proto_head import ProtoHeadInit
from metahw.compiler.kernels.prototype import PrototypeAccumulate
from metahw.compiler.kernels.requant import Requant
from metahw.compiler.kernels.sgd_head import SGDHeadStep
from metahw.compiler.kernels.softmax import Softmax, SoftmaxSpec

__all__ = [
    "KERNELS",
    "Add",
    "ArgMax",
    "ArgMin",
    "AvgPool2d",
    "Conv2d",
    "CosineAttention",
    "Dense",
    "Distance",
    "Env",
    "Flatten",
    "GlobalAvgPool",
    "Kernel",
    "MaxPool2d",
    "OutputSpec",
    "ProtoHeadInit",
    "PrototypeAccumulate",
    "Requant",
    "SGDHeadStep",
    "Softmax",
    "SoftmaxSpec",
    "kernel_from_json",
]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
