"""Decision-threshold tuning for binary classifiers (SPEC S2.10), on the validation split only.

A row is predicted positive when ``P(classes[1]) >= threshold``, the rule :class:`mlplatform.predictor.Predictor`
applies with the manifest's ``threshold``. Candidates are the predicted probabilities themselves (at most
``max_candidates`` quantiles of them) plus 0.5, so the tuned threshold is never worse than the default on the data
it was tuned on.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

ThresholdMetric = Literal["f1", "balanced_accuracy"]
DEFAULT_THRESHOLD = 0.5
MAX_CANDIDATES = 512
_TIE = 1e-12


def threshold_metric(proba_positive: np.ndarray, y_true: np.ndarray, threshold: float,
                     metric: ThresholdMetric = "f1") -> float:
    """``metric`` of the predictions ``proba_positive >= threshold`` against ``y_true`` (truthy = positive)."""
    return float(_scores(*_prepare(proba_positive, y_true), np.array([threshold]), metric)[0])


def tune_threshold(proba_positive: np.ndarray, y_true: np.ndarray, metric: ThresholdMetric = "f1",
                   max_candidates: int = MAX_CANDIDATES) -> tuple[float, float]:
    """The threshold in (0, 1) maximising ``metric`` and the metric's value there. Ties go to the threshold closest
    to 0.5; with a single class (or no rows) there is nothing to tune and the answer is 0.5."""
    if metric not in {"f1", "balanced_accuracy"}:
        raise ValueError(f"unknown threshold metric {metric!r}")
    proba, positive = _prepare(proba_positive, y_true)
    if len(proba) == 0 or positive.all() or not positive.any():
        return DEFAULT_THRESHOLD, threshold_metric(proba, positive, DEFAULT_THRESHOLD, metric)
    candidates = np.unique(proba[(proba > 0.0) & (proba < 1.0)])
    if len(candidates) > max_candidates:
        # Quantiles that are real probabilities ("nearest"), so each still splits the rows at an observed score.
        candidates = np.unique(np.quantile(candidates, np.linspace(0.0, 1.0, max_candidates), method="nearest"))
    candidates = np.union1d(candidates, [DEFAULT_THRESHOLD])
    values = _scores(proba, positive, candidates, metric)
    best = values.max()
    tied = np.flatnonzero(values >= best - _TIE)
    chosen = tied[np.argmin(np.abs(candidates[tied] - DEFAULT_THRESHOLD))]
    return float(candidates[chosen]), float(values[chosen])


def _prepare(proba_positive: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    proba = np.asarray(proba_positive, dtype=np.float64).ravel()
    positive = np.asarray(y_true).astype(bool).ravel()
    if proba.shape != positive.shape:
        raise ValueError(f"{len(proba)} probabilities for {len(positive)} labels")
    return proba, positive


def _scores(proba: np.ndarray, positive: np.ndarray, thresholds: np.ndarray, metric: str) -> np.ndarray:
    """``metric`` at every threshold at once: counts of scores >= t come from binary search on sorted scores."""
    pos_scores, neg_scores = np.sort(proba[positive]), np.sort(proba[~positive])
    n_pos, n_neg = len(pos_scores), len(neg_scores)
    tp = n_pos - np.searchsorted(pos_scores, thresholds, side="left")
    fp = n_neg - np.searchsorted(neg_scores, thresholds, side="left")
    fn, tn = n_pos - tp, n_neg - fp
    if metric == "f1":  # a zero denominator scores 0, like the metrics module
        denominator = 2 * tp + fp + fn
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    # The mean recall over the classes present (sklearn's balanced_accuracy_score), so one class does not divide by 0.
    recalls = [tp / n_pos] if n_pos else []
    recalls += [tn / n_neg] if n_neg else []
    return np.mean(recalls, axis=0) if recalls else np.zeros(len(thresholds))
