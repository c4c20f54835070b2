"""Metrics by name, computed from a Predictor's output (zero denominators give 0; empty inputs do not raise)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlplatform.entities.metrics import LOWER_IS_BETTER, metric_mode
from mlplatform.errors import InvalidInput

__all__ = ["CLASSIFICATION_METRICS", "LOWER_IS_BETTER", "REGRESSION_METRICS", "compute_metrics", "evaluate_predictions",
           "metric_mode", "per_class_metrics"]

ClassificationMetric = Callable[[np.ndarray, np.ndarray, np.ndarray | None, list[Any]], float]


def _binary_scores(proba: np.ndarray | None) -> np.ndarray | None:
    return None if proba is None or proba.shape[1] != 2 else proba[:, 1]


def _roc_auc(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: list[Any]) -> float:
    if proba is None or len(np.unique(y)) < 2:
        return 0.0
    if proba.shape[1] == 2:
        return float(skm.roc_auc_score(y == classes[1], proba[:, 1]))
    return float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes))


def _pr_auc(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: list[Any]) -> float:
    scores = _binary_scores(proba)
    if scores is None or len(np.unique(y)) < 2:
        return 0.0
    return float(skm.average_precision_score(y == classes[1], scores))


def _log_loss(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: list[Any]) -> float:
    if proba is None:
        return 0.0
    clipped = np.clip(proba, 1e-15, 1.0)
    return float(skm.log_loss(y, clipped / clipped.sum(axis=1, keepdims=True), labels=classes))


def _f1(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: list[Any]) -> float:
    average = "binary" if len(classes) == 2 else "macro"
    kwargs = {"pos_label": classes[1]} if average == "binary" else {}
    return float(skm.f1_score(y, pred, average=average, zero_division=0, labels=classes, **kwargs))


CLASSIFICATION_METRICS: dict[str, ClassificationMetric] = {
    "accuracy": lambda y, p, pr, c: float(np.mean(y == p)),
    "f1": _f1,
    "roc_auc": _roc_auc,
    "pr_auc": _pr_auc,
    "log_loss": _log_loss,
}
REGRESSION_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "rmse": lambda y, p: float(math.sqrt(np.mean((y - p) ** 2))),
    "mae": lambda y, p: float(np.mean(np.abs(y - p))),
    "r2": lambda y, p: float(skm.r2_score(y, p)) if len(y) > 1 else 0.0,
}


def compute_metrics(task: str, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None = None,
                    classes: list[Any] | None = None) -> dict[str, float]:
    if len(y_true) == 0:
        return {}
    if task == "classification":
        return {name: fn(y_true, y_pred, proba, list(classes or [])) for name, fn in CLASSIFICATION_METRICS.items()}
    if task == "regression":
        y_true = y_true.astype("float64")
        return {name: fn(y_true, y_pred.astype("float64")) for name, fn in REGRESSION_METRICS.items()}
    raise InvalidInput(f"unknown task {task!r}", field="task")


def evaluate_predictions(predictor: Any, data: pd.DataFrame, target: str,
                         per_class: bool = False) -> dict[str, float]:
    """Metrics of ``predictor`` on ``data``; with ``per_class`` (classifiers) also :func:`per_class_metrics`, from
    the same single prediction pass."""
    result = predictor.predict(data)
    y, labels = data[target].to_numpy(), np.asarray(result.predictions)
    metrics = compute_metrics(predictor.manifest.task, y, labels, result.probabilities, result.classes)
    if per_class and predictor.manifest.task == "classification":
        metrics |= per_class_metrics(y, labels, list(result.classes or []))
    return metrics


def per_class_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[Any]) -> dict[str, float]:
    """Precision, recall, F1 and support of every class (SPEC S2.10 reports), as flat keys such as
    ``recall_class_1``: distinct from the overall metrics, so no store query mixes them up. Zero denominators give
    0; a class absent from ``y_true`` has support 0."""
    if len(y_true) == 0 or not classes:
        return {}
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0)
    out: dict[str, float] = {}
    for i, label in enumerate(classes):
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(label))[:40]
        out |= {f"precision_class_{name}": float(precision[i]), f"recall_class_{name}": float(recall[i]),
                f"f1_class_{name}": float(f1[i]), f"support_class_{name}": float(support[i])}
    return out
