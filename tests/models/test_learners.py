"""The eight meta-learners on a tiny Conv-4: meta-steps, evaluation modes, meta-gradients, BatchNorm."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from metahw.models.backbone import BackboneConfig, batch_statistics, batchnorms, calibrate_batchnorm
from metahw.models.learners import ALGORITHMS, MetaLearner, build_learner
from metahw.models.learners.base import MODES

TINY = BackboneConfig(width=4, depth=4)
ALL = sorted(ALGORITHMS)
MAML_FAMILY = ["maml", "fomaml", "metasgd", "reptile"]


def _images(count: int, g: torch.Generator) -> torch.Tensor:
    """Sparse binary 'strokes' like Omniglot's (mostly 0, some 1)."""
    return (torch.rand(count, 1, 28, 28, generator=g) > 0.85).float()


def make_task(ways: int, shots: int, queries: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(ways)
    return (
        _images(ways * shots, g),
        labels.repeat_interleave(shots),
        _images(ways * queries, g),
        labels.repeat_interleave(queries),
    )


def make_learner(algorithm: str, seed: int = 0, backbone: BackboneConfig = TINY, **hparams) -> MetaLearner:
    torch.manual_seed(seed)
    learner = build_learner(algorithm, backbone, hparams)
    with torch.no_grad():  # non-trivial head and BN parameters, so that nothing is zero by accident
        for name, p in learner.named_parameters():
            if name.startswith("head_"):
                p.normal_(0.0, 0.3)
            elif name.endswith("1.weight"):  # BatchNorm scale
                p.uniform_(0.5, 1.5)
            elif name.endswith("1.bias"):
                p.normal_(0.0, 0.1)
    return learner


def _parameters(learner: MetaLearner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learner.named_parameters()}


def _buffers(learner: MetaLearner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learner.named_buffers()}


def test_registry_holds_the_eight_algorithms():
    assert ALL == ["anil", "fomaml", "maml", "matchingnet", "metasgd", "protomaml", "protonet", "reptile"]
    for name, cls in ALGORITHMS.items():
        assert cls.algorithm == name
        assert type(build_learner(name, TINY)) is cls
    with pytest.raises(ValueError, match="unknown algorithm"):
        build_learner("siamese", TINY)
    with pytest.raises(ValueError, match="unknown hyper-parameters"):
        build_learner("protonet", TINY, {"inner_lr": 0.1})


# ---- training --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALL)
def test_meta_step_changes_parameters_and_returns_finite_loss(algorithm: str):
    learner = make_learner(algorithm).train()
    tasks = [make_task(3, 2, 2, seed) for seed in (1, 2)]
    before = _parameters(learner)
    if algorithm != "reptile":  # Reptile reports its inner-loop loss, the others the meta-objective
        with torch.no_grad(), batch_statistics(learner):
            expected = sum(learner.episode_loss(*t, 3)[0].item() for t in tasks) / len(tasks)
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-2)
    loss, accuracy = learner.meta_step(tasks, 3, optimizer)
    assert math.isfinite(loss) and loss > 0
    assert 0.0 <= accuracy <= 1.0
    if algorithm != "reptile":
        assert loss == pytest.approx(expected, rel=1e-5)
    after = _parameters(learner)
    backbone = [k for k in before if k.startswith("backbone.")]
    assert backbone and all(not torch.equal(before[k], after[k]) for k in backbone), "every backbone tensor moves"
    assert all(torch.isfinite(v).all() for v in after.values())
    if algorithm == "matchingnet":
        assert not torch.equal(before["log_scale"], after["log_scale"])
    if algorithm == "metasgd":
        assert not torch.equal(before["lrs.head__weight"], after["lrs.head__weight"])


@pytest.mark.parametrize("algorithm", ALL)
def test_meta_step_leaves_batchnorm_running_statistics_alone(algorithm: str):
    learner = make_learner(algorithm).train()
    for bn in batchnorms(learner):
        bn.running_mean.fill_(0.25)
        bn.running_var.fill_(3.0)
        bn.num_batches_tracked.fill_(7)
    before = _buffers(learner)
    tasks = [make_task(3, 1, 2, seed) for seed in (3, 4)]
    optimizer = torch.optim.SGD(learner.parameters(), lr=1e-2)
    learner.meta_step(tasks, 3, optimizer)  # on its own, as a user's training loop would call it
    with batch_statistics(learner):  # and as models.train calls it
        learner.meta_step(tasks, 3, optimizer)
    after = _buffers(learner)
    assert before.keys() == after.keys() and len(before) == 3 * len(batchnorms(learner))
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(bn.track_running_stats for bn in batchnorms(learner)), "batch_statistics restores the flag"


