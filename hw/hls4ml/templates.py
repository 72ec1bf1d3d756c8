"""hls4ml templates of the metahw layers: the C++ config struct and the function call.

The config struct of layer N holds `per_sample`, the layer's integer constants and typedefs
of its named types; the call passes the layer's inputs (in order), its table weights and
its output to `nnet::metahw::<cpp_function><configN>` (nnet_metahw.h).
"""

from __future__ import annotations

from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate

from metahw.hw.hls4ml.layers import LAYERS

INCLUDES = ["nnet_utils/nnet_metahw.h"]
_INT_MAX = 2**31 - 1


class MetahwConfigTemplate(LayerConfigTemplate):
    """config{index}: per_sample, integer constants, typedefs."""

    def __init__(self) -> None:
        super().__init__(tuple(LAYERS.values()))

    def format(self, node) -> str:  # noqa: ANN001 - an hls4ml Layer
        """The config struct of `node`."""
        lines = [
            f"struct config{node.index} {{",
            f"    static const bool per_sample = {str(node.get_attr('per_sample')).lower()};",
        ]
        for key, value in node.get_attr("cpp_ints").items():
            if abs(value) <= _INT_MAX:
                lines.append(f"    static const int {key} = {value};")
            else:
                lines.append(f"    static const unsigned long long {key} = {value}ULL;")
        for key in node.get_attr("cpp_types"):
            lines.append(f"    typedef {node.get_attr(key).name} {key};")
        return "\n".join([*lines, "};"]) + "\n"


class MetahwFunctionTemplate(FunctionCallTemplate):
    """nnet::metahw::<function><config>(inputs..., tables..., output)."""

    def __init__(self) -> None:
        super().__init__(tuple(LAYERS.values()), include_header=INCLUDES)

    def format(self, node) -> str:  # noqa: ANN001 - an hls4ml Layer
        """The call of `node`'s C++ function."""
        args = [node.get_input_variable(name).name for name in node.inputs]
        args += [weight.name for weight in node.get_weights()]
        args.append(node.get_output_variable().name)
        return f"nnet::metahw::{node.get_attr('cpp_function')}<config{node.index}>({', '.join(args)});"
