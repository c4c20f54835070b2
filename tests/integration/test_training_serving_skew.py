"""No training/serving skew: the same rows give byte-identical transformed features and predictions through the
training evaluation path (Predictor.predict on a DataFrame), Ray Data batch scoring (run_batch on the shared local
Ray) and the serving request path (JSON body -> serving.validation -> the row validator -> CheckedRows.of_tuples ->
Predictor.predict_checked).

Serving is exercised through the functions its replicas call (parse_json_body, parse_instances, Predictor.check,
CheckedRows.of_tuples, predict_rows), not a deployed app: deploying Serve costs far more than it adds here, and
test_serving.py already checks that the HTTP answers equal the in-process Predictor.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest

from mlplatform.batch import ArtifactBytesLoader, BatchConfig, run_batch
from mlplatform.datasets.synthetic import FEATURES, make_churn
from mlplatform.features.rows import CheckedRows
from mlplatform.features.schema import schema_from_json
from mlplatform.predictor import Predictor
from mlplatform.serving.model_server import predict_rows
from mlplatform.serving.validation import parse_instances, parse_json_body

pytestmark = pytest.mark.ray


class RecordingLoader:
    """The batch job's own loader; the loaded transform also saves every matrix it produces (in the Ray actor) to
    ``folder``, so the test can compare what batch scoring really fed the model. Nothing is replaced."""

    def __init__(self, inner: ArtifactBytesLoader, folder: str) -> None:
        self.inner = inner
        self.folder = folder

    def __call__(self) -> Predictor:
        predictor = self.inner()
        original = predictor.transform.encode

        def encode(rows: Any, **kwargs: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
            matrix, codes = original(rows, **kwargs)
            if matrix is not None:
                np.save(Path(self.folder) / f"{uuid.uuid4().hex}.npy", matrix)
            return matrix, codes

        predictor.transform.encode = encode  # type: ignore[method-assign]
        return predictor


def _sorted_rows(matrix: np.ndarray) -> bytes:
    """Row multiset as bytes: batch scoring may process blocks in any order."""
    matrix = np.ascontiguousarray(matrix)
    as_bytes = matrix.view(np.dtype((np.void, matrix.dtype.itemsize * matrix.shape[1]))).ravel()
    return np.sort(as_bytes).tobytes()


def _json_instances(df: pd.DataFrame) -> bytes:
    records = df[FEATURES].astype(object).where(df[FEATURES].notna(), None).to_dict(orient="records")
    return json.dumps({"instances": records}).encode()


def test_same_rows_same_bytes_in_training_batch_and_serving(ray_session: str, client: Any, model_artifact_dir: Path,
                                                             tmp_path: Path) -> None:
    rows = make_churn(600, seed=23).drop(columns=["churned"])
    rows.loc[rows.index[:5], "plan"] = "enterprise"  # unseen categories take the same path everywhere
    rows.loc[rows.index[5:10], ["monthly_charges", "usage_gb"]] = np.nan
    assert rows[["monthly_charges", "usage_gb"]].isna().any().all()
    predictor = Predictor.from_dir(model_artifact_dir)

    # 1. training evaluation path: a DataFrame straight into the Predictor
    train_matrix = predictor.transform.transform(rows[FEATURES])
    train_pred = predictor.predict(rows[FEATURES])

    # 2. serving: the request body as JSON bytes, validated and framed as a replica does
    payload = parse_json_body(_json_instances(rows), max_bytes=50_000_000)
    schema = schema_from_json(predictor.input_schema)
    typed = predictor.check(parse_instances(payload, max_instances=len(rows))).raise_for_issues("instances").tuples()
    serve_matrix = predictor.transform.transform_checked(CheckedRows.of_tuples(typed, schema))
    answers = json.loads(json.dumps(predict_rows(predictor, typed, schema)))  # through JSON, as over HTTP

    # 3. Ray Data batch scoring of the same rows written as Parquet (several files, several blocks)
    source = tmp_path / "in"
    source.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(rows)), 3)):
        rows.iloc[part].to_parquet(source / f"part-{i}.parquet", index=False)
    recorded = tmp_path / "matrices"
    recorded.mkdir()
    version = client.registry.register("churn", model_artifact_dir, alias="champion")
    result = run_batch(BatchConfig(model="churn@champion", input=str(source), output=str(tmp_path / "out"),
                                   batch_size=150, concurrency=2, keep_columns=["customer_id"]),
                       client=client,
                       loader_factory=lambda v, local: RecordingLoader(_bytes_loader(v, local), str(recorded)))
    assert result.model_version == version.version
    assert (result.rows_in, result.rows_scored, result.rows_quarantined) == (600, 600, 0)
    out = pads.dataset(result.output_path, format="parquet", partitioning="hive").to_table().to_pandas()
    out = out.set_index("customer_id").loc[rows["customer_id"]]
    batch_matrix = np.concatenate([np.load(f) for f in sorted(recorded.glob("*.npy"))
                                   if np.load(f).shape[0]])  # warm-up calls on empty frames carry no rows

    # transformed features: byte-identical
    assert train_matrix.dtype == serve_matrix.dtype == batch_matrix.dtype
    assert train_matrix.tobytes() == serve_matrix.tobytes()
    assert batch_matrix.shape == train_matrix.shape
    assert _sorted_rows(batch_matrix) == _sorted_rows(train_matrix)

    # predictions and probabilities: byte-identical
    train_proba = np.asarray(train_pred.probabilities, dtype=np.float64)
    serve_proba = np.array([a["probabilities"] for a in answers], dtype=np.float64)
    batch_positive = out["probability"].to_numpy(dtype=np.float64)
    assert serve_proba.tobytes() == train_proba.tobytes()
    assert batch_positive.tobytes() == np.ascontiguousarray(train_proba[:, 1]).tobytes()
    assert [a["prediction"] for a in answers] == list(train_pred.predictions)
    assert out["prediction"].tolist() == list(train_pred.predictions)


def _bytes_loader(version: Any, local: Path) -> ArtifactBytesLoader:
    return ArtifactBytesLoader.from_dir(local, version.files, version.model_name, version.version)
