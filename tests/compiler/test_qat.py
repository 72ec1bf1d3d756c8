"""Quantisation-aware training (models/qat.py, `metahw train --qat-bits`): the same integers as the compiler."""

import numpy as np
import pytest
import torch

from metahw.compiler.compile import compile_episode
from metahw.compiler.episode_io import program_inputs
from metahw.compiler.golden import execute
from metahw.compiler.quant_config import QuantConfig
from metahw.compiler.stages import embedding_program
from metahw.errors import UserError
from metahw.models.backbone import BackboneConfig, Conv4, calibrate_batchnorm
from metahw.models.checkpoint import load_checkpoint
from metahw.models.episodes import EpisodeSampler
from metahw.models.export import episode_head, export_episode
from metahw.models.qat import (
    QuantConv4,
    activation_format,
    fake_quantize,
    fold_batchnorm_into_convs,
    quantized_learner,
    weight_format,
)
from metahw.models.train import TrainConfig, train
from metahw.qformat import QFormat, bias_format, bits_for_range, format_for_range

FORMATS = [QFormat(4, 2), QFormat(8, 5), QFormat(8, 7, False), QFormat(3, -1), QFormat(16, 13), QFormat(6, 9)]


def _values(fmt: QFormat, rng: np.random.Generator) -> np.ndarray:
    """Random reals over twice the range, every tie (k + 1/2 steps), and the floats just beside each tie."""
    step, lo, hi = fmt.scale, fmt.min_int * fmt.scale, fmt.max_int * fmt.scale
    span = hi - lo + step
    random = rng.uniform(lo - span / 2, hi + span / 2, 2000)
    ties = (np.arange(fmt.min_int - 3, fmt.max_int + 4) + 0.5) * step
    values = np.concatenate([random, ties, [lo, hi, 0.0, lo - step, hi + step, -1e6, 1e6]]).astype(np.float32)
    beside = [np.nextafter(values, np.float32(-np.inf)), np.nextafter(values, np.float32(np.inf))]
    return np.concatenate([values, *beside])


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_fake_quantize_equals_compiler_quantize(fmt):
    x = _values(fmt, np.random.default_rng(fmt.bits * 100 + fmt.frac))
    got = fake_quantize(torch.from_numpy(x), fmt).numpy().astype(np.float64) * 2.0**fmt.frac
    want = fmt.quantize(x, "half_up", "saturate")
    np.testing.assert_array_equal(got, want)
    assert (want == fmt.max_int).any() and (want == fmt.min_int).any()  # saturation was exercised
    ties = np.isclose(x.astype(np.float64) * 2.0**fmt.frac % 1, 0.5, atol=0)
    assert ties.sum() >= fmt.max_int - fmt.min_int


def test_fake_quantize_gradient_is_straight_through_inside_the_range():
    fmt = QFormat(4, 2)
    x = torch.tensor([-3.0, -2.0, -0.3, 0.6, 1.75, 1.8, 5.0], requires_grad=True)
    fake_quantize(x, fmt).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 1, 1, 1, 1, 0, 0])


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
def test_weight_and_activation_formats_follow_the_compiler_rule(bits):
    gen = torch.Generator().manual_seed(bits)
    for scale in (1e-3, 0.3, 7.0):
        w = torch.randn(4, 3, 3, 3, generator=gen) * scale
        top = float(w.abs().max())
        fmt = weight_format(w, bits)
        assert fmt == format_for_range(-top, top, bits, signed=True)
        assert fmt.quantize_counted(w.numpy())[1] == 0  # holds every weight ...
        symmetric = np.array([-top, top])  # ... and its negation, at the finest such scale
        assert QFormat(bits, fmt.frac + 1).quantize_counted(symmetric)[1] > 0
        act = activation_format(top, bits)
        assert act == format_for_range(0.0, top, bits, signed=False) and not act.signed
    assert activation_format(-1.0, 8) == activation_format(0.0, 8) == QFormat(8, 8, False)


