"""Drift of features, predictions and labels between a stored reference profile and a window (SPEC S8.2, S8.3).

- PSI over the reference's own quantile bins (never equal-width or uniform ones), zero proportions replaced by
  epsilon 1e-4: with 1e-10 a single empty bin alone reads "significant".
- Numeric: KS two-sample against the stored reference sample (never a fitted normal); drift needs p < 0.05 *and*
  statistic >= 0.05, because at large n p-values alone flag negligible shifts.
- Categorical: categories under 1 % of the reference (or expected fewer than 5 times in the window) share one
  ``__rare__`` bin on both sides; chi-square homogeneity test over the kept categories, ``__rare__`` and
  ``__unseen__``, run only where every expected count is at least 5; PSI on the same pooled proportions.
- Many features at once: the KS and chi-square p-values of one window are corrected together (Benjamini-Hochberg,
  q = 0.05) and a PSI or KS-statistic level is set only for a test that stays significant after the correction:
  with 200 features, 10 uncorrected tests fire at p < 0.05 on unchanged data.
- Levels come from PSI (features) and the KS statistic (scores) only from 1,000 rows; below 100 rows a test is
  ``insufficient_data``. A feature missing from the window, or all NaN, is reported as such, never as "no drift".

A window is a pandas DataFrame or a ``pyarrow.Table``. Arrow columns are read in place (a float64 column without
nulls is a zero-copy numpy view; categories are counted by ``pyarrow.compute.value_counts``), so a million-row,
200-feature window is never copied whole. Each numeric column is sorted once and that one sort serves the KS
statistic, the PSI bin counts and the quartiles (benchmarks/drift.py holds this path to a direct numpy/scipy
computation and its peak memory to the window's Arrow size).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import special, stats

from mlplatform.entities import AlertLevel
from mlplatform.entities.levels import Thresholds, overall_level
from mlplatform.features.reference import (
    RARE,
    UNSEEN,
    DriftReference,
    bin_counts,
    pooled_counts,
    pooling_of,
    summary_statistics,
)
from mlplatform.features.schema import NUMERIC_KINDS, arrow_dtype_family

EPSILON = 1e-4
MIN_SAMPLES = 100
MIN_SAMPLES_FOR_LEVEL = 1000
P_VALUE = 0.05
KS_MIN_STATISTIC = 0.05
FDR_Q = 0.05
MIN_EXPECTED_CHI2 = 5.0
KS_EXACT_MAX_N = 10_000  # scipy's ks_2samp uses its exact distribution up to this size (its MAX_AUTO_N)

Column: TypeAlias = pd.Series | pa.ChunkedArray | pa.Array


@dataclass(frozen=True)
class DriftSettings:
    epsilon: float = EPSILON
    min_samples: int = MIN_SAMPLES
    min_samples_for_level: int = MIN_SAMPLES_FOR_LEVEL
    p_value: float = P_VALUE
    ks_min_statistic: float = KS_MIN_STATISTIC
    fdr_q: float = FDR_Q
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
    p_adjusted: float | None = None  # Benjamini-Hochberg over the window's tests
    drift: bool = False
    pooled: int = 0  # categories pooled into __rare__
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


def float_values(column: Column) -> np.ndarray:
    """A column as float64, nulls and unparseable values as NaN (``pd.to_numeric(errors="coerce")``). An Arrow
    float64 column without nulls comes back as a read-only view of its buffer, not a copy."""
    if isinstance(column, pa.ChunkedArray | pa.Array):
        # a column that reads as numbers (or bools) converts straight from its buffers; the rest goes the pandas way
        if arrow_dtype_family(column.type, column.null_count > 0) in NUMERIC_KINDS:
            return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
        column = column.to_pandas()
    return pd.to_numeric(column, errors="coerce").astype("float64").to_numpy()


def ks_two_sample(sample: np.ndarray, ordered: np.ndarray) -> tuple[float, float]:
    """``scipy.stats.ks_2samp(sample, window)`` (two-sided, method auto) from the already sorted window.

    scipy sorts both samples and evaluates both CDFs at every one of the n + m points (two binary searches per
    window row). Between two distinct reference values the reference CDF is flat and the window's CDF only rises,
    so the largest gap over that stretch is at one of its ends: the window's CDF at each reference value and just
    below it. Those 2m gaps are among scipy's n + m and bound all of them, so the statistic is the same number;
    the p-value is scipy's own (its exact distribution for small samples, Smirnov's asymptotic one above)."""
    n1, n2 = len(sample), len(ordered)
    if max(n1, n2) <= KS_EXACT_MAX_N:
        test = stats.ks_2samp(sample, ordered)
        return float(test.statistic), float(test.pvalue)
    reference = np.sort(sample)
    points = np.unique(reference)
    ref_cdf = np.searchsorted(reference, points, side="right") / n1
    ref_before = np.concatenate(([0.0], ref_cdf[:-1]))  # the reference CDF just below each point
    at = np.searchsorted(ordered, points, side="right") / n2
    below = np.searchsorted(ordered, points, side="left") / n2
    statistic = float(max(np.max(np.abs(ref_cdf - at)), np.max(np.abs(ref_before - below))))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    p_value = float(np.clip(stats.kstwo.sf(statistic, np.round(m * n / (m + n))), 0, 1))
    return statistic, p_value


def numeric_drift(name: str, profile: dict[str, Any], series: Column | None, settings: DriftSettings,
                  thresholds: Thresholds, level_metric: str = "psi") -> FeatureDrift:
    result = FeatureDrift(name=name, kind="numeric", status="missing", test="ks", bins=_bin_names(profile["edges"]),
                          reference_proportions=list(profile["proportions"]))
    if series is None:
        return result
    raw = float_values(series)
    finite = np.isfinite(raw)
    all_finite = bool(finite.all())
    values = raw if all_finite else raw[finite]
    result.missing_rate = float(1 - finite.mean()) if len(raw) else None
    result.n = len(values)
    del finite
    if len(raw) == 0 or len(values) == 0:
        result.status = "empty"
        return result
    ordered = np.sort(values)  # the one sort: KS, bin counts and quartiles all read it
    counts = bin_counts(ordered, profile["edges"], ordered=True)
    current = counts / counts.sum()
    result.current_proportions = current.tolist()
    result.stats = summary_statistics(values, ordered)
    if result.n < settings.min_samples:
        result.status = "insufficient_data"
        return result
    result.status = "ok"
    result.psi = psi(np.asarray(profile["proportions"]), current, settings.epsilon)
    result.psi_band = psi_band(result.psi)
    if profile.get("sample"):
        result.statistic, result.p_value = ks_two_sample(np.asarray(profile["sample"], dtype=np.float64), ordered)
        result.drift = result.p_value < settings.p_value and result.statistic >= settings.ks_min_statistic
    _set_level(result, settings, thresholds, level_metric)
    return result


def category_counts(column: Column) -> tuple[int, dict[str, int]]:
    """(rows, count per category) of a column, nulls left out; categories are named by ``str`` of the value, as
    the reference profile names them. Counted on the column's own values (``value_counts``) and only then named,
    so a million-row column is never turned into a million Python strings."""
    counts: dict[str, int] = {}
    if isinstance(column, pa.ChunkedArray | pa.Array):
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        for chunk in chunks:  # per chunk: dictionary chunks may each carry their own dictionary
            tally = pc.value_counts(chunk)
            for value, count in zip(tally.field("values").to_pylist(), tally.field("counts").to_pylist(),
                                    strict=True):
                if value is not None:
                    key = str(value)
                    counts[key] = counts.get(key, 0) + count
        return len(column), counts
    for value, count in column.value_counts(dropna=True).items():
        if count:
            key = str(value)
            counts[key] = counts.get(key, 0) + int(count)
    return len(column), counts


def categorical_drift(name: str, profile: dict[str, Any], series: Column | None, settings: DriftSettings,
                      thresholds: Thresholds) -> FeatureDrift:
    rows, counts = category_counts(series) if series is not None else (0, {})
    window_n = sum(counts.values())
    kept, pooled = pooling_of(profile, window_n)
    result = FeatureDrift(name=name, kind="categorical", status="missing", test="chi2",
                          bins=[*kept, RARE, UNSEEN], pooled=len(pooled))
    ref_counts = pooled_counts(profile["categories"], kept, pooled)
    result.reference_proportions = (ref_counts / max(ref_counts.sum(), 1)).tolist()
    if series is None:
        return result
    result.missing_rate = float(1 - window_n / rows) if rows else None
    result.n = window_n
    if rows == 0 or result.n == 0:
        result.status = "empty"
        return result
    cur_counts = pooled_counts(counts, kept, pooled)
    current = cur_counts / cur_counts.sum()
    result.current_proportions = current.tolist()
    if result.n < settings.min_samples:
        result.status = "insufficient_data"
        return result
    result.status = "ok"
    result.psi = psi(np.asarray(result.reference_proportions), current, settings.epsilon)
    result.psi_band = psi_band(result.psi)
    result.statistic, result.p_value = chi_square(ref_counts, cur_counts, rare_index=len(kept))
    result.drift = result.p_value is not None and result.p_value < settings.p_value
    _set_level(result, settings, thresholds, "psi")
    return result


def chi_square(ref_counts: np.ndarray, cur_counts: np.ndarray,
               rare_index: int | None = None) -> tuple[float | None, float | None]:
    """Chi-square homogeneity of two count vectors over the same bins; ``(None, None)`` where an expected count is
    under 5 (the chi-square approximation does not hold there and fired in 8.5 % of stationary windows at a
    nominal 5 %). Bins expected fewer than 5 times (a few unseen values, say) are first pooled into the bin at
    ``rare_index`` (``__rare__``), on both sides; a bin empty on both sides carries no information and is dropped."""
    table = np.vstack([ref_counts, cur_counts]).astype(np.float64)

    def expected_of(t: np.ndarray) -> np.ndarray:
        return np.outer(t.sum(axis=1), t.sum(axis=0)) / t.sum()

    if rare_index is not None:
        low = expected_of(table).min(axis=0) < MIN_EXPECTED_CHI2
        low[rare_index] = False
        if low.any():
            table[:, rare_index] += table[:, low].sum(axis=1)
            table = table[:, ~low]
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    if expected_of(table).min() < MIN_EXPECTED_CHI2:
        return None, None
    test = stats.chi2_contingency(table, correction=False)
    return float(test.statistic), float(test.pvalue)


def correct_for_fdr(results: list[FeatureDrift], settings: DriftSettings, thresholds: Thresholds) -> None:
    """Benjamini-Hochberg over the p-values of one window's tests (``scipy.stats.false_discovery_control``); each
    result's ``drift`` flag and level then use the adjusted p-value."""
    tested = [r for r in results if r.p_value is not None]
    if not tested:
        return
    adjusted = stats.false_discovery_control([r.p_value for r in tested], method="bh")
    for result, p_adj in zip(tested, adjusted, strict=True):
        result.p_adjusted = float(p_adj)
        result.drift = result.p_adjusted < settings.fdr_q and (
            result.test != "ks" or (result.statistic or 0.0) >= settings.ks_min_statistic)
        if result.level_metric is not None:
            _set_level(result, settings, thresholds, result.level_metric)


