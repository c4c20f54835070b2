"""Batch scoring on the shared local Ray: exact predictions, reconciliation, atomic output, pre-flight errors, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from mlplatform.batch import ArtifactBytesLoader, BatchConfig, read_online_predictions, run_batch
from mlplatform.datasets.synthetic import make_churn
from mlplatform.errors import GateFailed, InvalidInput, MLPlatformError, NotFound
from mlplatform.predictor import Predictor

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def registered(client: Any, model_artifact_dir: Path) -> Any:
    return client.registry.register("churn", model_artifact_dir, alias="champion")


@pytest.fixture
def scoring_rows() -> pd.DataFrame:
    return make_churn(1200, seed=11).drop(columns=["churned"])


def _write_parquet_parts(df: pd.DataFrame, folder: Path, parts: int = 3) -> Path:
    folder.mkdir(parents=True)
    for i, chunk in enumerate(np.array_split(np.arange(len(df)), parts)):
        df.iloc[chunk].to_parquet(folder / f"part-{i}.parquet", index=False)
    return folder


def _read_output(path: str) -> pd.DataFrame:
    return pads.dataset(path, format="parquet", partitioning="hive").to_table().to_pandas()


class ExplodingLoader:
    """A real model whose second batch raises: a failure in the middle of the job."""

    def __init__(self, inner: ArtifactBytesLoader) -> None:
        self.inner = inner

    def __call__(self) -> Predictor:
        predictor = self.inner()
        original, calls = predictor.predict_checked, {"n": 0}

        def predict_checked(df: pd.DataFrame) -> Any:
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("injected failure in batch 2")
            return original(df)

        predictor.predict_checked = predict_checked  # type: ignore[method-assign]
        return predictor


@pytest.mark.parametrize("compute", ["tasks", "actors"])
def test_batch_output_equals_predictor_and_reruns_replace(ray_session: None, client: Any, registered: Any,
                                                          scoring_rows: pd.DataFrame, model_artifact_dir: Path,
                                                          tmp_path: Path, compute: str) -> None:
    source = _write_parquet_parts(scoring_rows, tmp_path / "in")
    result = run_batch(BatchConfig(model="churn@champion", input=str(source), output=str(tmp_path / "out"),
                                   batch_size=250, concurrency=2, keep_columns=["customer_id"],
                                   compute=compute), client=client)
    assert client.runs.get_run(result.run_id).config["compute"] == compute

    assert result.model_version == registered.version and result.reconciled
    assert (result.rows_in, result.rows_scored, result.rows_quarantined) == (1200, 1200, 0)
    out = _read_output(result.output_path)
    assert out["customer_id"].is_unique and set(out["customer_id"]) == set(scoring_rows["customer_id"])
    assert set(out["model_name"]) == {"churn"} and set(out["model_version"]) == {registered.version}
    assert set(out["run_id"]) == {result.run_id} and out["scored_at"].nunique() == 1
    # Matched by id, never by order: the actor pool does not keep row order.
    expected = Predictor.from_dir(model_artifact_dir).predict(scoring_rows)
    reference = pd.DataFrame({"customer_id": scoring_rows["customer_id"], "prediction": expected.predictions,
                              "probability": expected.positive_probability()})
    merged = out.merge(reference, on="customer_id", suffixes=("", "_expected"))
    assert len(merged) == 1200
    assert (merged["prediction"] == merged["prediction_expected"]).all()
    assert np.abs(merged["probability"] - merged["probability_expected"]).max() <= 1e-12

    run = client.runs.get_run(result.run_id)
    assert (run.kind, run.status, run.tags["model_version"]) == ("batch", "completed", registered.version)
    metrics = client.runs.latest_metrics(result.run_id)
    assert (metrics["rows_in"], metrics["rows_scored"], metrics["rows_quarantined"]) == (1200, 1200, 0)

    files_before = sorted(p.name for p in Path(result.output_path).iterdir())
    again = run_batch(BatchConfig(model="churn:1", input=str(source), output=str(tmp_path / "out"), batch_size=250,
                                  concurrency=2, keep_columns=["customer_id"], compute=compute), client=client)
    assert again.output_path == result.output_path
    assert sorted(p.name for p in Path(again.output_path).iterdir()) == files_before  # replaced, nothing added
    columns = ["customer_id", "prediction", "probability", "model_name", "model_version"]
    rerun = _read_output(again.output_path)[columns].sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(rerun, out[columns].sort_values("customer_id").reset_index(drop=True))
    assert sorted(p.name for p in (tmp_path / "out" / "model=churn").iterdir()) == ["version=1"]


def test_invalid_rows_are_quarantined_and_reconciled(ray_session: None, client: Any, registered: Any,
                                                     scoring_rows: pd.DataFrame, tmp_path: Path) -> None:
    rows = scoring_rows.iloc[:400].copy()
    rows["tenure_months"] = rows["tenure_months"].astype(str)
    rows.loc[3, "tenure_months"] = "abc"
    rows.loc[10, "monthly_charges"] = np.inf
    rows.loc[20, "customer_id"] = None
    source = tmp_path / "rows.csv"  # CSV: features arrive as text and are cast per row
    rows.to_csv(source, index=False)

    result = run_batch(BatchConfig(model="churn", input=str(source), output=str(tmp_path / "out"), batch_size=64,
                                   concurrency=2, keep_columns=["customer_id"], partition_by="region",
                                   online_key="customer_id"), client=client)

    assert (result.rows_in, result.rows_scored, result.rows_quarantined) == (400, 397, 3) and result.reconciled
    quarantine = pq.read_table(result.quarantine_path).to_pandas().sort_values("reason").reset_index(drop=True)
    assert len(quarantine) == 3
    by_key = dict(zip(quarantine["customer_id"].fillna("<missing>"), quarantine["reason"], strict=True))
    assert by_key[rows.loc[3, "customer_id"]].startswith("tenure_months: ") and "'abc'" in by_key[
        rows.loc[3, "customer_id"]]
    assert by_key[rows.loc[10, "customer_id"]] == "monthly_charges: not_finite (expected a finite number, got 'inf')"
    assert by_key["<missing>"] == "customer_id: missing_value (key column)"
    assert json.loads(quarantine.loc[quarantine["customer_id"] == rows.loc[3, "customer_id"], "row"].iloc[0])[
        "tenure_months"] == "abc"
    regions = sorted(p.name for p in Path(result.output_path).iterdir() if p.name.startswith("region="))
    assert regions == ["region=east", "region=north", "region=south", "region=west"]
    scored = _read_output(result.output_path)
    assert len(scored) == 397 and not set(scored["customer_id"]) & set(quarantine["customer_id"].dropna())
    summary = json.loads((Path(result.output_path) / "_summary.json").read_text())
    assert summary["reconciled"] and summary["rows_quarantined"] == 3

    online = read_online_predictions(client.settings.home, "churn", [rows.loc[0, "customer_id"]])
    expected = scored.loc[scored["customer_id"] == rows.loc[0, "customer_id"]]
    assert len(online) == 1 and online["probability"].iloc[0] == pytest.approx(expected["probability"].iloc[0])
    assert len(read_online_predictions(client.settings.home, "churn")) == 397


def test_too_many_invalid_rows_publish_nothing_but_keep_the_quarantine(ray_session: None, client: Any,
                                                                       registered: Any, scoring_rows: pd.DataFrame,
                                                                       tmp_path: Path) -> None:
    rows = scoring_rows.iloc[:40].copy()
    rows["age"] = rows["age"].astype(str)
    rows.loc[[1, 2], "age"] = "old"  # 2 of 40 = 5 %: the SPEC's failure level
    rows.to_parquet(tmp_path / "rows.parquet", index=False)

    with pytest.raises(GateFailed, match=r"2 of 40 rows \(5.0%\) failed validation") as caught:
        run_batch(BatchConfig(model="churn", input=str(tmp_path / "rows.parquet"), output=str(tmp_path / "out"),
                              concurrency=1, keep_columns=["customer_id"]), client=client)

    assert "first: age: wrong_type (expected float, got 'old')" in str(caught.value)
    model_dir = tmp_path / "out" / "model=churn"
    assert sorted(p.name for p in model_dir.iterdir()) == ["_rejected-version=1"]
    rejected = pq.read_table(model_dir / "_rejected-version=1" / "_quarantine.parquet").to_pandas()
    assert sorted(rejected["customer_id"]) == sorted(rows.loc[[1, 2], "customer_id"])
    (run,) = client.runs.list_runs(kind="batch")
    assert run.status == "failed" and client.runs.latest_metrics(run.id)["rows_quarantined"] == 2


@pytest.mark.parametrize("compute", ["tasks", "actors"])
def test_failure_mid_job_publishes_nothing(ray_session: None, client: Any, registered: Any,
                                           scoring_rows: pd.DataFrame, tmp_path: Path, compute: str) -> None:
    source = _write_parquet_parts(scoring_rows, tmp_path / "in")

    def exploding(version: Any, local: Path) -> ExplodingLoader:
        return ExplodingLoader(ArtifactBytesLoader.from_dir(local, version.files, version.model_name,
                                                            version.version))

    with pytest.raises(MLPlatformError, match="injected failure in batch 2") as caught:
        run_batch(BatchConfig(model="churn@champion", input=str(source), output=str(tmp_path / "out"), batch_size=100,
                              concurrency=1, keep_columns=["customer_id"], compute=compute),
                  client=client, loader_factory=exploding)

    assert "no output was published" in str(caught.value)
    assert not (tmp_path / "out" / "model=churn" / "version=1").exists()
    leftovers = list((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else []
    assert leftovers == []  # no staging folder, no quarantine parts
    (run,) = client.runs.list_runs(kind="batch")
    assert run.status == "failed" and "injected failure" in run.error


def test_unknown_model_and_schema_mismatch_fail_before_compute(client: Any, registered: Any,
                                                               scoring_rows: pd.DataFrame, tmp_path: Path) -> None:
    import ray

    ray_was_up = ray.is_initialized()
    good = tmp_path / "good.parquet"
    scoring_rows.to_parquet(good, index=False)
    out = tmp_path / "out"
    with pytest.raises(NotFound, match="model 'nope' is not registered"):
        run_batch(BatchConfig(model="nope@champion", input=str(good), output=str(out)), client=client)
    with pytest.raises(NotFound, match="has no version 9"):
        run_batch(BatchConfig(model="churn:9", input=str(good), output=str(out)), client=client)
    with pytest.raises(NotFound, match="matches no Parquet or CSV files"):
        run_batch(BatchConfig(model="churn", input=str(tmp_path / "missing" / "*.parquet"), output=str(out)),
                  client=client)

    missing = tmp_path / "missing_plan.parquet"
    scoring_rows.drop(columns=["plan"]).to_parquet(missing, index=False)
    with pytest.raises(InvalidInput, match=r"missing_field \(the input has no column 'plan'\)") as caught:
        run_batch(BatchConfig(model="churn", input=str(missing), output=str(out)), client=client)
    assert caught.value.field == "plan"

    wrong_type = tmp_path / "wrong_type.parquet"
    scoring_rows.assign(age=scoring_rows["event_time"]).to_parquet(wrong_type, index=False)
    with pytest.raises(InvalidInput, match=r"wrong_type \(expected float, got 'timestamp") as caught:
        run_batch(BatchConfig(model="churn", input=str(wrong_type), output=str(out)), client=client)
    assert caught.value.field == "age"
    with pytest.raises(InvalidInput, match="'account_id'"):
        run_batch(BatchConfig(model="churn", input=str(good), output=str(out), keep_columns=["account_id"]),
                  client=client)

    assert not out.exists() and client.runs.list_runs(kind="batch") == []
    assert ray.is_initialized() == ray_was_up  # nothing started Ray


@pytest.mark.slow
def test_cli_batch_json(ray_session: None, client: Any, registered: Any, scoring_rows: pd.DataFrame,
                        tmp_path: Path) -> None:
    import ray

    source = _write_parquet_parts(scoring_rows.iloc[:300], tmp_path / "in", parts=2)
    env = {**os.environ, "MLPLATFORM_RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), str(REPO)])}
    command = [sys.executable, "-m", "mlplatform.cli.main", "batch", "--model", "churn@champion", "--input",
               f"{source}/*.parquet", "--output", str(tmp_path / "out"), "--keep-columns", "customer_id",
               "--concurrency", "1", "--batch-size", "100", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout[done.stdout.index("{"):])
    assert (data["rows_in"], data["rows_scored"], data["rows_quarantined"], data["reconciled"]) == (300, 300, 0,
                                                                                                     True)
    assert Path(data["output_path"]).is_dir() and data["model_version"] == 1

    failed = subprocess.run([*command[:5], "nope@champion", *command[6:]], capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    assert failed.returncode == 2 and "model 'nope' is not registered" in failed.stderr
