"""Drift of features, predictions and labels between a stored reference profile and a window (SPEC S8.2, S8.3).

- PSI over the reference's own quantile bins (never equal-width or uniform ones), zero proportions replaced by
  epsilon 1e-4: with 1e-10 a single empty bin alone reads "significant".
- Numeric: KS two-sample against the stored reference sample (never a fitted normal); drift needs p < 0.05 *and*
  statistic >= 0.05, because at large n p-values alone flag negligible shifts.
- Categorical: chi-square homogeneity test over the reference categories plus ``__unseen__``; PSI on proportions.
- Levels come from PSI (features) and the KS statistic (scores) only from 1,000 rows; below 100 rows a test is
  ``insufficient_data``. A feature missing from the window, or all NaN, is reported as such, never as "no drift".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from mlplatform.entities import AlertLevel
from mlplatform.monitoring.levels import Thresholds, overall_level
from mlplatform.monitoring.reference import UNSEEN, DriftReference, bin_counts, summary_statistics

EPSILON = 1e-4
MIN_SAMPLES = 100
MIN_SAMPLES_FOR_LEVEL = 1000
P_VALUE = 0.05
KS_MIN_STATISTIC = 0.05


@dataclass(frozen=True)
class DriftSettings:
    epsilon: float = EPSILON
    min_samples: int = MIN_SAMPLES
    min_samples_for_level: int = MIN_SAMPLES_FOR_LEVEL
    p_value: float = P_VALUE
    ks_min_statistic: float = KS_MIN_STATISTIC
    critical_features: tuple[str, ...] | None = None  # None: every feature may set the level


def psi(reference: np.ndarray, current: np.ndarray, epsilon: float = EPSILON) -> float:
    """Population stability index of two proportion vectors over the same bins.

    ``sum((cur - ref) * ln(cur / ref))`` equals ``rel_entr(cur, ref) + rel_entr(ref, cur)`` (symmetric KL)."""
    ref = np.where(np.asarray(reference, dtype=np.float64) <= 0, epsilon, reference)
    cur = np.where(np.asarray(current, dtype=np.float64) <= 0, epsilon, current)
    return float(np.sum(special.rel_entr(cur, ref) + special.rel_entr(ref, cur)))


def psi_band(value: float) -> str:
    return "significant" if value >= 0.2 else "moderate" if value >= 0.1 else "none"


@dataclass
class FeatureDrift:
    """One feature (or the prediction/label) against its reference."""

    name: str
    kind: str
    status: str  # ok | insufficient_data | missing | empty
    n: int = 0
    missing_rate: float | None = None
    psi: float | None = None
    psi_band: str | None = None
    test: str | None = None  # ks | chi2
    statistic: float | None = None
    p_value: float | None = None
    drift: bool = False
    level: AlertLevel = AlertLevel.GREEN
    level_metric: str | None = None
    bins: list[str] = field(default_factory=list)
    reference_proportions: list[float] = field(default_factory=list)
    current_proportions: list[float] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items()}
        data["level"] = self.level.name
        return data


@dataclass
class DriftResult:
    features: dict[str, FeatureDrift]
    prediction: FeatureDrift | None
    label: FeatureDrift | None
    n: int
    window_start: datetime | None = None
    window_end: datetime | None = None
    source: str = ""

    @property
    def level(self) -> AlertLevel:
        parts = [f.level for f in self.features.values()]
        if self.prediction is not None:
            parts.append(self.prediction.level)
        return overall_level(parts)

    @property
    def status(self) -> str:
        return "insufficient_data" if self.n < MIN_SAMPLES else "ok"

    def drifted_features(self, min_psi: float = 0.2) -> list[str]:
        return [f.name for f in self.features.values() if f.psi is not None and f.psi >= min_psi]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n, "status": self.status, "level": self.level.name, "source": self.source,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "features": {k: v.to_dict() for k, v in self.features.items()},
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "label": self.label.to_dict() if self.label else None,
        }


def _bin_names(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    bounds = ["-inf", *[f"{e:.4g}" for e in edges], "inf"]
    return [f"({lo}, {hi}]" for lo, hi in itertools.pairwise(bounds)]


def numeric_drift(name: str, profile: dict[str, Any], series: pd.Series | None, settings: DriftSettings,
                  thresholds: Thresholds, level_metric: str = "psi") -> FeatureDrift:
    result = FeatureDrift(name=name, kind="numeric", status="missing", test="ks", bins=_bin_names(profile["edges"]),
                          reference_proportions=list(profile["proportions"]))
    if series is None:
        return result
    raw = pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()
    finite = np.isfinite(raw)
    values = raw[finite]
    result.missing_rate = float(1 - finite.mean()) if len(raw) else None
    result.n = len(values)
    if len(raw) == 0 or len(values) == 0:
        result.status = "empty"
        return result
    counts = bin_counts(values, profile["edges"])
    current = counts / counts.sum()
    result.current_proportions = current.tolist()
    result.stats = summary_statistics(values)
    if result.n < settings.min_samples:
        result.status = "insufficient_data"
        return result
    result.status = "ok"
    result.psi = psi(np.asarray(profile["proportions"]), current, settings.epsilon)
    result.psi_band = psi_band(result.psi)
    if profile.get("sample"):
        test = stats.ks_2samp(np.asarray(profile["sample"], dtype=np.float64), values)
        result.statistic, result.p_value = float(test.statistic), float(test.pvalue)
        result.drift = result.p_value < settings.p_value and result.statistic >= settings.ks_min_statistic
    _set_level(result, settings, thresholds, level_metric)
    return result


def categorical_drift(name: str, profile: dict[str, Any], series: pd.Series | None, settings: DriftSettings,
                      thresholds: Thresholds) -> FeatureDrift:
    categories = list(profile["categories"])
    result = FeatureDrift(name=name, kind="categorical", status="missing", test="chi2", bins=[*categories, UNSEEN])
    ref_counts = np.array([profile["categories"][c] for c in categories] + [0], dtype=np.float64)
    result.reference_proportions = (ref_counts / max(ref_counts.sum(), 1)).tolist()
    if series is None:
        return result
    present = series.notna()
    result.missing_rate = float(1 - present.mean()) if len(series) else None
    values = series[present].astype(str)
    result.n = len(values)
    if len(series) == 0 or result.n == 0:
        result.status = "empty"
        return result
    counts = values.value_counts()
    known = set(categories)
    cur_counts = np.array([counts.get(c, 0) for c in categories]
                          + [int(counts[[c not in known for c in counts.index]].sum())], dtype=np.float64)
    current = cur_counts / cur_counts.sum()
    result.current_proportions = current.tolist()
    if result.n < settings.min_samples:
        result.status = "insufficient_data"
        return result
    result.status = "ok"
    result.psi = psi(np.asarray(result.reference_proportions), current, settings.epsilon)
    result.psi_band = psi_band(result.psi)
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]  # a category absent from both samples carries no information
    if table.shape[1] >= 2:
        test = stats.chi2_contingency(table, correction=False)
        result.statistic, result.p_value = float(test.statistic), float(test.pvalue)
        result.drift = result.p_value < settings.p_value
    else:
        result.statistic, result.p_value = 0.0, 1.0
    _set_level(result, settings, thresholds, "psi")
    return result


def _set_level(result: FeatureDrift, settings: DriftSettings, thresholds: Thresholds, metric: str) -> None:
    result.level_metric = metric
    value = result.statistic if metric == "prediction_ks" else result.psi
    if value is None or result.n < settings.min_samples_for_level:
        return  # below 1,000 rows sampling noise alone reaches YELLOW on stationary data
    result.level = thresholds.level(metric, value)  # the row floor is settings.min_samples_for_level


def profile_drift(name: str, profile: dict[str, Any], series: pd.Series | None, settings: DriftSettings,
                  thresholds: Thresholds, numeric_metric: str = "psi") -> FeatureDrift:
    if profile["kind"] == "numeric":
        return numeric_drift(name, profile, series, settings, thresholds, numeric_metric)
    return categorical_drift(name, profile, series, settings, thresholds)


def compute_drift(reference: DriftReference, frame: pd.DataFrame, *, predictions: Any = None,
                  labels: Any = None, settings: DriftSettings | None = None, thresholds: Thresholds | None = None,
                  window_start: datetime | None = None, window_end: datetime | None = None,
                  source: str = "") -> DriftResult:
    """Drift of every reference feature in ``frame``; predictions/labels when given and profiled."""
    settings = settings or DriftSettings()
    thresholds = thresholds or Thresholds()
    critical = set(settings.critical_features) if settings.critical_features is not None else None
    features: dict[str, FeatureDrift] = {}
    for name, profile in reference.features.items():
        # an empty window has no columns to speak of: it is insufficient data, not a missing feature
        series = frame[name] if name in frame.columns else (pd.Series([], dtype=object) if frame.empty else None)
        drift = profile_drift(name, profile, series, settings, thresholds)
        if critical is not None and name not in critical:
            drift.level = AlertLevel.GREEN  # reported, but only critical features set the level
        features[name] = drift
    prediction = label = None
    if predictions is not None and reference.prediction is not None:
        prediction = profile_drift("prediction", reference.prediction, pd.Series(np.asarray(predictions)),
                                   settings, thresholds, numeric_metric="prediction_ks")
    if labels is not None and reference.label is not None:
        label = profile_drift("label", reference.label, pd.Series(np.asarray(labels)), settings, thresholds)
        label.level = AlertLevel.GREEN  # label drift is reported; concept drift and decay raise the alerts
    return DriftResult(features=features, prediction=prediction, label=label, n=len(frame),
                       window_start=window_start, window_end=window_end, source=source)
