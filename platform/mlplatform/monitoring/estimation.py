"""Label-free performance estimation for binary classifiers (confidence-based, as NannyML's CBPE does).

At training time an isotonic calibration of the positive-class score is fitted on held-out rows (the validation
split or out-of-fold predictions) and stored in the artifact's reference profile. At monitoring time each row's
calibrated probability ``p`` says how likely the positive class is, so the expected confusion matrix of the
model's own decisions follows without a single label: a positive decision is a true positive with probability
``p`` and a false positive with ``1 - p``. Expected accuracy, F1 and ROC AUC come from it.

What it can and cannot see: it follows *covariate shift* (the rows move to regions where the model is more or less
sure) as long as P(y | x) is unchanged. It cannot see *concept drift*: when the same x now means a different y, the
model's calibrated confidence is as high as before and the estimate stays put. Realized metrics (labels) and the
decay test remain the authority there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from mlplatform.models.calibration import calibrate


@dataclass(frozen=True)
class Estimate:
    n: int
    accuracy: float | None
    f1: float | None
    roc_auc: float | None
    expected_correct: float  # the expected success count, the estimate's analogue of k
    status: str  # ok | insufficient_data | no_calibration

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_performance(calibration: dict[str, Any] | None, scores: np.ndarray | None, threshold: float | None,
                         *, min_n: int = 100) -> Estimate:
    """Expected accuracy, F1 and ROC AUC of the decisions ``score >= threshold`` (the artifact's own, possibly
    tuned, threshold), from calibrated probabilities."""
    if calibration is None or scores is None:
        return Estimate(0, None, None, None, 0.0, "no_calibration")
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    n = len(scores)
    if n < min_n:
        return Estimate(n, None, None, None, 0.0, "insufficient_data")
    p = calibrate(calibration, scores)
    decided = scores >= (0.5 if threshold is None else threshold)
    correct = np.where(decided, p, 1.0 - p)
    tp, fp, fn = float(np.sum(p[decided])), float(np.sum(1 - p[decided])), float(np.sum(p[~decided]))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else None
    roc_auc = None
    if 0 < p.sum() < n:  # each row counts as p of a positive and 1 - p of a negative at its own score
        roc_auc = float(roc_auc_score(np.r_[np.ones(n), np.zeros(n)], np.r_[scores, scores],
                                      sample_weight=np.r_[p, 1 - p]))
    return Estimate(n, float(correct.mean()), f1, roc_auc, float(correct.sum()), "ok")


def performance_rows(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """Realized metrics beside the label-free estimates, one row per metric (empty when neither exists)."""
    realized = evaluation.get("metrics") or {}
    estimated = evaluation.get("estimated") or {}
    if not realized.get("n") and estimated.get("status") != "ok":
        return []
    rows = [{"metric": m, "realized": realized.get(m), "estimated": estimated.get(m)}
            for m in ("accuracy", "f1", "roc_auc")]
    rows.append({"metric": "n", "realized": realized.get("n", 0), "estimated": estimated.get("n", 0)})
    return rows
