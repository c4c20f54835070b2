"""SPEC S2.10 end to end: SMOTE-like oversampling of the training split and a decision threshold tuned on the
validation split, registered with the version and applied wherever the artifact is loaded (sklearn, no Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlplatform.config.train import train_config_from_dict
from mlplatform.datasets.synthetic import make_churn
from mlplatform.errors import InvalidInput
from mlplatform.learning.data import split_data
from mlplatform.learning.metrics import evaluate_predictions
from mlplatform.predictor import Predictor
from mlplatform.training import pipeline
from mlplatform.training.threshold import tune_threshold

pytestmark = pytest.mark.slow


def _imbalanced_file(tmp_path: Path) -> Path:
    """Churn data keeping one churner in eight: roughly 1:10."""
    frame = make_churn(4000, seed=3)
    churners = frame[frame["churned"] == 1]
    frame = pd.concat([frame[frame["churned"] == 0], churners.iloc[: len(churners) // 8]]).sort_index()
    path = tmp_path / "imbalanced.parquet"
    frame.reset_index(drop=True).to_parquet(path)
    return path


def test_smote_and_a_tuned_threshold_are_registered_and_applied(client: Any, tmp_path: Path) -> None:
    path = _imbalanced_file(tmp_path)
    config = train_config_from_dict({
        "experiment": "imbalance", "model_name": "churn_imbalanced", "seed": 11,
        "data": {"source": "file", "path": str(path)}, "model": {"family": "logistic"},
        "rebalance": {"strategy": "smote", "tune_threshold": True}})
    outcome = pipeline.train(config, client=client, force=True)
    assert outcome.status == "completed" and outcome.model_version == "churn_imbalanced:1"

    run = client.runs.get_run(outcome.run_id)
    rebalance, tuned = run.tags["rebalance"], run.tags["threshold"]
    assert rebalance["strategy"] == "smote" and rebalance["synthetic_rows"] > 0
    assert rebalance["class_counts_after"]["0"] == rebalance["class_counts_after"]["1"]
    assert tuned["metric"] == "f1" and tuned["threshold"] != 0.5
    assert tuned["validation_value"] >= tuned["value_at_0_5"]

    version = client.registry.resolve("churn_imbalanced:1")
    assert version.lineage["threshold"] == tuned and version.lineage["rebalance"] == rebalance
    local = client.registry.fetch(version)
    predictor = Predictor.from_dir(local)
    assert predictor.manifest.threshold == tuned["threshold"]

    # The threshold came from the validation split (never test), and test metrics were computed with it.
    frame = pd.read_parquet(path)
    splits = split_data(frame, config)
    validation = predictor.predict(splits.validation).positive_probability()
    assert tune_threshold(validation, splits.validation["churned"].to_numpy() == 1, "f1")[0] == tuned["threshold"]
    assert evaluate_predictions(predictor, splits.test, "churned") == pytest.approx(outcome.test_metrics)
    # Per-class test metrics (SPEC S2.10 reports), beside the overall ones and under their own keys.
    logged = {m.key: m.value for m in client.runs.get_metrics(outcome.run_id) if m.split == "test" and not m.slice}
    truth = splits.test["churned"].to_numpy()
    labels = np.asarray(predictor.predict(splits.test).predictions)
    assert logged["support_class_1"] == (truth == 1).sum() and logged["support_class_0"] == (truth == 0).sum()
    assert logged["recall_class_1"] == pytest.approx(((labels == 1) & (truth == 1)).sum() / (truth == 1).sum())
    assert logged["f1"] == pytest.approx(outcome.test_metrics["f1"])  # the overall metric is not overwritten

    # The loaded predictor applies it: labels follow P(churned) >= threshold, not 0.5.
    result = predictor.predict(frame)
    proba = result.positive_probability()
    assert np.array_equal(np.asarray(result.predictions), (proba >= tuned["threshold"]).astype(int))
    between = (proba >= min(0.5, tuned["threshold"])) & (proba < max(0.5, tuned["threshold"]))
    assert between.any()  # rows the default threshold would have labelled the other way


def test_threshold_tuning_refuses_a_multiclass_target(client: Any, tmp_path: Path) -> None:
    frame = make_churn(300, seed=1)
    path = tmp_path / "plans.parquet"
    frame.to_parquet(path)
    config = train_config_from_dict({
        "model_name": "plans", "data": {"source": "file", "path": str(path), "target": "plan"},
        "model": {"family": "logistic"}, "rebalance": {"tune_threshold": True}})
    with pytest.raises(InvalidInput) as info:
        pipeline.train(config, client=client, force=True)
    assert info.value.field == "rebalance.tune_threshold" and "binary" in info.value.message