def test_batch_statistics_context_normalises_with_the_batch():
    learner = make_learner("protonet")
    x = _images(16, torch.Generator().manual_seed(5))
    for bn in batchnorms(learner):
        bn.running_mean.fill_(100.0)  # absurd running statistics: using them would change everything
    learner.train()
    with batch_statistics(learner):
        inside = learner.backbone(x)
    reference = make_learner("protonet").train()
    torch.testing.assert_close(inside, reference.backbone(x))
    learner.eval()
    assert not torch.allclose(learner.backbone(x), inside)


def test_calibrate_batchnorm_sets_exact_running_statistics():
    learner = make_learner("protonet").eval()
    g = torch.Generator().manual_seed(9)
    batches = [_images(32, g) for _ in range(3)]
    feed = iter(batches)
    calibrate_batchnorm(learner.backbone, lambda: next(feed), steps=3)
    first_conv, first_bn = learner.backbone.blocks[0][0], learner.backbone.blocks[0][1]
    with torch.no_grad():
        outs = [first_conv(x) for x in batches]
    means = torch.stack([o.mean((0, 2, 3)) for o in outs])
    variances = torch.stack([o.var((0, 2, 3), unbiased=True) for o in outs])
    torch.testing.assert_close(first_bn.running_mean, means.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(first_bn.running_var, variances.mean(0), rtol=1e-5, atol=1e-6)
    for bn in batchnorms(learner):
        assert int(bn.num_batches_tracked) == 3
        assert bn.momentum == 0.1
        assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert not learner.training, "calibration restores eval mode"
    learner.train()
    calibrate_batchnorm(learner.backbone, lambda: batches[0], steps=1)
    assert learner.training
    # a backbone without BatchNorm is left as it is
    plain = make_learner("protonet", backbone=BackboneConfig(width=4, depth=4, batchnorm=False))
    calibrate_batchnorm(plain.backbone, lambda: batches[0], steps=2)
    assert not batchnorms(plain)


# ---- inference -------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALL)
def test_logits_shapes_in_both_modes_and_other_ways_than_training(algorithm: str):
    learner = make_learner(algorithm).train()
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-2)
    learner.meta_step([make_task(3, 1, 2, 6)], 3, optimizer)  # trained 3-way
    learner.eval()
    params, buffers = _parameters(learner), _buffers(learner)
    for ways, shots, queries in ((5, 1, 3), (2, 2, 1), (20, 1, 1)):
        sx, sy, qx, _ = make_task(ways, shots, queries, 7)
        for mode in MODES:
            logits = learner.logits(sx, sy, qx, ways, mode)
            assert logits.shape == (ways * queries, ways)
            assert torch.isfinite(logits).all()
    # evaluation adapts copies: the meta-parameters and BatchNorm statistics are untouched
    assert all(torch.equal(params[k], v) for k, v in _parameters(learner).items())
    assert all(torch.equal(buffers[k], v) for k, v in _buffers(learner).items())


def test_protonet_head_mode_with_zero_steps_matches_full_mode():
    learner = make_learner("protonet").eval()
    assert learner.hparams["head_steps"] == 0
    sx, sy, qx, _ = make_task(5, 3, 4, 11)
    full = learner.logits(sx, sy, qx, 5, "full")
    head = learner.logits(sx, sy, qx, 5, "head")
    assert torch.equal(full.argmax(-1), head.argmax(-1))
    fq = learner.backbone(torch.cat([sx, qx]))[len(sx) :]
    # the Proto-MAML head computes -|q - c|^2 + |q|^2: a per-query constant away from ProtoNet
    torch.testing.assert_close(head - full, fq.pow(2).sum(-1, keepdim=True).expand_as(head), rtol=1e-4, atol=1e-4)
    # with steps, the head mode really adapts (and stays a valid classifier)
    learner.hparams["head_steps"] = 3
    assert not torch.allclose(learner.logits(sx, sy, qx, 5, "head"), head)


@pytest.mark.parametrize("algorithm", ["anil", "protomaml"])
def test_head_only_learners_have_identical_modes(algorithm: str):
    learner = make_learner(algorithm).eval()
    sx, sy, qx, _ = make_task(4, 2, 3, 12)
    torch.testing.assert_close(
        learner.logits(sx, sy, qx, 4, "full"), learner.logits(sx, sy, qx, 4, "head"), rtol=0, atol=0
    )


def test_learners_are_deterministic_given_the_seed():
    sx, sy, qx, _ = make_task(5, 1, 2, 13)
    a = make_learner("maml", seed=3).eval().logits(sx, sy, qx, 5)
    b = make_learner("maml", seed=3).eval().logits(sx, sy, qx, 5)
    c = make_learner("maml", seed=4).eval().logits(sx, sy, qx, 5)
    assert torch.equal(a, b) and not torch.allclose(a, c)


