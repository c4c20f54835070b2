"""Fit statistics over a whole Ray Dataset (SPEC S4.2): never from one shard or batch.

Each block yields a mergeable partial (count, mean, M2, M3 per numeric column; category counts); the driver merges
them with Chan's update. Exact quantiles (a skewed column's median, quantile bin edges) take two more passes: a
fixed-edge histogram to find the bins that hold the wanted order statistics, then only the values in those bins.
The resulting :class:`FitStatistics` is the one the pandas fit builds, so :func:`fit_transform_on_dataset` gives
the same fitted state as :meth:`TabularTransform.fit` on the same rows.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from mlplatform.errors import InvalidInput
from mlplatform.features.rows import RowRules, coerced_frame
from mlplatform.features.schema import (
    MAX_CATEGORIES,
    FeatureSpec,
    arrow_logical_dtype,
    schema_from_json,
    schema_to_json,
)
from mlplatform.features.stats import ColumnStats, merge_all, quantile_ranks, quantiles_from_order_stats
from mlplatform.features.transform import FitStatistics, TabularTransform, TransformConfig

logger = logging.getLogger(__name__)

HISTOGRAM_BINS = 4096


def _partials(batch: pd.DataFrame, schema_json: str, missing_tokens: str = "[]") -> dict[str, np.ndarray]:
    schema = schema_from_json(json.loads(schema_json))
    frame = coerced_frame(batch, schema, RowRules.of(json.loads(missing_tokens)))
    part: dict[str, Any] = {"numeric": {}, "categories": {}, "nulls": {}}
    for spec in schema:
        raw_nulls = int(batch[spec.name].isna().sum())
        part["nulls"][spec.name] = raw_nulls
        if spec.is_numeric:
            part["numeric"][spec.name] = ColumnStats.of(frame[spec.name].to_numpy(dtype="float64")).model_dump()
        else:
            counts = frame[spec.name].value_counts(dropna=True)
            part["categories"][spec.name] = {str(k): int(v) for k, v in counts.items()}
    return {"partial": np.array([json.dumps(part)], dtype=object)}


def _bin_of(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Same arithmetic in both quantile passes, so a value always lands in the same bin."""
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.int64)
    idx = np.floor((values - lo) / (hi - lo) * HISTOGRAM_BINS).astype(np.int64)
    return np.clip(idx, 0, HISTOGRAM_BINS - 1)


def _histograms(batch: pd.DataFrame, ranges_json: str) -> dict[str, np.ndarray]:
    ranges = json.loads(ranges_json)
    out = {}
    for name, (lo, hi) in ranges.items():
        values = pd.to_numeric(batch[name], errors="coerce").to_numpy(dtype="float64")
        values = values[~np.isnan(values)]
        out[name] = np.bincount(_bin_of(values, lo, hi), minlength=HISTOGRAM_BINS).tolist()
    return {"partial": np.array([json.dumps(out)], dtype=object)}


def _values_in_bins(batch: pd.DataFrame, wanted_json: str) -> dict[str, np.ndarray]:
    wanted = json.loads(wanted_json)
    out = {}
    for name, spec in wanted.items():
        values = pd.to_numeric(batch[name], errors="coerce").to_numpy(dtype="float64")
        values = values[~np.isnan(values)]
        bins = _bin_of(values, spec["lo"], spec["hi"])
        keep = np.isin(bins, spec["bins"])
        out[name] = {"bins": bins[keep].tolist(), "values": values[keep].tolist()}
    return {"partial": np.array([json.dumps(out)], dtype=object)}


def _collect(ds: Any, fn: Any, **kwargs: str) -> list[dict[str, Any]]:
    # batch_size=None: one partial per block, however the blocks are sized (unequal shards merge exactly).
    rows = ds.map_batches(fn, fn_kwargs=kwargs, batch_format="pandas", batch_size=None).take_all()
    return [json.loads(r["partial"]) for r in rows]


