"""scikit-learn's bundled datasets (no download) as DataFrames with a target, entity ids and event times.

``load_sklearn_dataset("breast_cancer" | "wine" | "digits")`` -> ``(frame, target_name)``. Column names are made
safe identifiers (``mean radius`` -> ``mean_radius``); each row gets an entity id (``<prefix>-000001``) and a seeded
synthetic ``event_time``, sorted ascending like the churn generator, so the same frame feeds training, the feature
store (point-in-time joins) and monitoring. The rows keep sklearn's order; only the event times are synthetic.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from mlplatform.errors import InvalidInput

TARGET = "target"
ENTITY = "entity_id"
EVENT_TIME = "event_time"


def _loaders() -> dict[str, Callable[..., Any]]:
    # heavy: scikit-learn loads only when an estimator is built or scored
    from sklearn import datasets

    return {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine, "digits": datasets.load_digits}


DATASETS = ("breast_cancer", "wine", "digits")


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", str(name)).strip("_").lower()


def load_sklearn_dataset(name: str, *, seed: int = 0, start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
                         span_days: int = 60) -> tuple[pd.DataFrame, str]:
    """One of :data:`DATASETS` (a ``sklearn_`` prefix is accepted, as in ``data.source: sklearn_wine``)."""
    key = name.removeprefix("sklearn_")
    if key not in DATASETS:
        raise InvalidInput(f"unknown sklearn dataset {name!r}; one of {', '.join(DATASETS)}", field="name")
    bunch = _loaders()[key]()
    columns = [_safe(c) for c in bunch.feature_names]
    frame = pd.DataFrame(np.asarray(bunch.data, dtype="float64"), columns=columns)
    n_rows = len(frame)
    rng = np.random.default_rng(seed)
    minutes = np.sort(rng.integers(0, 60 * 24 * span_days, n_rows))
    frame.insert(0, EVENT_TIME, pd.to_datetime([start + timedelta(minutes=int(m)) for m in minutes], utc=True))
    frame.insert(0, ENTITY, [f"{key}-{i:06d}" for i in range(n_rows)])
    frame[TARGET] = np.asarray(bunch.target, dtype="int64")
    return frame, TARGET


def feature_columns(frame: pd.DataFrame, target: str = TARGET) -> list[str]:
    """The model inputs of a loaded frame: everything but the entity id, the event time and the target."""
    return [c for c in frame.columns if c not in (ENTITY, EVENT_TIME, target)]
