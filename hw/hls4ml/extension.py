"""Register metahw's head kernels with hls4ml: layer classes, templates and C++ sources (once per process)."""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path

import hls4ml
from hls4ml.model.layers import register_layer

from metahw.hw.hls4ml.layers import LAYERS
from metahw.hw.hls4ml.templates import MetahwConfigTemplate, MetahwFunctionTemplate

#: the hls4ml backends whose projects can hold the metahw layers (both write Vivado-style HLS C++)
BACKENDS = ("Vitis", "Vivado")
#: C++ sources copied into the project's firmware/nnet_utils/
SOURCES = ("nnet_metahw.h", "nnet_metahw_sfu.h")


def source_path(name: str) -> Path:
    """Absolute path of one of metahw's C++ sources (package data)."""
    return Path(str(files("metahw.hw.hls4ml").joinpath(name))).resolve()


@functools.cache
def register_extension() -> None:
    """Make hls4ml know the metahw layers, their templates and sources for every backend in BACKENDS."""
    for name, cls in LAYERS.items():
        register_layer(name, cls)
    for backend_name in BACKENDS:
        backend = hls4ml.backends.get_backend(backend_name)
        backend.register_template(MetahwConfigTemplate)
        backend.register_template(MetahwFunctionTemplate)
        for source in SOURCES:
            backend.register_source(source_path(source))
