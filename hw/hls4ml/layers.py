"""hls4ml layer classes of the metahw kernels (hls4ml's extension API: one IR class per op).

They are the head's layers and the embedding ops that hls4ml has no exact layer for. Every
metahw layer is described by plain attributes that the lowerings (`ops/<family>.py`) fill in: the C++
function (`cpp_function`, in nnet_metahw.h), the output shape and precision, whether it
computes per query image or once per episode (`per_sample`), the integer constants and the
types of its config struct (`cpp_ints`, `cpp_types`), and constant tables passed to the
function as hls4ml weight arrays (`cpp_tables`). The templates in `templates.py` turn
these into the config struct and the function call.
"""

from __future__ import annotations

from hls4ml.model.attributes import Attribute
from hls4ml.model.layers import Layer
from hls4ml.model.types import NamedType


class MetahwLayer(Layer):
    """Base of the metahw layers: output, config types and tables from the layer's attributes."""

    _expected_attributes = [
        Attribute("cpp_function", value_type=str),
        Attribute("out_shape", value_type=list),
        Attribute("out_precision", value_type=str),
        Attribute("per_sample", value_type=bool),
        Attribute("cpp_ints", value_type=dict),
        Attribute("cpp_types", value_type=dict),
        Attribute("cpp_tables", value_type=dict),
    ]

    def initialize(self) -> None:
        """Declare the output variable, the config's named types and the table weights."""
        convert = self.model.config.backend.convert_precision_string
        self.add_output_variable(list(self.get_attr("out_shape")), precision=convert(self.get_attr("out_precision")))
        for key, precision in self.get_attr("cpp_types").items():
            self.set_attr(key, NamedType(f"{self.name}_{key}", convert(precision)))
        for key, (data, precision) in self.get_attr("cpp_tables").items():
            self.add_weights_variable(
                name=key,
                var_name=f"{key}{{index}}",
                type_name=f"{key}{{index}}_t",
                precision=convert(precision),
                data=data,
            )


class MetahwSupportMemory(MetahwLayer):
    """Stores its input on support images: the episode's support features (or labels), [M, n]."""


class MetahwConstant(MetahwLayer):
    """A program weight buffer, or a head state's episode-start value (its only input is `label`)."""


class MetahwOutput(MetahwLayer):
    """Copies a tensor that other layers read to a model output port."""


class MetahwGlobalAverage(MetahwLayer):
    """GlobalAvgPool of a map whose H*W is not a power of two: the sum times the program's reciprocal."""


class MetahwPrototypeAccumulate(MetahwLayer):
    """PrototypeAccumulate: class means of the support features."""


class MetahwDistance(MetahwLayer):
    """Distance: squared L2, dot or cosine between query rows and reference rows."""


class MetahwArgReduce(MetahwLayer):
    """ArgMin / ArgMax over the last axis (first index on ties)."""


class MetahwSoftmax(MetahwLayer):
    """Softmax over the last axis with the integer exp table and reciprocal."""


class MetahwCosineAttention(MetahwLayer):
    """CosineAttention: class scores from softmax attention over scaled cosine similarities."""


class MetahwProtoHeadInit(MetahwLayer):
    """ProtoHeadInit, one part: the head weight W = 2c or the bias b = -|c|^2."""


class MetahwDense(MetahwLayer):
    """Dense on run-time weights (the adapted head)."""


class MetahwSGDGrad(MetahwLayer):
    """SGDHeadStep, steps 1-4: the scaled softmax error G of the support set."""


class MetahwSGDUpdate(MetahwLayer):
    """SGDHeadStep, steps 5-6: one parameter's update (head weight or bias) from G."""


#: every metahw layer class by its hls4ml IR name
LAYERS: dict[str, type[MetahwLayer]] = {
    cls.__name__: cls
    for cls in (
        MetahwSupportMemory,
        MetahwConstant,
        MetahwOutput,
        MetahwGlobalAverage,
        MetahwPrototypeAccumulate,
        MetahwDistance,
        MetahwArgReduce,
        MetahwSoftmax,
        MetahwCosineAttention,
        MetahwProtoHeadInit,
        MetahwDense,
        MetahwSGDGrad,
        MetahwSGDUpdate,
    )
}
