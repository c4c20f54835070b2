"""Metric names per task and their direction: the vocabulary that configs are checked against at load and that
:mod:`mlplatform.learning.metrics` computes (a test keeps the two in step)."""

from __future__ import annotations

CLASSIFICATION_METRIC_NAMES = ("accuracy", "f1", "roc_auc", "pr_auc", "log_loss")
REGRESSION_METRIC_NAMES = ("rmse", "mae", "r2")
TASK_METRICS = {"classification": CLASSIFICATION_METRIC_NAMES, "regression": REGRESSION_METRIC_NAMES}
LOWER_IS_BETTER = {"log_loss", "rmse", "mae", "loss", "val_loss"}


def metric_mode(name: str) -> str:
    return "min" if name in LOWER_IS_BETTER or name.endswith("loss") else "max"


def validation_metrics(task: str, *, with_loss: bool) -> list[str]:
    """The ``val_<metric>`` names a model of ``task`` reports: its task metrics, plus ``val_loss`` from the
    torch loop (``with_loss``); sklearn fits and tune trials of every framework report the task metrics only."""
    return [*(["val_loss"] if with_loss else []), *(f"val_{name}" for name in TASK_METRICS[task])]
