"""Quantisation-aware training: a BN-folded Conv-4 that fake-quantises like the compiler.

`fold_batchnorm_into_convs` turns a trained (calibrated) Conv-4 into the bias-only network the
hardware runs. `QuantConv4` then rounds, in the forward pass, exactly where the compiler's
program rounds, with the compiler's own rules (`metahw.qformat`):

- input pixels in [0, 1] and every block output (after ReLU, so >= 0) in unsigned `bits`-bit
  formats; conv weights in signed `bits`-bit formats; all chosen by `format_for_range`
  (the finest power-of-two scale that holds the range), rounding half up, saturating;
- biases at the accumulator's scale (input frac + weight frac), where they cost no accuracy, or
  coarser where 32 bits cannot hold them there (`metahw.qformat.bias_format`).

Activation ranges are running maxima (buffer `act_max`, momentum 0.99) updated by `observe`
outside the forward pass (so the forward is pure and safe under torch.func transforms);
they travel with the checkpoint and the ONNX export, and the compiler uses them, so QAT and
the compiled program agree on every format. Gradients pass straight through the
rounding (straight-through estimator) and are zeroed where a value saturates.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from metahw.models.backbone import BackboneConfig, Conv4
from metahw.models.learners.base import MetaLearner, build_learner
from metahw.qformat import QFormat, bias_format, format_for_range

ACT_MOMENTUM = 0.99
BIAS_BITS = 32  # the compiler's default QuantConfig.bias_bits


def fake_quantize(x: torch.Tensor, fmt: QFormat) -> torch.Tensor:
    """Round half up to `fmt`'s grid and saturate, with a straight-through gradient inside the range."""
    scale = 2.0**fmt.frac
    scaled = x * scale  # exact: a power-of-two scale
    low = torch.floor(scaled)  # floor(scaled + 0.5) would round e.g. 0.49999997 up in float32
    q = torch.clamp(low + (scaled - low >= 0.5).to(x.dtype), fmt.min_int, fmt.max_int) / scale
    inside = (x >= fmt.min_int / scale) & (x <= fmt.max_int / scale)
    return torch.where(inside, x + (q - x).detach(), q.detach())


def weight_format(w: torch.Tensor, bits: int) -> QFormat:
    """Signed per-tensor format of a weight tensor, by the compiler's rule."""
    top = float(w.detach().abs().max())
    return format_for_range(-top, top, bits, signed=True)


def activation_format(top: float, bits: int) -> QFormat:
    """Unsigned format of a non-negative activation whose largest value is `top`."""
    return format_for_range(0.0, max(top, 0.0), bits, signed=False)


def _bias_format(bias: torch.Tensor, acc_frac: int) -> QFormat:
    """32-bit bias format at the accumulator's frac, coarser only where that cannot hold it (as the compiler)."""
    return bias_format(float(bias.detach().abs().max()), acc_frac, BIAS_BITS)


class QuantConv4(Conv4):
    """Conv-4 without BatchNorm whose forward pass fake-quantises input, weights and activations."""

    def __init__(self, config: BackboneConfig) -> None:
        if config.batchnorm or not config.qat_bits:
            raise ValueError("QuantConv4 needs a BN-free config with qat_bits set")
        super().__init__(config)
        self.register_buffer("act_max", torch.zeros(config.depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed images with the rounding of the compiled program."""
        return self._forward(x, observe=False)

    def _forward(self, x: torch.Tensor, observe: bool) -> torch.Tensor:
        bits = self.config.qat_bits
        in_fmt = activation_format(1.0, bits)
        x = fake_quantize(x, in_fmt)
        for i, block in enumerate(self.blocks):
            conv = block[0]
            w_fmt = weight_format(conv.weight, bits)
            w = fake_quantize(conv.weight, w_fmt)
            b = fake_quantize(conv.bias, _bias_format(conv.bias, in_fmt.frac + w_fmt.frac))
            x = nn.functional.max_pool2d(torch.relu(nn.functional.conv2d(x, w, b, padding=1)), 2)
            if observe:
                old, top = float(self.act_max[i]), float(x.max())
                self.act_max[i] = top if old == 0.0 else ACT_MOMENTUM * old + (1 - ACT_MOMENTUM) * top
            in_fmt = activation_format(float(self.act_max[i]), bits)
            x = fake_quantize(x, in_fmt)
        return x.flatten(1)

    @torch.no_grad()
    def float_twin(self) -> Conv4:
        """A plain BN-free Conv-4 holding the quantised weights and biases (exact in float32).

        This is what is exported to ONNX: the compiler re-derives the same weight formats from
        these values, and takes the activation formats from `activation_ranges`.
        """
        twin = Conv4(replace(self.config, qat_bits=None))
        bits, in_fmt = self.config.qat_bits, activation_format(1.0, self.config.qat_bits)
        for i, (block, twin_block) in enumerate(zip(self.blocks, twin.blocks)):
            w_fmt = weight_format(block[0].weight, bits)
            twin_block[0].weight.copy_(fake_quantize(block[0].weight, w_fmt))
            twin_block[0].bias.copy_(
                fake_quantize(block[0].bias, _bias_format(block[0].bias, in_fmt.frac + w_fmt.frac))
            )
            in_fmt = activation_format(float(self.act_max[i]), bits)
        return twin.eval()

    def activation_ranges(self) -> list[float]:
        """Running maximum of each block's output, the ranges its formats are chosen from."""
        return [float(v) for v in self.act_max]

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        """Update the running activation maxima from a batch of images (call before using the formats)."""
        self._forward(x, observe=True)


@torch.no_grad()
def quantized_learner(learner: MetaLearner, bits: int) -> MetaLearner:
    """The same learner with its BatchNorm folded and a `bits`-bit QuantConv4 backbone.

    Every other meta-parameter (head initialisation, learning rates, temperature) is kept.
    """
    config = replace(learner.backbone_config, batchnorm=False, qat_bits=bits)
    quant = build_learner(learner.algorithm, config, learner.hparams)
    state = quant.state_dict()  # meta-parameters of BatchNorm (Meta-SGD's rates) have no BN-free twin
    state.update((k, v) for k, v in learner.state_dict().items() if not k.startswith("backbone.") and k in state)
    state.update({f"backbone.{k}": v for k, v in fold_batchnorm_into_convs(learner.backbone).items()})
    state["backbone.act_max"] = torch.zeros(config.depth)
    quant.load_state_dict(state)
    return quant


@torch.no_grad()
def fold_batchnorm_into_convs(backbone: Conv4) -> dict[str, torch.Tensor]:
    """Parameters of the equivalent BN-free Conv-4 (conv weight and bias per block)."""
    params = {}
    for i, block in enumerate(backbone.blocks):
        conv = block[0]
        weight, bias = conv.weight, conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        if isinstance(block[1], nn.BatchNorm2d):
            bn = block[1]
            factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = weight * factor[:, None, None, None]
            bias = (bias - bn.running_mean) * factor + bn.bias
        params[f"blocks.{i}.0.weight"] = weight.clone()
        params[f"blocks.{i}.0.bias"] = bias.clone()
    return params
