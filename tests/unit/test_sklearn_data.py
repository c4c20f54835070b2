"""sklearn's bundled datasets as frames with a target, entity ids and event times (no download)."""

from __future__ import annotations

import pandas as pd
import pytest

from mlplatform.datasets.sklearn_data import DATASETS, feature_columns, load_sklearn_dataset
from mlplatform.errors import InvalidInput


@pytest.mark.parametrize(("name", "rows", "n_features", "classes"),
                         [("breast_cancer", 569, 30, 2), ("wine", 178, 13, 3), ("sklearn_digits", 1797, 64, 10)])
def test_loaders(name: str, rows: int, n_features: int, classes: int) -> None:
    frame, target = load_sklearn_dataset(name)
    assert target == "target" and len(frame) == rows and frame[target].nunique() == classes
    features = feature_columns(frame, target)
    assert len(features) == n_features and all(c.isidentifier() for c in features)
    assert frame["entity_id"].is_unique and frame["event_time"].is_monotonic_increasing
    assert str(frame["event_time"].dt.tz) == "UTC" and frame[features].notna().all().all()
    again, _ = load_sklearn_dataset(name)
    pd.testing.assert_frame_equal(frame, again)  # seeded: the same frame every time
    assert not load_sklearn_dataset(name, seed=1)[0]["event_time"].equals(frame["event_time"])


def test_unknown_name_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="breast_cancer"):
        load_sklearn_dataset("iris")
    assert DATASETS == ("breast_cancer", "wine", "digits")
