"""Drive a compiled hls4ml C simulation library image by image, reading its outputs and layer traces.

hls4ml's bridge (`<project>_bridge.cpp`) exports `<project>_double(inputs..., outputs...)`
and, for layers compiled with tracing, `allocate_trace_storage` / `collect_trace_output`.
`ModelGraph.predict` and `trace` wrap the same functions but run a whole batch per call and
`trace` recompiles the project each time; the episode runner needs per-image outputs and
traces of one build, so it calls the library directly (the C ABI hls4ml generates).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
from numpy.ctypeslib import ndpointer


class _TraceData(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("data", ctypes.c_void_p)]


class CSimulation:
    """One loaded C simulation: `run(image, label)` -> (outputs, traces) as float64 arrays.

    The design keeps state between calls (support memories, held adaptation results) for as
    long as the library stays loaded, so calls must follow the episode protocol: each episode's
    support images, in order, then its query images. Use one instance per compiled library.
    """

    def __init__(
        self, library: Path, project: str, input_sizes: list[int], output_sizes: list[int], traced: dict[str, int]
    ) -> None:
        self._lib = ctypes.CDLL(str(library), mode=ctypes.RTLD_LOCAL)
        self._top = getattr(self._lib, f"{project}_double")
        self._top.restype = None
        self._top.argtypes = [ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")] * (len(input_sizes) + len(output_sizes))
        self._input_sizes, self._output_sizes = input_sizes, output_sizes
        self._traces: dict[str, np.ndarray] = {}
        if traced:
            self._lib.allocate_trace_storage.argtypes = [ctypes.c_size_t]
            self._lib.allocate_trace_storage(ctypes.sizeof(ctypes.c_double))
            entries = (_TraceData * len(traced))()
            self._lib.collect_trace_output.argtypes = [ctypes.POINTER(_TraceData)]
            self._lib.collect_trace_output(entries)
            for entry in entries:
                name = entry.name.decode()
                pointer = ctypes.cast(entry.data, ctypes.POINTER(ctypes.c_double))
                self._traces[name] = np.ctypeslib.as_array(pointer, shape=(traced[name],))

    def run(self, *inputs: np.ndarray) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        """Call the top function on one sample; return copies of its outputs and of every traced layer's output."""
        arrays = [np.ascontiguousarray(x, dtype=np.float64).reshape(-1) for x in inputs]
        if [a.size for a in arrays] != self._input_sizes:
            raise ValueError(f"inputs of sizes {[a.size for a in arrays]}, expected {self._input_sizes}")
        outputs = [np.zeros(size) for size in self._output_sizes]
        self._top(*arrays, *outputs)
        return outputs, {name: view.copy() for name, view in self._traces.items()}
