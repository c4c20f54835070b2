"""The reference profile of a model version's training split (SPEC S8.1), saved as ``drift_reference.json``.

It is computed once, when the artifact is written, and monitoring reads only this file: the raw training data
may be gone (or changed) by the time a window is checked, and recomputing would silently move the baseline.

Numeric bins are right-closed on the stored *inner* edges: bin 0 is (-inf, e0], bin i is (e[i-1], e[i]], the last
bin is (e[-1], +inf). Storing only inner edges keeps the file strict JSON (no Infinity) while the outer edges are
still ±inf, so values beyond the training range fall into the outer bins instead of being dropped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlplatform.errors import IntegrityError, InvalidInput
from mlplatform.features.schema import dtype_family, is_number_family

logger = logging.getLogger(__name__)

REFERENCE_FILE = "drift_reference.json"
REFERENCE_FORMAT_VERSION = 1
N_BINS = 10
SAMPLE_SIZE = 10_000
UNSEEN = "__unseen__"
RARE = "__rare__"
RARE_SHARE = 0.01  # categories under 1 % of the reference share one bin (SPEC S8.1)
MIN_EXPECTED = 5  # ... and so do those expected fewer than 5 times in the monitoring window


def is_numeric_series(series: pd.Series) -> bool:
    return is_number_family(dtype_family(series))


def quantile_edges(values: np.ndarray, n_bins: int = N_BINS) -> list[float]:
    """Inner edges at the deciles, duplicates merged; one bin per value when there are <= n_bins values."""
    distinct = np.unique(values)
    if len(distinct) <= n_bins:
        # each distinct value closes its own right-closed bin; the largest falls in the (e[-1], inf) bin
        return [float(v) for v in distinct[:-1]]
    edges = np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1])
    return [float(v) for v in np.unique(edges)]


def bin_counts(values: np.ndarray, edges: list[float], *, ordered: bool = False) -> np.ndarray:
    """Counts per right-closed bin; ``len(edges) + 1`` bins. With ``ordered`` (``values`` already sorted, as the
    KS test needs them) the counts come from ``len(edges)`` binary searches instead of one per value."""
    inner = np.asarray(edges, dtype=np.float64)
    if ordered:
        at_or_below = np.searchsorted(values, inner, side="right")  # values <= each edge
        return np.diff(at_or_below, prepend=0, append=len(values)).astype(np.int64)
    index = np.searchsorted(inner, values, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def numeric_profile(series: pd.Series, *, seed: int = 0, sample_size: int = SAMPLE_SIZE) -> dict[str, Any]:
    raw = pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()
    missing = ~np.isfinite(raw)
    values = raw[~missing]
    profile: dict[str, Any] = {"kind": "numeric", "n": len(values),
                               "missing_rate": float(missing.mean()) if len(raw) else 0.0}
    if len(values) == 0:
        return profile | {"edges": [], "counts": [0], "proportions": [0.0], "stats": {}, "sample": []}
    edges = quantile_edges(values)
    counts = bin_counts(values, edges)
    rng = np.random.default_rng(seed)
    sample = values if len(values) <= sample_size else rng.choice(values, sample_size, replace=False)
    return profile | {
        "edges": edges, "counts": counts.tolist(), "proportions": (counts / counts.sum()).tolist(),
        "stats": summary_statistics(values), "sample": [float(v) for v in sample],
    }


def categorical_profile(series: pd.Series, *, rare_share: float = RARE_SHARE) -> dict[str, Any]:
    """Category counts, plus the categories pooled into ``__rare__`` (share under ``rare_share``).

    A 300-category feature has many categories seen a handful of times; compared one by one, their sampling noise
    alone makes PSI "significant" on unchanged data. The pooled set is stored so that every window is pooled the
    same way (:func:`pooled_counts`)."""
    missing = series.isna()
    values = series[~missing].astype(str)
    counts = values.value_counts()
    total = int(counts.sum())
    pooled = sorted(str(k) for k, v in counts.items() if total and v / total < rare_share)
    return {
        "kind": "categorical", "n": total, "missing_rate": float(missing.mean()) if len(series) else 0.0,
        "categories": {str(k): int(v) for k, v in counts.items()},
        "proportions": {str(k): float(v / total) for k, v in counts.items()} if total else {},
        "pooling": {"rare_share": rare_share, "min_expected": MIN_EXPECTED, "pooled": pooled},
    }


def pooling_of(profile: dict[str, Any], window_n: int) -> tuple[list[str], set[str]]:
    """The bins a window is compared on: the kept reference categories (in profile order) and the set pooled into
    ``__rare__``: those pooled at profile time plus those expected fewer than ``min_expected`` times in a window of
    ``window_n`` rows. Profiles written before pooling existed are pooled here with the same defaults."""
    categories: dict[str, int] = profile["categories"]
    total = max(sum(categories.values()), 1)
    pooling = profile.get("pooling") or {}
    share = float(pooling.get("rare_share", RARE_SHARE))
    min_expected = float(pooling.get("min_expected", MIN_EXPECTED))
    pooled = set(pooling.get("pooled", [c for c, v in categories.items() if v / total < share]))
    pooled |= {c for c, v in categories.items() if window_n * v / total < min_expected}
    return [c for c in categories if c not in pooled], pooled


def pooled_counts(counts: pd.Series | dict[str, int], kept: list[str], pooled: set[str]) -> np.ndarray:
    """Counts over ``[*kept, __rare__, __unseen__]``: the same pooling for reference and window."""
    counts = dict(counts)
    rare = sum(v for k, v in counts.items() if k in pooled)
    known = set(kept) | pooled
    unseen = sum(v for k, v in counts.items() if k not in known)
    return np.array([counts.get(c, 0) for c in kept] + [rare, unseen], dtype=np.float64)


def profile_series(series: pd.Series, *, seed: int = 0) -> dict[str, Any]:
    return numeric_profile(series, seed=seed) if is_numeric_series(series) else categorical_profile(series)


def summary_statistics(values: np.ndarray, ordered: np.ndarray | None = None) -> dict[str, float]:
    """count, mean, sd, quartiles, median, MAD, skew and kurtosis (SPEC S8.1, S8.4), NaN-free input.

    ``ordered`` (``values`` sorted, when the caller has them) gives the quartiles, min and max by position instead
    of three more passes over a million-row window; the figures are the same."""
    if len(values) == 0:
        return {"count": 0}
    if ordered is None:
        q25, median, q75 = np.quantile(values, [0.25, 0.5, 0.75])
        low, high = np.min(values), np.max(values)
    else:
        q25, median, q75 = _linear_quantiles(ordered, (0.25, 0.5, 0.75))
        low, high = ordered[0], ordered[-1]
    spread = len(values) > 2 and float(high - low) > 0
    return {
        "count": len(values), "mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1))
        if len(values) > 1 else 0.0, "min": float(low), "q25": float(q25), "median": float(median),
        "q75": float(q75), "max": float(high),
        "mad": float(stats.median_abs_deviation(values)),
        "skew": float(stats.skew(values)) if spread else 0.0,
        "kurtosis": float(stats.kurtosis(values)) if spread else 0.0,
    }


def _linear_quantiles(ordered: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.quantile(..., method="linear")`` of sorted values, read by position: numpy's own index and
    interpolation arithmetic (its ``_lerp``), so the results are bit-identical without a partition pass."""
    n = len(ordered)
    out = []
    for q in qs:
        virtual = q * (n - 1)
        below = min(int(np.floor(virtual)), n - 1)
        above = min(below + 1, n - 1)
        t = virtual - below
        a, b = float(ordered[below]), float(ordered[above])
        diff = b - a
        out.append(b - diff * (1 - t) if t >= 0.5 else a + diff * t)
    return out