# ---- meta-gradients against a plain-autograd reference ---------------------------------------


def _reference_meta_gradients(learner: MetaLearner, tasks, ways: int, first_order: bool) -> dict[str, torch.Tensor]:
    """MAML/FOMAML/Meta-SGD meta-gradient, task by task with torch.autograd (no torch.func.grad, no vmap)."""
    steps = learner.hparams["inner_steps"]
    meta = dict(learner.named_parameters())
    lrs = getattr(learner, "lrs", None)

    def rate(name: str):
        return lrs[name.replace(".", "__")] if lrs is not None else learner.hparams["inner_lr"]

    def forward(fast: dict, x: torch.Tensor) -> torch.Tensor:
        backbone = {k.removeprefix("backbone."): v for k, v in fast.items() if k.startswith("backbone.")}
        return functional_call(learner.backbone, backbone, (x,)) @ fast["head.weight"].T + fast["head.bias"]

    total = {k: torch.zeros_like(v) for k, v in meta.items()}
    with batch_statistics(learner):
        for sx, sy, qx, qy in tasks:
            fast = {f"backbone.{k}": v for k, v in learner.backbone.named_parameters()}
            fast["head.weight"], fast["head.bias"] = (t.requires_grad_() for t in learner.head_rows(ways))
            for _ in range(steps):
                loss = F.cross_entropy(forward(fast, sx), sy)
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
                fast = {k: v - rate(k) * g for (k, v), g in zip(fast.items(), grads, strict=True)}
            outer = F.cross_entropy(forward(fast, qx), qy) / len(tasks)
            grads = torch.autograd.grad(outer, list(meta.values()), allow_unused=True)
            for k, g in zip(meta, grads, strict=True):
                if g is not None:
                    total[k] += g
    return total


def _learner_meta_gradients(learner: MetaLearner, tasks, ways: int) -> dict[str, torch.Tensor]:
    learner.meta_step(tasks, ways, torch.optim.SGD(learner.parameters(), lr=0.0))
    return {k: (torch.zeros_like(p) if p.grad is None else p.grad.clone()) for k, p in learner.named_parameters()}


def _assert_gradients_close(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for k in got:
        scale = max(float(expected[k].abs().max()), 1e-3)
        torch.testing.assert_close(got[k], expected[k], rtol=1e-3, atol=1e-4 * scale, msg=f"gradient of {k}")


def _relative_difference(a: dict, b: dict) -> float:
    keys = [k for k in a if k.startswith("backbone.")]
    diff = torch.cat([(a[k] - b[k]).flatten() for k in keys]).norm()
    return float(diff / torch.cat([b[k].flatten() for k in keys]).norm())


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "metasgd"])
def test_meta_gradient_matches_autograd_reference(algorithm: str):
    learner = make_learner(algorithm, inner_steps=2).train()
    tasks = [make_task(3, 2, 2, seed) for seed in (21, 22)]
    expected = _reference_meta_gradients(learner, tasks, 3, first_order=learner.hparams["first_order"])
    _assert_gradients_close(_learner_meta_gradients(learner, tasks, 3), expected)


def test_second_order_maml_differs_from_first_order():
    """MAML must differentiate through the inner gradients; FOMAML must not (either ignoring the flag fails here)."""
    tasks = [make_task(3, 2, 2, seed) for seed in (31, 32)]
    maml = make_learner("maml", inner_steps=2).train()
    fomaml = make_learner("fomaml", inner_steps=2).train()
    assert maml.hparams["first_order"] is False and fomaml.hparams["first_order"] is True
    assert all(torch.equal(a, b) for a, b in zip(maml.parameters(), fomaml.parameters(), strict=True))
    second = _learner_meta_gradients(maml, tasks, 3)
    first = _learner_meta_gradients(fomaml, tasks, 3)
    reference_second = _reference_meta_gradients(maml, tasks, 3, first_order=False)
    reference_first = _reference_meta_gradients(maml, tasks, 3, first_order=True)
    assert _relative_difference(reference_second, reference_first) > 0.05, "the test episode must separate them"
    _assert_gradients_close(second, reference_second)
    _assert_gradients_close(first, reference_first)
    assert _relative_difference(second, first) > 0.05


def test_maml_first_order_hyperparameter_switches_the_gradient():
    tasks = [make_task(3, 2, 2, 33)]
    as_second = _learner_meta_gradients(make_learner("maml", inner_steps=2).train(), tasks, 3)
    as_first = _learner_meta_gradients(make_learner("maml", inner_steps=2, first_order=True).train(), tasks, 3)
    fomaml = _learner_meta_gradients(make_learner("fomaml", inner_steps=2).train(), tasks, 3)
    _assert_gradients_close(as_first, fomaml)
    assert _relative_difference(as_second, as_first) > 0.05


