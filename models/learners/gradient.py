"""Gradient-based learners: MAML, first-order MAML, Meta-SGD, Reptile (inner loop over every
parameter, built on torch.func) and ANIL, Proto-MAML (inner loop on the linear head only,
in closed form, differentiated by autograd for the second-order meta-gradient).

The classifier head of the MAML family and ANIL starts at zero for every episode. Any
initial head whose rows are all equal is equivalent: a shared row w0, b0 adds the same
f.w0 + b0 to every class's logit, which cancels in the softmax, so the inner updates (and
the predictions) never depend on it, and a learned shared row gets no meta-gradient.
Zero is the one such initialisation that is permutation-invariant, serves any number of
ways N, and costs the hardware nothing to store.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

from metahw.models import head
from metahw.models.backbone import BackboneConfig, batch_statistics, transductive_batchnorm
from metahw.models.learners.base import MetaLearner

Params = dict[str, torch.Tensor]
HEAD_W, HEAD_B = "head.weight", "head.bias"


class _ZeroHeadInit(MetaLearner):
    """Learners whose linear head starts at zero in every episode (see the module docstring)."""

    def head_rows(self, ways: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A zero head W [N, D], b [N] on the backbone's device."""
        ref = next(self.backbone.parameters())
        return ref.new_zeros(ways, self.backbone_config.embedding_dim()), ref.new_zeros(ways)

    def head_init(self, fs: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The zero head, whatever the support set."""
        return self.head_rows(y.shape[-1])

    def head_lrs(self) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """The inner learning rate, shared by weights and bias."""
        return self.hparams["inner_lr"], self.hparams["inner_lr"]


class _HeadOnlyInnerLoop(MetaLearner):
    """Inner loop on the head only (ANIL, Proto-MAML): 'full' and 'head' modes coincide."""

    def metric_logits(self, fs: torch.Tensor, y: torch.Tensor, fq: torch.Tensor) -> torch.Tensor:
        """Adapt the head with closed-form SGD steps on the support embeddings, classify queries."""
        steps = self.hparams["inner_steps"] if self.training else self.hparams["head_steps"]
        w, b = self.head_init(fs, y)
        w, b = head.adapt_head(w, b, fs, y, steps, *self.head_lrs())
        return head.linear_logits(fq, w, b)

    def head_lrs(self) -> tuple[float, float]:
        """The inner learning rate, shared by weights and bias."""
        return self.hparams["inner_lr"], self.hparams["inner_lr"]

    def logits_from_features(
        self, fs: torch.Tensor, sy: torch.Tensor, fq: torch.Tensor, ways: int, mode: str
    ) -> torch.Tensor:
        """Both modes are the head-only inner loop."""
        return self.metric_logits(fs, head.one_hot(sy, ways), fq)


class ANIL(_HeadOnlyInnerLoop, _ZeroHeadInit):
    """Almost No Inner Loop (Raghu et al. 2020): MAML with the inner loop on the head only."""

    algorithm = "anil"
    defaults = {"inner_steps": 5, "inner_lr": 0.5, "head_steps": 10}


class ProtoMAML(_HeadOnlyInnerLoop):
    """Proto-MAML (Triantafillou et al. 2020): head initialised from prototypes, then SGD steps."""

    algorithm = "protomaml"
    defaults = {"inner_steps": 3, "inner_lr": 0.1, "head_steps": 5}


class MAML(_ZeroHeadInit):
    """Model-Agnostic Meta-Learning (Finn et al. 2017), second order, on torch.func.

    Inner gradients come from `torch.func.grad`, so the outer `backward()` differentiates
    through them. The tasks of a meta-batch go one by one (MetaLearner.meta_step), not
    through `vmap`: under vmap, BatchNorm's double backward (batch statistics) gives
    second-order meta-gradients off by ~1e-3 relative even in float64 (tests/models/test_learners.py
    checks against plain autograd), and the loop is no slower on CPU.
    """

    algorithm = "maml"
    defaults = {"inner_steps": 5, "inner_lr": 0.1, "eval_steps": 10, "head_steps": 10, "first_order": False}

    @property
    def adapts_backbone(self) -> bool:
        """'full' mode adapts every parameter."""
        return True

    def fast_params(self, ways: int) -> Params:
        """The parameters the inner loop adapts: backbone weights and the N-row head."""
        params = {f"backbone.{k}": v for k, v in self.backbone.named_parameters()}
        params[HEAD_W], params[HEAD_B] = self.head_rows(ways)
        return params

    def inner_lr(self, name: str) -> torch.Tensor | float:
        """Learning rate of parameter `name` in the inner loop."""
        return self.hparams["inner_lr"]

    def forward_with(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Logits of images `x` under explicit parameters."""
        backbone = {k.removeprefix("backbone."): v for k, v in params.items() if k.startswith("backbone.")}
        return head.linear_logits(functional_call(self.backbone, backbone, (x,)), params[HEAD_W], params[HEAD_B])

    def adapt(self, params: Params, x: torch.Tensor, y: torch.Tensor, steps: int, first_order: bool) -> Params:
        """`steps` SGD steps on the cross-entropy of (x, y), starting from `params`."""

        def loss(p: Params) -> torch.Tensor:
            return F.cross_entropy(self.forward_with(p, x), y)

        for _ in range(steps):
            grads = grad(loss)(params)
            if first_order:
                grads = {k: g.detach() for k, g in grads.items()}
            params = {k: p - self.inner_lr(k) * grads[k] for k, p in params.items()}
        return params

    def episode_loss(self, sx, sy, qx, qy, ways):  # noqa: ANN001, ANN201 - see MetaLearner
        """Query loss after adapting every parameter on the support set."""
        params = self.adapt(self.fast_params(ways), sx, sy, self.hparams["inner_steps"], self.hparams["first_order"])
        logits = self.forward_with(params, qx)
        return F.cross_entropy(logits, qy), logits

    def logits(self, sx, sy, qx, ways, mode="full"):  # noqa: ANN001, ANN201 - see MetaLearner
        """'full': adapt every parameter for `eval_steps`; 'head': frozen backbone.

        'full' normalises with batch statistics (support batch while adapting, query batch
        when classifying), as MAML is trained and evaluated (Finn et al. 2017): inner steps
        on every weight through the fixed running statistics diverge. 'head' mode, what the
        hardware runs, uses the calibrated running statistics.
        """
        if mode == "head":
            return super().logits(sx, sy, qx, ways, mode)
        with transductive_batchnorm(self):
            params = {k: v.detach() for k, v in self.fast_params(ways).items()}
            params = self.adapt(params, sx, sy, self.hparams["eval_steps"], first_order=True)
            with torch.no_grad():
                return self.forward_with(params, qx)


class FOMAML(MAML):
    """First-order MAML: the inner gradients are treated as constants in the meta-gradient."""

    algorithm = "fomaml"
    defaults = {**MAML.defaults, "first_order": True}


class MetaSGD(MAML):
    """Meta-SGD (Li et al. 2017): a learned learning rate for every parameter element."""

    algorithm = "metasgd"
    #: two inner steps: at the first one the zero head's rows are equal, so the backbone's inner
    #: gradient is exactly zero and its learned rates would get no meta-gradient
    defaults = {**MAML.defaults, "inner_steps": 2, "eval_steps": 2, "head_steps": 2}

    def __init__(self, backbone: BackboneConfig, hparams: dict | None = None) -> None:
        super().__init__(backbone, hparams)
        lr = float(self.hparams["inner_lr"])  # an integer rate (--hparam inner_lr=1) must not make int tensors
        shapes = {k: p.shape for k, p in self.backbone.named_parameters()}
        self.lrs = nn.ParameterDict({_key(f"backbone.{k}"): nn.Parameter(torch.full(s, lr)) for k, s in shapes.items()})
        self.lrs[_key(HEAD_W)] = nn.Parameter(torch.full((backbone.embedding_dim(),), lr))
        self.lrs[_key(HEAD_B)] = nn.Parameter(torch.tensor(lr))

    def inner_lr(self, name: str) -> torch.Tensor:
        """The learned per-element rate (the head's row of rates is shared by all classes)."""
        return self.lrs[_key(name)]

    def head_lrs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Learned per-element rates of the head."""
        return self.lrs[_key(HEAD_W)], self.lrs[_key(HEAD_B)]


def _key(name: str) -> str:
    return name.replace(".", "__")


class Reptile(MAML):
    """Reptile (Nichol et al. 2018): move the initialisation towards task-adapted weights.

    The outer optimiser receives the pseudo-gradient theta - mean_tasks(theta'_task), where
    theta' comes from `inner_steps` SGD steps on the task's support and query examples.
    """

    algorithm = "reptile"
    defaults = {**MAML.defaults, "inner_steps": 5, "first_order": True}

    def meta_step(self, tasks, ways, optimizer):  # noqa: ANN001, ANN201 - see MetaLearner
        """One Reptile update; returns the inner-loop loss/accuracy on the task's queries."""
        base = {k: v.detach() for k, v in self.fast_params(ways).items()}
        mean = {k: torch.zeros_like(v) for k, v in base.items()}
        losses, accs = [], []
        with batch_statistics(self):
            for sx, sy, qx, qy in tasks:
                adapted = self.adapt(base, torch.cat([sx, qx]), torch.cat([sy, qy]), self.hparams["inner_steps"], True)
                with torch.no_grad():
                    logits = self.forward_with(adapted, qx)
                losses.append(F.cross_entropy(logits, qy).item())
                accs.append((logits.argmax(-1) == qy).float().mean().item())
                for k in mean:
                    mean[k] += adapted[k] / len(tasks)
        optimizer.zero_grad(set_to_none=True)
        for name, p in self.backbone.named_parameters():
            p.grad = base[f"backbone.{name}"] - mean[f"backbone.{name}"]
        optimizer.step()
        return sum(losses) / len(losses), sum(accs) / len(accs)
