"""Stacking ensemble: the meta-model learns from out-of-fold member predictions only, and the stack is registered
as one sklearn version naming its member versions (real SQLite store and artifact store; sklearn, no Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from mlplatform.config.train import train_config_from_dict
from mlplatform.errors import ConfigError
from mlplatform.features.transform import TabularTransform
from mlplatform.learning.data import load_data, split_data
from mlplatform.models.sklearn_models import load_sklearn
from mlplatform.training import pipeline


def _config(name: str, family: str, params: dict[str, Any]) -> Any:
    return train_config_from_dict({"experiment": "stack", "model_name": name, "seed": 4,
                                   "data": {"source": "synthetic_churn", "n_rows": 1500},
                                   "model": {"family": family, "params": params}})


def test_stack_of_a_registered_version_and_a_family(client: Any, tmp_path: Path) -> None:
    member = pipeline.train(_config("churn", "logistic", {"C": 0.5}), client=client)
    assert member.model_version == "churn:1"

    config = _config("stack", "stacking", {"members": ["churn:1", {"family": "hist_gbdt",
                                                                   "params": {"max_iter": 20}}], "cv": 3})
    outcome = pipeline.train(config, client=client)
    assert outcome.status == "completed" and outcome.model_version == "stack:1"
    version = client.registry.resolve("stack:1")
    assert version.framework == "sklearn" and version.lineage["members"] == ["churn:1", "hist_gbdt"]
    members = version.lineage["config"]["model"]["params"]["members"]
    assert members[0] == "churn:1"  # the recorded config keeps the reference as written

    # The Predictor (skops, trusted sklearn types only) serves it like any other version.
    predictor = client.registry.load("stack:1")
    data = load_data(config)
    splits = split_data(data.frame, config)
    scored = predictor.predict(splits.test.head(20))
    assert scored.probabilities is not None and len(scored.predictions) == 20

    # Out-of-fold property: the meta-model equals one fitted on cross_val_predict outputs of the members (each
    # refitted per fold, the registered member resolved to its family and parameters, C=0.5), not on in-sample ones.
    directory = client.registry.fetch(version)
    stack = load_sklearn(directory / "model.skops")
    assert [type(e).__name__ for _, e in stack.estimators] == ["LogisticRegression", "HistGradientBoostingClassifier"]
    assert stack.estimators[0][1].C == 0.5
    transform = TabularTransform.load(directory)
    x, y = transform.transform(splits.train), splits.train["churned"].to_numpy()
    oof = np.column_stack([cross_val_predict(clone(e), x, y, cv=stack.cv, method="predict_proba")[:, 1]
                           for _, e in stack.estimators])
    meta = clone(stack.final_estimator).fit(oof, y)
    np.testing.assert_allclose(stack.final_estimator_.coef_, meta.coef_, rtol=1e-6)
    in_sample = np.column_stack([clone(e).fit(x, y).predict_proba(x)[:, 1] for _, e in stack.estimators])
    leaky = LogisticRegression(**clone(stack.final_estimator).get_params()).fit(in_sample, y)
    assert not np.allclose(stack.final_estimator_.coef_, leaky.coef_, rtol=1e-3)


def test_bad_stacks_are_refused_before_training(client: Any) -> None:
    with pytest.raises(ConfigError, match="at least 2 members"):
        _config("stack", "stacking", {"members": ["logistic"]})
    with pytest.raises(ConfigError, match="unknown sklearn family 'boosted'"):
        _config("stack", "stacking", {"members": ["logistic", "boosted"]})
    with pytest.raises(ConfigError, match="cv"):
        _config("stack", "stacking", {"members": ["logistic", "hist_gbdt"], "cv": 1})
    from mlplatform.errors import NotFound

    with pytest.raises(NotFound):  # a member version that does not exist: refused before any fitting
        pipeline.train(_config("stack", "stacking", {"members": ["nope:1", "logistic"]}), client=client)
