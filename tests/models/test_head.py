"""The closed-form few-shot heads (models/head.py) against autograd and plain definitions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad

from metahw.models import head

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)


@st.composite
def episodes(draw, batch: bool = False):
    """Random support features, labels (every class present, K may differ per class), queries and a head."""
    ways = draw(st.integers(2, 6))
    dim = draw(st.integers(1, 9))
    extra = draw(st.lists(st.integers(0, ways - 1), max_size=6))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.arange(ways), torch.tensor(extra, dtype=torch.int64)])
    labels = labels[torch.randperm(len(labels), generator=g)]
    lead = (draw(st.integers(1, 3)),) if batch else ()
    support = torch.randn(*lead, len(labels), dim, generator=g, dtype=torch.float64)
    query = torch.randn(*lead, draw(st.integers(1, 5)), dim, generator=g, dtype=torch.float64)
    w = torch.randn(*lead, ways, dim, generator=g, dtype=torch.float64)
    b = torch.randn(*lead, ways, generator=g, dtype=torch.float64)
    return labels, support, query, w, b


def _mean_ce(w, b, support, labels):
    return F.cross_entropy(support @ w.T + b, labels)


@SETTINGS
@given(ep=episodes(), lr_w=st.floats(0.01, 2.0), lr_b=st.floats(0.0, 2.0))
def test_sgd_head_step_is_exact_gradient_step_of_mean_cross_entropy(ep, lr_w, lr_b):
    labels, support, _, w, b = ep
    ways = w.shape[0]
    gw, gb = grad(_mean_ce, argnums=(0, 1))(w, b, support, labels)
    new_w, new_b = head.sgd_head_step(w, b, support, head.one_hot(labels, ways).double(), lr_w, lr_b)
    torch.testing.assert_close(new_w, w - lr_w * gw, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(new_b, b - lr_b * gb, rtol=1e-12, atol=1e-12)
    # the same in float32 (the training dtype), against torch.autograd this time
    w32, b32 = w.float().requires_grad_(), b.float().requires_grad_()
    gw32, gb32 = torch.autograd.grad(_mean_ce(w32, b32, support.float(), labels), (w32, b32))
    new_w32, new_b32 = head.sgd_head_step(
        w32.detach(), b32.detach(), support.float(), head.one_hot(labels, ways), lr_w, lr_b
    )
    torch.testing.assert_close(new_w32, w32.detach() - lr_w * gw32, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(new_b32, b32.detach() - lr_b * gb32, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(ep=episodes())
def test_sgd_head_step_with_per_element_rates_meta_sgd(ep):
    labels, support, _, w, b = ep
    ways, dim = w.shape
    g = torch.Generator().manual_seed(0)
    lr_w = torch.rand(dim, generator=g, dtype=torch.float64)  # one rate per weight column, shared by the rows
    lr_b = torch.rand((), generator=g, dtype=torch.float64)
    gw, gb = grad(_mean_ce, argnums=(0, 1))(w, b, support, labels)
    new_w, new_b = head.sgd_head_step(w, b, support, head.one_hot(labels, ways).double(), lr_w, lr_b)
    torch.testing.assert_close(new_w, w - lr_w * gw, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(new_b, b - lr_b * gb, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(ep=episodes(), steps=st.integers(0, 4))
def test_adapt_head_is_repeated_gradient_descent(ep, steps):
    labels, support, query, w, b = ep
    ref_w, ref_b = w.clone(), b.clone()
    for _ in range(steps):
        gw, gb = grad(_mean_ce, argnums=(0, 1))(ref_w, ref_b, support, labels)
        ref_w, ref_b = ref_w - 0.3 * gw, ref_b - 0.3 * gb
    new_w, new_b = head.adapt_head(w, b, support, head.one_hot(labels, w.shape[0]).double(), steps, 0.3, 0.3)
    torch.testing.assert_close(new_w, ref_w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(new_b, ref_b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(head.linear_logits(query, new_w, new_b), query @ ref_w.T + ref_b)


@SETTINGS
@given(ep=episodes(batch=True))
def test_heads_broadcast_over_a_leading_task_dimension(ep):
    labels, support, query, w, b = ep
    y = head.one_hot(labels, w.shape[-2]).double().expand(support.shape[0], -1, -1)
    batched = head.sgd_head_step(w, b, support, y, 0.5, 0.25)
    for t in range(support.shape[0]):
        single = head.sgd_head_step(w[t], b[t], support[t], y[t], 0.5, 0.25)
        torch.testing.assert_close(batched[0][t], single[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(batched[1][t], single[1], rtol=1e-12, atol=1e-12)
    protos = head.prototypes(support, y)
    for t in range(support.shape[0]):
        torch.testing.assert_close(protos[t], head.prototypes(support[t], y[t]), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            head.squared_l2_logits(query, protos)[t],
            head.squared_l2_logits(query[t], protos[t]),
            rtol=1e-12,
            atol=1e-12,
        )


@SETTINGS
@given(ep=episodes())
def test_prototypes_are_class_means(ep):
    labels, support, *_ = ep
    ways = int(labels.max()) + 1
    protos = head.prototypes(support, head.one_hot(labels, ways).double())
    assert protos.shape == (ways, support.shape[1])
    for n in range(ways):
        torch.testing.assert_close(protos[n], support[labels == n].mean(0), rtol=1e-12, atol=1e-12)


def test_prototypes_on_a_hand_example():
    support = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0], [5.0, 5.0], [0.0, 8.0]])
    labels = torch.tensor([0, 0, 1, 2, 2])
    protos = head.prototypes(support, head.one_hot(labels, 3))
    assert torch.equal(protos, torch.tensor([[2.0, 3.0], [10.0, 0.0], [2.5, 6.5]]))


@SETTINGS
@given(ep=episodes())
def test_proto_head_init_is_minus_squared_distance_plus_query_norm(ep):
    labels, support, query, *_ = ep
    protos = head.prototypes(support, head.one_hot(labels, int(labels.max()) + 1).double())
    w, b = head.proto_head_init(protos)
    expected = -torch.cdist(query, protos).pow(2) + query.pow(2).sum(-1, keepdim=True)
    torch.testing.assert_close(head.linear_logits(query, w, b), expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(
        head.squared_l2_logits(query, protos), -torch.cdist(query, protos).pow(2), rtol=1e-9, atol=1e-9
    )
    # hence the same argmax as the ProtoNet classifier
    assert torch.equal(head.linear_logits(query, w, b).argmax(-1), head.squared_l2_logits(query, protos).argmax(-1))


@SETTINGS
@given(ep=episodes(), scale=st.floats(0.1, 30.0))
def test_cosine_attention_logits_are_log_class_probabilities(ep, scale):
    labels, support, query, *_ = ep
    ways = int(labels.max()) + 1
    logits = head.cosine_attention_logits(query, support, head.one_hot(labels, ways).double(), scale)
    cos = F.cosine_similarity(query[:, None, :], support[None, :, :], dim=-1)
    attention = torch.softmax(scale * cos, dim=-1)
    expected = torch.stack([attention[:, labels == n].sum(-1) for n in range(ways)], dim=-1)
    torch.testing.assert_close(logits.exp(), expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(len(query), dtype=torch.float64))


def test_one_hot():
    y = head.one_hot(torch.tensor([2, 0, 1, 2]), 4)
    assert y.dtype == torch.float32
    assert torch.equal(y, torch.tensor([[0.0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]))
