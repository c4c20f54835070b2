"""Fit statistics over a whole Ray Dataset equal the pandas fit on the same rows (SPEC S4.2)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlplatform.datasets.synthetic import FEATURES, make_churn
from mlplatform.features.ray_stats import fit_transform_on_dataset
from mlplatform.features.transform import TabularTransform, TransformConfig

pytestmark = pytest.mark.ray


def _assert_same_state(a: object, b: object, path: str = "") -> None:
    """Equal JSON trees; floats within 1e-9 relative (merged partials differ from one pass in the last bits)."""
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _assert_same_state(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_state(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_ray_data_fit_equals_pandas_fit_on_unequal_shards(ray_session: None) -> None:
    import ray

    df = make_churn(3000, seed=5)
    df["big"] = 1e9 + np.random.default_rng(0).normal(0, 1, len(df))  # naive E[x^2]-mean^2 would give sd ~1e-4
    features = [*FEATURES, "big"]
    config = TransformConfig(impute="median", buckets={"tenure_months": 5, "age": [30.0, 60.0]},
                             hash_columns={"region": 8})
    shards = [df.iloc[:7], df.iloc[7:2100], df.iloc[2100:2101], df.iloc[2101:]]
    on_ray = fit_transform_on_dataset(ray.data.from_pandas(shards), features, config)
    on_pandas = TabularTransform.fit(df, features, config)
    _assert_same_state(on_ray.to_dict(), on_pandas.to_dict())
    state = {s.name: s for s in on_ray.numeric}
    present = df["usage_gb"].dropna().to_numpy()
    # exact medians and quantile edges from the whole dataset, not from one block
    assert state["usage_gb"].fill == float(np.median(present))
    assert state["tenure_months"].bucket_edges == on_pandas.numeric[0].bucket_edges
    assert state["big"].std == pytest.approx(df["big"].std(ddof=0), rel=1e-9)
    # and therefore identical features
    batch = df.iloc[:500]
    np.testing.assert_allclose(on_ray.transform(batch), on_pandas.transform(batch), rtol=1e-6, atol=1e-6)
    assert on_ray.output_names == on_pandas.output_names
    pd.testing.assert_frame_equal(df.iloc[:3], make_churn(3000, seed=5).iloc[:3].assign(big=df["big"].iloc[:3]))