@dataclass(frozen=True)
class DriftReference:
    """The loaded profile; ``features`` maps a name to its numeric or categorical profile."""

    features: dict[str, dict[str, Any]]
    prediction: dict[str, Any] | None
    label: dict[str, Any] | None
    n_rows: int
    raw: dict[str, Any]

    @property
    def calibration(self) -> dict[str, Any] | None:
        return self.raw.get("calibration")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReference:
        if data.get("format_version") != REFERENCE_FORMAT_VERSION or "features" not in data:
            raise IntegrityError("drift reference has an unknown format", field="drift_reference")
        return cls(features=data["features"], prediction=data.get("prediction"), label=data.get("label"),
                   n_rows=int(data.get("n_rows", 0)), raw=data)


def build_drift_reference(train_df: pd.DataFrame, features: list[str], predictions: Any = None,
                          labels: Any = None, *, seed: int = 0, prediction_source: str = "training",
                          calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """The profile as a JSON-ready dict. Features and ``labels`` (the target) profile ``train_df``, the training
    split. ``predictions`` are scores (e.g. the positive-class probability) or predicted labels on *held-out*
    rows (``prediction_source`` says which: "validation" or "out_of_fold"); an overfit model's scores on its own
    training rows differ from its scores on any fresh data. ``calibration`` (held-out too) is what label-free
    performance estimation reads."""
    missing = [f for f in features if f not in train_df.columns]
    if missing:
        raise InvalidInput(f"features {missing} are not columns of the training data", field="features")
    profile: dict[str, Any] = {
        "format_version": REFERENCE_FORMAT_VERSION, "n_rows": len(train_df), "seed": seed,
        "n_bins": N_BINS, "features": {f: profile_series(train_df[f], seed=seed) for f in features},
    }
    if predictions is not None:
        profile["prediction"] = profile_series(pd.Series(np.asarray(predictions)), seed=seed)
        profile["prediction"]["source"] = prediction_source
    if calibration is not None:
        profile["calibration"] = calibration
    if labels is not None:
        label_series = pd.Series(np.asarray(labels))
        # class labels are categories even when stored as 0/1; a regression target is a numeric profile
        profile["label"] = categorical_profile(label_series, rare_share=0.0) if label_series.nunique() <= 50 \
            else numeric_profile(label_series, seed=seed)
    return profile


def write_drift_reference(artifact_dir: Path | str, train_df: pd.DataFrame, features: list[str],
                          predictions: Any = None, labels: Any = None, *, seed: int = 0,
                          prediction_source: str = "training", calibration: dict[str, Any] | None = None) -> Path:
    """Write ``drift_reference.json`` into a model artifact directory (called by training code)."""
    path = Path(artifact_dir) / REFERENCE_FILE
    data = build_drift_reference(train_df, features, predictions, labels, seed=seed,
                                 prediction_source=prediction_source, calibration=calibration)
    path.write_text(json.dumps(data, allow_nan=False, separators=(",", ":")))
    logger.info("wrote drift reference for %d features (%d rows) to %s", len(features), len(train_df), path)
    return path


def load_drift_reference(artifact_dir: Path | str) -> DriftReference | None:
    """The stored profile, or None for artifacts written before profiles existed."""
    path = Path(artifact_dir) / REFERENCE_FILE
    if not path.is_file():
        return None
    try:
        return DriftReference.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError) as exc:
        raise IntegrityError(f"{path} is not a valid drift reference: {exc}", field="drift_reference") from exc
