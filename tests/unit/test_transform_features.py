"""TabularTransform: hashing, crosses, bucketing, configured imputation, stats, persistence and compatibility."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlplatform.datasets.synthetic import FEATURES, make_churn
from mlplatform.errors import InvalidInput
from mlplatform.features.stats import ColumnStats, merge_all, sorted_quantiles
from mlplatform.features.transform import CrossSpec, TabularTransform, TransformConfig, stable_buckets


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return make_churn(1500, seed=11)


FULL = TransformConfig(hash_columns={"region": 8}, buckets={"age": [30, 50, 70], "tenure_months": 4},
                       crosses=[CrossSpec(columns=["plan", "age"], buckets=16)],
                       impute_columns={"usage_gb": "median", "monthly_charges": 0.5, "plan": "most_frequent"})


def test_default_transform_keeps_its_contract(churn: pd.DataFrame) -> None:
    t = TabularTransform.fit(churn, FEATURES)
    x = t.transform(churn)
    assert x.dtype == np.float32 and x.shape == (len(churn), t.n_outputs) == (len(churn), len(t.output_names))
    assert t.output_names[:3] == ["tenure_months", "monthly_charges", "monthly_charges__missing"]
    assert "plan=__other__" in t.output_names and not any("#" in n for n in t.output_names)
    # standard scaling: training columns centred with unit population sd
    col = t.output_names.index("age")
    assert abs(float(x[:, col].mean())) < 1e-5 and abs(float(x[:, col].std()) - 1) < 1e-4
    assert t.category_codes(churn).shape == (len(churn), 3) and t.cardinalities == [3, 4, 3]


def test_version1_artifact_still_loads(churn: pd.DataFrame) -> None:
    t = TabularTransform.fit(churn, FEATURES)
    old = t.to_dict()
    old["version"] = 1
    old.pop("crosses")
    for state in old["numeric"]:
        for key in ("fill_rule", "constant", "missing_in_fit", "bucket_edges"):
            state.pop(key)
    for state in old["categorical"]:
        state.pop("hash_buckets")
        state.pop("fill")
    for key in ("impute_columns", "min_category_count", "indicator_columns", "hash_columns", "hash_above",
                "hash_buckets", "buckets", "crosses"):
        old["config"].pop(key)
    loaded = TabularTransform.from_dict(json.loads(json.dumps(old)))
    assert np.array_equal(loaded.transform(churn), t.transform(churn))
    with pytest.raises(InvalidInput, match="version"):
        TabularTransform.from_dict({**old, "version": 99})


def test_hashing_crosses_buckets_and_imputation(churn: pd.DataFrame, tmp_path: Path) -> None:
    t = TabularTransform.fit(churn, FEATURES, FULL)
    names = t.output_names
    assert [n for n in names if n.startswith("age#")] == [f"age#bin{i}" for i in range(4)]
    assert sum(n.startswith("region#h") for n in names) == 8 and "region=__other__" not in names
    assert sum(n.startswith("plan_x_age#h") for n in names) == 16
    x = t.transform(churn)
    # every one-hot group sums to exactly one per row
    for prefix in ("age#bin", "tenure_months#bin", "region#h", "plan_x_age#h", "plan="):
        cols = [i for i, n in enumerate(names) if n.startswith(prefix)]
        assert np.all(x[:, cols].sum(axis=1) == 1.0), prefix
    # four quantile bins of tenure hold about a quarter each
    tenure = x[:, [i for i, n in enumerate(names) if n.startswith("tenure_months#bin")]].sum(axis=0)
    assert tenure.min() > 0.2 * len(churn)
    states = {s.name: s for s in t.numeric}
    assert states["usage_gb"].fill_rule == "median"
    assert states["usage_gb"].fill == float(churn["usage_gb"].median())
    assert (states["monthly_charges"].fill, states["monthly_charges"].fill_rule) == (0.5, "constant")
    # a missing plan takes the most frequent category, not the OOV slot
    row = churn.iloc[[0]].copy()
    row["plan"] = None
    basic = t.transform(row)[0, names.index("plan=basic")]
    assert basic == 1.0 and t.transform(row)[0, names.index("plan=__other__")] == 0.0
    # the hashed schema has no closed category list, and a save/load round trip is byte-identical
    assert next(s for s in t.schema if s.name == "region").categories is None
    t.save(tmp_path)
    assert np.array_equal(TabularTransform.load(tmp_path).transform(churn), x)
    assert t.category_codes(churn)[:, 1].min() >= 1 and t.cardinalities[1] == 8


def test_one_row_alone_equals_the_same_row_in_a_batch_and_input_is_not_modified(churn: pd.DataFrame) -> None:
    t = TabularTransform.fit(churn, FEATURES, FULL)
    batch = churn.iloc[:200]
    before = batch.copy()
    full = t.transform(batch)
    assert all(np.array_equal(t.transform(batch.iloc[[i]])[0], full[i]) for i in (0, 7, 199))
    pd.testing.assert_frame_equal(batch, before)


def test_unseen_categories_missing_values_and_zero_at_a_bin_edge() -> None:
    train = pd.DataFrame({"income": [0.0, 10.0, 20.0, 30.0], "city": ["a", "b", "a", "c"]})
    t = TabularTransform.fit(train, ["income", "city"],
                             TransformConfig(buckets={"income": [0.0, 15.0]}, hash_columns={}))
    test = pd.DataFrame({"income": [0.0, -1.0, 15.0, np.nan], "city": ["zzz", None, "a", np.nan]})
    x = t.transform(test)
    names = t.output_names
    bins = x[:, [names.index(f"income#bin{i}") for i in range(3)]]
    # lowest edge inclusive ([0, 15) holds 0), open outer bins (-1 and 15 still land), missing -> the fill's bin
    assert bins.argmax(axis=1).tolist()[:3] == [1, 0, 2] and bins.sum(axis=1).tolist() == [1, 1, 1, 1]
    other = x[:, names.index("city=__other__")]
    assert other.tolist() == [1.0, 1.0, 0.0, 1.0]  # unseen and missing go to the OOV slot
    assert not np.isnan(x).any()


def test_all_missing_and_constant_columns_and_wrong_dtypes() -> None:
    train = pd.DataFrame({"empty": [np.nan] * 4, "const": [5.0] * 4, "x": [1.0, 2.0, 3.0, 4.0]})
    t = TabularTransform.fit(train, ["empty", "const", "x"])
    states = {s.name: s for s in t.numeric}
    assert states["const"].constant and states["const"].std == 1.0 and states["const"].mean == 5.0
    assert states["empty"].indicator and states["empty"].fill == 0.0
    x = t.transform(pd.DataFrame({"empty": [1.0], "const": [6.0], "x": [2.0]}))
    assert x[0, t.output_names.index("const")] == 1.0  # one unit off stays one unit, never 10,000
    with pytest.raises(InvalidInput) as info:
        t.transform(pd.DataFrame({"empty": [1.0], "const": ["abc"], "x": [2.0]}))
    assert info.value.field == "const"


def test_config_errors_name_the_field(churn: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput) as info:
        TabularTransform.fit(churn, FEATURES, TransformConfig(hash_columns={"age": 8}))
    assert info.value.field == "hash_columns"
    with pytest.raises(InvalidInput) as info:
        TabularTransform.fit(churn, FEATURES, TransformConfig(crosses=[CrossSpec(columns=["plan", "age"])]))
    assert info.value.field == "crosses"
    with pytest.raises(ValueError, match="strictly increasing"):
        TransformConfig(buckets={"age": [3, 1]})


def test_hash_above_and_stable_hash_values() -> None:
    train = pd.DataFrame({"id": [f"u{i}" for i in range(300)], "x": np.arange(300.0)})
    t = TabularTransform.fit(train, ["id", "x"], TransformConfig(hash_above=100, hash_buckets=32))
    assert t.categorical[0].hash_buckets == 32 and t.categorical[0].vocabulary == []
    # BLAKE2b of "salt\x1fvalue", not Python's per-process salted hash(): a pinned value stays pinned
    assert stable_buckets(pd.Series(["u1"]), 1 << 30, "id")[0] == 662453632
    unseen = t.transform(pd.DataFrame({"id": ["never-seen", None], "x": [1.0, 2.0]}))
    assert unseen[:, 2:].sum(axis=1).tolist() == [1.0, 1.0]  # unseen and missing ids still land in a bucket


@pytest.mark.parametrize("offset", [0.0, 1e9])
def test_mergeable_stats_match_numpy_with_unequal_shards(offset: float) -> None:
    rng = np.random.default_rng(3)
    values = offset + rng.normal(0, 1, 10_001)
    values[::97] = np.nan
    parts = [ColumnStats.of(values[a:b]) for a, b in [(0, 3), (3, 4000), (4000, 4001), (4001, 10_001)]]
    total = merge_all(parts)
    present = values[~np.isnan(values)]
    assert total.count == present.size and total.missing == int(np.isnan(values).sum())
    assert total.mean == pytest.approx(present.mean(), rel=1e-9)
    assert total.std == pytest.approx(present.std(), rel=1e-9)  # ~1 near 1e9, not 1e-4
    # skewness only decides mean vs median imputation (|skew| > 1): 1e-3 is plenty; near 1e9 the rounding of the
    # mean itself (ulp 1.2e-7) biases the third moment of a nearly symmetric column at the 1e-5 level
    assert total.skew == pytest.approx(float(pd.Series(present - offset).skew()), rel=1e-3, abs=1e-9)
    assert sorted_quantiles(np.sort(present), [0.5])[0] == float(np.median(present))


def test_predictor_with_full_transform_gives_row_alone_equal_to_batch(churn: pd.DataFrame, tmp_path: Path) -> None:
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact
    from mlplatform.predictor import Predictor

    fit_sklearn_artifact(churn.iloc[:600], target="churned", features=FEATURES, family="logistic",
                         out_dir=tmp_path, transform_config=FULL)
    predictor = Predictor.from_dir(tmp_path)
    batch = churn.iloc[1000:1100]
    rows = range(0, 100, 9)
    features = predictor.transform.transform(batch)
    assert all(np.array_equal(predictor.transform.transform(batch.iloc[[i]])[0], features[i]) for i in rows)
    together = predictor.predict(batch).probabilities
    alone = np.vstack([predictor.predict(batch.iloc[[i]]).probabilities for i in rows])
    # features are byte-identical, and the Predictor hands sklearn float64, so batch size changes nothing
    assert together is not None and np.array_equal(alone, together[::9])
