"""The confidence-distillation loss (the book's Distillation chapter) and its confidence targets.

A student has two heads: class logits ``z_S`` and a score logit whose sigmoid
``s ∈ (0, 1)`` learns how much to trust the teacher on a clip. Per clip with
label ``y`` and teacher logits ``z_T``::

    L = α·CE(z_S, y) + β·τ²·KL(softmax(z_T/τ) ‖ softmax(z_S/τ)) + γ·BCE(s, t(q, y))
    q = softmax(z_T / T_target)

``γ = 0`` is plain knowledge distillation (KD), ``β = γ = 0`` a student trained
on labels alone (CE): the ablation ladder CE → KD → CD.

The confidence target ``t`` is looked up by name in the registry
:data:`CONFIDENCE_TARGETS` (``register_target``, ``get_target``, ``list_targets``);
each maps teacher probabilities ``[B, K]`` and labels ``[B]`` to targets ``[B]`` in
``[0, 1]``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from cdlib.runtime.errors import ConfigError
from cdlib.runtime.registry import Registry

ConfidenceTarget = Callable[[Tensor, Tensor], Tensor]

#: name -> ``(teacher_probs [B, K], labels [B]) -> [B]`` in ``[0, 1]``; the first registered is the default
CONFIDENCE_TARGETS: Registry[ConfidenceTarget] = Registry("confidence target")


def register_target(name: str, description: str):
    """Decorator adding a confidence target to :data:`CONFIDENCE_TARGETS` under ``name``, with ``description``."""
    return CONFIDENCE_TARGETS.register(name, description=description)


@register_target("true_class_prob", "the teacher's probability of the right class, q[y]")
def true_class_prob(teacher_probs: Tensor, labels: Tensor) -> Tensor:
    """``t = q[y]``: how much the teacher believes the right answer on this clip."""
    return teacher_probs.gather(1, labels.long().unsqueeze(1)).squeeze(1)


@register_target("max_prob", "the teacher's top probability, max_k q[k] (label-free)")
def max_prob(teacher_probs: Tensor, labels: Tensor) -> Tensor:
    """``t = max_k q[k]``: the teacher's own confidence (label-free)."""
    return teacher_probs.max(dim=1).values


@register_target("correct", "1 if the teacher's top class is the label, else 0")
def correct(teacher_probs: Tensor, labels: Tensor) -> Tensor:
    """``t = 1[argmax_k q[k] = y]``: teacher correctness (ties: the lowest class index wins)."""
    return (teacher_probs.argmax(dim=1) == labels).to(teacher_probs.dtype)


@register_target("neg_entropy", "one minus the teacher's normalised entropy, 1 - H(q)/log K (label-free)")
def neg_entropy(teacher_probs: Tensor, labels: Tensor) -> Tensor:
    """``t = 1 − H(q) / log K`` with ``H(q) = −Σ_k q[k] log q[k]`` (``0·log 0 = 0``), label-free.

    1 for a one-hot teacher, 0 for a uniform one. Needs ``K ≥ 2``.
    """
    num_classes = teacher_probs.shape[1]
    if num_classes < 2:
        raise ValueError(f"neg_entropy needs at least 2 classes, got teacher_probs of shape {tuple(teacher_probs.shape)}")
    entropy = -torch.special.xlogy(teacher_probs, teacher_probs).sum(dim=1)
    return (1.0 - entropy / math.log(num_classes)).clamp(0.0, 1.0)


def list_targets() -> list[str]:
    """Names of the registered confidence targets, the default first."""
    return CONFIDENCE_TARGETS.names()


def get_target(name: str) -> ConfidenceTarget:
    """The confidence target registered as ``name``; :class:`ConfigError` naming the known targets if there is none."""
    return CONFIDENCE_TARGETS.get(name)


class LossOutput(NamedTuple):
    """The batch loss and its unweighted components (batch means, detached).

    ``total = alpha·ce + beta·kd + gamma·bce``; ``kd`` already includes the
    ``τ²`` factor. A component whose inputs
    were not given (``kd``/``bce`` without teacher logits, ``bce`` without a
    score logit) is NaN; it is allowed only with a zero weight, and then left
    out of ``total``.
    """

    total: Tensor
    ce: Tensor
    kd: Tensor
    bce: Tensor