def test_fold_batchnorm_equals_conv_then_batchnorm():
    torch.manual_seed(0)
    config = BackboneConfig(width=6)
    net = Conv4(config)
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    calibrate_batchnorm(net, lambda: torch.rand(16, 1, 28, 28), 2)
    net.eval()
    folded = Conv4(BackboneConfig(width=6, batchnorm=False))
    folded.load_state_dict(fold_batchnorm_into_convs(net))
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        np.testing.assert_allclose(folded(x).numpy(), net(x).numpy(), rtol=1e-5, atol=1e-5)
        for block, twin in zip(net.blocks, folded.blocks):  # block by block, before the ReLU too
            np.testing.assert_allclose(twin[0](x).numpy(), block[1](block[0](x)).numpy(), rtol=1e-5, atol=1e-5)
            x = block(x)
    bias_free = Conv4(BackboneConfig(width=6, batchnorm=False))  # no BN: the parameters come back unchanged
    folded_again = fold_batchnorm_into_convs(bias_free)
    for k, v in bias_free.state_dict().items():
        torch.testing.assert_close(folded_again[k], v, rtol=0, atol=0)


@pytest.mark.parametrize("algorithm", ["protonet", "matchingnet", "protomaml", "anil", "metasgd"])
def test_quantized_learner_keeps_the_head(algorithm, learners):
    learner = learners.make(algorithm, width=4)
    quant = quantized_learner(learner, 4)
    assert isinstance(quant.backbone, QuantConv4) and quant.algorithm == algorithm
    assert quant.backbone_config == BackboneConfig(width=4, batchnorm=False, qat_bits=4)
    assert quant.hparams == learner.hparams
    assert not quant.backbone.act_max.any()
    own = {k: v for k, v in learner.state_dict().items() if not k.startswith(("backbone.", "lrs.backbone__"))}
    new = quant.state_dict()
    for key, value in own.items():
        torch.testing.assert_close(new[key], value, rtol=0, atol=0)
    if algorithm == "matchingnet":
        assert quant.log_scale.item() == pytest.approx(np.log(30.0))
    if algorithm == "metasgd":  # learned head rates and conv-weight rates survive; BN has no twin
        for a, b in zip(quant.head_lrs(), learner.head_lrs()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        key = "lrs.backbone__blocks__1__0__weight"
        torch.testing.assert_close(new[key], learner.state_dict()[key], rtol=0, atol=0)
    folded = fold_batchnorm_into_convs(learner.backbone)
    for k, v in folded.items():
        torch.testing.assert_close(new[f"backbone.{k}"], v, rtol=0, atol=0)


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "metasgd", "reptile"])
def test_qat_is_refused_for_the_maml_family(algorithm, omniglot):
    with pytest.raises(UserError, match=f"QAT supports protonet, matchingnet, anil and protomaml; {algorithm}"):
        train(TrainConfig(algorithm, episodes=1, width=4, qat_bits=4), omniglot, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"qat_bits": 1}, "`qat_bits` must be in 2..16"),
        ({"qat_bits": 17}, "`qat_bits` must be in 2..16"),
        ({"init": "x.pt"}, "`init` starts QAT from a trained checkpoint, so it needs `qat_bits`"),
    ],
)
def test_qat_arguments_are_validated(kwargs, message):
    with pytest.raises(UserError, match=message):
        TrainConfig("protonet", **kwargs).validate()
    TrainConfig("anil", qat_bits=4).validate()


@pytest.fixture(scope="module")
def qat_checkpoint(tiny_checkpoint, omniglot):
    """The tiny ProtoNet fine-tuned for a few episodes at 4 bits (QAT from --init)."""
    cfg = TrainConfig("protonet", width=4, episodes=6, qat_bits=4, init=str(tiny_checkpoint), val_episodes=5)
    return train(cfg, omniglot, progress=False)


def test_qat_training_produces_a_quantised_learner(qat_checkpoint):
    learner = qat_checkpoint.learner
    assert isinstance(learner.backbone, QuantConv4) and learner.backbone_config.qat_bits == 4
    ranges = learner.backbone.activation_ranges()
    assert len(ranges) == 4 and all(r > 0 for r in ranges)
    assert qat_checkpoint.train_args["qat_bits"] == 4 and qat_checkpoint.metrics["val"]["episodes"] == 5


