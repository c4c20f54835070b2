"""Class rebalancing (SPEC S2.10): only the training split is resampled, seeded, to the configured ratio."""

from __future__ import annotations

import pandas as pd
import pytest

from mlplatform.config.train import train_config_from_dict
from mlplatform.datasets.synthetic import make_churn
from mlplatform.errors import ConfigError
from mlplatform.training.data import split_data
from mlplatform.training.rebalance import rebalance_splits, resample


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
    ({"rebalance": {"strategy": "smote"}}, "rebalance.strategy"),
    ({"rebalance": {"strategy": "class_weight"}, "model": {"family": "hist_gbdt", "params": {}}, "task": "regression"},
     "rebalance"),
    ({"rebalance": {"strategy": "class_weight"}, "model": {"family": "mlp"}, "loss": {"name": "cross_entropy"}},
     "rebalance.strategy"),
])
def test_bad_rebalance_configs_name_the_field(override: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        train_config_from_dict({"model_name": "churn", **override}, source="train.yaml")
    assert "train.yaml" in str(info.value) and field in str(info.value)