def _set_level(result: FeatureDrift, settings: DriftSettings, thresholds: Thresholds, metric: str) -> None:
    """The effect size (PSI or KS statistic) sets the level, and only once the test behind it is significant
    (after the false-discovery-rate correction, when it ran); a feature whose test could not run is judged by PSI
    alone."""
    result.level_metric = metric
    result.level = AlertLevel.GREEN
    value = result.statistic if metric == "prediction_ks" else result.psi
    if value is None or result.n < settings.min_samples_for_level:
        return  # below 1,000 rows sampling noise alone reaches YELLOW on stationary data
    p_value = result.p_adjusted if result.p_adjusted is not None else result.p_value
    if p_value is not None and p_value >= settings.fdr_q:
        return
    result.level = thresholds.level(metric, value)  # the row floor is settings.min_samples_for_level


def profile_drift(name: str, profile: dict[str, Any], series: Column | None, settings: DriftSettings,
                  thresholds: Thresholds, numeric_metric: str = "psi") -> FeatureDrift:
    if profile["kind"] == "numeric":
        return numeric_drift(name, profile, series, settings, thresholds, numeric_metric)
    return categorical_drift(name, profile, series, settings, thresholds)


def compute_drift(reference: DriftReference, frame: pd.DataFrame | pa.Table, *, predictions: Any = None,
                  labels: Any = None, settings: DriftSettings | None = None, thresholds: Thresholds | None = None,
                  window_start: datetime | None = None, window_end: datetime | None = None,
                  source: str = "") -> DriftResult:
    """Drift of every reference feature in ``frame`` (a DataFrame or an Arrow table, read column by column in
    place); predictions/labels when given and profiled."""
    settings = settings or DriftSettings()
    thresholds = thresholds or Thresholds()
    critical = set(settings.critical_features) if settings.critical_features is not None else None
    if isinstance(frame, pa.Table):
        columns, empty = set(frame.column_names), frame.num_rows == 0 or frame.num_columns == 0
    else:
        columns, empty = set(frame.columns), frame.empty
    features: dict[str, FeatureDrift] = {}
    for name, profile in reference.features.items():
        # an empty window has no columns to speak of: it is insufficient data, not a missing feature
        series = frame[name] if name in columns else (pd.Series([], dtype=object) if empty else None)
        features[name] = profile_drift(name, profile, series, settings, thresholds)
    prediction = label = None
    if predictions is not None and reference.prediction is not None:
        prediction = profile_drift("prediction", reference.prediction, pd.Series(np.asarray(predictions)),
                                   settings, thresholds, numeric_metric="prediction_ks")
    correct_for_fdr([*features.values(), *([prediction] if prediction is not None else [])], settings, thresholds)
    if critical is not None:
        for drift in features.values():
            if drift.name not in critical:
                drift.level = AlertLevel.GREEN  # reported, but only critical features set the level
    if labels is not None and reference.label is not None:
        label = profile_drift("label", reference.label, pd.Series(np.asarray(labels)), settings, thresholds)
        label.level = AlertLevel.GREEN  # label drift is reported; concept drift and decay raise the alerts
    return DriftResult(features=features, prediction=prediction, label=label, n=len(frame),
                       window_start=window_start, window_end=window_end, source=source)
