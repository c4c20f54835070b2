"""The lean inference path (issue 19) answers byte for byte what the DataFrame path answered, for every model family.

The reference (:mod:`tests.unit._reference_transform`) is the transform as it was before the compiled plans, on the
DataFrame the row validator gives; the lean path is ``Predictor.predict`` on JSON rows, an Arrow table and a
DataFrame. Models are tiny and fitted in-process (seconds).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from mlplatform.artifacts.model_format import ModelManifest
from mlplatform.datasets.synthetic import FEATURES, TARGET, make_churn
from mlplatform.features.rows import CheckedRows
from mlplatform.features.schema import schema_to_json
from mlplatform.features.transform import CrossSpec, GeneratedFeature, TabularTransform, TransformConfig
from mlplatform.models.mlp import MLPConfig, TabularMLP
from mlplatform.models.sklearn_models import build_sklearn
from mlplatform.predictor import Predictor
from tests.integration import test_parity as parity
from tests.unit._reference_transform import reference_probabilities

FAMILIES: dict[str, dict[str, Any]] = {
    "logistic": {},
    "random_forest": {"n_estimators": 8, "max_depth": 6},
    "hist_gbdt": {"max_iter": 10},
    "stacking": {"members": ["logistic", {"family": "hist_gbdt", "params": {"max_iter": 5}}], "cv": 2},
    "mlp": {},
}
# every column plan: hashing, buckets, a cross, a generated feature, a categorical fill, configured imputation
RICH = TransformConfig(hash_columns={"region": 8}, buckets={"age": [30, 50, 70], "tenure_months": 4},
                       crosses=[CrossSpec(columns=["plan", "age"], buckets=16)],
                       generated=[GeneratedFeature(kind="ratio", columns=["monthly_charges", "tenure_months"])],
                       impute_columns={"usage_gb": "median", "monthly_charges": 0.5, "plan": "most_frequent"})


def _predictor(frame: pd.DataFrame, features: list[str], family: str, config: TransformConfig) -> Predictor:
    transform = TabularTransform.fit(frame, features, config)
    common = {"task": "classification", "family": family, "target": "label", "classes": [0, 1], "threshold": 0.5,
              "input_schema": schema_to_json(transform.schema)}
    if family == "mlp":
        torch.manual_seed(0)
        model = TabularMLP(transform.n_outputs, 2, MLPConfig(hidden=[16, 8], embedding_dim=3),
                           transform.cardinalities, [c.name for c in transform.categorical]).eval()
        return Predictor(ModelManifest(framework="torch", model_file="m.pt", architecture=model.architecture(),
                                       **common), transform, model)
    model = build_sklearn(family, "classification", FAMILIES[family], 0)
    model.fit(transform.transform(frame), frame["label"].to_numpy())
    return Predictor(ModelManifest(framework="sklearn", model_file="m.skops", **common), transform, model)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, pd.DataFrame]:
    train = make_churn(800, seed=3).rename(columns={TARGET: "label"})
    rows = make_churn(10_000, seed=4)[FEATURES]
    rows.loc[rows.index[:200], "plan"] = "enterprise"  # unseen: the __other__ slot / embedding code 0
    rows.loc[rows.index[200:400], "plan"] = None  # missing: the most_frequent fill
    rows.loc[rows.index[400:600], ["age", "tenure_months"]] = np.nan
    return train, rows


@pytest.mark.parametrize("family", list(FAMILIES))
def test_lean_path_is_byte_identical_to_the_dataframe_path(family: str, churn: tuple) -> None:
    train, rows = churn
    predictor = _predictor(train, FEATURES, family, RICH)
    expected = reference_probabilities(predictor, rows)
    labels = (expected[:, 1] >= 0.5).astype(int).tolist()
    for given in (_records(rows), pa.Table.from_pandas(rows, preserve_index=False), rows):
        result = predictor.predict(given)
        assert result.probabilities.dtype == np.float64
        assert result.probabilities.tobytes() == expected.tobytes(), type(given)
        assert result.predictions == labels
    # serving's route: checked once, cached as tuples, scored from the tuples without a second check
    checked = predictor.check(_records(rows.head(64))).raise_for_issues()
    again = predictor.predict_checked(CheckedRows.of_tuples(checked.tuples(), predictor.transform.schema))
    assert again.probabilities.tobytes() == expected[:64].tobytes()


@pytest.mark.parametrize("family", ["logistic", "mlp"])
def test_parity_rows_score_the_same_on_the_lean_path(family: str) -> None:
    rng = np.random.default_rng(5)
    n = 400
    train = pd.DataFrame({"amount": rng.normal(50, 20, n).astype(object), "count": rng.integers(0, 10, n),
                          "active": rng.random(n) < 0.5, "region": rng.choice(["north", "south", "NA", "", "N/A"], n),
                          "label": rng.integers(0, 2, n)})
    train.loc[train.index[:20], "amount"] = "N/A"
    predictor = _predictor(train, parity.FEATURES, family, TransformConfig(missing_tokens=parity.MISSING_TOKENS))
    accepted = [parity._row(changes) for _, changes, refused in parity.ROWS if not refused]
    lean = predictor.predict(accepted)
    # the reference on the validator's own DataFrame route: one object column per feature, values as given
    frame = pd.DataFrame({f: pd.Series([r.get(f) for r in accepted], dtype=object) for f in parity.FEATURES})
    expected = reference_probabilities(predictor, frame)
    assert lean.probabilities.tobytes() == expected.tobytes()
    assert not any(math.isnan(p) for p in lean.probabilities[:, 1])


def test_one_row_gets_its_in_batch_answer_from_torch(churn: tuple) -> None:
    """torch's one-row kernels round differently (~1e-8 in float32) from a batch's; the Predictor pads small
    batches so that a row's answer does not depend on who it was batched with."""
    train, rows = churn
    predictor = _predictor(train, FEATURES, "mlp", RICH)
    records = _records(rows.head(40))
    batch = predictor.predict(records).probabilities
    for i in range(0, 40, 3):
        alone = predictor.predict(records[i:i + 1]).probabilities
        assert alone.tobytes() == batch[i:i + 1].tobytes(), i
    assert predictor.predict(records[:5]).probabilities.tobytes() == batch[:5].tobytes()


def test_inference_threads_setting_wins_and_outside_ray_torch_keeps_its_default() -> None:
    from mlplatform.predictor import inference_threads

    assert inference_threads(3) == 3
    assert inference_threads(None) is None  # this process is no Ray worker: nothing to share the node with
