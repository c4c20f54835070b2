"""SPEC S4.3-S4.5 end to end (issue 15, deliverable 7): ``mlplatform train`` with a ``features:`` section
(imputation rules, generated features, selection) and per-column embedding sizes on the torch MLP, then
predictions through ``Predictor`` from the registered artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_train_with_features_section_and_predict(ray_session: str, client: Any, tmp_path: Path) -> None:
    from mlplatform.cli.main import app
    from mlplatform.datasets.synthetic import make_churn

    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({
        "experiment": "spec4", "model_name": "churn4", "seed": 3,
        "data": {"source": "synthetic_churn", "n_rows": 800},
        "model": {"family": "mlp", "params": {"hidden": [8], "dropout": 0.0, "embedding_dim": "auto",
                                               "embedding_dims": {"region": 3}}},
        "training": {"epochs": 2, "batch_size": 128, "early_stopping": {"patience": 0}},
        "scaling": {"num_workers": 1, "use_gpu": False},
        "gate": {"min_lift": 0.0, "compare_champion": False},
        "features": {
            "impute_columns": {"age": "zero", "plan": "most_frequent"}, "indicator_columns": "all",
            "generated": [{"kind": "ratio", "columns": ["monthly_charges", "support_calls"]},
                          {"kind": "product", "columns": ["tenure_months", "monthly_charges"]},
                          {"kind": "log", "columns": ["usage_gb"]}],
            "selection": {"variance_threshold": 0.0, "max_correlation": 0.95}}}))
    result = CliRunner().invoke(app, ["train", "--config", str(path), "--force", "--json"])
    assert result.exit_code == 0, result.output
    predictor = client.registry.load("churn4@champion")
    transform = predictor.transform
    assert transform.to_dict()["version"] == 3 and transform.selected is not None
    assert {"monthly_charges_per_support_calls", "log1p_usage_gb"} <= set(transform.output_names)
    # indicator_columns: all gives every column an indicator; the variance selection drops the constant ones
    assert "age__missing" in transform.all_output_names
    assert len(transform.output_names) < len(transform.all_output_names)
    assert transform._numeric_by_name["age"].fill_rule == "zero"
    assert transform._categorical_by_name["plan"].fill is not None
    arch = predictor.manifest.architecture
    region = arch["categorical_names"].index("region")
    plan = arch["categorical_names"].index("plan")
    assert arch["embedding_sizes"][region] == 3
    assert arch["embedding_sizes"][plan] == min(50, -(-arch["cardinalities"][plan] // 2))
    # zero denominators, a negative log input and missing values go through the shipped transform
    rows = make_churn(20, seed=11).drop(columns=["churned"])
    rows.loc[0, "support_calls"] = 0.0
    rows.loc[1, "usage_gb"] = -5.0
    rows.loc[2, ["age", "plan"]] = [np.nan, None]
    batch = predictor.predict(rows)
    assert np.isfinite(np.asarray(batch.probabilities)).all()
    matrix = transform.transform(rows)
    for i in (0, 1, 2):  # a row alone is transformed exactly as in the batch (float32 matmuls may differ by 1e-8)
        np.testing.assert_array_equal(transform.transform(rows.iloc[[i]])[0], matrix[i])
        alone = predictor.predict(rows.iloc[[i]])
        np.testing.assert_allclose(np.asarray(alone.probabilities)[0], np.asarray(batch.probabilities)[i],
                                   rtol=0, atol=1e-6)
    lineage = json.loads(json.dumps(predictor.manifest.lineage))
    assert lineage["config"]["features"]["generated"][2]["kind"] == "log"
