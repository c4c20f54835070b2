"""Training losses by name (SPEC S2.6, S2.10): cross entropy, class-weighted cross entropy, focal loss, MSE, MAE,
Huber. Every loss maps ``(outputs, targets)`` to a scalar mean, so accumulation can divide it by the step count."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlplatform.errors import InvalidInput


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): ``-alpha_y (1 - p_y)^gamma log p_y``, averaged over the batch.

    ``alpha`` is one weight per class (or None for 1.0 each); gamma 0 with no alpha equals cross entropy.
    """

    alpha: torch.Tensor | None  # a registered buffer (moves with the module)

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None) -> None:
        super().__init__()
        if gamma < 0:
            raise InvalidInput("focal loss gamma must be >= 0", field="loss.params.gamma")
        self.gamma = float(gamma)
        self.register_buffer("alpha", torch.tensor(list(alpha), dtype=torch.float32) if alpha is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.numel() == 0:
            return logits.sum()  # an empty batch contributes nothing (and keeps the graph connected)
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, target.view(-1, 1)).squeeze(1)
        loss = -((1.0 - log_p.exp()).clamp(min=0.0) ** self.gamma) * log_p
        if self.alpha is not None:
            if self.alpha.numel() != logits.shape[1]:
                raise InvalidInput(f"focal loss alpha has {self.alpha.numel()} values for {logits.shape[1]} "
                                   "classes", field="loss.params.alpha")
            loss = loss * self.alpha.to(logits.device)[target]
        return loss.mean()


def balanced_weights(class_counts: Sequence[int]) -> list[float]:
    """``n / (k * count_c)`` as in sklearn's ``class_weight="balanced"``; absent classes get weight 0."""
    counts = np.asarray(class_counts, dtype="float64")
    total, k = counts.sum(), len(counts)
    return [float(total / (k * c)) if c > 0 else 0.0 for c in counts]


def _class_weights(params: dict[str, Any], class_counts: Sequence[int] | None, key: str) -> list[float] | None:
    value = params.get(key)
    if value is None:
        return None
    if value == "balanced":
        if class_counts is None:
            raise InvalidInput(f"{key}='balanced' needs the training labels", field=f"loss.params.{key}")
        return balanced_weights(class_counts)
    if class_counts is not None and len(value) != len(class_counts):
        raise InvalidInput(f"{key} has {len(value)} values for {len(class_counts)} classes",
                           field=f"loss.params.{key}")
    return [float(v) for v in value]


def _cross_entropy(params: dict[str, Any], counts: Sequence[int] | None) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=float(params.get("label_smoothing", 0.0)))


def _weighted_cross_entropy(params: dict[str, Any], counts: Sequence[int] | None) -> nn.Module:
    weights = _class_weights({"weights": "balanced", **params}, counts, "weights")
    return nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))


def _focal(params: dict[str, Any], counts: Sequence[int] | None) -> nn.Module:
    return FocalLoss(gamma=float(params.get("gamma", 2.0)), alpha=_class_weights(params, counts, "alpha"))


class _RegressionLoss(nn.Module):
    """Regression heads have one output column; targets arrive as a vector."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(output.reshape(-1).float(), target.reshape(-1).float())


LossBuilder = Callable[[dict[str, Any], Sequence[int] | None], nn.Module]
CLASSIFICATION_LOSSES: dict[str, LossBuilder] = {
    "cross_entropy": _cross_entropy,
    "weighted_cross_entropy": _weighted_cross_entropy,
    "focal": _focal,
}
REGRESSION_LOSSES: dict[str, LossBuilder] = {
    "mse": lambda p, c: _RegressionLoss(F.mse_loss),
    "mae": lambda p, c: _RegressionLoss(F.l1_loss),
    "huber": lambda p, c: _RegressionLoss(lambda o, t: F.huber_loss(o, t, delta=float(p.get("delta", 1.0)))),
}


def loss_names(task: str) -> list[str]:
    return sorted(CLASSIFICATION_LOSSES if task == "classification" else REGRESSION_LOSSES)


def build_loss(name: str, task: str, params: dict[str, Any] | None = None,
               class_counts: Sequence[int] | None = None) -> nn.Module:
    table = CLASSIFICATION_LOSSES if task == "classification" else REGRESSION_LOSSES
    if name not in table:
        raise InvalidInput(f"unknown loss {name!r} for {task}; available: {', '.join(loss_names(task))}",
                           field="loss.name")
    return table[name](dict(params or {}), class_counts)
