"""SMOTE-like oversampling of the training split (SPEC S2.10).

A synthetic row is a random row of a small class moved part of the way towards one of its ``k`` nearest neighbours
of the same class: ``base + u * (neighbour - base)`` with ``u ~ U(0, 1)``, on the numeric features only.
Categorical and boolean features and every non-feature column (ids, timestamps, the label) are copied from the base
row, because interpolating them would invent values that do not exist; integer columns are rounded back to integers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mlplatform.errors import InvalidInput
from mlplatform.features.schema import dtype_family, logical_dtype


def numeric_features(frame: pd.DataFrame, features: list[str]) -> list[str]:
    """Features SMOTE interpolates: float and integer columns (booleans are copied like categories)."""
    return [name for name in features if name in frame.columns and logical_dtype(frame[name]) in {"float", "int"}]


def smote(frame: pd.DataFrame, target: str, features: list[str], ratio: float, k_neighbors: int,
          seed: int) -> tuple[pd.DataFrame, int]:
    """``frame`` plus synthetic rows so that every class holds at least ``ceil(ratio x majority)`` rows, shuffled
    (seeded), and the number of synthetic rows. Every original row is kept; synthetic rows carry their base row's
    index label, as oversampled copies do."""
    if not 0.0 < ratio <= 1.0:
        raise InvalidInput(f"rebalance.ratio must be in (0, 1], got {ratio}", field="rebalance.ratio")
    if k_neighbors < 1:
        raise InvalidInput(f"rebalance.k_neighbors must be >= 1, got {k_neighbors}", field="rebalance.k_neighbors")
    numeric = numeric_features(frame, features)
    if not numeric:
        raise InvalidInput("rebalance.strategy smote interpolates numeric features and this data has none; use "
                           "strategy: oversample", field="rebalance.strategy")
    counts = frame[target].value_counts().sort_index()
    if len(counts) < 2:
        return frame, 0
    wanted = math.ceil(ratio * counts.max())
    short = {label: int(n) for label, n in counts.items() if n < wanted}
    for label, n in short.items():
        if n < k_neighbors + 1:
            raise InvalidInput(f"rebalance.strategy smote needs at least k_neighbors + 1 = {k_neighbors + 1} rows "
                               f"of every class it grows; class {label!r} has {n} in the training split. Lower "
                               "rebalance.k_neighbors or use strategy: oversample", field="rebalance.k_neighbors")
    if not short:
        return frame, 0

    rng = np.random.default_rng(seed)
    values = frame[numeric].astype("float64").to_numpy()
    scaled = _distance_space(values)
    labels = frame[target].to_numpy()
    synthetic: list[pd.DataFrame] = []
    for label, n in short.items():
        positions = np.flatnonzero(labels == label)
        neighbours = _nearest(scaled[positions], k_neighbors)
        m = wanted - n
        base = rng.integers(0, n, size=m)
        other = neighbours[base, rng.integers(0, k_neighbors, size=m)]
        gap = rng.random(m)[:, None]
        start, end = values[positions[base]], values[positions[other]]
        # A missing value on either side keeps the base row's value (missing or not): no value is made up.
        mixed = np.where(np.isnan(start) | np.isnan(end), start, start + gap * (end - start))
        rows = frame.iloc[positions[base]].copy()
        for j, name in enumerate(numeric):
            rows[name] = _like(frame[name], mixed[:, j])
        synthetic.append(rows)
    combined = pd.concat([frame, *synthetic])
    order = rng.permutation(len(combined))
    return combined.iloc[order], len(combined) - len(frame)


def _distance_space(values: np.ndarray) -> np.ndarray:
    """Standardised numeric features with missing values at the column median, for the neighbour search only."""
    with np.errstate(all="ignore"):
        median = np.nanmedian(values, axis=0) if len(values) else np.zeros(values.shape[1])
    median = np.where(np.isnan(median), 0.0, median)  # an all-missing column carries no distance
    filled = np.where(np.isnan(values), median, values)
    std = filled.std(axis=0)
    return (filled - filled.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _nearest(points: np.ndarray, k: int) -> np.ndarray:
    """(n, k) positions of each point's k nearest other points."""
    # heavy: scikit-learn loads only when an estimator is built or scored
    from sklearn.neighbors import NearestNeighbors

    n = len(points)
    found = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points, return_distance=False)
    own = found == np.arange(n)[:, None]
    # Exact duplicates can push a point out of its own k + 1 list; then drop the farthest instead.
    own[~own.any(axis=1), -1] = True
    return found[~own].reshape(n, k)


def _like(column: pd.Series, values: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``values`` in ``column``'s dtype; integer columns are rounded so that they stay integers. An array, not a
    Series, so that assigning it never aligns on the (possibly repeated) index labels."""
    if dtype_family(column) == "int":
        values = np.rint(values)
    return pd.Series(values).astype(column.dtype).array
