"""Closed-form few-shot heads over embeddings: the math the hardware implements.

Every function here is plain differentiable torch on feature tensors, so the same code
serves meta-training (autograd differentiates through it, i.e. second order), evaluation,
and ONNX export of the whole episode. Shapes: support features F [M, D], one-hot labels
Y [M, N], query features Q [B, D], head W [N, D], b [N].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def one_hot(labels: torch.Tensor, ways: int) -> torch.Tensor:
    """Float one-hot matrix [M, N] of integer labels."""
    return F.one_hot(labels, ways).to(torch.float32)


def prototypes(support: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Class means c [N, D] = (Y^T F) / K, with K counted per class from the one-hot Y."""
    return (y.transpose(-1, -2) @ support) / y.sum(dim=-2).unsqueeze(-1)


def squared_l2_logits(query: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """ProtoNet logits: minus the squared Euclidean distance from each query to each prototype."""
    return -(query.unsqueeze(-2) - protos.unsqueeze(-3)).pow(2).sum(-1)


def proto_head_init(protos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Proto-MAML head: W = 2 c_k, b = -|c_k|^2, so that W q + b = -|q - c_k|^2 + |q|^2."""
    return 2.0 * protos, -protos.pow(2).sum(-1)


def sgd_head_step(
    w: torch.Tensor,
    b: torch.Tensor,
    support: torch.Tensor,
    y: torch.Tensor,
    lr_w: torch.Tensor | float,
    lr_b: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on the mean softmax cross-entropy of the support set, in closed form.

    G = (softmax(F W^T + b) - Y) / M;  W <- W - lr_w * G^T F;  b <- b - lr_b * sum_m G.
    `lr_w` / `lr_b` may be scalars or tensors broadcastable to W / b (Meta-SGD).
    """
    logits = support @ w.transpose(-1, -2) + b.unsqueeze(-2)
    err = (torch.softmax(logits, dim=-1) - y) / y.shape[-2]
    return w - lr_w * (err.transpose(-1, -2) @ support), b - lr_b * err.sum(-2)


def adapt_head(
    w: torch.Tensor,
    b: torch.Tensor,
    support: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr_w: torch.Tensor | float,
    lr_b: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`steps` closed-form SGD steps on a linear head (ANIL / Proto-MAML inner loop)."""
    for _ in range(steps):
        w, b = sgd_head_step(w, b, support, y, lr_w, lr_b)
    return w, b


def linear_logits(query: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Logits Q W^T + b of the adapted head."""
    return query @ w.transpose(-1, -2) + b.unsqueeze(-2)


def cosine_attention_logits(
    query: torch.Tensor, support: torch.Tensor, y: torch.Tensor, scale: torch.Tensor | float
) -> torch.Tensor:
    """Matching Networks: log sum_i softmax_i(scale * cos(q, s_i)) y_i, i.e. log class probabilities."""
    qn = F.normalize(query, dim=-1, eps=1e-8)
    sn = F.normalize(support, dim=-1, eps=1e-8)
    attention = torch.softmax(scale * (qn @ sn.transpose(-1, -2)), dim=-1)
    return torch.log(attention @ y + 1e-12)