def test_compiled_qat_program_uses_the_qat_formats(qat_checkpoint, omniglot):
    learner = qat_checkpoint.learner.eval()
    model = export_episode(learner, episode_head(learner, 5, 1, None))
    program = compile_episode(model, QuantConfig(bits=4), omniglot.split("val"), 5, calibration_episodes=2).program
    buffers = program.buffer_map
    in_fmt = activation_format(1.0, 4)
    assert buffers["support_x"].qformat == in_fmt
    for i, block in enumerate(learner.backbone.blocks):
        w_fmt = weight_format(block[0].weight, 4)
        assert buffers[f"block{i}.conv.weight"].qformat == w_fmt
        want = fake_quantize(block[0].weight, w_fmt).detach().numpy() * 2.0**w_fmt.frac
        np.testing.assert_array_equal(program.weights[f"block{i}.conv.weight"], want)
        # the QAT's bias grid; the buffer declares only the bits its quantised values need
        b_fmt = bias_format(block[0].bias.abs().max().item(), in_fmt.frac + w_fmt.frac)
        bias = program.weights[f"block{i}.conv.bias"]
        want = fake_quantize(block[0].bias, b_fmt).detach().numpy() * 2.0**b_fmt.frac
        np.testing.assert_array_equal(bias, want)
        narrow = QFormat(bits_for_range(min(int(bias.min()), -1), int(bias.max()))[0], b_fmt.frac)
        assert buffers[f"block{i}.conv.bias"].qformat == narrow and narrow.bits <= b_fmt.bits
        out_fmt = activation_format(learner.backbone.activation_ranges()[i], 4)
        assert buffers[f"support.block{i}.pool"].qformat == buffers[f"query.block{i}.pool"].qformat == out_fmt
        in_fmt = out_fmt


def test_qat_forward_equals_the_golden_embedding(qat_checkpoint, omniglot):
    """QAT rounds exactly where the program does: its float features are the golden integers, scaled."""
    learner = qat_checkpoint.learner.eval()
    model = export_episode(learner, episode_head(learner, 5, 1, None))
    program = compile_episode(model, QuantConfig(bits=4), omniglot.split("val"), 10, calibration_episodes=2).program
    embed = embedding_program(program, 10)
    fmt = program.buffer_map["query.features"].qformat
    ep = EpisodeSampler(omniglot.split("test"), 5, 1, 2, seed=9).sample()
    golden = execute(embed, {"query_x": program_inputs(program, ep)["query_x"]}).values["query.features"]
    with torch.no_grad():
        features = learner.backbone(torch.from_numpy(ep.query_x)).numpy().astype(np.float64)
    np.testing.assert_array_equal(features * 2.0**fmt.frac, golden)
    assert golden.any()


def test_bias_too_large_for_the_accumulator_is_not_clipped():
    """At 16 bits the accumulator's frac leaves a 32-bit bias little range: QAT keeps large biases."""
    net = QuantConv4(BackboneConfig(width=2, batchnorm=False, qat_bits=16))
    with torch.no_grad():
        net.blocks[0][0].bias.copy_(torch.tensor([5.0, -3.25]))
        net.act_max.fill_(4.0)
    twin = net.float_twin()
    torch.testing.assert_close(twin.blocks[0][0].bias, torch.tensor([5.0, -3.25]), rtol=0, atol=1e-6)


def test_train_cli_with_qat(cli, one_line_error, tiny_checkpoint, tmp_path):
    out = tmp_path / "qat.pt"
    result = cli("train", "--init", tiny_checkpoint, "--qat-bits", 4, "--episodes", 3, "--out", out, "--no-progress")
    assert result.code == 0, result.stderr
    learner = load_checkpoint(out).learner
    assert learner.backbone_config.qat_bits == 4 and isinstance(learner.backbone, QuantConv4)
    one_line_error(cli("train", "--algo", "maml", "--qat-bits", 4, "--out", tmp_path / "m.pt"), "QAT supports")
    one_line_error(
        cli("train", "--algo", "protonet", "--init", tiny_checkpoint, "--out", tmp_path / "m.pt"), "needs --qat-bits"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qat.pt"]