def _check_weight(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def _check_temperature(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


class ConfidenceDistillationLoss(torch.nn.Module):
    r"""Confidence-distillation loss, mean over the batch of the per-clip loss

    .. math::

        L = α\,\mathrm{CE}(z_S, y)
          + β\,τ^2\,\mathrm{KL}\big(\mathrm{softmax}(z_T/τ)\,\|\,\mathrm{softmax}(z_S/τ)\big)
          + γ\,\mathrm{BCE}\big(s, t(q, y)\big),\qquad
        s = σ(\text{score\_logit}),\quad q = \mathrm{softmax}(z_T / T_{\text{target}})

    written out: ``CE = −log softmax(z_S)[y]``,
    ``KL = Σ_k p_k (log p_k − log r_k)`` with ``p = softmax(z_T/τ)``,
    ``r = softmax(z_S/τ)``, and ``BCE = −t log s − (1 − t) log(1 − s)``
    (computed from the score logit with ``binary_cross_entropy_with_logits``
    for stability). ``t`` is the confidence target named by ``target``
    (:data:`CONFIDENCE_TARGETS`).

    Our reading: the design this study started from took ``q = softmax(z_T/τ)``
    for the target too. We decouple the target's temperature ``target_temperature`` from the
    distillation temperature ``τ``: at ``τ = 2`` the softened ``q`` is no longer
    the teacher's confidence. ``target_temperature`` is 1 (raw teacher) or the
    temperature fitted by temperature scaling
    (:func:`cdlib.method.calibration.fit_temperature`, calibrated teacher).

    The teacher logits are detached: no gradient ever reaches the teacher.
    ``beta = gamma = 0`` (CE student) accepts ``teacher_logits=None``;
    ``gamma = 0`` (KD student) accepts ``score_logit=None``.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 5.0,
        tau: float = 2.0,
        target: str = "true_class_prob",
        target_temperature: float = 1.0,
    ):
        super().__init__()
        self.alpha = _check_weight("alpha", alpha)
        self.beta = _check_weight("beta", beta)
        self.gamma = _check_weight("gamma", gamma)
        if self.alpha == self.beta == self.gamma == 0:
            raise ConfigError("alpha, beta, gamma: at least one loss weight must be > 0")
        self.tau = _check_temperature("tau", tau)
        self.target_temperature = _check_temperature("target_temperature", target_temperature)
        self.target = target
        self.target_fn = get_target(target)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, tau={self.tau}, "
            f"target={self.target!r}, target_temperature={self.target_temperature}"
        )

    def forward(
        self,
        student_logits: Tensor,
        score_logit: Tensor | None,
        teacher_logits: Tensor | None,
        labels: Tensor,
    ) -> LossOutput:
        """``student_logits [B, K]``, ``score_logit [B]``, ``teacher_logits [B, K]``, ``labels [B]`` -> :class:`LossOutput`."""
        batch, _ = student_logits.shape
        if labels.shape != (batch,):
            raise ValueError(f"labels: expected shape ({batch},), got {tuple(labels.shape)}")
        if teacher_logits is None and (self.beta > 0 or self.gamma > 0):
            raise ConfigError(f"teacher_logits: needed when beta > 0 or gamma > 0 (beta={self.beta}, gamma={self.gamma})")
        if score_logit is None and self.gamma > 0:
            raise ConfigError(f"score_logit: needed when gamma > 0 (gamma={self.gamma})")
        if teacher_logits is not None and teacher_logits.shape != student_logits.shape:
            raise ValueError(
                f"teacher_logits: expected shape {tuple(student_logits.shape)} like student_logits, got {tuple(teacher_logits.shape)}"
            )
        if score_logit is not None and score_logit.shape != (batch,):
            raise ValueError(f"score_logit: expected shape ({batch},), got {tuple(score_logit.shape)}")

        nan = student_logits.new_tensor(float("nan"))
        ce = F.cross_entropy(student_logits, labels)
        total = self.alpha * ce
        kd = bce = nan
        if teacher_logits is not None:
            teacher_logits = teacher_logits.detach()
            kl = F.kl_div(
                F.log_softmax(student_logits / self.tau, dim=1),
                F.log_softmax(teacher_logits / self.tau, dim=1),
                reduction="none",
                log_target=True,
            ).sum(dim=1)
            kd = self.tau**2 * kl.mean()
            if self.beta > 0:
                total = total + self.beta * kd
            if score_logit is not None:
                target = self.target_fn(F.softmax(teacher_logits / self.target_temperature, dim=1), labels)
                bce = F.binary_cross_entropy_with_logits(score_logit, target.to(score_logit.dtype))
                if self.gamma > 0:
                    total = total + self.gamma * bce
        return LossOutput(total=total, ce=ce.detach(), kd=kd.detach(), bce=bce.detach())