def test_meta_sgd_learning_rates_receive_gradients():
    learner = make_learner("metasgd", inner_steps=2).train()
    grads = _learner_meta_gradients(learner, [make_task(3, 2, 2, seed) for seed in (41, 42)], 3)
    rates = {k: g for k, g in grads.items() if k.startswith("lrs.")}
    assert len(rates) == len(list(learner.backbone.parameters())) + 2
    for name, g in rates.items():
        assert torch.isfinite(g).all(), name
        assert g.abs().max() > 1e-6, f"learned rate {name} gets no meta-gradient"
    # and an Adam step moves them
    before = _parameters(learner)
    learner.meta_step([make_task(3, 2, 2, 43)], 3, torch.optim.Adam(learner.parameters(), lr=1e-2))
    after = _parameters(learner)
    assert all(not torch.equal(before[k], after[k]) for k in rates)


def test_meta_sgd_default_backbone_rates_receive_gradients():
    """With equal head rows the first inner step's backbone gradient is zero; the default takes two steps."""
    learner = make_learner("metasgd").train()
    assert learner.hparams["inner_steps"] == 2
    grads = _learner_meta_gradients(learner, [make_task(3, 2, 2, 44)], 3)
    assert all(g.abs().max() > 1e-6 for k, g in grads.items() if k.startswith("lrs.backbone"))


def test_meta_sgd_accepts_an_integer_rate():
    learner = build_learner("metasgd", TINY, {"inner_lr": 1})
    assert all(p.dtype == torch.float32 and torch.all(p == 1.0) for p in learner.lrs.values())


def test_reptile_moves_towards_the_task_adapted_weights():
    """With SGD(lr=1) one Reptile step lands exactly on the mean of the adapted weights."""
    learner = make_learner("reptile", inner_steps=3).train()
    tasks = [make_task(3, 1, 2, seed) for seed in (51, 52)]
    start = {k: v.detach().clone() for k, v in learner.backbone.named_parameters()}
    ways, lr = 3, learner.hparams["inner_lr"]

    adapted_mean = {k: torch.zeros_like(v) for k, v in start.items()}
    with batch_statistics(learner):
        for sx, sy, qx, qy in tasks:
            fast = {k: v.clone().requires_grad_() for k, v in start.items()}
            w, b = (t.detach().clone().requires_grad_() for t in learner.head_rows(ways))
            x, y = torch.cat([sx, qx]), torch.cat([sy, qy])
            for _ in range(3):
                loss = F.cross_entropy(functional_call(learner.backbone, fast, (x,)) @ w.T + b, y)
                grads = torch.autograd.grad(loss, [*fast.values(), w, b])
                fast = {
                    k: (v - lr * g).detach().requires_grad_()
                    for (k, v), g in zip(fast.items(), grads[:-2], strict=True)
                }
                w, b = (w - lr * grads[-2]).detach().requires_grad_(), (b - lr * grads[-1]).detach().requires_grad_()
            for k in adapted_mean:
                adapted_mean[k] += fast[k].detach() / len(tasks)

    loss, accuracy = learner.meta_step(tasks, ways, torch.optim.SGD(learner.parameters(), lr=1.0))
    assert math.isfinite(loss) and 0 <= accuracy <= 1
    for k, v in learner.backbone.named_parameters():
        torch.testing.assert_close(v.detach(), adapted_mean[k], rtol=1e-4, atol=1e-6, msg=k)


@pytest.mark.parametrize("algorithm", MAML_FAMILY)
def test_full_mode_uses_batch_statistics_and_leaves_running_stats(algorithm):
    """'full' evaluation adapts every weight with batch statistics, as MAML is trained; 'head' uses running stats."""
    learner = make_learner(algorithm).eval()
    sx, sy, qx, _ = make_task(3, 1, 2, 61)
    full = learner.logits(sx, sy, qx, 3, "full")
    head_mode = learner.logits(sx, sy, qx, 3, "head")
    before = {k: v.clone() for k, v in learner.named_buffers()}
    with torch.no_grad():
        for bn in batchnorms(learner):
            bn.running_var.mul_(1e4)
    assert torch.equal(learner.logits(sx, sy, qx, 3, "full"), full)
    assert not torch.allclose(learner.logits(sx, sy, qx, 3, "head"), head_mode)
    assert not learner.training
    assert all(
        torch.equal(v, before[k] * (1e4 if k.endswith("running_var") else 1)) for k, v in learner.named_buffers()
    )
