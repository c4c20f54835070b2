"""Continuous evaluation: labels joined to logged predictions, rolling metrics, decay and fairness
(SPEC S8.5-S8.7, S8.12).

Every metric carries its ``n``; under the minimum it is ``insufficient_data``, never "healthy". Windows end at the
newest prediction time (or a given ``end``), never at wall-clock ``now()``, so replaying old logs gives the same
answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlplatform.entities import Label, PredictionRecord

MIN_LABELS = 100
DECAY_RELATIVE_DROP = 0.10
CONCEPT_DRIFT_FACTOR = 1.2
MIN_GROUP = 30
FOUR_FIFTHS = 0.8
BASE_RATE_WARNING = 1.25


# -- joining -------------------------------------------------------------------------------------------------------
def predictions_frame(records: Sequence[PredictionRecord]) -> pd.DataFrame:
    rows = [{"request_id": r.request_id, "instance_index": r.instance_index, "model_name": r.model_name,
             "version": r.version, "variant": r.variant, "entity_id": r.entity_id, "prediction": r.prediction,
             "confidence": r.confidence, "latency_ms": r.latency_ms, "timestamp": r.timestamp}
            for r in records]
    columns = ["request_id", "instance_index", "model_name", "version", "variant", "entity_id", "prediction",
               "confidence", "latency_ms", "timestamp"]
    return pd.DataFrame(rows, columns=columns)


@dataclass
class JoinResult:
    joined: pd.DataFrame  # one row per labelled prediction: prediction columns + ``label``
    matched: int
    unmatched_labels: int


def join_labels(predictions: pd.DataFrame, labels: Sequence[Label]) -> JoinResult:
    """By (request id, instance index) first; labels without a request id by entity and time (the latest
    prediction for the entity at or before the label's event time). Unmatched labels are counted, not dropped
    silently: they may still be waiting for their prediction."""
    label_df = pd.DataFrame([asdict(lbl) for lbl in labels],
                            columns=["label", "timestamp", "request_id", "instance_index", "entity_id", "event_time"])
    empty = predictions.iloc[0:0].assign(label=pd.Series(dtype=object))
    if predictions.empty or label_df.empty:
        return JoinResult(empty, 0, len(label_df))
    by_request = label_df[label_df["request_id"].notna()]
    joined = predictions.merge(by_request[["request_id", "instance_index", "label"]],
                               on=["request_id", "instance_index"], how="inner")
    unmatched = int(len(by_request) - len(joined))
    by_entity = label_df[label_df["request_id"].isna() & label_df["entity_id"].notna()]
    if not by_entity.empty:
        left = by_entity.assign(event_time=pd.to_datetime(by_entity["event_time"].fillna(by_entity["timestamp"]),
                                                          utc=True)).sort_values("event_time")
        right = predictions[predictions["entity_id"].notna()].assign(
            timestamp=pd.to_datetime(predictions["timestamp"], utc=True)).sort_values("timestamp")
        asof = pd.merge_asof(left[["entity_id", "event_time", "label"]], right, left_on="event_time",
                             right_on="timestamp", by="entity_id", direction="backward")
        found = asof[asof["request_id"].notna()].drop(columns=["event_time"])
        unmatched += int(len(asof) - len(found))
        joined = pd.concat([joined, found[joined.columns]], ignore_index=True)
    return JoinResult(joined, len(joined), unmatched)


# -- metrics -------------------------------------------------------------------------------------------------------
def classification_metrics(y_true: Sequence[Any], y_pred: Sequence[Any], positive: Any = 1,
                           min_n: int = MIN_LABELS) -> dict[str, Any]:
    """accuracy, precision, recall, F1, FNR with ``n`` and the success count ``k`` (never rebuilt from a
    rounded accuracy)."""
    y = np.asarray(y_true, dtype=object)
    p = np.asarray(y_pred, dtype=object)
    n = len(y)
    correct = int(np.sum(y == p))
    out: dict[str, Any] = {"n": n, "k": correct, "status": "ok" if n >= min_n else "insufficient_data"}
    if n == 0:
        return out
    tp = int(np.sum((p == positive) & (y == positive)))
    fp = int(np.sum((p == positive) & (y != positive)))
    fn = int(np.sum((p != positive) & (y == positive)))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return out | {"accuracy": correct / n, "precision": precision, "recall": recall, "f1": f1,
                  "false_negative_rate": fn / (tp + fn) if tp + fn else None,
                  "positive_rate": float(np.mean(p == positive))}


def rolling_metrics(joined: pd.DataFrame, *, by: Sequence[str] = ("version",), days: float = 7.0,
                    end: datetime | None = None, positive: Any = 1, min_n: int = MIN_LABELS) -> list[dict[str, Any]]:
    """Metrics over the ``days`` before ``end`` (default: the newest prediction), per group (version, variant,
    or a slice column). Champion and challenger on the same traffic are two versions in the same window."""
    if joined.empty:
        return []
    times = pd.to_datetime(joined["timestamp"], utc=True)
    stop = pd.Timestamp(end) if end is not None else times.max()
    if stop.tzinfo is None:
        stop = stop.tz_localize("UTC")
    window = joined[(times > stop - timedelta(days=days)) & (times <= stop)]
    rows = []
    for key, group in window.groupby(list(by), dropna=False):
        keys = key if isinstance(key, tuple) else (key,)
        rows.append(dict(zip(by, keys, strict=True)) | classification_metrics(
            group["label"].tolist(), group["prediction"].tolist(), positive, min_n))
    return rows


# -- decay ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecayResult:
    metric: str
    baseline: float | None
    current: float | None
    n: int
    k: int | None
    relative_drop: float | None
    p_value: float | None
    decayed: bool
    status: str  # ok | insufficient_data | no_baseline

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def relative_drop(baseline: float, current: float, *, lower_is_better: bool = False) -> float | None:
    """(baseline - current) / baseline, reversed for lower-is-better; None for a zero baseline."""
    if baseline == 0:
        return None
    drop = (current - baseline) / baseline if lower_is_better else (baseline - current) / baseline
    return float(drop)


def detect_decay(k: int, n: int, baseline: float | None, *, metric: str = "accuracy",
                 min_n: int = MIN_LABELS, min_drop: float = DECAY_RELATIVE_DROP,
                 alpha: float = 0.05) -> DecayResult:
    """Decay of a success-rate metric (k successes of n): drop > 10 %, n >= 100 and a one-sided binomial test
    ``binomtest(k, n, baseline, alternative="less")`` with p < alpha. Improvement never alerts."""
    current = k / n if n else None
    if baseline is None or not 0 < baseline <= 1:
        return DecayResult(metric, baseline, current, n, k, None, None, False, "no_baseline")
    if n < min_n or current is None:
        return DecayResult(metric, baseline, current, n, k, None, None, False, "insufficient_data")
    drop = relative_drop(baseline, current)
    p_value = float(stats.binomtest(k, n, baseline, alternative="less").pvalue)
    decayed = drop is not None and drop > min_drop and p_value < alpha
    return DecayResult(metric, baseline, current, n, k, drop, p_value, decayed, "ok")


def concept_drift(k: int, n: int, baseline_accuracy: float | None, *, min_n: int = MIN_LABELS,
                  factor: float = CONCEPT_DRIFT_FACTOR) -> dict[str, Any]:
    """Labelled error above baseline error x 1.2 with at least ``min_n`` labels."""
    if baseline_accuracy is None or n < min_n:
        return {"status": "insufficient_data" if n < min_n else "no_baseline", "n": n, "drift": False}
    error, baseline_error = 1 - k / n, 1 - baseline_accuracy
    return {"status": "ok", "n": n, "error": error, "baseline_error": baseline_error,
            "drift": error > baseline_error * factor}


# -- fairness ------------------------------------------------------------------------------------------------------
def fairness_report(frame: pd.DataFrame, attribute: str, *, prediction: str = "prediction",
                    label: str | None = "label", positive: Any = 1, min_group: int = MIN_GROUP) -> dict[str, Any]:
    """Per-group count, selection rate, accuracy, TPR, FPR; the selection-rate ratio (min/max, four-fifths rule),
    demographic-parity difference and equalized-odds gaps over the groups with enough rows. A constant predictor
    is flagged and never called fair; a zero maximum selection rate leaves the ratio undefined (no division)."""
    preds = frame[prediction].to_numpy(dtype=object)
    has_labels = label is not None and label in frame.columns and frame[label].notna().any()
    groups: dict[str, dict[str, Any]] = {}
    for value, group in frame.groupby(attribute, dropna=False):
        p = group[prediction].to_numpy(dtype=object) == positive
        row: dict[str, Any] = {"count": len(group)}
        if len(group) == 0:
            row["status"] = "undefined"
        elif len(group) < min_group:
            row["status"] = "insufficient_data"
        else:
            row["status"] = "ok"
        row["selection_rate"] = float(p.mean()) if len(group) else None
        if has_labels and len(group):
            y = group[label].to_numpy(dtype=object) == positive
            row["accuracy"] = float(np.mean(p == y))
            row["tpr"] = float(p[y].mean()) if y.any() else None  # positive-free group: undefined
            row["fpr"] = float(p[~y].mean()) if (~y).any() else None
        groups[str(value)] = row
    eligible = {g: r for g, r in groups.items() if r["status"] == "ok"}
    rates = [r["selection_rate"] for r in eligible.values()]
    constant = len(set(preds.tolist())) <= 1
    result: dict[str, Any] = {"attribute": attribute, "groups": groups, "constant_predictor": constant,
                              "overall_selection_rate": float(np.mean(preds == positive)) if len(preds) else None}
    if len(rates) < 2:
        return result | {"status": "insufficient_data", "selection_rate_ratio": None,
                         "demographic_parity_difference": None, "passes_four_fifths": None}
    high, low = max(rates), min(rates)
    ratio = low / high if high > 0 else None
    result |= {
        "status": "constant_predictor" if constant else "ok",
        "selection_rate_ratio": ratio, "demographic_parity_difference": high - low,
        "passes_four_fifths": (ratio is not None and ratio >= FOUR_FIFTHS) and not constant,
    }
    if has_labels:
        for name in ("tpr", "fpr"):
            values = [r[name] for r in eligible.values() if r.get(name) is not None]
            result[f"{name}_gap"] = max(values) - min(values) if len(values) >= 2 else None
    return result


def base_rate_audit(frame: pd.DataFrame, attribute: str, target: str, positive: Any = 1,
                    warn_ratio: float = BASE_RATE_WARNING) -> dict[str, Any]:
    """Pre-training audit: warn when the max/min positive base rate across groups exceeds ``warn_ratio``."""
    rates = frame.groupby(attribute)[target].apply(lambda s: float(np.mean(s.to_numpy() == positive)))
    low, high = float(rates.min()), float(rates.max())
    ratio = high / low if low > 0 else None
    return {"attribute": attribute, "base_rates": {str(k): float(v) for k, v in rates.items()}, "ratio": ratio,
            "warning": ratio is None or ratio > warn_ratio}