class _DatasetQuantiles:
    """Exact linear quantiles over the whole dataset: two passes (histogram, then values in the wanted bins)
    for all requested columns together."""

    def __init__(self, ds: Any, numeric: dict[str, ColumnStats]) -> None:
        self._ds = ds
        self._numeric = numeric

    def __call__(self, wanted: dict[str, list[float]]) -> dict[str, list[float]]:
        result: dict[str, list[float]] = {}
        ranges: dict[str, tuple[float, float]] = {}
        for name, qs in wanted.items():
            st = self._numeric[name]
            if st.count == 0:
                result[name] = [float("nan")] * len(qs)
            elif st.min == st.max:
                result[name] = [float(st.min)] * len(qs)  # type: ignore[arg-type]
            else:
                ranges[name] = (float(st.min), float(st.max))  # type: ignore[arg-type]
        if not ranges:
            return result
        ds = self._ds.select_columns(list(ranges))
        hist: dict[str, np.ndarray] = {n: np.zeros(HISTOGRAM_BINS, dtype=np.int64) for n in ranges}
        for part in _collect(ds, _histograms, ranges_json=json.dumps(ranges)):
            for name, counts in part.items():
                hist[name] += np.asarray(counts, dtype=np.int64)
        plan: dict[str, Any] = {}
        for name, (lo, hi) in ranges.items():
            n = self._numeric[name].count
            cum = np.cumsum(hist[name])
            ranks = quantile_ranks(n, wanted[name])
            bins = sorted({int(np.searchsorted(cum, r, side="right")) for r in ranks})
            plan[name] = {"lo": lo, "hi": hi, "bins": bins, "ranks": ranks,
                          "before": {b: int(cum[b] - hist[name][b]) for b in bins}}
        gathered: dict[str, dict[int, list[float]]] = {n: defaultdict(list) for n in plan}
        wanted_bins = {n: {"lo": p["lo"], "hi": p["hi"], "bins": p["bins"]} for n, p in plan.items()}
        for part in _collect(ds, _values_in_bins, wanted_json=json.dumps(wanted_bins)):
            for name, got in part.items():
                for b, v in zip(got["bins"], got["values"], strict=True):
                    gathered[name][b].append(v)
        for name, p in plan.items():
            cum = np.cumsum(hist[name])
            sorted_bins = {b: sorted(vs) for b, vs in gathered[name].items()}
            order_stats = {}
            for r in p["ranks"]:
                b = int(np.searchsorted(cum, r, side="right"))
                order_stats[r] = sorted_bins[b][r - p["before"][b]]
            result[name] = quantiles_from_order_stats(order_stats, self._numeric[name].count, wanted[name])
        return result


def dataset_statistics(ds: Any, features: list[str],
                       missing_tokens: list[str] | tuple[str, ...] = ()) -> tuple[list[FeatureSpec], FitStatistics]:
    """The schema and fit statistics of ``features`` over every row of a Ray Dataset."""
    arrow_schema = ds.schema()
    names = list(arrow_schema.names)
    missing = [f for f in features if f not in names]
    if missing:
        raise InvalidInput(f"feature {missing[0]!r} is not a column of the dataset", field=missing[0])
    types = dict(zip(names, arrow_schema.types, strict=True))
    ds = ds.select_columns(features)
    # First pass with provisional dtypes (ints without nulls); the null counts it returns settle the final ones.
    provisional = [FeatureSpec(name=f, dtype=arrow_logical_dtype(types[f], has_nulls=False)) for f in features]
    parts = _collect(ds, _partials, schema_json=json.dumps(schema_to_json(provisional)),
                     missing_tokens=json.dumps(list(missing_tokens)))
    nulls = {f: sum(p["nulls"][f] for p in parts) for f in features}
    dtypes = {f: arrow_logical_dtype(types[f], nulls[f] > 0) for f in features}
    if any(dtypes[s.name] != s.dtype and "category" in (dtypes[s.name], s.dtype) for s in provisional):
        provisional = [FeatureSpec(name=f, dtype=dtypes[f]) for f in features]
        parts = _collect(ds, _partials, schema_json=json.dumps(schema_to_json(provisional)),
                     missing_tokens=json.dumps(list(missing_tokens)))
    numeric = {f: merge_all([ColumnStats(**p["numeric"][f]) for p in parts])
               for f in features if dtypes[f] != "category"}
    categories: dict[str, dict[str, int]] = {}
    for f in features:
        if dtypes[f] == "category":
            total: dict[str, int] = defaultdict(int)
            for p in parts:
                for k, v in p["categories"][f].items():
                    total[k] += v
            categories[f] = dict(total)
    schema = []
    for f in features:
        if dtypes[f] == "category":
            cats = sorted(categories[f])
            schema.append(FeatureSpec(name=f, dtype="category", nullable=True,
                                      categories=cats if len(cats) <= MAX_CATEGORIES else None))
        else:
            st = numeric[f]
            schema.append(FeatureSpec(name=f, dtype=dtypes[f], nullable=True, min=st.min, max=st.max))
    return schema, FitStatistics(numeric, categories, _DatasetQuantiles(ds, numeric))


def fit_transform_on_dataset(ds: Any, features: list[str], config: TransformConfig | None = None) -> TabularTransform:
    """:meth:`TabularTransform.fit` over a Ray Dataset: same statistics, so the same fitted state."""
    if ds.count() == 0:
        raise InvalidInput("cannot fit a transform on an empty training split", field="data")
    config = config or TransformConfig()
    schema, stats = dataset_statistics(ds, features, config.missing_tokens)
    transform = TabularTransform.from_statistics(schema, stats, config)
    logger.info("fitted transform on a Ray Dataset: %d features, %d outputs", len(features), transform.n_outputs)
    return transform
