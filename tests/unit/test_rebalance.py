"""Class rebalancing (SPEC S2.10): only the training split is resampled, seeded, to the configured ratio."""

from __future__ import annotations

import pandas as pd
import pytest

from mlplatform.config.train import train_config_from_dict
from mlplatform.datasets.synthetic import make_churn
from mlplatform.errors import ConfigError, InvalidInput
from mlplatform.learning.data import split_data
from mlplatform.training.rebalance import rebalance_splits, resample
from mlplatform.training.smote import smote


def _config(strategy: str, ratio: float = 1.0, **extra: object) -> object:
    return train_config_from_dict({"model_name": "churn", "seed": 5, "model": {"family": "logistic"},
                                   "rebalance": {"strategy": strategy, "ratio": ratio}, **extra})


def _imbalanced(n_rows: int, seed: int) -> pd.DataFrame:
    """Churn data keeping one churner in eight: roughly 1:10."""
    frame = make_churn(n_rows, seed=seed)
    churners = frame[frame["churned"] == 1]
    return pd.concat([frame[frame["churned"] == 0], churners.iloc[: len(churners) // 8]]).sort_index()


def _counts(frame: pd.DataFrame) -> dict[int, int]:
    return frame["churned"].value_counts().to_dict()


@pytest.mark.parametrize(("strategy", "ratio"), [("oversample", 1.0), ("oversample", 0.5), ("undersample", 1.0),
                                                 ("undersample", 0.5)])
def test_only_the_training_split_is_resampled_to_the_ratio(strategy: str, ratio: float) -> None:
    config = _config(strategy, ratio)
    frame = _imbalanced(3000, seed=1)
    original = split_data(frame, config)
    before = _counts(original.train)
    assert min(before.values()) / max(before.values()) < 0.5 * ratio  # imbalanced to begin with

    splits, summary = rebalance_splits(original, config)
    after = _counts(splits.train)
    assert min(after.values()) / max(after.values()) == pytest.approx(ratio, abs=0.01)
    minority, majority = min(before, key=before.get), max(before, key=before.get)
    if strategy == "oversample":  # every original row kept, the minority grows, the majority is untouched
        assert after[majority] == before[majority] and after[minority] > before[minority]
        assert set(splits.train.index) == set(original.train.index)
    else:  # a subset of the majority rows; the minority is untouched
        assert after[minority] == before[minority] and after[majority] < before[majority]
        assert set(splits.train.index) < set(original.train.index)
    # Validation and test are the very same rows, in the same order.
    pd.testing.assert_frame_equal(splits.validation, original.validation)
    pd.testing.assert_frame_equal(splits.test, original.test)
    assert summary["class_counts_after"] == {str(k): v for k, v in sorted(after.items())}


def test_resampling_is_seeded() -> None:
    frame = _imbalanced(1000, seed=2)
    first = resample(frame, "churned", "oversample", 1.0, seed=9)
    assert first.index.tolist() == resample(frame, "churned", "oversample", 1.0, seed=9).index.tolist()
    assert first.index.tolist() != resample(frame, "churned", "oversample", 1.0, seed=10).index.tolist()


def test_none_and_class_weight_leave_the_splits_alone() -> None:
    frame = make_churn(1000, seed=2)
    for strategy in ("none", "class_weight"):
        config = _config(strategy)
        original = split_data(frame, config)
        assert rebalance_splits(original, config)[0] is original
    assert _config("class_weight", model={"family": "mlp"}).loss_name == "weighted_cross_entropy"


@pytest.mark.parametrize(("override", "field"), [
    ({"rebalance": {"strategy": "oversample", "ratio": 0}}, "rebalance.ratio"),
    ({"rebalance": {"strategy": "oversample", "ratio": 1.5}}, "rebalance.ratio"),
    ({"rebalance": {"strategy": "smote"}, "model": {"family": "hist_gbdt", "params": {}}, "task": "regression"},
     "rebalance.strategy"),
    ({"rebalance": {"strategy": "smote", "k_neighbors": 0}}, "rebalance.k_neighbors"),
    ({"rebalance": {"tune_threshold": True}, "model": {"family": "hist_gbdt", "params": {}}, "task": "regression"},
     "rebalance.tune_threshold"),
    ({"rebalance": {"tune_threshold": True}, "data": {"source": "sklearn_wine", "target": "cultivar"}},
     "rebalance.tune_threshold"),
    ({"rebalance": {"tune_threshold": True, "threshold_metric": "precision"}}, "rebalance.threshold_metric"),
    ({"rebalance": {"strategy": "class_weight"}, "model": {"family": "hist_gbdt", "params": {}}, "task": "regression"},
     "rebalance"),
    ({"rebalance": {"strategy": "class_weight"}, "model": {"family": "mlp"}, "loss": {"name": "cross_entropy"}},
     "rebalance.strategy"),
])
def test_bad_rebalance_configs_name_the_field(override: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        train_config_from_dict({"model_name": "churn", **override}, source="train.yaml")
    assert "train.yaml" in str(info.value) and field in str(info.value)


def test_smote_and_threshold_configs_are_accepted() -> None:
    config = _config("smote", 0.5)
    assert config.rebalance.k_neighbors == 5 and not config.rebalance.tune_threshold
    tuned = train_config_from_dict({"model_name": "churn", "rebalance": {"tune_threshold": True,
                                                                         "threshold_metric": "balanced_accuracy"}})
    assert tuned.rebalance.strategy == "none" and tuned.rebalance.threshold_metric == "balanced_accuracy"


# -- SMOTE-like oversampling ------------------------------------------------------------------------------------

def _rows(frame: pd.DataFrame) -> list[tuple]:
    return sorted(map(tuple, frame.astype(str).to_numpy().tolist()))


@pytest.mark.parametrize("ratio", [1.0, 0.5])
def test_smote_grows_the_training_split_to_the_ratio_keeping_every_original_row(ratio: float) -> None:
    config = _config("smote", ratio)
    original = split_data(_imbalanced(3000, seed=1), config)
    before = _counts(original.train)
    minority, majority = min(before, key=before.get), max(before, key=before.get)

    splits, summary = rebalance_splits(original, config)
    after = _counts(splits.train)
    assert after[minority] / after[majority] == pytest.approx(ratio, abs=0.01)
    assert after[majority] == before[majority]
    assert summary["synthetic_rows"] == after[minority] - before[minority] == len(splits.train) - len(original.train)
    assert summary["strategy"] == "smote" and summary["k_neighbors"] == 5
    assert summary["class_counts_before"] == {str(k): v for k, v in sorted(before.items())}
    assert summary["class_counts_after"] == {str(k): v for k, v in sorted(after.items())}
    # Every original row is still there, unchanged; the synthetic rows are new minority rows.
    kept = pd.merge(original.train, splits.train, how="left", indicator=True)
    assert (kept["_merge"] == "both").all()
    assert splits.train.index.isin(original.train.index).all()  # synthetic rows carry their base row's label
    assert set(splits.train["customer_id"]) == set(original.train["customer_id"])  # ids copied from base rows
    # Shuffled: the synthetic rows are not all at the end.
    assert splits.train["churned"].iloc[: len(splits.train) // 2].eq(minority).sum() > 0
    pd.testing.assert_frame_equal(splits.validation, original.validation)
    pd.testing.assert_frame_equal(splits.test, original.test)


def _tiny() -> pd.DataFrame:
    """Seven minority rows on a line (x and the integer n grow together), each with its own category and id;
    z is missing on every minority row."""
    minority = pd.DataFrame({"id": [f"m{i}" for i in range(7)], "x": [10.0 * i for i in range(7)],
                             "n": [3 * i for i in range(7)], "z": [float("nan")] * 7,
                             "cat": list("abcdefg"), "y": 1})
    majority = pd.DataFrame({"id": [f"M{i}" for i in range(20)], "x": [100.0 + i for i in range(20)],
                             "n": [50 + i for i in range(20)], "z": [float(i) for i in range(20)],
                             "cat": "q", "y": 0})
    return pd.concat([minority, majority], ignore_index=True)


def test_smote_interpolates_numeric_features_between_a_row_and_a_near_neighbour() -> None:
    frame = _tiny()
    out, synthetic = smote(frame, "y", ["x", "n", "z", "cat"], ratio=1.0, k_neighbors=2, seed=3)
    assert synthetic == 13 and len(out) == 40 and _counts_of(out) == {0: 20, 1: 20}
    assert out.dtypes.to_dict() == frame.dtypes.to_dict()
    base = frame.set_index("id")
    merged = out.merge(frame[["id", "x", "n"]], on=["id", "x", "n"], how="left", indicator=True)
    new = merged[merged["_merge"] == "left_only"]
    assert len(new) == synthetic
    # On a line, the two nearest minority rows of row i are its neighbours i-1 and i+1 (i+1, i+2 at an end).
    near = {i: ({1, 2} if i == 0 else {4, 5} if i == 6 else {i - 1, i + 1}) for i in range(7)}
    for _, row in new.iterrows():
        i = int(row["id"][1:])
        origin = base.loc[row["id"]]
        assert row["cat"] == origin["cat"] and row["y"] == 1 and pd.isna(row["z"])  # copied; missing stays missing
        u = (row["x"] - origin["x"]) / 10.0  # the neighbour is j = i +- 1 or i +- 2, 10 apart per step
        matches = [j for j in near[i] if 0 <= u / (j - i) <= 1]
        assert matches, (row.to_dict(), i)
        j = matches[0]
        fraction = u / (j - i)
        assert row["n"] == round(3 * i + fraction * 3 * (j - i))  # the same u on every column, rounded to int


def _counts_of(frame: pd.DataFrame) -> dict[int, int]:
    return frame["y"].value_counts().to_dict()


def test_smote_is_seeded() -> None:
    frame = _imbalanced(1000, seed=2)
    features = ["tenure_months", "monthly_charges", "support_calls", "usage_gb", "age", "plan"]
    first, _ = smote(frame, "churned", features, 1.0, 5, seed=9)
    pd.testing.assert_frame_equal(first, smote(frame, "churned", features, 1.0, 5, seed=9)[0])
    other, _ = smote(frame, "churned", features, 1.0, 5, seed=10)
    assert not first.reset_index(drop=True).equals(other.reset_index(drop=True))


def test_smote_refuses_a_class_smaller_than_k_plus_one() -> None:
    frame = _tiny().iloc[2:]  # five minority rows
    with pytest.raises(InvalidInput) as info:
        smote(frame, "y", ["x", "n"], ratio=1.0, k_neighbors=5, seed=0)
    assert info.value.field == "rebalance.k_neighbors"
    assert "k_neighbors" in info.value.message and "class 1 has 5" in info.value.message
    assert smote(frame, "y", ["x", "n"], ratio=1.0, k_neighbors=4, seed=0)[1] == 15  # k + 1 rows are enough


def test_smote_without_numeric_features_suggests_oversample() -> None:
    with pytest.raises(InvalidInput) as info:
        smote(_tiny(), "y", ["cat"], ratio=1.0, k_neighbors=2, seed=0)
    assert "oversample" in info.value.message
